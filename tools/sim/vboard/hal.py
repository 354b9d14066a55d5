"""Simulation HAL: hands the portable core a virtual board built from register- and byte-level chip models.

It is the simulation's counterpart of `firmware/micropython/hal.py`: the same attribute names, so the collector
cannot tell the difference. Everything a board keeps across a reset lives in `state_dir`: the SD card's folder,
the board's own flash (`flash/`: the fallback journal's folder, a card model of FLASH_BYTES in 4096-byte blocks
like a Pico's LittleFS, with its own `flash/faults.json`), the DS1307's battery-backed registers, and the link's
path. Both folders are written through at every flush, so a kill -9 keeps what a power cut would.

Ticks reproduce MicroPython's: `ticks_ms()` wraps at 2**30 and `ticks_diff()` is modular, so wrap-around bugs
(flaw F10) show here too. `ticks_offset_ms` starts the counter anywhere, close to the wrap for tests.
"""

import binascii
import os
import time

from tools.sim.host.adc import MoistureSensor, constant, drying
from tools.sim.host.ds1307 import DS1307Sim
from tools.sim.host.i2c import I2CBus, MachineI2C
from tools.sim.host.ptylink import PtyLink
from tools.sim.host.sdcard import SimCard

TICKS_PERIOD = 1 << 30
FLASH_BYTES = 1408 << 10     # a Pico's LittleFS: 2 MB of flash less the firmware
FLASH_BLOCK = 4096
_TICKS_HALF = TICKS_PERIOD // 2


def ticks_diff(a, b):
    """MicroPython's time.ticks_diff: a - b on the wrapping tick circle."""
    return ((a - b + _TICKS_HALF) & (TICKS_PERIOD - 1)) - _TICKS_HALF


class Led:
    def __init__(self):
        self.state = 0
        self.changes = 0

    def value(self, v=None):
        if v is None:
            return self.state
        if v != self.state:
            self.changes += 1
        self.state = v


def board_uid(state_dir, uid=None):
    """The virtual board's hardware uid (hex), stable for its state folder as a chip's unique id is for the chip:
    made once (8 random bytes, like an rp2 flash id) and kept in `<state>/uid`. `uid` gives a board a chosen one
    (tests), written there too."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, "uid")
    if uid is None and os.path.exists(path):
        with open(path) as f:
            uid = f.read().strip()
    if uid is None:
        uid = binascii.hexlify(os.urandom(8)).decode()
    with open(path + ".tmp", "w") as f:
        f.write(uid + "\n")
    os.replace(path + ".tmp", path)
    return uid


class SimHAL:
    """One virtual board's hardware. `clock` is host seconds (monotonic), used for ticks and the link pacing."""

    def __init__(self, state_dir, baudrate=115200, card_capacity=8 << 20, moisture=None, noise=40.0, seed=0,
                 rtc_battery=True, ticks_offset_ms=0, clock=time.monotonic, uid=None):
        os.makedirs(state_dir, exist_ok=True)
        self.state_dir = state_dir
        self.uid = board_uid(state_dir, uid)
        self._clock = clock
        self._ticks_offset = ticks_offset_ms
        self.bus = I2CBus()
        self.rtc_chip = DS1307Sim(state_file=os.path.join(state_dir, "ds1307.json"), battery=rtc_battery,
                                  seed=seed)
        self.bus.attach(0x68, self.rtc_chip)
        self.i2c = MachineI2C(self.bus)
        curve = constant(moisture) if moisture is not None else drying(water_every=3600.0)
        self.adc = MoistureSensor(curve=curve, noise=noise, seed=seed)
        self.card = SimCard(os.path.join(state_dir, "sd"), card_capacity, seed=seed)
        self.flash = SimCard(os.path.join(state_dir, "flash"), FLASH_BYTES, block_size=FLASH_BLOCK, seed=seed)
        self.link = PtyLink(baudrate, clock=clock)
        self.led = Led()
        # The pair's wire (soil.board): tools/sim/vboard/board.py builds it for a master or a standby.
        self.hb_target = self.hb_mem = self.hb_end_write = self.hb_i2c = None

    def ticks_ms(self):
        return (int(self._clock() * 1000) + self._ticks_offset) & (TICKS_PERIOD - 1)

    ticks_diff = staticmethod(ticks_diff)

    def close(self):
        self.link.close()
