"""Parsing the one timestamp format we speak, `YYYY-MM-DDTHH:MM:SSZ` (soil.timefmt writes it).

Strict on purpose: a frame from the line either carries a real instant or is rejected, it is never "repaired" into
a different time. The gateway parses every reading's time with it. A board parses a time only when the gateway
sends one (a `T` frame sets the clock, an `M` frame names the master's last sample), so this is a module of its own
that a board loads for the call (soil.ondemand) instead of holding it in RAM with soil.utc.
"""

from soil.utc import to_epoch, valid

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_ISO_LEN = const(20)  # len("YYYY-MM-DDTHH:MM:SSZ")


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
