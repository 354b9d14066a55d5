"""DS1307 real-time clock driver for the portable core (MicroPython, CircuitPython, CPython).

The board stamps every reading with this clock, so the driver's job is as much to say when the time cannot be
trusted as to read it. `state()` answers with the protocol's clock states (docs/PROTOCOL.md):

- `'halted'`: the clock-halt bit (CH, register 0x00 bit 7) is set: the oscillator is stopped, time does not advance.
  A DS1307 whose battery died comes up this way.
- `'invalid'`: the registers hold an impossible time (month 13, Feb 30, a BCD nibble above 9).
- `'unset'`: running, but no gateway has set it since the battery was fitted. `set_datetime` leaves a marker in
  the last 8 bytes of the battery-backed RAM (0x38..0x3F); a new battery (or none) loses the RAM and the marker.
- `'ok'`: running, valid, and set by a gateway.

The clock is set only when the gateway says so (a `T` frame), never at boot: the book's sketch called
`rtc.adjust(__DATE__, __TIME__)` in `setup()`, so every reset wound the clock back to the compile time (flaw F3).
Constructing this driver and reading from it never write to the chip.

The chip keeps UTC, 24-hour mode, years 2000-2099. Times are `tm = (year, month, mday, hour, minute, second)`
tuples as in `soil.utc`. 12-hour mode, which another tool may have left behind, is decoded on read.

Errors are `OSError` from the bus (retry is the caller's policy), `ValueError` for impossible register values and
bad arguments. The bus is anything with MicroPython's `readfrom_mem` / `writeto_mem` (docs/ARCHITECTURE.md).

Register map (datasheet, table 2):

    0x00 CH|10s|s   0x01 10m|m   0x02 0|12/24|PM or 10h|10h|h   0x03 day 1-7   0x04 10d|d   0x05 10mo|mo
    0x06 10y|y      0x07 OUT|0|0|SQWE|0|0|RS1|RS0      0x08..0x3F 56 bytes of RAM
"""

from soil import const, utc

ADDRESS = const(0x68)

_REG_SECONDS = const(0x00)
_REG_HOURS = const(0x02)
_REG_CONTROL = const(0x07)
_REG_NVRAM = const(0x08)

_CH = const(0x80)  # clock halt, register 0x00
_HOUR_12 = const(0x40)  # 12-hour mode, register 0x02
_HOUR_PM = const(0x20)  # PM in 12-hour mode
_CONTROL_ZERO = const(0x6C)  # control bits that always read 0: a byte with them set is not a DS1307

NVRAM_SIZE = const(48)  # 0x08..0x37 for callers (the boot counter lives there too)
_MARKER_REG = const(0x38)  # 0x38..0x3F: this driver's "set by a gateway" marker
_MARKER_MAGIC = const(b"SoIL")  # then the UTC epoch of the last set, 4 bytes big-endian

# The clock states (a reading's trust, and the clock field of H and S frames; docs/PROTOCOL.md).
OK = const("ok")
UNSET = const("unset")
HALTED = const("halted")
INVALID = const("invalid")
CLOCK_STATES = (OK, UNSET, HALTED, INVALID)


def bcd_decode(byte):
    """One BCD byte -> 0..99 (0x42 -> 42); ValueError if either nibble is above 9."""
    hi = (byte >> 4) & 0x0F
    lo = byte & 0x0F
    if hi > 9 or lo > 9:
        raise ValueError("not a BCD byte: 0x%02x" % byte)
    return hi * 10 + lo


