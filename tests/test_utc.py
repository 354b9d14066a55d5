"""soil.utc: integer calendar arithmetic, the zero-padded timestamp (F4) and the strict parser.

CPython's `datetime` is the independent oracle here; the module under test must not use it (it runs on
MicroPython), but the tests may.
"""

import calendar
import datetime as dt

import pytest
from hypothesis import given, strategies as st

from soil import utc

EPOCH_MIN = 0  # 1970-01-01T00:00:00Z
EPOCH_MAX = calendar.timegm((2099, 12, 31, 23, 59, 59, 0, 0, 0))

datetimes = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2099, 12, 31, 23, 59, 59))


def _tm(d):
    return (d.year, d.month, d.day, d.hour, d.minute, d.second)


@given(st.integers(min_value=EPOCH_MIN, max_value=EPOCH_MAX))
def test_from_epoch_matches_gmtime_and_round_trips(secs):
    tm = utc.from_epoch(secs)
    assert tm == tuple(dt.datetime.fromtimestamp(secs, dt.timezone.utc).timetuple()[:6])
    assert utc.to_epoch(tm) == secs


@given(datetimes)
def test_to_epoch_matches_timegm(d):
    tm = _tm(d)
    assert utc.to_epoch(tm) == calendar.timegm(d.timetuple())
    assert utc.from_epoch(utc.to_epoch(tm)) == tm


@given(datetimes)
def test_iso_round_trip_and_matches_strftime(d):
    tm = _tm(d)
    s = utc.iso(tm)
    assert s == d.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert utc.parse_iso(s) == tm
    assert utc.parse_iso(s.encode()) == tm
    assert utc.sql(tm) == d.strftime("%Y-%m-%d %H:%M:%S")


@given(st.integers(min_value=-719162, max_value=2932896))
def test_days_round_trip_and_weekday(days):
    y, m, d = utc.civil_from_days(days)
    assert utc.days_from_civil(y, m, d) == days
    ref = dt.date(1970, 1, 1) + dt.timedelta(days=days)
    assert (y, m, d) == (ref.year, ref.month, ref.day)
    assert utc.weekday(y, m, d) == ref.isoweekday()


def test_f4_timestamps_are_zero_padded():
    # The book's sketch printed 2015-11-27 15:9:8; every field must have its full width.
    tm = (2015, 11, 27, 15, 9, 8)
    assert utc.iso(tm) == "2015-11-27T15:09:08Z"
    assert utc.sql(tm) == "2015-11-27 15:09:08"
    assert utc.iso((2001, 1, 2, 3, 4, 5)) == "2001-01-02T03:04:05Z"
    assert utc.sql((2001, 1, 2, 0, 0, 0)) == "2001-01-02 00:00:00"


@given(datetimes)
def test_f4_every_timestamp_has_fixed_width(d):
    assert len(utc.iso(_tm(d))) == 20
    assert len(utc.sql(_tm(d))) == 19


def test_known_instants():
    assert utc.to_epoch((1970, 1, 1, 0, 0, 0)) == 0
    assert utc.to_epoch((2000, 1, 1, 0, 0, 0)) == 946684800
    assert utc.to_epoch((2038, 1, 19, 3, 14, 8)) == 2**31  # past the TIMESTAMP limit (F7)
    assert utc.from_epoch(-1) == (1969, 12, 31, 23, 59, 59)
    assert utc.weekday(2000, 1, 1) == 6  # a Saturday


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-21T09:55:04",  # no Z
        "2026-11-21T09:55:04z",
        "2026-11-21t09:55:04Z",
        "2026-11-21 09:55:04Z",
        "2026-11-21T9:55:04Z ",
        "2026-11-21T09:55:4Z",  # F4 style, not padded
        " 2026-11-21T09:55:04Z",
        "2026-11-21T09:55:04Z\n",
        "2026-11-21T09:55:04.5Z",
        "2026-11-21T09:55:04+00:00",
        "+026-11-21T09:55:04Z",
        "2026-1_-21T09:55:04Z",
        "2026-11-2 T09:55:04Z",
        "2026-11-21T09-55-04Z",
        "2026/11/21T09:55:04Z",
        "2026-02-30T00:00:00Z",  # no such day
        "2025-02-29T00:00:00Z",  # not a leap year
        "2100-02-29T00:00:00Z",  # not a leap year either
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:60:00Z",
        "2026-01-01T23:59:60Z",  # no leap seconds
        "0000-01-01T00:00:00Z",
        "2026-01-01T00:00:0\u0660Z",  # Arabic-Indic zero: int() would accept it
        "\uff12026-01-01T00:00:00Z",
    ],
)
def test_parse_rejects_garbage(text):
    with pytest.raises(ValueError):
        utc.parse_iso(text)


@given(st.text(max_size=24) | st.binary(max_size=24))
def test_parse_raises_only_value_error(junk):
    try:
        tm = utc.parse_iso(junk)
    except ValueError:
        return
    assert utc.valid(tm)
    assert utc.iso(tm) == (junk if isinstance(junk, str) else junk.decode())


def test_parse_rejects_non_text():
    for junk in (None, 20261121, ["2026-11-21T09:55:04Z"]):
        with pytest.raises(ValueError):
            utc.parse_iso(junk)


def test_parse_accepts_leap_day():
    assert utc.parse_iso("2024-02-29T23:59:59Z") == (2024, 2, 29, 23, 59, 59)
    assert utc.parse_iso("2000-02-29T00:00:00Z") == (2000, 2, 29, 0, 0, 0)


@pytest.mark.parametrize(
    "tm",
    [
        (2026, 2, 30, 0, 0, 0),
        (2026, 1, 1, 0, 0),
        (2026, 1, 1, 0, 0, 0, 0),
        (2026, 1, 1, 0, 0, 0.0),
        (2026, True, 1, 0, 0, 0),
        ("2026", 1, 1, 0, 0, 0),
        (2026, 1, 1, -1, 0, 0),
        None,
        42,
    ],
)
def test_invalid_tm_is_rejected_everywhere(tm):
    assert not utc.valid(tm)
    for fn in (utc.iso, utc.sql, utc.to_epoch):
        with pytest.raises(ValueError):
            fn(tm)


def test_from_epoch_wants_an_int():
    with pytest.raises(TypeError):
        utc.from_epoch(1.5)


_MP_SCRIPT = """
from soil import utc
out = []
s = -86400 * 3
while s < 4102444800:
    tm = utc.from_epoch(s)
    assert utc.to_epoch(tm) == s
    assert utc.parse_iso(utc.iso(tm)) == tm
    out.append(utc.iso(tm) + " " + utc.sql(tm) + " " + str(utc.weekday(*tm[:3])))
    s += 86400 * 97 + 3613
for bad in ("2026-02-30T00:00:00Z", "2026-1-01T00:00:00Z", "2026-01-01T00:00:0\\u0660Z", b"2026-01-01T00:00:00z"):
    try:
        utc.parse_iso(bad)
        out.append("ACCEPTED %r" % (bad,))
    except ValueError:
        pass
print(len(out))
print("\\n".join(out))
"""


@pytest.mark.micropython
def test_same_answers_under_micropython_and_cpython():
    from tests.mpy import require_micropython, run_cpython, run_micropython

    require_micropython()
    mp = run_micropython(_MP_SCRIPT)
    cp = run_cpython(_MP_SCRIPT)
    assert mp.returncode == 0, mp.stderr
    assert cp.returncode == 0, cp.stderr
    assert "ACCEPTED" not in mp.stdout
    assert mp.stdout == cp.stdout
    assert int(mp.stdout.split("\n", 1)[0]) > 400
