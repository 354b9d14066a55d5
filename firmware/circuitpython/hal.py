"""CircuitPython HAL: hands the portable core (lib/soil) the board's hardware in the shapes docs/ARCHITECTURE.md names.

This module builds no hardware. `code.py` makes the `busio.I2C`, `analogio.AnalogIn`, `digitalio.DigitalInOut`,
`i2ctarget.I2CTarget`, `usb_cdc.data` and SD card objects and passes them in, so the same classes run under
CPython in the tests with Blinka's packages and a simulated I2C bus in place of `busio.I2C`.

| core wants | CircuitPython gives | adapter |
| --- | --- | --- |
| `rtc.read()`, `set_datetime`, `nvram_*` (soil.ds1307 contract) | `adafruit_ds1307.DS1307` + `adafruit_bus_device` | `DS1307Adapter` |
| memory-mode I2C target with `irq(handler, trigger)` + `mem` | `i2ctarget.I2CTarget`, polled with `request()` | `PolledMemTarget` |
| `i2c.readfrom_mem` / `writeto_mem` (the master's beat) | `busio.I2C` (lock, `writeto`, `writeto_then_readfrom`) | `BusioMem` |
| `adc.read_u16()` | `analogio.AnalogIn(...).value` (already 0..65535) | `Adc` |
| `card.open/remove/listdir/size/free_bytes` | `sdcardio.SDCard` + `storage.VfsFat` at /sd | `Card` |
| `link.read()` / `link.write()`, never blocking | `usb_cdc.data` with `timeout = 0` | `UsbLink` |
| `led.value(v)` | `digitalio.DigitalInOut` | `Led` |
| `ticks_ms()` / `ticks_diff()` | `supervisor.ticks_ms()` | `ticks_diff` below |

Ticks: `supervisor.ticks_ms()` wraps at 2**29 ms (about 6.2 days), not at MicroPython's 2**30, so MicroPython's
`ticks_diff` formula with the wrong period would be off by 2**29 right after a wrap. CircuitPython also starts the
counter shortly before the wrap on purpose, so code that mishandles it fails within minutes, not after a week.
`ticks_diff` here is modular on 2**29 and valid for differences under 2**28 ms (3.1 days); the core's longest
interval is the 30 s witness recheck.
"""

import time

from adafruit_bus_device.i2c_device import I2CDevice
import adafruit_ds1307

from soil import ds1307 as _portable
from soil import timefmt

TICKS_PERIOD = 1 << 29
_TICKS_HALF = TICKS_PERIOD // 2
_EIO = 5
_ENODEV = 19


def ticks_diff(a, b):
    """a - b on CircuitPython's 2**29 tick circle (supervisor.ticks_ms)."""
    return ((a - b + _TICKS_HALF) & (TICKS_PERIOD - 1)) - _TICKS_HALF


# --- the DS1307 -------------------------------------------------------------------------------------------------

_ADDRESS = 0x68
_REG_NVRAM = 0x08
_MARKER_REG = 0x38
_MARKER_MAGIC = b"SoIL"