def bcd_encode(value):
    """0..99 -> one BCD byte (42 -> 0x42)."""
    if not 0 <= value <= 99:
        raise ValueError("BCD holds 0..99")
    return (value // 10) << 4 | value % 10


def decode_time(regs):
    """Registers 0x00..0x06 (7 bytes) -> tm, ignoring CH; ValueError if they hold no real instant."""
    hb = regs[2]
    if hb & _HOUR_12:
        h12 = bcd_decode(hb & 0x1F)
        if h12 < 1 or h12 > 12:
            raise ValueError("12-hour mode hour out of range")
        hour = h12 % 12 + (12 if hb & _HOUR_PM else 0)  # 12 AM is 0, 12 PM is 12
    else:
        hour = bcd_decode(hb & 0x3F)
    tm = (
        2000 + bcd_decode(regs[6]),
        bcd_decode(regs[5] & 0x1F),
        bcd_decode(regs[4] & 0x3F),
        hour,
        bcd_decode(regs[1] & 0x7F),
        bcd_decode(regs[0] & 0x7F),
    )
    if not utc.valid(tm):
        raise ValueError("DS1307 holds an impossible time")
    return tm


class DS1307:
    """The DS1307 at `address` on `i2c`.

    Construction reads the control register once to check that a DS1307 answers: `OSError` naming the address if
    nothing ACKs, `RuntimeError` if something else answers there. It writes nothing.
    """

    def __init__(self, i2c, address=ADDRESS):
        self.i2c = i2c
        self.address = address
        self._time = bytearray(7)  # set_datetime's buffer, allocated once
        self._marker = bytearray(8)
        try:
            control = i2c.readfrom_mem(address, _REG_CONTROL, 1)[0]
        except OSError as e:
            code = e.args[0] if e.args and isinstance(e.args[0], int) else 19
            raise OSError(code, "no DS1307 at 0x%02x: check SDA/SCL and pull-ups" % address)
        if control & _CONTROL_ZERO:
            raise RuntimeError("device at 0x%02x is not a DS1307 (control register 0x%02x; a PCF8523, as on an "
                               "Adalogger FeatherWing, answers there too)" % (address, control))

    def _read_time_regs(self):
        return self.i2c.readfrom_mem(self.address, _REG_SECONDS, 7)

    @property
    def datetime(self):
        """The current time as tm (12-hour mode decoded); ValueError if the registers hold an impossible time.

        A halted clock still returns its frozen time: check `state()` before trusting it.
        """
        return decode_time(self._read_time_regs())

    @property
    def halted(self):
        """True if the clock-halt bit is set (the oscillator is stopped)."""
        return bool(self.i2c.readfrom_mem(self.address, _REG_SECONDS, 1)[0] & _CH)

    def set_datetime(self, tm):
        """Set the clock to UTC `tm` and start it. Only on the gateway's word (a `T` frame), never at boot (F3).

        Writes registers 0x00..0x06 in one transaction (24-hour mode, CH cleared, day of week 1 = Monday, as
        Adafruit's driver counts), then the "set by a gateway" marker. The marker goes second: a reset between
        the two leaves the clock `'unset'` (the gateway sets it again), never `'ok'` with an old time.
        """
        if not utc.valid(tm) or tm[0] < 2000 or tm[0] > 2099:
            raise ValueError("DS1307 keeps 2000-01-01T00:00:00Z..2099-12-31T23:59:59Z, got %r" % (tm,))
        year, month, mday, hour, minute, second = tm
        b = self._time
        b[0] = bcd_encode(second)  # CH = 0: the oscillator runs
        b[1] = bcd_encode(minute)
        b[2] = bcd_encode(hour)  # bit 6 = 0: 24-hour mode
        b[3] = utc.weekday(year, month, mday)
        b[4] = bcd_encode(mday)
        b[5] = bcd_encode(month)
        b[6] = bcd_encode(year - 2000)
        self.i2c.writeto_mem(self.address, _REG_SECONDS, b)
        m = self._marker
        m[0:4] = _MARKER_MAGIC
        m[4:8] = utc.to_epoch(tm).to_bytes(4, "big")
        self.i2c.writeto_mem(self.address, _MARKER_REG, m)

    def last_set(self):
        """UTC epoch seconds of the last `set_datetime` since the battery was fitted, or None if never."""
        m = self.i2c.readfrom_mem(self.address, _MARKER_REG, 8)
        if bytes(m[0:4]) != _MARKER_MAGIC:
            return None
        return int.from_bytes(m[4:8], "big")

    def read(self):
        """`(tm, state)` from one read of the time registers (plus the marker); tm is None when `'invalid'`.

        The collector calls this once per sample so the time and its trust come from the same instant.
        """
        regs = self._read_time_regs()
        try:
            tm = decode_time(regs)
        except ValueError:
            tm = None
        if regs[0] & _CH:
            return tm, HALTED
        if tm is None:
            return None, INVALID
        if self.last_set() is None:
            return tm, UNSET
        return tm, OK

    def state(self):
        """`'ok'`, `'unset'`, `'halted'` or `'invalid'` (see the module docstring); `'halted'` wins over `'invalid'`
        because a stopped oscillator is the cause to report, and setting the clock cures both."""
        return self.read()[1]

    def _nvram_check(self, offset, n):
        if offset < 0 or n < 0 or offset + n > NVRAM_SIZE:
            raise ValueError("NVRAM offsets 0..%d, got %d bytes at %d" % (NVRAM_SIZE - 1, n, offset))

    def nvram_read(self, offset, n):
        """`n` bytes of battery-backed RAM from `offset` (0..47 are the caller's)."""
        self._nvram_check(offset, n)
        if n == 0:
            return b""
        return self.i2c.readfrom_mem(self.address, _REG_NVRAM + offset, n)

    def nvram_write(self, offset, data):
        """Write `data` to battery-backed RAM at `offset`, in one transaction (0..47 are the caller's)."""
        self._nvram_check(offset, len(data))
        if len(data):
            self.i2c.writeto_mem(self.address, _REG_NVRAM + offset, data)
