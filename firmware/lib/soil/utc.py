"""UTC civil time without `datetime`: date arithmetic, epoch seconds and the one timestamp format we speak.

Why this module exists: MicroPython and CircuitPython have no `datetime`, their `time.mktime` epochs differ by port
(1970 or 2000) and some ports have no `time.gmtime` at all. The board, the gateway and the replay path must agree
on every timestamp to the second, so the arithmetic lives here, integer only, identical on every interpreter.

A time is a tuple `tm = (year, month, mday, hour, minute, second)`, always UTC (the DS1307 keeps UTC). No leap
seconds: the DS1307 cannot count them and MySQL cannot store them.

Day arithmetic follows Howard Hinnant's `days_from_civil` / `civil_from_days` (proleptic Gregorian calendar, eras
of 400 years); it is exact for any year and needs only integer division, which all three interpreters do alike.

Timestamps are always zero-padded, `2015-11-27T15:09:08Z`, never `2015-11-27 15:9:8` (flaw F4), so they sort as
text and parse with one fixed-width rule. The parser is strict on purpose: a frame either carries a real instant or
is rejected, it is never "repaired" into a different time.
"""

from soil import const

_SECONDS_PER_DAY = const(86400)
_MIN_YEAR = const(1)
_MAX_YEAR = const(9999)  # the ISO text form has four year digits
_ISO_LEN = const(20)     # len("YYYY-MM-DDTHH:MM:SSZ")

_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)   # a literal: CircuitPython builds may lack const tuples


def is_leap(year):
    """True for Gregorian leap years (2000 is one, 2100 is not)."""
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year, month):
    """Number of days in `month` (1-12) of `year`."""
    if month == 2 and is_leap(year):
        return 29
    return _MDAYS[month - 1]


def days_from_civil(year, month, mday):
    """Days since 1970-01-01 of the given date (negative before 1970). Does not validate its input."""
    if month <= 2:
        year -= 1
    era = year // 400  # Python's floor division already rounds towards minus infinity
    yoe = year - era * 400  # [0, 399]
    mp = (month + 9) % 12  # March = 0 ... February = 11
    doy = (153 * mp + 2) // 5 + mday - 1  # [0, 365]
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy  # [0, 146096]
    return era * 146097 + doe - 719468


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


def valid(tm):
    """True if `tm` is a 6-tuple of ints naming a real instant (no Feb 30, no 24:00, no leap second)."""
    try:
        if len(tm) != 6:
            return False
        for v in tm:
            # bool is an int subclass; True is not a month.
            if not isinstance(v, int) or isinstance(v, bool):
                return False
        year, month, mday, hour, minute, second = tm
    except TypeError:
        return False
    if year < _MIN_YEAR or year > _MAX_YEAR or month < 1 or month > 12:
        return False
    if mday < 1 or mday > days_in_month(year, month):
        return False
    return 0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59


def _check(tm):
    if not valid(tm):
        raise ValueError("not a valid UTC time: %r" % (tm,))


def to_epoch(tm):
    """Seconds since 1970-01-01T00:00:00Z of the UTC time `tm`; ValueError if `tm` is not valid."""
    _check(tm)
    year, month, mday, hour, minute, second = tm
    return days_from_civil(year, month, mday) * _SECONDS_PER_DAY + hour * 3600 + minute * 60 + second


def from_epoch(secs):
    """The UTC time `tm` that is `secs` (an int) seconds after 1970-01-01T00:00:00Z."""
    if not isinstance(secs, int) or isinstance(secs, bool):
        raise TypeError("epoch seconds must be an int")
    days = secs // _SECONDS_PER_DAY
    rem = secs - days * _SECONDS_PER_DAY  # [0, 86399] also before 1970
    year, month, mday = civil_from_days(days)
    return (year, month, mday, rem // 3600, (rem // 60) % 60, rem % 60)


def iso(tm):
    """`YYYY-MM-DDTHH:MM:SSZ`, every field zero-padded (flaw F4); ValueError if `tm` is not valid.

    Refusing an invalid `tm` is deliberate: a formatter that printed `2026-13-40T...` would put a time on the line
    that no receiver can store.
    """
    _check(tm)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % tm


def sql(tm):
    """`YYYY-MM-DD HH:MM:SS`, zero-padded, the literal MySQL/MariaDB DATETIME accepts; ValueError if not valid."""
    _check(tm)
    return "%04d-%02d-%02d %02d:%02d:%02d" % tm


def _digits(s, start, n):
    # Only '0'-'9': int() would also take '+1', ' 1', '1_0' or non-ASCII digits, none of which is a timestamp.
    v = 0
    for i in range(start, start + n):
        c = s[i] - 48
        if c < 0 or c > 9:
            raise ValueError("bad digit in timestamp")
        v = v * 10 + c
    return v


def parse_iso(s):
    """Parse exactly `YYYY-MM-DDTHH:MM:SSZ` (str or bytes) into `tm`.

    Raises ValueError for anything else: other lengths, lower-case `t`/`z`, missing zero padding, offsets,
    fractions, and impossible instants such as `2026-02-30T00:00:00Z` or `...T24:00:00Z`.
    """
    if isinstance(s, str):
        try:
            s = s.encode("ascii")
        except (UnicodeError, ValueError):
            raise ValueError("timestamp is not ASCII")
    elif not isinstance(s, (bytes, bytearray)):
        raise ValueError("timestamp must be str or bytes")
    if len(s) != _ISO_LEN:
        raise ValueError("timestamp must be 20 characters: YYYY-MM-DDTHH:MM:SSZ")
    if s[4] != 45 or s[7] != 45 or s[10] != 84 or s[13] != 58 or s[16] != 58 or s[19] != 90:  # - - T : : Z
        raise ValueError("timestamp must look like YYYY-MM-DDTHH:MM:SSZ")
    tm = (
        _digits(s, 0, 4),
        _digits(s, 5, 2),
        _digits(s, 8, 2),
        _digits(s, 11, 2),
        _digits(s, 14, 2),
        _digits(s, 17, 2),
    )
    if not valid(tm):
        raise ValueError("timestamp names no real instant")
    return tm


def epoch_or_none(text):
    """Epoch seconds of a timestamp field that may be `-` (none) or, from a confused sender, not a time: None."""
    if text == "-":
        return None
    try:
        return to_epoch(parse_iso(text))
    except ValueError:
        return None
