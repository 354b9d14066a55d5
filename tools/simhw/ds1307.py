"""A register-level model of the Maxim DS1307 real-time clock, for the virtual I2C bus.

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
- Every START copies the running time into the registers the bus sees (the chip's secondary buffer), so a
  multi-byte read is coherent even if a second ticks during it.
- Writing the seconds register resets the countdown chain (the next tick is a full second away).
- Bits the datasheet marks "always reads back as 0" are masked on write, as Adafruit's driver expects at probe.
- The oscillator runs at `1 + drift_ppm / 1e6` times the host rate (`time_source`, in seconds).
- Power: `power_off()` makes the chip NACK (VCC below the battery, the interface is locked out). With
  `battery=True` the time keeps counting and the RAM is kept; with `battery=False` the next `power_on()` comes up
  as the datasheet describes a first power-up: CH set, time 2000-01-01 00:00:00 (or garbage with
  `cold_time="garbage"`), control 0x03, RAM undefined (seeded pseudo-random bytes, so tests stay deterministic).
- `state_file`: the registers and the host time they were valid at go to a JSON file after every write, so a
  virtual board process restarted with the same file finds its clock still running (on battery), or coming up
  cold (without one).

Impossible counter values (month 0x13, a BCD nibble above 9) are left as they are while the clock runs: the real
chip's behaviour there is undefined, and what matters to the firmware is that it reads them back as impossible.
"""

import datetime as _dt
import json
import os
import random
import threading
import time

ADDRESS = 0x68
NREGS = 64
NVRAM_START = 0x08

_SECONDS, _MINUTES, _HOURS, _DOW, _DATE, _MONTH, _YEAR, _CONTROL = range(8)
CH = 0x80
HOUR_12 = 0x40
HOUR_PM = 0x20

# Bits that exist in each timekeeping/control register (the others always read 0).
_WRITE_MASK = (0xFF, 0x7F, 0x7F, 0x07, 0x3F, 0x1F, 0xFF, 0x93)

# CPython's datetime on purpose: the model shares no calendar code with the firmware it checks.
_DAY0 = _dt.datetime(2000, 1, 1)
_CENTURY_DAYS = 36525  # 00..99: the chip's leap rule makes every 4th year a leap year, 2000 included


