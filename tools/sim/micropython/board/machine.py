"""A simulated `machine` module for running the MicroPython port under the real MicroPython (WebAssembly) interpreter.

Only what firmware/micropython/hal.py and main.py use, with MicroPython's names and signatures: Pin, ADC, I2C,
I2CTarget (memory mode), SPI, WDT, reset, and mem32 for the one register the firmware touches (the RP2040
watchdog's CTRL: hal.stop_watchdog clears its ENABLE bit after Ctrl-C). Written in the MicroPython subset. Time is virtual: `SIM.ticks_ms()` and
`SIM.sleep_ms()` (tools/sim/micropython/board/simboard.py installs them as time.ticks_ms / time.sleep_ms), so a test runs
hours of board time in seconds and the DS1307, the ADC curve and the watchdog all follow the same clock.

Pins and peripherals are static objects, as on the boards: rp2 and esp32 return an entry of a static table for
`Pin(n)` (machine_pin_obj_table), `I2C(id)`, `SPI(id)`, `I2CTarget(id)` and `WDT()` (ports/rp2/machine_pin.c,
machine_i2c.c, machine_spi.c, machine_i2c_target.c, machine_wdt.c; the esp32 files alike), so constructing one
allocates nothing on the board's heap and configures the existing object. Here each is created once when this
module is imported (`_static`) and the constructor reconfigures it, so a heap measurement of the firmware is not
charged for simulated peripheral objects a board does not allocate. (`ADC` does allocate, as rp2's does.)

An I2C peripheral id is a bus: `SIM.bus(id)` maps 7-bit addresses to targets that see the wire byte by byte,
the interface of tools/sim/host/i2c.py: `on_start(is_read)` (START or repeated START; False NACKs the address),
`on_write(byte)` (True ACKs it), `on_read()`, `on_stop()`. The DS1307 is the portable chip model
(tools/sim/chips/ds1307.py, `chips.ds1307` here), an I2CTarget is one too. An address nobody answers NACKs:
OSError(19) ENODEV, as on esp32 (rp2 raises EIO there: the virtual Pico shows it); a NACKed data byte is OSError(5) EIO. Every call ends with a STOP (`stop=False`
is accepted and not modelled: the firmware does not use it). The SD card slot is `SIM.card`: the portable card
model (`chips.sdcard.Card`) that sdcard.SDCard finds there, whatever SPI bus and chip select it is given.
"""

from chips.i2ctarget import MemTarget
from micropython import const

_EIO = const(5)
_ENODEV = const(19)
_TICKS_MASK = const((1 << 30) - 1)
_WDT_CTRL = const(0x40058000)    # RP2040 datasheet 4.7.6: the watchdog's CTRL register
_WDT_ENABLE = const(1 << 30)


class Reset(BaseException):
    """machine.reset() was called: the simulated board stops here (the test starts it again)."""


class _Sim:
    def __init__(self):
        self.now_ms = 0
        self.buses = {}
        self.pins = {}
        self.wdt = None
        self.card = None
        self.probe = None

    def ticks_ms(self):
        return self.now_ms & _TICKS_MASK

    def sleep_ms(self, ms):
        if ms > 0:
            self.now_ms += ms

    def clock_ms(self):
        return self.now_ms

    def bus(self, bus_id):
        if bus_id not in self.buses:
            self.buses[bus_id] = {}
        return self.buses[bus_id]


SIM = _Sim()
_STATIC = {}


def _static(cls, key):
    """The one object of class `cls` for pin or peripheral `key` (see the module docstring)."""
    obj = _STATIC.get((cls, key))
    if obj is None:
        obj = object.__new__(cls)
        _STATIC[(cls, key)] = obj
    return obj


class _StaticById:
    """Base of the classes whose constructor returns the static object for its first argument, the id."""

    def __new__(cls, id, *args, **kw):
        return _static(cls, id)

PWRON_RESET = 1
WDT_RESET = 3
SOFT_RESET = 5


def reset():
    raise Reset()


def soft_reset():
    reset()


def reset_cause():
    return PWRON_RESET


def unique_id():
    return b"\xe6\x60\x38\x3b\x13\x57\x2a\x2f"


def freq(hz=None):
    return 125000000


class Pin(_StaticById):
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self._v = 0 if value is None else (1 if value else 0)
        self.changes = 0
        SIM.pins[id] = self

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        if v != self._v:
            self.changes += 1
        self._v = v

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class ADC:
    """An ADC input with a soil probe on it: `SIM.probe`, the portable model of tools/sim/chips/moisture.py that
    simboard.prepare() connects (a drying curve over virtual time, watered every hour)."""
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self.pin = pin
        self.atten = atten

    def read_u16(self):
        return SIM.probe.read_u16()


