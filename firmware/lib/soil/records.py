"""The journal's on-card record format, and the one bounded reader that finds and checks records in a segment.

A segment file (`j0000001.log`, numbered by soil.journal) is text: one record per line, `<payload>*<crc>\\n`, where
the payload is 1..100 bytes of printable ASCII without `*`, and `<crc>` is the CRC-32 of the payload as 8 lower-case
hex digits. A record is at most MAX_RECORD (110) bytes including the newline. `cat j0000001.log` on a PC shows the
readings.

The reader is why the book's flaw F8 (a line copied into a 128-byte buffer without a bound) cannot happen here: it
owns one buffer of 256 bytes (two longest records), reads at most that much at a time, and tells a caller what is
at a place in a segment without ever copying a line longer than a record anywhere:

    VALID  a record that passes its checks (`payload()` returns it)
    BAD    a complete line that fails the checks, or is longer than MAX_RECORD (skipped, counted as corrupt)
    TORN   an unterminated tail at the end of the segment: a power cut or a short write (skipped)
    EOF    the end of the segment
"""

from soil import const
from soil.crc import crc32_hex

MAX_PAYLOAD = const(100)
MAX_RECORD = const(110)  # payload + '*' + 8 hex digits + '\n'
_BUF = const(256)
_STAR = const(0x2A)
_NL = const(0x0A)

VALID = const(0)
BAD = const(1)
TORN = const(2)
EOF = const(3)


def segment_name(seg):
    """The file name of segment number `seg` (42 -> `j0000042.log`)."""
    s = str(seg)
    return "j" + "0" * (7 - len(s)) + s + ".log"


def segment_number(name):
    """The number in a segment's file name (`j0000042.log` -> 42), None for any other file."""
    if len(name) != 12 or name[0] != "j" or name[8:] != ".log":
        return None
    digits = name[1:8]
    for ch in digits:
        if ch < "0" or ch > "9":
            return None
    return int(digits)


def encode(payload, buf):
    """Write the record of `payload` (bytes) into `buf` (at least MAX_RECORD bytes) and return its length.
    ValueError for a payload that is not 1..100 printable ASCII bytes without '*'."""
    n = len(payload)
    if n < 1 or n > MAX_PAYLOAD:
        raise ValueError("payload must be 1..100 bytes")
    for k in range(n):
        c = payload[k]
        if c < 0x20 or c > 0x7E or c == _STAR:
            raise ValueError("payload must be printable ASCII without '*'")
        buf[k] = c
    buf[n] = _STAR
    buf[n + 1:n + 9] = crc32_hex(memoryview(buf)[:n])
    buf[n + 9] = _NL
    return n + 10


def _find_nl(buf, start, end):
    for k in range(start, end):
        if buf[k] == _NL:
            return k
    return -1


class RecordReader:
    """What is at a place in a segment of `card`, through one buffer of 256 bytes kept between calls (a
    sequential read fills it once per few records)."""

    def __init__(self, card):
        self._card = card
        self._buf = bytearray(_BUF)
        self._seg = None   # the buffer holds bytes [_off, _off + _len) of segment _seg
        self._off = 0
        self._len = 0
        self._pstart = 0
        self._plen = 0

    def forget(self, seg=None):
        """Drop what the buffer holds of segment `seg` (all: None): the segment changed on the card."""
        if seg is None or self._seg == seg:
            self._seg = None

    def payload(self):
        """The payload of the record the last parse() found VALID."""
        return bytes(self._buf[self._pstart:self._pstart + self._plen])

    def parse(self, seg, off):
        """(kind, end): what is at offset `off` of segment `seg`, and the offset just after it."""
        buf = self._buf
        if self._seg == seg:
            i = off - self._off
            if 0 <= i < self._len:
                j = _find_nl(buf, i, self._len)
                if j >= 0:
                    if j - i + 1 > MAX_RECORD:
                        return BAD, off + (j - i) + 1
                    return self._check_line(i, j, off)
        skipping = False
        while True:
            self._fill(seg, off)
            n = self._len
            if n == 0:
                return (TORN if skipping else EOF), off
            j = _find_nl(buf, 0, n)
            if j >= 0:
                if skipping or j + 1 > MAX_RECORD:
                    return BAD, off + j + 1
                return self._check_line(0, j, off)
            if n < _BUF:
                return TORN, off + n  # no newline before the end of the segment
            skipping = True  # longer than the buffer: skip it without copying it anywhere
            off += n

    def _fill(self, seg, off):
        self._seg = None
        f = self._card.open(segment_name(seg), "rb")
        try:
            f.seek(off)
            n = f.readinto(self._buf)
        finally:
            f.close()
        self._seg = seg
        self._off = off
        self._len = n or 0

    def _check_line(self, i, j, off):
        """Line buf[i:j] (newline at j) starting at file offset `off`."""
        buf = self._buf
        end = off + (j - i) + 1
        if j - i < 10 or buf[j - 9] != _STAR:
            return BAD, end
        if crc32_hex(memoryview(buf)[i:j - 9]) != bytes(buf[j - 8:j]):
            return BAD, end
        self._pstart = i
        self._plen = j - 9 - i
        return VALID, end
