"""The wire format of the uplink protocol (docs/PROTOCOL.md), and the half of the codec a board runs.

A frame is one printable line, `$T,field,...*crc32hex\\n`, so a person can read the link on a serial monitor and a
machine can reject anything damaged. This module holds the envelope (checksum, bounded lines, numbers, board ids),
the encoders of the frames every board sends (H R S) and the decoder of the frames it receives (A N W Q here; the
rare T and M through soil.fields). soil.frames adds the gateway's half on top: decoding H R S E V, encoding
A N W T Q M. Each frame is defined once; the split exists because a board keeps every byte of code it imports in
RAM (BRIEF.md: 32 KB of MicroPython heap), and the gateway's half is code a board never runs. The two frames only a
redundant pair sends, now and then (E events, V witness queries), are in soil.events; soil.events and soil.fields
are loaded on a board only for the call (soil.ondemand).
"""

from soil import ondemand
from soil.crc import crc32_hex

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

PROTO = const(1)
MAX_FRAME = const(120)      # bytes including '$' and '\n' (flaw F8: every buffer is bounded)
MAX_N = const(0x7FFFFFFF)   # link numbers, boot counters and sequence numbers stay below 2**31

# Number of fields after the type letter, per frame type. Board to gateway: H hello, R reading, S status, E event,
# V witness query. Gateway to board: A ack, N resend, W wait, T set time, Q query (ask for a hello), M witness
# answer. The letters are literals on the board's side (a named constant is a global, and a name, in its RAM);
# soil.frames gives them names (frames.HELLO ...) for the gateway.
_FIELDS = {"H": 8, "R": 6, "S": 6, "A": 1, "N": 1, "W": 1, "T": 1, "Q": 0, "E": 3, "V": 1, "M": 3}



class FrameError(ValueError):
    """A line that is not a valid frame. The receiver counts it and drops it; it never becomes a row."""


def encode(kind, fields=()):
    """One frame as bytes, checksum and newline included."""
    body = kind
    for f in fields:
        body += "," + str(f)
    raw = body.encode()
    frame = b"$" + raw + b"*" + crc32_hex(raw) + b"\n"
    if len(frame) > MAX_FRAME:
        raise FrameError("frame longer than %d bytes" % MAX_FRAME)
    return frame


def encode_body(body):
    """Frame an already-joined body (bytes without '$', '*' or newline). The board's hot path uses this to send
    a cached record without splitting and re-joining its fields."""
    frame = b"$" + body + b"*" + crc32_hex(body) + b"\n"
    if len(frame) > MAX_FRAME:
        raise FrameError("frame longer than %d bytes" % MAX_FRAME)
    return frame


def hello(board, boot, n_next, rtc_time, clock, role, fw):
    return encode("H", (PROTO, board, boot, n_next, rtc_time, clock, role, fw))


def status(rtc_time, clock, pending, dropped, card, journal_bytes):
    return encode("S", (rtc_time, clock, pending, dropped, card, journal_bytes))


def reading_record(boot, seq, time, raw, flags=""):
    """The part of a reading frame that is fixed when the reading is sampled: `boot,seq,time,raw,flags`.
    The journal stores exactly this, and `reading_frame` wraps it for the line."""
    return ("%d,%d,%s,%d,%s" % (boot, seq, time, raw, flags)).encode()


def reading_frame(n, record, source):
    """An `R` frame from a journal record; `source` is b'L' (live) or b'C' (from the cache) and is appended to
    the record's flags."""
    return encode_body(b"R," + str(n).encode() + b"," + record + source)


# --- decoding ------------------------------------------------------------------------------------------------

def _int(text, lo, hi, what):
    if not text or len(text) > 10:
        raise FrameError("bad " + what)
    for ch in text:
        if ch < "0" or ch > "9":
            raise FrameError("bad " + what)
    v = int(text)
    if v < lo or v > hi:
        raise FrameError(what + " out of range")
    return v


def valid_board_id(text):
    """1-32 characters from A-Z a-z 0-9 _ - (the collector checks its own at start-up)."""
    if not 0 < len(text) <= 32:
        return False
    for ch in text:
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "_-"):
            return False
    return True


def envelope(line):
    """Check one line (bytes, with or without the newline) and split it: `(kind, [field text, ...])`.

    Checks the length, the checksum, the type letter and the number of fields; raises FrameError with a short
    reason for anything that is not a frame. The fields are still text: `decode` types and range-checks them.
    """
    if len(line) > MAX_FRAME:
        raise FrameError("too long")
    start = line.rfind(b"$")
    if start < 0:
        raise FrameError("no frame start")
    star = line.rfind(b"*")
    if star < start:
        raise FrameError("no checksum")
    body = line[start + 1:star]
    tail = line[star + 1:]
    while tail[-1:] == b"\n" or tail[-1:] == b"\r":
        tail = tail[:-1]
    if tail != crc32_hex(body):
        raise FrameError("bad checksum")
    try:
        text = body.decode()
    except UnicodeError:
        raise FrameError("not ASCII")
    parts = text.split(",")
    kind = parts[0]
    want = _FIELDS.get(kind)
    if want is None:
        raise FrameError("unknown type")
    if len(parts) - 1 != want:
        raise FrameError("wrong field count")
    return kind, parts[1:]


def decode(line):
    """Parse a frame the gateway sends (A N W T Q M) into `(kind, fields)`, fields typed (ints where the
    protocol has numbers). Raises FrameError for anything else, including a valid frame of a type a board sends
    (an echo on the line is not an order). soil.frames.decode parses every type."""
    kind, f = envelope(line)
    return kind, downlink_fields(kind, f)


def downlink_fields(kind, f):
    if kind == "A" or kind == "N":
        return (_int(f[0], 0, MAX_N, "n"),)
    if kind == "W":
        return (_int(f[0], 0, 3600000, "ms"),)
    if kind == "Q":
        return ()
    if kind == "T" or kind == "M":
        return ondemand("soil.fields.downlink_fields", kind, f)   # rare on a board: checked by soil.fields
    raise FrameError("not a gateway frame")


class LineSplitter:
    """Cuts a byte stream into lines with a bounded buffer.

    Bytes past MAX_FRAME without a newline are thrown away up to the next newline and counted in `overruns`,
    so a stuck or noisy line can never make the receiver allocate without limit (flaw F8).
    """

    def __init__(self, limit=MAX_FRAME):
        self.limit = limit
        self._buf = b""
        self._discarding = False
        self.overruns = 0

    def feed(self, data):
        """Add received bytes; return the complete lines (without their newline) found so far."""
        lines = []
        buf = self._buf + data if self._buf else data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if self._discarding:
                self._discarding = False
            elif nl - start <= self.limit:
                lines.append(buf[start:nl])
            else:
                self.overruns += 1
            start = nl + 1
        rest = buf[start:]
        if len(rest) > self.limit:
            if not self._discarding:
                self.overruns += 1
            self._discarding = True
            rest = b""
        elif self._discarding:
            rest = b""
        self._buf = rest
        return lines
