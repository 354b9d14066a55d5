"""Drive firmware/micropython/main.py on the simulated `machine`, under the real MicroPython interpreter.

tests/test_micropython_port.py writes a folder with `script.py` (`import simboard; simboard.main()`) and
`_simstate.py`, one line `STATE = '<json>'` (JSON in a string: its keys and values intern no names) of:

    "cfg": {...}            the board's config.json
    "steps": 40             main.loop steps after start-up
    "state": null or {...}  what the last run left: {"rtc": hex of 64 registers, "card": {name: hex},
                            "flash": {name: hex}, "card_removed": false (true: the slot is empty this boot)}
    "off": 0                seconds the board was off (the DS1307 runs on its battery meanwhile)
    "gateway": true         answer like a gateway: confirm the hello, ack each R frame in order, set the clock
    "scenario": null        "peak": the heap budget's peak run (simpeak.py), driven by chunk(i) and events()

The chips are the portable models of tools/sim/chips (`chips` on /lib: run.mjs and phases.mjs
`--package chips=tools/sim/chips`): a DS1307 on the RTC's I2C bus, an SD card in the board's slot, its files in
CARD_ROOT, and the board's own flash: a card model of a Pico's LittleFS (1.4 MB in 4096-byte blocks, files in
FLASH_ROOT) mounted at /fallback, the folder firmware/micropython/startup.py hands the fallback journal (this port has no LittleFS,
so the folder is a user VFS over the model, as the SD card's FAT is). No state is a new DS1307 at its first
power-up (CH set), an empty card and an empty flash.

The emulated gateway and the report are in simreport.py, imported only by runs that use them: everything this
harness interns (its names go into the same qstr table as the firmware's) is measured before the firmware by
phases.mjs, and a board has none of it; so the harness keeps its names few.

`main()` prints, one per line:

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
from chips.ds1307 import DS1307
from chips.moisture import MoistureProbe, drying
from chips.sdcard import Card

CARD_ROOT = "/simcard"
FLASH_ROOT = "/simflash"
FLASH_MOUNT = "/fallback"         # firmware/micropython/startup.py's _FLASH


class Pipe(io.IOBase):
    """One direction of the USB serial line: a pollable stream (select.poll works on it) that records bytes
    (`log`; None: not recorded, as in the heap's peak run, where a growing log would be charged to the firmware)."""

    def __init__(self, log=True):
        self.pending = bytearray()
        self.log = bytearray() if log else None

    def readinto(self, buf):
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def write(self, data):
        if self.log is not None:
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


_B = {}


class _FlashDevice:
    """What the user VFS over a card model takes (sdcard.VfsFat: `.card`): here the board's flash."""

    def __init__(self, card):
        self.card = card


def fit(clock_ms, rtc_bus=0):
    """Fit the board's parts, the portable chip models: a DS1307 on I2C `rtc_bus`, an 8 MB SD card in the slot (its
    files in CARD_ROOT, os.VfsFat as its filesystem), a soil probe on the ADC (a drying curve watered every hour).
    Returns the DS1307. (The virtual MicroPython board's boot.py calls this too.)"""
    sim = machine.SIM
    if not hasattr(os, "VfsFat"):
        os.VfsFat = sdcard.VfsFat
    sim.card = Card(CARD_ROOT, 8 << 20)
    sim.flash = Card(FLASH_ROOT, 1408 << 10, block_size=4096)
    try:
        os.umount(FLASH_MOUNT)
    except OSError:
        pass
    os.mount(sdcard.VfsFat(_FlashDevice(sim.flash)), FLASH_MOUNT)
    sim.probe = MoistureProbe(clock_ms, drying(water_every=3600.0), noise=40.0)
    chip = DS1307(clock_ms)
    sim.bus(rtc_bus)[DS1307.ADDRESS] = chip
    return chip


def prepare():
    """Everything before the firmware: the simulated chips, the card folder, the patched clock, config.json."""
    import _simstate
    st = json.loads(_simstate.STATE)
    del sys.modules["_simstate"]
    _B["cfg"] = st["cfg"]
    _B["steps"] = st["steps"]
    _B["gateway"] = st.get("gateway", True)
    state = st.get("state")
    sim = machine.SIM
    time.ticks_ms = sim.ticks_ms
    time.sleep_ms = sim.sleep_ms
    chip = fit(sim.clock_ms, _B["cfg"].get("pins", {}).get("rtc_i2c", 0))
    if state:
        for root, files in ((CARD_ROOT, state["card"]), (FLASH_ROOT, state.get("flash", {}))):
            for name, blob in files.items():
                with open(root + "/" + name, "wb") as f:
                    f.write(bytes.fromhex(blob))
        sim.card.removed = bool(state.get("card_removed"))
        chip.resume(bytes.fromhex(state["rtc"]), sim.clock_ms() - 1000 * st.get("off", 0))   # on its battery
    _B["chip"] = chip
    with open("config.json", "w") as f:
        json.dump(_B["cfg"], f)
    peak = st.get("scenario") == "peak"
    _B["rx"] = Pipe(not peak)
    _B["tx"] = Pipe(not peak)
    if peak:
        # Loaded before the firmware, so its names are the simulation's, measured and subtracted with it.
        from simpeak import PeakRun
        _B["peak"] = PeakRun(_B["rx"], _B["tx"], _B["cfg"].get("role", "single"),
                             _B["cfg"].get("pins", {}).get("hb_i2c", 1))


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
        from simgateway import Gateway
        gw = Gateway(_B["rx"], _B["tx"])
    for _ in range(_B["steps"] if steps is None else steps):
        if gw is not None:
            gw.step()
        board.loop(hal, c, 1)
    if gw is not None:
        gw.step()
        board.loop(hal, c, 1)


def chunk(i):
    """The peak run's chunk `i` (simpeak.py): the first call starts its timeline."""
    run = _B["peak"]
    if run.t0 is None:
        run.start(machine.SIM.now_ms)
    run.chunk(_B["board"], _B["hal"], _B["c"], i)


def events():
    """Print what the peak run went through, as EVENT lines."""
    _B["peak"].report(_B["c"])


def main():
    """One boot in one interpreter call (the functional test). Heap figures need phases.mjs instead: this port
    collects garbage only between top-level calls, so gc.mem_alloc() inside one script counts all garbage."""
    prepare()
    start()
    run()
    from simreport import report
    report(_B)