class DS1307Adapter:
    """soil.ds1307.DS1307's contract on top of Adafruit's `adafruit_ds1307` driver.

    Adafruit's driver is used for what it does right: the identity check at construction, setting the time (its
    `datetime` setter also clears the clock-halt bit) and the clock-halt bit itself (`disable_oscillator`).
    `read()` reads registers 0x00..0x06 itself, in one transaction through the same `I2CDevice` kind, and decodes
    them with the portable driver's `decode_time`, because Adafruit's `datetime` getter masks the clock-halt bit
    away, reads a 12-hour-mode hour register as a 24-hour one and accepts BCD nibbles above 9: the time and its
    trust must come from one read, and the states must be the portable driver's (ok / unset / halted / invalid).
    NVRAM (0x08..0x37 for callers, the "set by a gateway" marker at 0x38..0x3F) goes through `adafruit_bus_device`.

    Errors: `OSError` from the bus (errno 19 when nothing ACKs), `ValueError` for bad arguments; construction
    raises `OSError` naming the address when nothing answers and `RuntimeError` when something else does.
    """

    def __init__(self, i2c):
        try:
            self._dev = I2CDevice(i2c, _ADDRESS)     # probes the address
        except ValueError:
            raise OSError(_ENODEV, "no DS1307 at 0x%02x: check SDA/SCL and pull-ups" % _ADDRESS)
        try:
            self.chip = adafruit_ds1307.DS1307(i2c)
        except ValueError:
            raise RuntimeError("device at 0x%02x is not a DS1307 (a PCF8523 on an Adalogger wing answers there "
                               "too: disconnect it)" % _ADDRESS)
        self._reg = bytearray(1)
        self._regs = bytearray(7)
        self._marker = bytearray(9)

    def _read(self, reg, buf):
        self._reg[0] = reg
        with self._dev as d:
            d.write_then_readinto(self._reg, buf)
        return buf

    def _write(self, reg, data):
        buf = bytearray(1 + len(data))
        buf[0] = reg
        buf[1:] = data
        with self._dev as d:
            d.write(buf)

    @property
    def halted(self):
        return bool(self.chip.disable_oscillator)

    @property
    def datetime(self):
        return _portable.decode_time(self._read(0x00, self._regs))

    def read(self):
        """`(tm, state)` from one read of the time registers (plus the marker), as soil.ds1307.DS1307.read; the
        states are the protocol's clock states (docs/PROTOCOL.md)."""
        regs = bytes(self._read(0x00, self._regs))
        try:
            tm = _portable.decode_time(regs)
        except ValueError:
            tm = None
        if regs[0] & 0x80:
            return tm, "halted"
        if tm is None:
            return None, "invalid"
        if self.last_set() is None:
            return tm, "unset"
        return tm, "ok"

    def state(self):
        return self.read()[1]

    def last_set(self):
        m = self._read(_MARKER_REG, bytearray(8))
        if bytes(m[0:4]) != _MARKER_MAGIC:
            return None
        return int.from_bytes(m[4:8], "big")

    def set_datetime(self, tm):
        """Set the clock to UTC `tm` and start it (only on the gateway's `T` frame), then write the marker."""
        if not timefmt.valid(tm) or tm[0] < 2000 or tm[0] > 2099:
            raise ValueError("DS1307 keeps 2000-01-01T00:00:00Z..2099-12-31T23:59:59Z, got %r" % (tm,))
        wday = timefmt.weekday(tm[0], tm[1], tm[2]) - 1          # struct_time: Monday = 0; Adafruit writes + 1
        self.chip.datetime = time.struct_time(tuple(tm) + (wday, -1, -1))
        m = self._marker
        m[0:4] = _MARKER_MAGIC
        m[4:8] = timefmt.to_epoch(tm).to_bytes(4, "big")
        self._write(_MARKER_REG, m[0:8])

    def _nvram_check(self, offset, n):
        if offset < 0 or n < 0 or offset + n > _portable.NVRAM_SIZE:
            raise ValueError("NVRAM offsets 0..%d, got %d bytes at %d" % (_portable.NVRAM_SIZE - 1, n, offset))

    def nvram_read(self, offset, n):
        self._nvram_check(offset, n)
        if n == 0:
            return b""
        return bytes(self._read(_REG_NVRAM + offset, bytearray(n)))

    def nvram_write(self, offset, data):
        self._nvram_check(offset, len(data))
        if len(data):
            self._write(_REG_NVRAM + offset, data)


# --- the heartbeat wire -----------------------------------------------------------------------------------------

