"""`make bench` phase 8: how many readings the fallback journal on a board's flash holds at 1 Hz, and what it writes.

The fallback is the firmware's own soil.journal.Journal with the collector's size (soil.collector.FALLBACK_MAX_BYTES)
on the flash model of the virtual boards (tools/sim/chips/sdcard.py as a Pico's LittleFS: 1.4 MB in 4096-byte
blocks). It is filled with the records a board makes at one reading per second (soil.codec.reading_record: a
late boot number, five-digit sequence numbers and raw values, the RTC time) until the journal first has to drop by
its policy; what it held then, divided by 3600, is the hours a card may stay away without a loss. No database.

    python -m tools.bench.fallback      # this phase alone: prints the figures as JSON
"""

import json
import os
import shutil
import tempfile

from tools.sim.vboard.hal import FLASH_BLOCK, FLASH_BYTES


def bench_fallback(boot=1234):
    from soil import codec, utc
    from soil.collector import FALLBACK_MAX_BYTES
    from soil.journal import Journal
    from tools.sim.chips.sdcard import Card
    root = tempfile.mkdtemp(prefix="bench-fallback-")
    try:
        flash = Card(os.path.join(root, "flash"), FLASH_BYTES, block_size=FLASH_BLOCK)
        journal = Journal(flash, max_bytes=FALLBACK_MAX_BYTES)
        journal.open()
        start = utc.to_epoch((2026, 6, 1, 0, 0, 0))
        n = 0
        written = 0
        while True:
            record = codec.reading_record(boot, 10000 + n, utc.iso(utc.from_epoch(start + n)), 30000 + n % 30000, "")
            journal.append(record)
            if journal.dropped:
                break
            n += 1
            written += len(record) + 10          # the record's line: payload, '*', CRC-32 in hex, newline
        segments = len([name for name in flash.listdir() if name.endswith(".log")])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"max_bytes": FALLBACK_MAX_BYTES, "readings": n, "hours_at_1hz": n / 3600.0,
            "bytes_per_reading": written / float(n), "segment_bytes": journal.segment_bytes, "segments": segments,
            "flash_bytes": FLASH_BYTES}


if __name__ == "__main__":
    print(json.dumps(bench_fallback(), indent=1))
