"""MicroPython HAL: the hardware the portable core is handed (docs/ARCHITECTURE.md), the part that runs all the time.

    Card(spi, cs)          # the SD card's FAT filesystem at /sd, mounted again after it failed or was pulled
    Folder(root)           # a folder of a filesystem: startup.py's /fallback on the board's own LittleFS, where
                           # the fallback journal keeps readings while the card is away
    SerialLink()           # the USB serial line, non-blocking, for the frames
    HAL                    # the attributes handed to the core (soil.board names them)

Nothing here runs at import time. What builds the hardware (pins to machine objects, the heartbeat wire, the
watchdog) is startup.py, which main.py drops after start-up: it runs once.

Errors follow the interfaces: the card raises OSError with Linux errno numbers (ENOENT 2, EIO 5, ENODEV 19,
ENOSPC 28) whatever the SD driver said (micropython-lib's `sdcard` raises `OSError("timeout ...")` with text);
the I2C bus raises machine.I2C's own OSError: on rp2 EIO for a NACK (of the address too: ports/rp2/machine_i2c.c maps
every pico-sdk error but a timeout to EIO) and ETIMEDOUT; on esp32 ENODEV for a NACKed address.
"""

import os
import select
import sys

from micropython import const
from soil.card import EIO, ENODEV

_MOUNT = const("/sd")
_RX_MAX = const(128)     # bytes taken from USB per read(): one frame and a bit; the rest waits in the USB buffer
_TX_CHUNK = const(64)    # bytes handed to USB per write(): what the CDC buffer takes without blocking


def _linux_errno(e):
    """OSError -> the Linux errno the core expects (text-only errors from drivers become EIO)."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else EIO
    return OSError(code, "sd card")


class Folder:
    """A folder of a mounted filesystem as the core's `card` interface (one flat folder), errors as Linux errno.
    The SD card is one; the board's own flash (LittleFS on a Pico: about 1.4 MB, wear-levelled, safe across a power
    cut mid-write by design) gives startup.py's /fallback for the fallback journal."""

    def __init__(self, root):
        self.root = root

    def _path(self, name):
        return self.root + "/" + name

    def _failed(self, e):
        return _linux_errno(e)

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
            return os.listdir(self.root)
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
            st = os.statvfs(self.root)
        except OSError as e:
            raise self._failed(e)
        return st[0] * st[4]             # f_bsize * f_bavail


class Card(Folder):
    """The SD card's FAT filesystem at /sd as the core's `card` (one flat folder).

    A card that was absent at boot, or failed, is mounted again on the next call after `remount()`: the collector
    retries the card every status interval, so a card pushed back in is picked up without a reset.
    """

    def __init__(self, spi, cs):
        Folder.__init__(self, _MOUNT)
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
            raise OSError(ENODEV, "no SD card")
        return _MOUNT + "/" + name

    def _failed(self, e):
        err = _linux_errno(e)
        if err.args[0] == EIO or err.args[0] == ENODEV:
            self.mounted = False         # pulled or broken: mount again on the next call
        return err


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


class HAL:
    """One board's hardware, as the attributes soil.board.build takes (uid, i2c, adc, card, flash, link, led, ticks_ms,
    ticks_diff; hb_target, hb_mem, hb_end_write on a standby; hb_i2c on a master), and the watchdog main.py feeds
    (wdt). startup.build_hal() fills it from a pin map; it has no methods because everything that builds hardware
    runs once, in startup.py."""