class BusioMem:
    """MicroPython's `readfrom_mem` / `writeto_mem` / `writeto` over a `busio.I2C` (the master's beat)."""

    def __init__(self, i2c):
        self.i2c = i2c

    def _lock(self):
        while not self.i2c.try_lock():
            pass

    def writeto(self, addr, buf):
        self._lock()
        try:
            self.i2c.writeto(addr, buf)
        finally:
            self.i2c.unlock()
        return len(buf)

    def writeto_mem(self, addr, memaddr, buf):
        data = bytearray(1 + len(buf))
        data[0] = memaddr
        data[1:] = buf
        self.writeto(addr, data)

    def readfrom_mem(self, addr, memaddr, nbytes):
        out = bytearray(nbytes)
        self._lock()
        try:
            self.i2c.writeto_then_readfrom(addr, bytes((memaddr,)), out)
        finally:
            self.i2c.unlock()
        return bytes(out)


class PolledMemTarget:
    """MicroPython's memory-mode `I2CTarget` interface (`irq(handler, trigger)`, `mem`) on CircuitPython's
    `i2ctarget.I2CTarget`, which has no interrupts: `poll()`, called from code.py's loop, serves the pending
    requests and calls the handler after each write that carried data (IRQ_END_WRITE).

    Layout as in MicroPython with `mem_addrsize=8`: a write's first byte selects the memory address, later bytes
    are stored from there (wrapping at the end of `mem`); a read returns bytes from the selected address on.
    A write of only the address byte (the first half of the master's `readfrom_mem`) calls no handler.

    Nothing is served between two calls of `poll()`: a read request holds the master's clock until the loop comes
    round, and a 96-byte beat overruns the RP2040's 16-byte receive FIFO unless it is drained quickly. The loop
    must therefore not sleep longer than a few milliseconds. A beat torn anyway fails its CRC and is ignored
    (soil.heartbeat); the next one follows one beat interval later.
    """

    IRQ_END_READ = 1 << 4       # MicroPython's values (extmod/machine_i2c_target.c)
    IRQ_END_WRITE = 1 << 5

    def __init__(self, target, mem):
        self.target = target
        self.mem = mem
        self.memaddr = 0
        self._handler = None
        self._trigger = 0
        self.writes = 0
        self.reads = 0

    def irq(self, handler=None, trigger=IRQ_END_READ | IRQ_END_WRITE, hard=False):
        self._handler = handler
        self._trigger = trigger
        return self

    def _event(self, flag):
        if self._handler is not None and self._trigger & flag:
            self._handler(self)

    def poll(self, limit=4):
        """Serve up to `limit` pending requests without waiting; returns how many were served."""
        served = 0
        while served < limit:
            req = self.target.request(timeout=-1)       # negative: look once, do not wait
            if not req:
                break
            with req:
                if req.is_read:
                    self._serve_read(req)
                else:
                    self._serve_write(req)
            served += 1
        return served

    def _serve_write(self, req):
        data = req.read()
        if not data:
            self._event(self.IRQ_END_WRITE)             # a bare address probe, as MicroPython reports it
            return
        n = len(self.mem)
        addr = data[0] % n
        self.memaddr = addr
        if len(data) == 1:
            return                                      # address select only: a read follows
        for b in data[1:]:
            self.mem[addr] = b
            addr += 1
            if addr >= n:
                addr = 0
        self.writes += 1
        self._event(self.IRQ_END_WRITE)

    def _serve_read(self, req):
        a = self.memaddr
        sent = req.write(bytes(self.mem[a:]) + bytes(self.mem[:a]))
        self.memaddr = (a + (sent or 0)) % len(self.mem)
        self.reads += 1
        self._event(self.IRQ_END_READ)


# --- the rest of the board --------------------------------------------------------------------------------------

class Adc:
    """`read_u16()` over `analogio.AnalogIn`, whose `value` is already scaled to 0..65535."""

    def __init__(self, analog_in):
        self.pin = analog_in

    def read_u16(self):
        return self.pin.value


class Led:
    def __init__(self, dio):
        self.dio = dio

    def value(self, v=None):
        if v is None:
            return 1 if self.dio.value else 0
        self.dio.value = bool(v)


