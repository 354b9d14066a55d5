"""The final report of a functional run (simboard.main()): what the board sent and received, its counters, and the
state the next boot starts from. Kept out of simboard.py so a heap measurement (phases.mjs) does not intern its
names before the firmware's."""

import binascii
import json
import os

import machine

from simboard import CARD_ROOT, FLASH_ROOT


def _hex(data):
    return binascii.hexlify(bytes(data)).decode()   # b"".hex() is b"" (bytes) in MicroPython 1.27


def report(b):
    """Print what the run did (TX, RX, BOARD, SIMSTATE lines; simboard's docstring); `b` is simboard's state."""
    sim = machine.SIM
    c = b["c"]
    hal = b["hal"]
    print("TX " + _hex(b["tx"].log))
    print("RX " + _hex(b["rx"].log))
    wdt = sim.wdt
    print("BOARD " + json.dumps({
        "boot": c.boot, "seq": c.seq, "pending": c.pending(), "dropped": c.dropped(), "card": c.card_state,
        "clock": c.clock_state, "inflight": len(c.uplink.inflight), "ignored_acks": c.uplink.ignored_acks,
        "wdt_feeds": wdt.feeds, "wdt_max_gap": wdt.max_gap, "wdt_overdue": wdt.overdue, "wdt_timeout": wdt.timeout,
        "now_ms": sim.now_ms, "role_state": c.pair.state if c.pair is not None else None,
        "led_changes": hal.led.changes if hal.led is not None else None,
        "link_in": hal.link.bytes_in, "link_out": hal.link.bytes_out,
        "fallback": c.fallback is not None, "fallback_pending": c.fallback.pending if c.fallback is not None else 0}))
    print("SIMSTATE " + json.dumps({"rtc": _hex(b["chip"].regs), "card": _files(CARD_ROOT),
                                    "flash": _files(FLASH_ROOT)}))


def _files(root):
    out = {}
    for name in os.listdir(root):
        with open(root + "/" + name, "rb") as f:
            out[name] = _hex(f.read())
    return out


