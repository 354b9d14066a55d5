"""Setting the DS1307 (soil.ds1307's `DS1307.set_datetime`): registers 0x00..0x06, then the "set by a gateway"
marker.

Its own module because a board sets its clock rarely (only on the gateway's `T` frame): soil.ondemand loads it for
the call instead of the board holding it in RAM beside the driver's reading code.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

from soil import timefmt
from soil.ds1307 import _MARKER_MAGIC

_REG_SECONDS = const(0x00)   # soil.ds1307's register map
_MARKER_REG = const(0x38)


def bcd_encode(value):
    """0..99 -> one BCD byte (42 -> 0x42)."""
    if not 0 <= value <= 99:
        raise ValueError("BCD holds 0..99")
    return (value // 10) << 4 | value % 10


def set_datetime(rtc, tm):
    """Set DS1307 `rtc` to UTC `tm` and start it.

    Writes registers 0x00..0x06 in one transaction (24-hour mode, CH cleared, day of week 1 = Monday, as
    Adafruit's driver counts), then the "set by a gateway" marker. The marker goes second: a reset between
    the two leaves the clock `'unset'` (the gateway sets it again), never `'ok'` with an old time.
    """
    if not timefmt.valid(tm) or tm[0] < 2000 or tm[0] > 2099:
        raise ValueError("DS1307 keeps 2000-01-01T00:00:00Z..2099-12-31T23:59:59Z, got %r" % (tm,))
    year, month, mday, hour, minute, second = tm
    b = rtc._time
    b[0] = bcd_encode(second)  # CH = 0: the oscillator runs
    b[1] = bcd_encode(minute)
    b[2] = bcd_encode(hour)  # bit 6 = 0: 24-hour mode
    b[3] = timefmt.weekday(year, month, mday)
    b[4] = bcd_encode(mday)
    b[5] = bcd_encode(month)
    b[6] = bcd_encode(year - 2000)
    rtc.i2c.writeto_mem(rtc.address, _REG_SECONDS, b)
    m = rtc._marker
    m[0:4] = _MARKER_MAGIC
    m[4:8] = timefmt.to_epoch(tm).to_bytes(4, "big")
    rtc.i2c.writeto_mem(rtc.address, _MARKER_REG, m)
