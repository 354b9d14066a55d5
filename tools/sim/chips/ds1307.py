"""A register-level model of the Maxim DS1307 real-time clock, one file for CPython and MicroPython.

Why a model and not canned answers: the bugs we care about (a boot that rewrites the clock, F3; a driver that trusts
a halted or never-set clock; BCD and 12-hour decoding; the register pointer) only show against the chip's own rules.
This is the datasheet, register by register:

    0x00  CH | 10 seconds | seconds      CH = clock halt: 1 stops the oscillator (the time freezes)
    0x01  0 | 10 minutes | minutes
    0x02  0 | 12/24 | PM/10h | 10h | hours   bit 6 set = 12-hour mode, then bit 5 = PM
    0x03  00000 | day of week 1..7           (its meaning is the user's; it just counts at midnight)
    0x04  00 | 10 date | date
    0x05  000 | 10 month | month
    0x06  10 year | year                     00..99 = 2000..2099; every year divisible by 4 is a leap year
    0x07  OUT | 00 | SQWE | 00 | RS1 | RS0   control
    0x08..0x3F                               56 bytes of battery-backed RAM

- One register pointer, set by the first byte of a write, auto-incremented after every byte read or written, and
  wrapping 0x3F -> 0x00.
- Every START (a repeated START too) copies the running time into the registers the bus sees (the chip's secondary
  buffer), so a multi-byte read is coherent even if a second ticks during it.
- Writing the seconds register resets the countdown chain: the next tick is a full second after that write.
- Bits the datasheet marks "always reads back as 0" are masked on write, as Adafruit's driver expects at probe.
- 12-hour mode counts 11 AM -> 12 PM -> 1 PM ... 11 PM -> 12 AM (the next day) and stays in the mode it is in.
- 99 -> 00 at the end of the century: the chip has no century digit.

The bus side is the byte-level target interface of tools/sim/host/i2c.py, which tools/sim/micropython/board/machine.py's `I2C`
drives the same way: `on_start(is_read)` (False = NACK the address), `on_write(byte)` (True = ACK), `on_read()`,
`on_stop()`. None of them allocates while the clock runs without drift: a heap measurement of the firmware under
MicroPython is not charged for the chip.

Time: the model is handed `clock_ms()`, the host's time in integer milliseconds (a test's fake clock, the simulated
board's virtual time, wall time in tools/sim/host). It remembers the host time it last looked at and how many
milliseconds of the running second the countdown chain has counted, and advances by arithmetic on days and
seconds, never one tick at a time: a board left off for a year on its battery costs what one second costs. The
calendar here is the chip's own (every fourth year a leap year), written for this model: it must not share code
with the firmware it checks. The oscillator runs `drift_ppm` parts per million fast (negative: slow).

Power: `power_off()` makes the chip NACK (VCC below the battery, the interface is locked out). With `battery=True`
the time keeps counting and the RAM is kept; with `battery=False` the next `power_on()` is a first power-up, as
the datasheet describes it: CH set, 2000-01-01 00:00:00 day 1 (or seeded garbage with `cold_time="garbage"`),
control 0x03, RAM undefined (seeded pseudo-random bytes, so tests stay deterministic). A new model is a chip at its
first power-up; `resume()` gives it the registers of a chip that kept them on its battery since a given host time.

Impossible counter values (month 0x13, a BCD nibble above 9, Feb 30) are left as they are while the clock runs:
the real chip's behaviour there is undefined, and what matters to the firmware is that it reads them back as
impossible.

Names are few on purpose (private constants, which mpy-cross compiles away, and no attribute or helper beyond what
the rules need): under MicroPython every name a module uses is interned for good, and the simulation's names come
before the firmware's in the heap measurement (docs/MICROPYTHON.md, "Heap").
"""

from . import Prng, const

_NREGS = const(64)
_NVRAM_START = const(0x08)
_CONTROL = const(0x07)
_CH = const(0x80)  # clock halt, register 0x00
_HOUR_12 = const(0x40)  # 12-hour mode, register 0x02
_HOUR_PM = const(0x20)  # PM in 12-hour mode
_DAY = const(86400)
_CENTURY = const(36525)  # days in 2000..2099: every fourth year is a leap year, 2000 included
_BILLION = const(1000000000)  # drift is counted in parts per billion of a millisecond

# Bits that exist in each timekeeping/control register (the others always read 0).
_WRITE_MASK = const(b"\xff\x7f\x7f\x07\x3f\x1f\xff\x93")
# Registers 0x00..0x06 at a first power-up: CH set, 2000-01-01 (day 1) 00:00:00.
_ZERO_TIME = const(b"\x80\x00\x00\x01\x01\x01\x00")
# The day of a common year on which each month starts, and the year's end.
_MONTH_START = const((0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365))

# Where a bus transaction is (`_phase`): the next byte written sets the pointer; a register was written.
_POINTER = const(1)
_WROTE = const(2)


