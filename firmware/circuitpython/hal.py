"""CircuitPython HAL: hands the portable core (lib/soil) the board's hardware in the shapes docs/ARCHITECTURE.md names.

This module builds no hardware. `code.py` makes the `busio.I2C`, `analogio.AnalogIn`, `digitalio.DigitalInOut`,
`i2ctarget.I2CTarget`, `usb_cdc.data` and SD card objects and passes them in, so the same classes run under
CPython in the tests with Blinka's packages and a simulated I2C bus in place of `busio.I2C`.

| core wants | CircuitPython gives | adapter |
| --- | --- | --- |
| `i2c.readfrom_mem` / `writeto_mem` (the DS1307 driver, the master's beat) | `busio.I2C` through `adafruit_bus_device` | `BusioMem` |
| memory-mode I2C target with `irq(handler, trigger)` + `mem` | `i2ctarget.I2CTarget`, polled with `request()` | `PolledMemTarget` |
| `adc.read_u16()` | `analogio.AnalogIn(...).value` (already 0..65535) | `Adc` |
| `card.open/remove/listdir/size/free_bytes` | `sdcardio.SDCard` + `storage.VfsFat` at /sd | `Card` |
| `flash` (the same interface: the fallback journal while the card is away) | CIRCUITPY's /fallback, if writable from code | `internal_flash` |
| `link.read()` / `link.write()`, never blocking | `usb_cdc.data` with `timeout = 0` | `UsbLink` |
| `led.value(v)` | `digitalio.DigitalInOut` | `Led` |
| `ticks_ms()` / `ticks_diff()` | `supervisor.ticks_ms()` | `ticks_diff` below |

The DS1307 is driven by the portable driver (soil.ds1307) over `BusioMem`, as on every other board, so the one
library this port needs from Adafruit's bundle is `adafruit_bus_device` (requirements.txt, for `circup install -r`).
Adafruit's `adafruit_ds1307` is not needed on the board (its `datetime` getter hides the clock-halt bit and misreads 12-hour
mode, and the core needs the time and its trust from one read). The tests still run Adafruit's driver against the
same simulated chip, as an independent check of the chip model and of the time the portable driver sets.

Ticks: `supervisor.ticks_ms()` wraps at 2**29 ms (about 6.2 days), not at MicroPython's 2**30, so MicroPython's
`ticks_diff` formula with the wrong period would be off by 2**29 right after a wrap. CircuitPython also starts the
counter shortly before the wrap on purpose, so code that mishandles it fails within minutes, not after a week.
`ticks_diff` here is modular on 2**29 and valid for differences under 2**28 ms (3.1 days); the core's longest
interval is the 30 s witness recheck.
"""

from adafruit_bus_device.i2c_device import I2CDevice
from soil.card import EIO, ENODEV
from soil.heartbeat import MEM_SIZE

TICKS_PERIOD = 1 << 29
_TICKS_HALF = TICKS_PERIOD // 2


def ticks_diff(a, b):
    """a - b on CircuitPython's 2**29 tick circle (supervisor.ticks_ms)."""
    return ((a - b + _TICKS_HALF) & (TICKS_PERIOD - 1)) - _TICKS_HALF


# --- the heartbeat wire -----------------------------------------------------------------------------------------

class BusioMem:
    """MicroPython's `readfrom_mem` / `writeto_mem` on a `busio.I2C` (the DS1307's bus, the master's beat), through
    Adafruit's `I2CDevice` as CircuitPython drivers talk: the bus lock, and a write then a read with a repeated
    START. One device per address, made on first use without a probe: the DS1307 driver checks its chip itself,
    and a master must not fail to start when its standby is away. An address nobody ACKs raises OSError, as busio
    does (errno 19 on CircuitPython)."""

    def __init__(self, i2c):
        self.i2c = i2c
        self._devices = {}

    def _device(self, addr):
        dev = self._devices.get(addr)
        if dev is None:
            dev = self._devices[addr] = I2CDevice(self.i2c, addr, probe=False)
        return dev

    def writeto_mem(self, addr, memaddr, buf):
        data = bytearray(1 + len(buf))
        data[0] = memaddr
        data[1:] = buf
        with self._device(addr) as dev:
            dev.write(data)

    def readfrom_mem(self, addr, memaddr, nbytes):
        out = bytearray(nbytes)
        with self._device(addr) as dev:
            dev.write_then_readinto(bytes((memaddr,)), out)
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
                raise OSError(ENODEV, "no SD card: %s" % (e,))
            self.mounted = True

    def _path(self, name):
        return self.root + "/" + name

    def _call(self, fn, *args):
        self._ensure()
        try:
            return fn(*args)
        except OSError as e:
            if self._mount is not None and e.args and e.args[0] in (EIO, ENODEV):
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


FLASH_ROOT = "/fallback"
READ_ONLY_WARNING = ("CIRCUITPY is read-only to this code (USB owns it): readings wait in RAM while the SD card is "
                     "away and a power cut loses them (SOIL_FLASH_FALLBACK = 1 in settings.toml: see boot.py)")


def internal_flash(storage, os_module=None, root=FLASH_ROOT, log=None):
    """The internal flash's `root` folder as a `card` for the fallback journal (soil.board's `flash`) when code may
    write CIRCUITPY (`storage.getmount("/").readonly` is False: boot.py remounted it, and USB sees it read-only);
    None otherwise, with READ_ONLY_WARNING logged once: readings then wait in RAM, as before the fallback."""
    if os_module is None:
        import os as os_module
    if storage.getmount("/").readonly:
        if log is not None:
            log(READ_ONLY_WARNING)
        return None
    try:
        os_module.mkdir(root)
    except OSError:
        pass                         # there already
    return Card(root, os_module=os_module)


class CircuitPythonHAL:
    """One board's hardware, built once by code.py (or a test) from objects it made, as the attributes
    soil.board.build takes.

    `i2c` is the DS1307's bus (`busio.I2C` or anything with its API); `hb_target` an `i2ctarget.I2CTarget` on a
    standby, `hb_i2c` a second `busio.I2C` on a master (the heartbeat wire).
    """

    def __init__(self, i2c, analog_in, card, serial, led_dio, ticks_ms, hb_target=None, hb_i2c=None, uid=None,
                 flash=None):
        self.uid = uid                   # microcontroller.cpu.uid as hex (soil.board.uid_hex)
        self.i2c = BusioMem(i2c)
        self.adc = Adc(analog_in)
        self.card = card
        self.flash = flash               # internal_flash(): the fallback journal's folder, or None (RAM)
        self.link = UsbLink(serial)
        self.led = Led(led_dio) if led_dio is not None else None
        self.ticks_ms = ticks_ms
        self.hb_target = self.hb_mem = self.hb_end_write = None
        if hb_target is not None:
            self.hb_mem = bytearray(MEM_SIZE)
            self.hb_target = PolledMemTarget(hb_target, self.hb_mem)
            self.hb_end_write = PolledMemTarget.IRQ_END_WRITE
        self.hb_i2c = BusioMem(hb_i2c) if hb_i2c is not None else None

    ticks_diff = staticmethod(ticks_diff)

    def poll(self):
        """Serve the heartbeat wire (a standby's target); call it on every turn of the loop."""
        if self.hb_target is not None:
            self.hb_target.poll()
