"""UTC timestamps as a board writes them for every sample: validity, epoch seconds, ISO text (flaw F4).

The part of soil.timefmt that a board runs all the time; soil.timefmt re-exports all of it and adds what a board
needs rarely (from epoch seconds back to a date, the day of the week) or never (SQL text), so a board does not hold
that code in RAM. soil.timefmt's docstring describes the arithmetic; import soil.timefmt off the board.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_SECONDS_PER_DAY = const(86400)
_MIN_YEAR = const(1)
_MAX_YEAR = const(9999)  # the ISO text form has four year digits

_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


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


def iso(tm):
    """`YYYY-MM-DDTHH:MM:SSZ`, every field zero-padded (flaw F4); ValueError if `tm` is not valid.

    Refusing an invalid `tm` is deliberate: a formatter that printed `2026-13-40T...` would put a time on the line
    that no receiver can store.
    """
    _check(tm)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % tm
