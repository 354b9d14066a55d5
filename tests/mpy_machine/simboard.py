"""Drive firmware/micropython/main.py on the simulated `machine`, under the real MicroPython interpreter.

tests/test_micropython_port.py writes a folder with `script.py` (`import simboard; simboard.main()`) and
`_simstate.py`:

    CONFIG = {...}          # the board's config.json
    STEPS = 40              # main.loop steps after start-up
    STATE = None or {...}   # what the last run left: {"rtc": hex of 64 registers, "card": {name: hex}}
    OFF_S = 0               # seconds the board was off (the DS1307 runs on its battery meanwhile)
    GATEWAY = True          # answer like a gateway: confirm the hello, ack each R frame in order, set the clock

and optionally `_mpyfiles.py` (FILES = {path: bytes}): precompiled .mpy modules written to the filesystem before
anything is imported, then dropped from RAM. It prints, one per line:

    TX <hex>                                  every byte the board wrote on its serial link
    RX <hex>                                  every byte the emulated gateway sent
    BOARD <json>                              boot, seq, pending, card state, watchdog feeds/max gap/overdue ...
    SIMSTATE <json>                           registers and card files for the next run (a reset)
"""

import binascii
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


class Gateway:
    """Just enough of the gateway to exercise acks: confirm hellos, ack R frames in order, set a clock that is not
    ok. (The real gateway, with its database, is tested in tests/test_pair.py and friends.)"""

    def __init__(self, rx, tx):
        from soil import frames
        self.frames = frames
        self.rx = rx                         # gateway -> board
        self.tx = tx                         # board -> gateway
        self.split = frames.LineSplitter()
        self.expected = None
        self.clock_set = False

    def step(self):
        f = self.frames
        data = bytes(self.tx.pending)
        self.tx.pending = bytearray()
        for line in self.split.feed(data):
            try:
                kind, fields = f.decode(line)
            except f.FrameError:
                continue
            if kind == f.HELLO:
                self.expected = fields[3]
                self.rx.write(f.ack(fields[3] - 1))
                if fields[5] != "ok" and not self.clock_set:
                    self.clock_set = True
                    self.rx.write(f.settime("2026-05-04T03:02:01Z"))
            elif kind == f.READING and self.expected is not None and fields[0] == self.expected:
                self.expected += 1
                self.rx.write(f.ack(fields[0]))
            elif kind == f.READING and self.expected is not None and fields[0] < self.expected:
                self.rx.write(f.ack(self.expected - 1))


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
    _B["hal"], _B["c"] = board.start(board.load_config(), (_B["rx"], _B["tx"]))


def run(steps=None):
    """main.py's loop, one step at a time, with the emulated gateway answering in between."""
    board = _B["board"]
    hal = _B["hal"]
    c = _B["c"]
    gw = Gateway(_B["rx"], _B["tx"]) if _B["gateway"] else None
    for _ in range(_B["steps"] if steps is None else steps):
        if gw is not None:
            gw.step()
        board.loop(hal, c, 1)
    if gw is not None:
        gw.step()
        board.loop(hal, c, 1)


def _hex(data):
    return binascii.hexlify(bytes(data)).decode()   # b"".hex() is b"" (bytes) in MicroPython 1.27


def report():
    sim = machine.SIM
    c = _B["c"]
    hal = _B["hal"]
    print("TX " + _hex(_B["tx"].log))
    print("RX " + _hex(_B["rx"].log))
    wdt = sim.wdt
    print("BOARD " + json.dumps({
        "boot": c.boot, "seq": c.seq, "pending": c.pending(), "dropped": c.dropped(), "card": c.card_state,
        "clock": c.clock_state, "inflight": len(c.uplink.inflight), "ignored_acks": c.uplink.ignored_acks,
        "wdt_feeds": wdt.feeds, "wdt_max_gap": wdt.max_gap, "wdt_overdue": wdt.overdue, "wdt_timeout": wdt.timeout,
        "now_ms": sim.now_ms, "role_state": getattr(c.role_logic, "state", None),
        "led_changes": hal.led.changes if hal.led is not None else None,
        "link_in": hal.link.bytes_in, "link_out": hal.link.bytes_out}))
    card = {}
    for name in os.listdir(CARD_ROOT):
        with open(CARD_ROOT + "/" + name, "rb") as f:
            card[name] = _hex(f.read())
    print("SIMSTATE " + json.dumps({"rtc": _hex(_B["chip"].regs), "card": card}))


def main():
    """One boot in one interpreter call (the functional test). Heap figures need phases.mjs instead: this port
    collects garbage only between top-level calls, so gc.mem_alloc() inside one script counts all garbage."""
    prepare()
    start()
    run()
    report()