class UsbLink:
    """The gateway link on `usb_cdc.data` (the second CDC port), so the REPL console stays free. Never blocks."""

    def __init__(self, serial):
        if serial is None:
            raise RuntimeError("usb_cdc.data is None: boot.py must call usb_cdc.enable(console=True, data=True) "
                               "(takes effect after a hard reset)")
        serial.timeout = 0
        serial.write_timeout = 0
        self.serial = serial

    def read(self):
        n = self.serial.in_waiting
        if not n:
            return b""
        return self.serial.read(n) or b""

    def write(self, data):
        n = self.serial.write(data)
        return len(data) if n is None else n


class Card:
    """The SD card's FAT filesystem mounted at `root`, as the core's `card`.

    `mount` (optional) is called with no argument when the card is not mounted yet; it mounts it or raises
    `OSError`. Every operation first makes sure the card is mounted, so a card inserted after boot is found when
    the collector retries it. `os_module` is CircuitPython's `os` (CPython's in the tests).
    """

    def __init__(self, root="/sd", mount=None, os_module=None):
        if os_module is None:
            import os as os_module
        self.root = root
        self._os = os_module
        self._mount = mount
        self.mounted = mount is None

    def _ensure(self):
        if not self.mounted:
            try:
                self._mount()
            except OSError as e:
                raise OSError(_ENODEV, "no SD card: %s" % (e,))
            self.mounted = True

    def _path(self, name):
        return self.root + "/" + name

    def _call(self, fn, *args):
        self._ensure()
        try:
            return fn(*args)
        except OSError as e:
            if self._mount is not None and e.args and e.args[0] in (_EIO, _ENODEV):
                self.mounted = False     # a pulled card: the collector's next retry mounts it again
            raise

    def open(self, name, mode):
        return self._call(open, self._path(name), mode)

    def remove(self, name):
        self._call(self._os.remove, self._path(name))

    def listdir(self):
        return self._call(self._os.listdir, self.root)

    def size(self, name):
        return self._call(self._os.stat, self._path(name))[6]

    def free_bytes(self):
        st = self._call(self._os.statvfs, self.root)
        return st[1] * st[4]         # f_frsize * f_bavail


def sd_mounter(sdcardio, storage, spi, cs, root="/sd", baudrate=8000000):
    """A `mount` function for `Card`: `sdcardio.SDCard` + `storage.VfsFat` mounted at `root`."""

    def mount():
        try:
            storage.umount(root)      # a card pulled and put back: drop the stale mount first
        except (OSError, ValueError):
            pass
        sd = sdcardio.SDCard(spi, cs, baudrate=baudrate)
        storage.mount(storage.VfsFat(sd), root)
    return mount


class CircuitPythonHAL:
    """One board's hardware, built once by code.py (or a test) from objects it made.

    `i2c` is the DS1307's bus (`busio.I2C` or anything with its API); `hb_target` an `i2ctarget.I2CTarget` on a
    standby, `hb_i2c` a second `busio.I2C` on a master (the heartbeat wire).
    """

    def __init__(self, i2c, analog_in, card, serial, led_dio, ticks_ms, hb_target=None, hb_i2c=None,
                 hb_mem_size=144):
        self.i2c = i2c
        self.rtc = DS1307Adapter(i2c)
        self.adc = Adc(analog_in)
        self.card = card
        self.link = UsbLink(serial)
        self.led = Led(led_dio) if led_dio is not None else None
        self.ticks_ms = ticks_ms
        self.hb_target = PolledMemTarget(hb_target, bytearray(hb_mem_size)) if hb_target is not None else None
        self.hb_i2c = BusioMem(hb_i2c) if hb_i2c is not None else None

    ticks_diff = staticmethod(ticks_diff)

    def poll(self):
        """Serve the heartbeat wire (a standby's target); call it on every turn of the loop."""
        if self.hb_target is not None:
            self.hb_target.poll()