def _bcd(v):
    return (v // 10) << 4 | v % 10


def _unbcd(b):
    hi, lo = b >> 4, b & 0x0F
    if lo > 9 or hi > 9:
        raise ValueError("not BCD")
    return hi * 10 + lo


class DS1307Sim:
    """The chip. Attach it with `bus.attach(0x68, chip)`.

    `time_source()` returns host seconds (float or int); the default `time.time` is wall time so a saved state
    means the same instant to the next process. Tests pass a fake clock.
    """

    def __init__(
        self,
        time_source=None,
        drift_ppm=0.0,
        battery=True,
        state_file=None,
        cold_time="zero",
        seed=0,
    ):
        if cold_time not in ("zero", "garbage"):
            raise ValueError("cold_time must be 'zero' or 'garbage'")
        self.time_source = time_source or time.time
        self.drift_ppm = float(drift_ppm)
        self.battery = battery
        self.state_file = state_file
        self.cold_time = cold_time
        self._rng = random.Random(seed)
        self.regs = bytearray(NREGS)
        self.pointer = 0
        self.powered = True
        self.byte_writes = [0] * NREGS  # bytes written over the bus, per register
        self.write_transactions = 0  # transactions that wrote at least one register byte
        self._first = False  # next written byte is the register pointer
        self._wrote = False
        self._anchor = self.time_source()  # host time at which `regs` held the running time
        self._frac = 0.0  # seconds of the countdown chain already elapsed at `_anchor`
        # The bus serialises transactions, but a board's control thread may poke the chip meanwhile.
        self._lock = threading.RLock()
        if state_file and os.path.exists(state_file):
            self._load(state_file)
        else:
            self._cold_start()
        if state_file:
            self.save()  # the next process finds this very chip, RAM garbage included

    # ---- the clock -------------------------------------------------------------------------------------------

    @property
    def halted(self):
        return bool(self.regs[_SECONDS] & CH)

    @property
    def time_register_writes(self):
        """Bytes written over the bus to the timekeeping registers 0x00..0x06 (F3: boot must leave this at 0)."""
        return sum(self.byte_writes[_SECONDS : _YEAR + 1])

    def _cold_start(self):
        """First power-up without a battery: CH set, time zero (or garbage), RAM undefined."""
        if self.cold_time == "garbage":
            t = bytearray(self._rng.getrandbits(8) for _ in range(7))
            t[_SECONDS] |= CH
        else:
            t = bytearray((CH, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00))
        for i in range(7):
            self.regs[i] = t[i] & _WRITE_MASK[i]
        self.regs[_CONTROL] = 0x03
        for i in range(NVRAM_START, NREGS):
            self.regs[i] = self._rng.getrandbits(8)
        self.pointer = 0
        self._anchor = self.time_source()
        self._frac = 0.0

    def _advance(self):
        """Bring the registers to the current host time (the secondary buffer update at START)."""
        with self._lock:
            self._advance_locked()

    def _advance_locked(self):
        now = self.time_source()
        if self.halted:
            self._anchor = now
            return
        elapsed = (now - self._anchor) * (1.0 + self.drift_ppm * 1e-6) + self._frac
        self._anchor = now
        if elapsed < 0:  # the host clock went backwards; an oscillator does not
            self._frac = 0.0
            return
        whole = int(elapsed)
        self._frac = elapsed - whole
        if whole:
            self._add_seconds(whole)

    def _add_seconds(self, n):
        r = self.regs
        try:
            sec = _unbcd(r[_SECONDS] & 0x7F)
            minute = _unbcd(r[_MINUTES])
            hb = r[_HOURS]
            if hb & HOUR_12:
                h12 = _unbcd(hb & 0x1F)
                if not 1 <= h12 <= 12:
                    return
                hour = h12 % 12 + (12 if hb & HOUR_PM else 0)
            else:
                hour = _unbcd(hb & 0x3F)
            mday = _unbcd(r[_DATE])
            month = _unbcd(r[_MONTH])
            year = _unbcd(r[_YEAR])
        except ValueError:
            return  # impossible BCD: undefined on the chip, left alone here
        try:
            before = _dt.datetime(2000 + year, month, mday, hour, minute, sec)
        except ValueError:
            return  # Feb 30 and friends
        days = (before - _DAY0).days
        after = before + _dt.timedelta(seconds=n)
        new_days = (after - _DAY0).days
        if new_days >= _CENTURY_DAYS:  # 99 -> 00: the chip has no century
            after = _DAY0 + _dt.timedelta(days=new_days % _CENTURY_DAYS, seconds=(after - _DAY0).seconds)
        y, mo, d = after.year, after.month, after.day
        hour, minute, sec = after.hour, after.minute, after.second
        dow = r[_DOW]
        if 1 <= dow <= 7:
            r[_DOW] = (dow - 1 + new_days - days) % 7 + 1
        r[_SECONDS] = _bcd(sec)
        r[_MINUTES] = _bcd(minute)
        if hb & HOUR_12:
            r[_HOURS] = HOUR_12 | (HOUR_PM if hour >= 12 else 0) | _bcd(hour % 12 or 12)
        else:
            r[_HOURS] = _bcd(hour)
        r[_DATE] = _bcd(d)
        r[_MONTH] = _bcd(mo)
        r[_YEAR] = _bcd(y - 2000)

    # ---- I2C target ------------------------------------------------------------------------------------------

    def on_start(self, is_read):
        if not self.powered:
            return False
        self._advance()
        self._first = not is_read
        return True

    def on_write(self, byte):
        if self._first:
            self._first = False
            self.pointer = byte & 0x3F
            return True
        p = self.pointer
        if p < 8:
            if p == _SECONDS:
                self._frac = 0.0  # writing seconds resets the countdown chain
            byte &= _WRITE_MASK[p]
        self.regs[p] = byte
        self.byte_writes[p] += 1
        self._wrote = True
        self.pointer = (p + 1) & 0x3F
        return True

    def on_read(self):
        p = self.pointer
        self.pointer = (p + 1) & 0x3F
        return self.regs[p]

    def on_stop(self):
        self._first = False
        if self._wrote:
            self._wrote = False
            self.write_transactions += 1
            if self.state_file:
                self.save()

    # ---- power and persistence -------------------------------------------------------------------------------

    def power_off(self):
        """VCC gone: the chip stops answering; on battery it keeps time, without one it loses everything."""
        self._advance()
        self.powered = False
        if self.state_file:
            self.save()

    def power_on(self):
        """VCC back. Without a battery this is a first power-up (CH set, time zero or garbage, RAM undefined)."""
        if self.powered:
            return
        self.powered = True
        if not self.battery:
            self._cold_start()
        self._advance()
        if self.state_file:
            self.save()

    def save(self, path=None):
        """Write the registers and the host time they were true at, atomically (tmp file + rename)."""
        path = path or self.state_file
        with self._lock:
            state = {
                "version": 1,
                "chip": "DS1307",
                "regs": self.regs.hex(),
                "anchor": self._anchor,
                "frac": self._frac,
            }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _load(self, path):
        """A new process is a power cycle: on battery the saved clock ran on meanwhile, without one it is lost."""
        with open(path) as f:
            state = json.load(f)
        if state.get("version") != 1 or state.get("chip") != "DS1307":
            raise ValueError("%s is not a saved DS1307 state" % path)
        regs = bytes.fromhex(state["regs"])
        if len(regs) != NREGS:
            raise ValueError("%s: expected %d registers" % (path, NREGS))
        if not self.battery:
            self._cold_start()
            return
        self.regs[:] = regs
        self._anchor = float(state["anchor"])
        self._frac = float(state["frac"])
        self._advance()

    # ---- back doors for tests (not on the bus, not counted as writes) -----------------------------------------

    def peek(self, reg):
        """Register `reg` as the bus would read it now."""
        self._advance()
        return self.regs[reg]

    def poke(self, reg, value):
        """Force a register, as if the chip had powered up that way (for impossible values and 12-hour mode)."""
        with self._lock:
            self._advance()
            if reg < 8:
                value &= _WRITE_MASK[reg]
                if reg == _SECONDS:
                    self._frac = 0.0
            self.regs[reg] = value & 0xFF
            if self.state_file:
                self.save()

    def set_time(self, tm, hour12=False, dow=None, running=True):
        """Load the timekeeping registers directly (a chip that left the factory set)."""
        year, month, mday, hour, minute, second = tm
        _dt.datetime(*tm)  # ValueError for an impossible time
        if not 2000 <= year <= 2099:
            raise ValueError("DS1307 keeps 2000-01-01..2099-12-31, got %r" % (tm,))
        with self._lock:
            self._set_time_locked(tm, hour12, dow, running)
            if self.state_file:
                self.save()

    def _set_time_locked(self, tm, hour12, dow, running):
        year, month, mday, hour, minute, second = tm
        self._advance()
        if hour12:
            hb = HOUR_12 | (HOUR_PM if hour >= 12 else 0) | _bcd(hour % 12 or 12)
        else:
            hb = _bcd(hour)
        if dow is None:
            dow = _dt.date(year, month, mday).isoweekday()
        t = (_bcd(second) | (0 if running else CH), _bcd(minute), hb, dow, _bcd(mday), _bcd(month), _bcd(year - 2000))
        self.regs[0:7] = bytes(t)
        self._frac = 0.0

    def time(self):
        """The running time as `tm`, or None if the registers hold an impossible value (12-hour mode decoded)."""
        self._advance()
        r = self.regs
        try:
            hb = r[_HOURS]
            if hb & HOUR_12:
                h12 = _unbcd(hb & 0x1F)
                if not 1 <= h12 <= 12:
                    return None
                hour = h12 % 12 + (12 if hb & HOUR_PM else 0)
            else:
                hour = _unbcd(hb & 0x3F)
            tm = (
                2000 + _unbcd(r[_YEAR]),
                _unbcd(r[_MONTH]),
                _unbcd(r[_DATE]),
                hour,
                _unbcd(r[_MINUTES]),
                _unbcd(r[_SECONDS] & 0x7F),
            )
            _dt.datetime(*tm)
        except ValueError:
            return None
        return tm