class I2C(_StaticById):
    def __init__(self, id, scl=None, sda=None, freq=400000, timeout=50000):
        self.id = id
        self.scl = scl
        self.sda = sda
        self.freq = freq
        self._bus = SIM.bus(id)

    def _start(self, addr, read):
        """START and the address byte: the target that ACKed it, or OSError(ENODEV) (after the STOP)."""
        dev = self._bus.get(addr)
        if dev is None or dev.on_start(read) is False:
            raise OSError(_ENODEV)
        return dev

    def scan(self):
        found = []
        for addr in sorted(self._bus):
            try:
                self._start(addr, False).on_stop()
            except OSError:
                continue
            found.append(addr)
        return found

    def writeto(self, addr, buf, stop=True):
        """The number of bytes ACKed: the target's NACK ends the write."""
        dev = self._start(addr, False)
        n = 0
        while n < len(buf) and dev.on_write(buf[n]):
            n += 1
        dev.on_stop()
        return n

    def readfrom(self, addr, nbytes, stop=True):
        dev = self._start(addr, True)
        buf = bytearray(nbytes)
        for i in range(nbytes):
            buf[i] = dev.on_read()
        dev.on_stop()
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        dev = self._start(addr, False)
        ok = dev.on_write(memaddr & 0xFF)
        for i in range(len(buf)):
            ok = ok and dev.on_write(buf[i])
        dev.on_stop()
        if not ok:
            raise OSError(_EIO)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        dev = self._start(addr, False)
        if not dev.on_write(memaddr & 0xFF):
            dev.on_stop()
            raise OSError(_EIO)
        if dev.on_start(True) is False:      # repeated START, no STOP in between
            dev.on_stop()
            raise OSError(_ENODEV)
        for i in range(len(buf)):
            buf[i] = dev.on_read()
        dev.on_stop()

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)


class I2CTarget(_StaticById, MemTarget):
    """Memory mode only (`mem=`): the target model of tools/sim/chips/i2ctarget.py (the state machine of
    extmod/machine_i2c_target.c, which the CPython virtual board runs too) behind MicroPython's constructor, on the
    simulated bus `id`. Handlers run synchronously at the end of a phase, as the model calls them."""

    def __init__(self, id, addr, *, addrsize=7, mem=None, mem_addrsize=8, scl=None, sda=None):
        if mem is None:
            raise ValueError("the simulation has memory mode only")
        MemTarget.__init__(self, mem, mem_addrsize)
        self.id = id
        self.addr = addr
        bus = SIM.bus(id)
        if addr in bus:
            raise OSError(16, "address in use")
        bus[addr] = self

    def deinit(self):
        MemTarget.deinit(self)
        SIM.bus(self.id).pop(self.addr, None)


class SPI(_StaticById):
    def __init__(self, id, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None,
                 miso=None):
        self.id = id
        self.baudrate = baudrate
        self.sck = sck
        self.mosi = mosi
        self.miso = miso

    def init(self, baudrate=1000000, **kw):
        self.baudrate = baudrate


class WDT:
    """Records the longest gap between feeds in virtual time; `SIM.wdt.overdue` says whether it would have fired."""

    def __new__(cls, id=0, timeout=5000):
        return _static(cls, 0)

    def __init__(self, id=0, timeout=5000):
        if SIM.wdt is not None:
            raise OSError(16, "watchdog already started")
        self._reset(timeout)
        SIM.wdt = self

    def _reset(self, timeout):
        self.timeout = timeout
        self.enabled = timeout is not None     # a started watchdog runs until its CTRL.ENABLE is cleared (mem32)
        self._last = SIM.now_ms
        self.feeds = 0
        self.max_gap = 0
        self.overdue = False

    def feed(self):
        gap = SIM.now_ms - self._last
        if gap > self.max_gap:
            self.max_gap = gap
        if gap > self.timeout:
            self.overdue = True
        self._last = SIM.now_ms
        self.feeds += 1


class _Mem32:
    """machine.mem32 for the watchdog's CTRL register only (ENABLE, bit 30); any other address is not simulated."""

    def __getitem__(self, addr):
        if addr != _WDT_CTRL:
            raise ValueError("mem32[0x%x] is not simulated" % addr)
        return _WDT_ENABLE if SIM.wdt is not None and SIM.wdt.enabled else 0

    def __setitem__(self, addr, value):
        self[addr]
        if SIM.wdt is not None:
            SIM.wdt.enabled = bool(value & _WDT_ENABLE)


mem32 = _Mem32()


# The static objects, created with every attribute they will have before any firmware runs.
for n in list(range(40)) + ["LED"]:
    Pin(n)
for n in (0, 1):
    I2C(n)
    I2CTarget(n, 0x7F, mem=bytearray(1)).deinit()
for n in (0, 1, 2):
    SPI(n)
_static(WDT, 0)._reset(None)
del n
