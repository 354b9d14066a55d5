"""MicroPython HAL: the hardware the portable core is handed (docs/ARCHITECTURE.md), built once from a pin map.

    hal = HAL(boards.pins_for(config))     # I2C + DS1307 bus, ADC, SD card at /sd, USB serial link, LED, ticks
    hal.heartbeat_target(8, mem)           # standby: machine.I2CTarget on the pair's own I2C peripheral
    hal.heartbeat_i2c()                    # master: machine.I2C controller on that peripheral

Nothing here runs at import time: `main.py` builds one HAL, and a test can build one over a simulated `machine`.

Errors follow the interfaces: the card raises OSError with Linux errno numbers (ENOENT 2, EIO 5, ENODEV 19,
ENOSPC 28) whatever the SD driver said (micropython-lib's `sdcard` raises `OSError("timeout ...")` with text);
the I2C bus raises machine.I2C's own OSError (ENODEV on a NACKed address, EIO, ETIMEDOUT).
"""

import os
import select
import sys
import time

import machine
from micropython import const

_ENOENT = const(2)
_EIO = const(5)
_ENODEV = const(19)
_MOUNT = "/sd"
_RX_MAX = const(128)     # bytes taken from USB per read(): one frame and a bit; the rest waits in the USB buffer
_TX_CHUNK = const(64)    # bytes handed to USB per write(): what the CDC buffer takes without blocking


def _linux_errno(e):
    """OSError -> the Linux errno the core expects (text-only errors from drivers become EIO)."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else _EIO
    return OSError(code, "sd card")


class Card:
    """The SD card's FAT filesystem at /sd as the core's `card` (one flat folder).

    A card that was absent at boot, or failed, is mounted again on the next call after `remount()`: the collector
    retries the card every status interval, so a card pushed back in is picked up without a reset.
    """

    def __init__(self, spi, cs):
        self._spi = spi
        self._cs = cs
        self.mounted = False
        self.error = None
        self.mount()

    def mount(self):
        if self.mounted:
            return True
        try:
            import sdcard                # micropython-lib: `mpremote mip install sdcard`
            vfs = os.VfsFat(sdcard.SDCard(self._spi, self._cs))
            try:
                os.umount(_MOUNT)        # a stale mount from before a soft reset
            except OSError:
                pass
            os.mount(vfs, _MOUNT)
            self.mounted = True
            self.error = None
        except (OSError, ImportError) as e:
            self.error = e
        return self.mounted

    def _path(self, name):
        if not self.mounted and not self.mount():
            raise OSError(_ENODEV, "no SD card")
        return _MOUNT + "/" + name

    def _failed(self, e):
        err = _linux_errno(e)
        if err.args[0] == _EIO or err.args[0] == _ENODEV:
            self.mounted = False         # pulled or broken: mount again on the next call
        return err

    def open(self, name, mode):
        path = self._path(name)
        try:
            return open(path, mode)
        except OSError as e:
            raise self._failed(e)

    def remove(self, name):
        path = self._path(name)
        try:
            os.remove(path)
        except OSError as e:
            raise self._failed(e)

    def listdir(self):
        self._path("")
        try:
            return os.listdir(_MOUNT)
        except OSError as e:
            raise self._failed(e)

    def size(self, name):
        path = self._path(name)
        try:
            return os.stat(path)[6]
        except OSError as e:
            raise self._failed(e)

    def free_bytes(self):
        self._path("")
        try:
            st = os.statvfs(_MOUNT)
        except OSError as e:
            raise self._failed(e)
        return st[0] * st[4]             # f_bsize * f_bavail


class SerialLink:
    """The USB serial line (the REPL's stdin/stdout) as the core's non-blocking `link`.

    `select.poll` says whether a byte is waiting or the output can take more; `read()` takes what has arrived
    (one byte per readinto: a longer readinto on USB stdin would block until it is full), `write()` hands over at
    most _TX_CHUNK bytes and returns how many were taken. Ctrl-C (0x03) on the line still interrupts the program
    (so mpremote can stop it); the protocol is printable ASCII and never sends it.
    """

    def __init__(self, rx=None, tx=None):
        self._rx = rx if rx is not None else sys.stdin.buffer
        self._tx = tx if tx is not None else sys.stdout.buffer
        self._pin = select.poll()
        self._pin.register(self._rx, select.POLLIN)
        self._pout = select.poll()
        self._pout.register(self._tx, select.POLLOUT)
        self._one = bytearray(1)
        self._buf = bytearray(_RX_MAX)
        self.bytes_in = 0
        self.bytes_out = 0

    def read(self):
        n = 0
        buf = self._buf
        one = self._one
        while n < _RX_MAX and self._pin.poll(0):
            if not self._rx.readinto(one):
                break                    # EOF (a closed stdin): nothing more will come
            buf[n] = one[0]
            n += 1
        self.bytes_in += n
        return bytes(buf[:n]) if n else b""

    def write(self, data):
        if not self._pout.poll(0):
            return 0
        n = self._tx.write(data[:_TX_CHUNK] if len(data) > _TX_CHUNK else data)
        n = n or 0
        self.bytes_out += n
        return n

    def wait(self, ms):
        """Sleep up to `ms`, waking early when a byte arrives."""
        self._pin.poll(ms)


class HAL:
    """One board's hardware from a pin map (boards.py). Attributes as firmware/sim/hal.py's SimHAL."""

    def __init__(self, pins, serial=None):
        Pin = machine.Pin
        self.pins = pins
        self.i2c = machine.I2C(pins["rtc_i2c"], scl=Pin(pins["rtc_scl"]), sda=Pin(pins["rtc_sda"]),
                               freq=100000)   # the DS1307 is a 100 kHz part
        if pins.get("adc_atten") is not None:
            self.adc = machine.ADC(Pin(pins["adc"]), atten=pins["adc_atten"])
        else:
            self.adc = machine.ADC(Pin(pins["adc"]))
        spi = machine.SPI(pins["sd_spi"], baudrate=1000000, sck=Pin(pins["sd_sck"]), mosi=Pin(pins["sd_mosi"]),
                          miso=Pin(pins["sd_miso"]))
        self.card = Card(spi, Pin(pins["sd_cs"], Pin.OUT, value=1))
        self.link = SerialLink(*serial) if serial else SerialLink()   # serial: (rx, tx) streams, default USB
        self.led = Pin(pins["led"], Pin.OUT, value=0) if pins.get("led") is not None else None
        self.wdt = None
        self.ticks_ms = time.ticks_ms
        self.ticks_diff = time.ticks_diff

    def heartbeat_i2c(self):
        """The master's side of the pair wire: an I2C controller on the wire's own peripheral."""
        p = self.pins
        return machine.I2C(p["hb_i2c"], scl=machine.Pin(p["hb_scl"]), sda=machine.Pin(p["hb_sda"]), freq=100000)

    def heartbeat_target(self, address, mem):
        """The standby's side: a memory-mode I2C target at `address` over `mem` (the heartbeat records)."""
        p = self.pins
        return machine.I2CTarget(p["hb_i2c"], address, mem=mem, scl=machine.Pin(p["hb_scl"]),
                                 sda=machine.Pin(p["hb_sda"]))

    def start_watchdog(self, timeout_ms):
        """Once started a watchdog cannot be stopped: main's loop must feed it."""
        self.wdt = machine.WDT(timeout=min(timeout_ms, self.pins.get("wdt_max_ms", timeout_ms)))
        return self.wdt
