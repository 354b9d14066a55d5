"""Civil time without `datetime`: UTC date arithmetic, epoch seconds and the one timestamp format we speak.

Why this module exists: MicroPython and CircuitPython have no `datetime`, their `time.mktime` epochs differ by port
(1970 or 2000) and some ports have no `time.gmtime` at all. The board, the gateway and the replay path must agree
on every timestamp to the second, so the arithmetic lives here, integer only, identical on every interpreter.

A time is a tuple `tm = (year, month, mday, hour, minute, second)`, always UTC (the DS1307 keeps UTC). No leap
seconds: the DS1307 cannot count them and MySQL cannot store them.

Day arithmetic follows Howard Hinnant's `days_from_civil` / `civil_from_days` (proleptic Gregorian calendar, eras
of 400 years); it is exact for any year and needs only integer division, which all three interpreters do alike.

Timestamps are always zero-padded (`2015-11-27T15:09:08Z`, never `2015-11-27 15:9:8`: flaw F4), so they sort as
text and parse with one fixed-width rule (soil.timeparse: a board parses a time only when the gateway sends one,
so the parser is a module of its own that a board loads for the call).

A board imports soil.utc, the part it runs for every sample (validity, epoch seconds, ISO text); this module
re-exports it and adds the rest, which a board loads only when it needs it.
"""

from soil.utc import _check, days_from_civil, days_in_month, is_leap, iso, to_epoch, valid  # noqa: F401

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_SECONDS_PER_DAY = const(86400)


def civil_from_days(days):
    """The date `(year, month, mday)` that is `days` days after 1970-01-01."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097  # [0, 146096]
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365  # [0, 399]
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)  # [0, 365]
    mp = (5 * doy + 2) // 153  # [0, 11]
    mday = doy - (153 * mp + 2) // 5 + 1  # [1, 31]
    month = mp + 3 if mp < 10 else mp - 9  # [1, 12]
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return (year, month, mday)


def weekday(year, month, mday):
    """ISO day of the week: 1 = Monday ... 7 = Sunday (1970-01-01 was a Thursday)."""
    return (days_from_civil(year, month, mday) + 3) % 7 + 1


def from_epoch(secs):
    """The UTC time `tm` that is `secs` (an int) seconds after 1970-01-01T00:00:00Z."""
    if not isinstance(secs, int) or isinstance(secs, bool):
        raise TypeError("epoch seconds must be an int")
    days = secs // _SECONDS_PER_DAY
    rem = secs - days * _SECONDS_PER_DAY  # [0, 86399] also before 1970
    year, month, mday = civil_from_days(days)
    return (year, month, mday, rem // 3600, (rem // 60) % 60, rem % 60)


def sql(tm):
    """`YYYY-MM-DD HH:MM:SS`, zero-padded, the literal MySQL/MariaDB DATETIME accepts; ValueError if not valid."""
    _check(tm)
    return "%04d-%02d-%02d %02d:%02d:%02d" % tm
