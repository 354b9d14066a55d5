"""Drive firmware/micropython/main.py on the simulated `machine`, under the real MicroPython interpreter.

tests/test_micropython_port.py writes a folder with `script.py` (`import simboard; simboard.main()`) and
`_simstate.py`:

    CONFIG = {...}          # the board's config.json
    STEPS = 40              # main.loop steps after start-up
    STATE = None or {...}   # what the last run left: {"rtc": hex of 64 registers, "card": {name: hex}}
    OFF_S = 0               # seconds the board was off (the DS1307 runs on its battery meanwhile)
    GATEWAY = True          # answer like a gateway: confirm the hello, ack each R frame in order, set the clock

The emulated gateway and the report are in simreport.py, imported only by runs that use them: everything this
harness interns (its names go into the same qstr table as the firmware's) is measured before the firmware by
phases.mjs, and a board has none of it.

and optionally `_mpyfiles.py` (FILES = {path: bytes}): precompiled .mpy modules written to the filesystem before
anything is imported, then dropped from RAM. It prints, one per line:

    TX <hex>                                  every byte the board wrote on its serial link
    RX <hex>                                  every byte the emulated gateway sent
    BOARD <json>                              boot, seq, pending, card state, watchdog feeds/max gap/overdue ...
    SIMSTATE <json>                           registers and card files for the next run (a reset)
"""

import io
import json
import os
import sys
import time

import machine
import sdcard
from ds1307_chip import DS1307Chip

CARD_ROOT = "/simcard"


class Pipe(io.IOBase):
    """One direction of the USB serial line: a pollable stream (select.poll works on it) that records bytes."""

    def __init__(self):
        self.pending = bytearray()
        self.log = bytearray()

    def readinto(self, buf):
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def write(self, data):
        self.log += data
        self.pending += data
        return len(data)

    def ioctl(self, req, arg):
        if req == 3:                         # MP_STREAM_POLL
            r = 0
            if arg & 1 and self.pending:     # POLLIN
                r |= 1
            if arg & 4:                      # POLLOUT: USB always takes more here
                r |= 4
            return r
        return 0


def _install_mpy():
    try:
        import _mpyfiles
    except ImportError:
        return 0
    n = 0
    for path, blob in _mpyfiles.FILES.items():
        parts = path.split("/")
        for i in range(2, len(parts)):
            try:
                os.mkdir("/".join(parts[:i]))
            except OSError:
                pass
        with open(path, "wb") as f:
            f.write(blob)
        n += 1
    del sys.modules["_mpyfiles"]
    return n


_B = {}


def prepare():
    """Everything before the firmware: the simulated chips, the card folder, the patched clock, config.json."""
    import _simstate as st
    _B["cfg"] = st.CONFIG
    _B["steps"] = st.STEPS
    state = st.STATE
    off_s = getattr(st, "OFF_S", 0)
    _B["gateway"] = getattr(st, "GATEWAY", True)
    del sys.modules["_simstate"]
    del st
    _B["mpy"] = _install_mpy()
    sim = machine.SIM
    time.ticks_ms = sim.ticks_ms
    time.sleep_ms = sim.sleep_ms
    if not hasattr(os, "VfsFat"):
        os.VfsFat = sdcard.SimFat
    try:
        os.mkdir(CARD_ROOT)
    except OSError:
        pass
    regs = None
    if state:
        regs = bytes.fromhex(state["rtc"])
        for name, blob in state["card"].items():
            with open(CARD_ROOT + "/" + name, "wb") as f:
                f.write(bytes.fromhex(blob))
    chip = DS1307Chip(sim.clock_ms, regs)
    chip.advance(off_s)
    sim.bus(_B["cfg"].get("pins", {}).get("rtc_i2c", 0))[DS1307Chip.ADDRESS] = chip
    _B["chip"] = chip
    with open("config.json", "w") as f:
        json.dump(_B["cfg"], f)
    _B["rx"] = Pipe()
    _B["tx"] = Pipe()


def start():
    """main.py's start-up: config, HAL, drivers, journal recovery, boot counter, collector, role, hello."""
    import main as board
    _B["board"] = board
    _B["hal"], _B["c"] = board.start(None, (_B["rx"], _B["tx"]))   # None: start-up reads config.json


def run(steps=None):
    """main.py's loop, one step at a time, with the emulated gateway answering in between."""
    board = _B["board"]
    hal = _B["hal"]
    c = _B["c"]
    gw = None
    if _B["gateway"]:
        from simreport import Gateway
        gw = Gateway(_B["rx"], _B["tx"])
    for _ in range(_B["steps"] if steps is None else steps):
        if gw is not None:
            gw.step()
        board.loop(hal, c, 1)
    if gw is not None:
        gw.step()
        board.loop(hal, c, 1)


def main():
    """One boot in one interpreter call (the functional test). Heap figures need phases.mjs instead: this port
    collects garbage only between top-level calls, so gc.mem_alloc() inside one script counts all garbage."""
    prepare()
    start()
    run()
    from simreport import report
    report(_B)
