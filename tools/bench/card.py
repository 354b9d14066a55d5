"""How long a full card can be tolerated, for `make bench` (phase 8; docs/JOURNAL.md, "A full card").

A virtual board with no gateway (an outage: nothing is acknowledged) caches readings, then its simulated card
reports itself full (sd/faults.json `full`: free space 0 whatever is deleted). Measured on the board's counters
(control socket `status`):

- the cache lost when the episode begins: what the journal's full-card policy gives up (at most one segment);
- the samples taken while the card stays full before the first of them is lost: the collector keeps the readings
  the card refuses elsewhere (its RAM queue; the board's flash once the fallback store is there), so this is how
  many readings that store holds. At one reading per second it is the number of seconds a full card is tolerated.

The board samples every `interval_ms` (50 ms, so the run takes seconds); the count of samples does not depend on
the interval, so the tolerated time at 1 Hz is that count in seconds.

    python -m tools.bench.card          this phase alone, printed (docs/BENCHMARKS.md is written by `make bench`)
"""

import os
import shutil
import sys
import tempfile
import time

from tools.demo.stack import Stack, wait_for

INTERVAL_MS = 50
CACHED = 200          # readings on the card when it goes full: more than one segment, so the bound shows
SEGMENT_BYTES = 4096  # soil.journal's default segment


def bench_full_card(stack, interval_ms=INTERVAL_MS, cached=CACHED, limit=5000):
    """{'cache_lost', 'tolerated_samples', 'tolerated_s_at_1hz', 'interval_ms', 'cached'} from one board."""
    b = stack.start_board("bench-full", interval_ms=interval_ms, status_interval_ms=500, seed=8)
    try:
        wait_for(lambda: b.status()["pending"] >= cached, 60 + cached * interval_ms / 250.0,
                 "%d readings cached" % cached)
        before = b.status()
        b.set_card_faults(full=True)
        wait_for(lambda: b.status()["card"] == "full", 30, "the board to find the card full")
        st = b.status()
        first = st["seq"]                          # the first sample the card refused is at most this one
        cache_lost = st["dropped"] - before["dropped"]
        deadline = time.monotonic() + 60 + limit * interval_ms / 250.0
        while True:
            st = b.status()
            if st["dropped"] > before["dropped"] + cache_lost:
                break                              # a reading sampled while full is gone
            if st["seq"] - first > limit:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the full card was tolerated past the deadline without a loss")
            time.sleep(interval_ms / 4000.0)
        tolerated = st["seq"] - first + 1 - (st["dropped"] - before["dropped"] - cache_lost)
        return {"cache_lost": cache_lost, "tolerated_samples": tolerated, "tolerated_s_at_1hz": tolerated,
                "interval_ms": interval_ms, "cached": before["pending"], "capped": st["seq"] - first > limit}
    finally:
        b.stop()


def main():
    root = tempfile.mkdtemp(prefix="soil-bench-card-")
    stack = Stack(os.path.join(root, "run"))
    try:
        r = bench_full_card(stack)
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    print("full card, %d readings cached, board at %d ms: %d lost from the cache when it went full (bound: one "
          "segment of %d bytes); then %d samples kept elsewhere before the first loss = %d s tolerated at 1 Hz"
          % (r["cached"], r["interval_ms"], r["cache_lost"], SEGMENT_BYTES, r["tolerated_samples"],
             r["tolerated_s_at_1hz"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