def _bcd(v):
    return (v // 10) << 4 | v % 10


def _dec(b):
    """A BCD byte -> 0..99, or -1 when a nibble is above 9."""
    hi = b >> 4
    lo = b & 0x0F
    if hi > 9 or lo > 9:
        return -1
    return hi * 10 + lo


def _month_days(year, month):
    """Days in `month` of 20`year` (year 0..99)."""
    if month == 2 and year % 4 == 0:
        return 29
    return _MONTH_START[month] - _MONTH_START[month - 1]


def _day_number(year, month, mday):
    """Days from 2000-01-01 to 20`year`-`month`-`mday`."""
    n = year * 365 + (year + 3) // 4 + _MONTH_START[month - 1] + mday - 1
    if month > 2 and year % 4 == 0:
        n += 1
    return n


def _fields(r):
    """Registers 0x00..0x06 as (year 0..99, month, mday, hour 0..23, minute, second), or None if impossible."""
    hb = r[2]
    if hb & _HOUR_12:
        hour = _dec(hb & 0x1F)
        if hour < 1 or hour > 12:
            return None
        hour = hour % 12 + (12 if hb & _HOUR_PM else 0)
    else:
        hour = _dec(hb & 0x3F)
    second = _dec(r[0] & 0x7F)
    minute = _dec(r[1])
    year = _dec(r[6])
    month = _dec(r[5])
    mday = _dec(r[4])
    if hour < 0 or hour > 23 or minute < 0 or minute > 59 or second < 0 or second > 59 or year < 0:
        return None
    if month < 1 or month > 12 or mday < 1 or mday > _month_days(year, month):
        return None
    return year, month, mday, hour, minute, second


class DS1307:
    """The chip, answering at `ADDRESS` on the bus it is attached to (see the module docstring).

    `clock_ms()`: host time in integer milliseconds. `drift_ppm`: the oscillator's error. `battery`: whether the
    chip keeps time and RAM while VCC is off. `cold_time`: "zeros" (2000-01-01 00:00:00, as the datasheet says) or
    "garbage" (seeded bytes), the time a first power-up shows.
    `seed`: for the undefined bytes of a first power-up.
    """

    ADDRESS = 0x68

    def __init__(self, clock_ms, drift_ppm=0, battery=True, cold_time="zeros", seed=0):
        if cold_time != "zeros" and cold_time != "garbage":
            raise ValueError("cold_time must be 'zeros' or 'garbage'")
        self._clock = clock_ms
        self.drift_ppm = drift_ppm
        self.battery = battery
        self.cold_time = cold_time
        self._rng = Prng(seed)
        self.regs = bytearray(_NREGS)
        self.powered = True
        self.byte_writes = [0] * _NREGS  # bytes written over the bus, per register
        self.write_transactions = 0  # transactions that wrote at least one register byte
        self._ptr = 0  # the register pointer
        self._phase = 0  # where the bus transaction is: _POINTER, _WROTE (bits)
        self._last = 0  # host time (ms) the registers were brought up to
        self._sub = 0  # ms of the running second the countdown chain has counted
        self._rem = 0  # drift: parts per billion of a ms carried to the next sync
        self._reset()

    # ---- the oscillator --------------------------------------------------------------------------------------

    @property
    def halted(self):
        return bool(self.regs[0] & _CH)

    @property
    def time_register_writes(self):
        """Bytes written over the bus to the timekeeping registers 0x00..0x06 (F3: boot must leave this at 0)."""
        return sum(self.byte_writes[0:7])

    def _reset(self):
        """A first power-up without a battery: CH set, time zero (or garbage), control 0x03, RAM undefined."""
        r = self.regs
        rng = self._rng
        garbage = self.cold_time == "garbage"
        for i in range(7):
            r[i] = (rng() if garbage else _ZERO_TIME[i]) & _WRITE_MASK[i]
        r[0] |= _CH
        r[_CONTROL] = 0x03
        for i in range(_NVRAM_START, _NREGS):
            r[i] = rng()
        self._ptr = 0
        self._last = self._clock()
        self._sub = 0
        self._rem = 0

    def sync(self):
        """Bring the registers to the host clock (what a START does: the secondary buffer update)."""
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        if elapsed < 0:
            self._sub = 0  # the host clock went backwards; an oscillator does not
        elif elapsed:
            self._run(elapsed)

    def _run(self, ms):
        """Let the oscillator run for `ms` host milliseconds: whole seconds are counted on the registers, by
        arithmetic on the time of day and the day number, the rest stays in the countdown chain."""
        r = self.regs
        if r[0] & _CH:
            return
        if self.drift_ppm:
            t = ms * (_BILLION + int(self.drift_ppm * 1000)) + self._rem
            ms = t // _BILLION
            self._rem = t - ms * _BILLION
        ms += self._sub
        if ms < 1000:
            self._sub = ms
            return
        tm = _fields(r)
        if tm is None:
            self._sub = ms % 1000
            return  # impossible BCD or date: undefined on the chip, left alone here
        year, month, mday, hour, minute, second = tm
        t = hour * 3600 + minute * 60 + second + ms // 1000
        self._sub = ms % 1000
        days = t // _DAY
        t -= days * _DAY
        hour = t // 3600
        r[0] = _bcd(t % 60)
        r[1] = _bcd(t // 60 % 60)
        if r[2] & _HOUR_12:
            r[2] = _HOUR_12 | (_HOUR_PM if hour >= 12 else 0) | _bcd(hour % 12 or 12)
        else:
            r[2] = _bcd(hour)
        if not days:
            return
        if 1 <= r[3] <= 7:
            r[3] = (r[3] - 1 + days) % 7 + 1
        d = (_day_number(year, month, mday) + days) % _CENTURY
        year = d // 1461 * 4  # 4-year cycles, each starting with its leap year
        d %= 1461
        if d >= 366:
            d -= 366
            year += 1 + d // 365
            d %= 365
        month = 1
        while d >= _month_days(year, month):
            d -= _month_days(year, month)
            month += 1
        r[4] = _bcd(d + 1)
        r[5] = _bcd(month)
        r[6] = _bcd(year)

    # ---- I2C target ------------------------------------------------------------------------------------------

    def on_start(self, read):
        if not self.powered:
            return False
        self.sync()
        self._phase = (self._phase & _WROTE) | (0 if read else _POINTER)
        return True

    def on_write(self, b):
        if self._phase & _POINTER:
            self._phase &= _WROTE
            self._ptr = b & 0x3F
            return True
        p = self._ptr
        if p < 8:
            b &= _WRITE_MASK[p]
            if p == 0:  # writing seconds resets the countdown chain, now
                self._sub = 0
                self._last = self._clock()
        self.regs[p] = b
        self.byte_writes[p] += 1
        self._phase = _WROTE
        self._ptr = (p + 1) & 0x3F
        return True

    def on_read(self):
        p = self._ptr
        self._ptr = (p + 1) & 0x3F
        return self.regs[p]

    def on_stop(self):
        wrote = self._phase & _WROTE
        self._phase = 0
        if wrote:
            self.write_transactions += 1
            self.store()

    def store(self):
        """Called whenever the registers changed (a write ended, a back door, power): keep them where they outlive
        the process. Nothing to do here; tools/sim/host/ds1307.py writes its state file."""

    # ---- power and what the battery keeps --------------------------------------------------------------------

    def power_off(self):
        """VCC gone: the chip stops answering; on battery it keeps time, without one it loses everything."""
        self.sync()
        self.powered = False
        self.store()

    def power_on(self):
        """VCC back. Without a battery this is a first power-up (CH set, time zero or garbage, RAM undefined)."""
        if self.powered:
            return
        self.powered = True
        if self.battery:
            self.sync()
        else:
            self._reset()
        self.store()

    def resume(self, regs, since, sub=0):
        """Power up with the 64 registers a chip held at host time `since` (ms), `sub` ms into the running second:
        on battery the clock ran on from there to now (by arithmetic: a year costs what a second does); without a
        battery this is a first power-up instead."""
        if len(regs) != _NREGS:
            raise ValueError("expected %d registers, got %d" % (_NREGS, len(regs)))
        if not self.battery:
            self._reset()
            return
        for i in range(_NREGS):
            self.regs[i] = regs[i]
        self._ptr = 0
        self._last = since
        self._sub = sub
        self._rem = 0
        self.sync()

    # ---- back doors for tests (not on the bus, not counted as writes) -----------------------------------------

    def peek(self, addr):
        """Register `addr` as the bus would read it now."""
        self.sync()
        return self.regs[addr]

    def poke(self, addr, value):
        """Force a register, as if the chip had powered up that way (for impossible values and 12-hour mode)."""
        self.sync()
        if addr < 8:
            value &= _WRITE_MASK[addr]
            if addr == 0:
                self._sub = 0
        self.regs[addr] = value & 0xFF
        self.store()

    def set_time(self, tm, hour12=False):
        """Load the timekeeping registers directly, running (a chip that left the factory set): `tm` is (year,
        month, mday, hour, minute, second), the day of week the ISO weekday (Monday 1 .. Sunday 7)."""
        year, month, mday, hour, minute, second = tm
        y = year - 2000
        if not (0 <= y <= 99 and 1 <= month <= 12 and 1 <= mday <= _month_days(y, month) and 0 <= hour <= 23
                and 0 <= minute <= 59 and 0 <= second <= 59):
            raise ValueError("DS1307 keeps 2000-01-01..2099-12-31, got %r" % (tm,))
        self.sync()
        r = self.regs
        r[0] = _bcd(second)
        r[1] = _bcd(minute)
        r[2] = _bcd(hour)
        if hour12:
            r[2] = _HOUR_12 | (_HOUR_PM if hour >= 12 else 0) | _bcd(hour % 12 or 12)
        r[3] = (_day_number(y, month, mday) + 5) % 7 + 1  # 2000-01-01 was a Saturday, ISO day 6
        r[4] = _bcd(mday)
        r[5] = _bcd(month)
        r[6] = _bcd(y)
        self._sub = 0
        self.store()

    def time(self):
        """The running time as `tm` (12-hour mode decoded), or None if the registers hold an impossible value."""
        self.sync()
        tm = _fields(self.regs)
        if tm is None:
            return None
        return (2000 + tm[0],) + tm[1:]
