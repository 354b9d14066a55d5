"""The frame codec a board runs: the wire format of the uplink protocol (docs/PROTOCOL.md) and the board's half.

A frame is one printable line, `$T,field,...*crc32hex\\n`, so a person can read the link on a serial monitor and a
machine can reject anything damaged. This module holds the envelope (checksum, bounded lines, field checks), the
protocol's vocabulary, the encoders of every frame a board sends (H R S E V) and the decoder of the frames it
receives (A K N W T Q M), and the arithmetic of link numbers, which wrap from 2**31-1 to 1 (`n_diff`). The
gateway's half (decoding what boards send, encoding its own frames) is gateway/frames.py, on top of this module:
a board never runs it.
"""

from soil import const
from soil.crc import crc32_hex
from soil.utc import days_in_month

PROTO = const(2)            # 2: the hello carries the board's uid, A the boot, E is numbered and acknowledged by K
MAX_FRAME = const(160)      # bytes including '$' and '\n' (flaw F8: every buffer is bounded); the longest
                            # hello (32-character id and uid, 10-digit numbers) is 144
MAX_N = const(0x7FFFFFFF)   # link numbers, boot counters and sequence numbers stay below 2**31
_HALF_N = const(0x3FFFFFFF)  # MAX_N // 2: link numbers closer than this compare by their distance on the circle
MAX_DETAIL = const(60)      # characters of an event's free text
MAX_FW = const(16)          # characters of a hello's firmware version
UID_MIN = const(4)          # a uid is the hardware's unique id as lower-case hex, 4..32 characters
UID_MAX = const(32)
# The characters of a uid and of a board id. Longer than 10 characters, so mpy-cross keeps them as str constants
# instead of interning names on the board (each of "a" "f" "z" "A" "Z" "_-" would be one for good).
_HEX_CHARS = const("0123456789abcdef")
_ID_CHARS = const("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-")

# Frame types. Board to gateway:
HELLO = const("H")
READING = const("R")
STATUS = const("S")
EVENT = const("E")
WITNESS_QUERY = const("V")
# Gateway to board:
ACK = const("A")
EVENT_ACK = const("K")
RESEND = const("N")
WAIT = const("W")
SETTIME = const("T")
QUERY = const("Q")
WITNESS_ANSWER = const("M")

# Number of fields after the type letter, per frame type.
FIELDS = {HELLO: 9, READING: 6, STATUS: 6, EVENT: 5, WITNESS_QUERY: 1,
          ACK: 2, EVENT_ACK: 2, RESEND: 1, WAIT: 1, SETTIME: 1, QUERY: 0, WITNESS_ANSWER: 3}

# The protocol's words. Roles (a hello's role field, and a board's `role` setting):
SINGLE = const("single")
MASTER = const("master")
STANDBY = const("standby")
ROLES = (SINGLE, MASTER, STANDBY)
# Card states (a status frame's card field):
CARD_OK = const("ok")
CARD_FULL = const("full")
CARD_ABSENT = const("absent")
CARD_ERROR = const("error")
CARD_STATES = (CARD_OK, CARD_FULL, CARD_ABSENT, CARD_ERROR)
# A redundant pair's events (E frames):
TAKEOVER = const("takeover")
HANDBACK = const("handback")
STANDBY_MISSING = const("standby_missing")
STANDBY_BACK = const("standby_back")
EVENTS = (TAKEOVER, HANDBACK, STANDBY_MISSING, STANDBY_BACK)
# The gateway's verdict on a master (M frames):
ALIVE = const("alive")
DEAD = const("dead")
UNKNOWN = const("unknown")
VERDICTS = (ALIVE, DEAD, UNKNOWN)
# (The clock states are the DS1307 driver's: soil.ds1307.OK, UNSET, HALTED, INVALID.)


def n_diff(a, b):
    """How far link number `a` is after `b` (negative: before), on the circle the numbers run round: frame numbers
    go 1, 2, ... MAX_N, then 1 again, and 0 (the ack of "nothing yet", `n_next - 1` for n_next 1) is the same
    point as MAX_N. Numbers in flight are never half the circle apart, so the shorter way round is the answer."""
    d = (a - b) % MAX_N
    return d - MAX_N if d > _HALF_N else d


def n_after(n):
    """The link number that follows `n` (MAX_N is followed by 1)."""
    return n % MAX_N + 1


class FrameError(ValueError):
    """A line that is not a valid frame. The receiver counts it and drops it; it never becomes a row."""


# --- encoding ------------------------------------------------------------------------------------------------

def encode(kind, fields=()):
    """One frame as bytes, checksum and newline included."""
    body = kind
    for f in fields:
        body += "," + str(f)
    return encode_body(body.encode())


def encode_body(body):
    """Frame an already-joined body (bytes without '$', '*' or newline). The board's hot path uses this to send
    a cached record without splitting and re-joining its fields."""
    frame = b"$" + body + b"*" + crc32_hex(body) + b"\n"
    if len(frame) > MAX_FRAME:
        raise FrameError("frame longer than %d bytes" % MAX_FRAME)
    return frame


def hello(board, boot, n_next, rtc_time, clock, role, fw, uid):
    """The hello; `uid` is the board's hardware unique id (`uid_hex`), the part of its identity no setting can
    repeat on another board."""
    return encode(HELLO, (PROTO, board, boot, n_next, rtc_time, clock, role, fw, uid))


def status(rtc_time, clock, pending, dropped, card, journal_bytes):
    return encode(STATUS, (rtc_time, clock, pending, dropped, card, journal_bytes))


def reading_record(boot, seq, time, raw, flags=""):
    """The part of a reading frame that is fixed when the reading is sampled: `boot,seq,time,raw,flags`.
    The journal stores exactly this, and `reading_frame` wraps it for the line."""
    return ("%d,%d,%s,%d,%s" % (boot, seq, time, raw, flags)).encode()


def reading_frame(n, record, source):
    """An `R` frame from a journal record; `source` is b'L' (live) or b'C' (from the cache) and is appended to
    the record's flags."""
    return encode_body(b"R," + str(n).encode() + b"," + record + source)


def event(boot, k, name, detail, board_time):
    """Event number `k` of boot `boot` (its identity with the board's id: stored once however often it is sent).
    `detail` is free text, made safe for a frame: separators and control characters become spaces, and it is cut
    to MAX_DETAIL characters (the longest event, with 10-digit numbers, is 132 bytes: within MAX_FRAME)."""
    clean = ""
    for ch in detail[:MAX_DETAIL]:
        clean += " " if (ch in ",*$" or ch < " " or ch > "~") else ch
    return encode_body(("%s,%d,%d,%s,%s,%s" % (EVENT, boot, k, name, clean, board_time)).encode())


def witness_query(master_id):
    """A standby asks the gateway: do you still hear this master? (`-` when it never heard one)"""
    return encode(WITNESS_QUERY, (master_id,))


# --- checking fields -----------------------------------------------------------------------------------------

def check_int(text, lo, hi, what):
    """The decimal number `text` (digits only, at most 10) within lo..hi, else FrameError naming `what`."""
    if not text or len(text) > 10:
        raise FrameError("bad " + what)
    for ch in text:
        if ch < "0" or ch > "9":
            raise FrameError("bad " + what)
    v = int(text)
    if v < lo or v > hi:
        raise FrameError(what + " out of range")
    return v


def valid_uid(text):
    """UID_MIN..UID_MAX characters of lower-case hex."""
    if not UID_MIN <= len(text) <= UID_MAX:
        return False
    for ch in text:
        if ch not in _HEX_CHARS:
            return False
    return True


def valid_board_id(text):
    """1-32 characters from A-Z a-z 0-9 _ - (the collector checks its own at start-up)."""
    if not 0 < len(text) <= 32:
        return False
    for ch in text:
        if ch not in _ID_CHARS:
            return False
    return True


def check_time(text):
    """`text` if it is a real instant written `YYYY-MM-DDTHH:MM:SSZ`, else FrameError: the shape, and the calendar
    (no year 0000, no Feb 30, no 99:99:99), so a frame with an impossible time fails its field checks whole."""
    if len(text) != 20 or text[4] != "-" or text[7] != "-" or text[10] != "T" or text[13] != ":" \
            or text[16] != ":" or text[19] != "Z":
        raise FrameError("bad time")
    for i in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
        if text[i] < "0" or text[i] > "9":
            raise FrameError("bad time")
    year = int(text[0:4])
    month = int(text[5:7])
    if year < 1 or not 1 <= month <= 12 or not 1 <= int(text[8:10]) <= days_in_month(year, month) \
            or int(text[11:13]) > 23 or int(text[14:16]) > 59 or int(text[17:19]) > 59:
        raise FrameError("impossible time")
    return text


def check_text(text, limit, what):
    """`text` if it is 0..limit characters of printable ASCII (space to `~`) without the frame's separators
    (`,` `*` `$`), else FrameError naming `what`: free text (an event's detail, a firmware version) reaches the
    database and a person's terminal only this way, never with control characters or other bytes."""
    if len(text) > limit:
        raise FrameError(what + " too long")
    for ch in text:
        if ch < " " or ch > "~" or ch == "*" or ch == "$":
            raise FrameError("bad " + what)
    return text


def check_word(text, allowed, what):
    """`text` if it is one of `allowed`, else FrameError naming `what`."""
    if text not in allowed:
        raise FrameError("bad " + what)
    return text


# --- decoding ------------------------------------------------------------------------------------------------

def envelope(line):
    """Check one line (bytes, with or without the newline) and split it: `(kind, [field text, ...])`.

    Checks the length, the checksum, the type letter and the number of fields; raises FrameError with a short
    reason for anything that is not a frame. The fields are still text: the decoders type and range-check them.
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
    want = FIELDS.get(kind)
    if want is None:
        raise FrameError("unknown type")
    if len(parts) - 1 != want:
        raise FrameError("wrong field count")
    return kind, parts[1:]


def decode(line):
    """Parse a frame the gateway sends (A K N W T Q M) into `(kind, fields)`, fields typed (ints where the
    protocol has numbers). Raises FrameError for anything else, including a valid frame of a type a board sends
    (an echo on the line is not an order)."""
    kind, f = envelope(line)
    return kind, downlink_fields(kind, f)


def downlink_fields(kind, f):
    """The typed fields of a gateway frame whose envelope is checked (`f`: the field texts)."""
    if kind == ACK:
        return (check_int(f[0], 0, MAX_N, "n"), check_int(f[1], 1, MAX_N, "boot"))
    if kind == EVENT_ACK:
        return (check_int(f[0], 1, MAX_N, "boot"), check_int(f[1], 1, MAX_N, "event number"))
    if kind == RESEND:
        return (check_int(f[0], 0, MAX_N, "n"),)
    if kind == WAIT:
        return (check_int(f[0], 0, 3600000, "ms"),)
    if kind == QUERY:
        return ()
    if kind == SETTIME:
        return (check_time(f[0]),)
    if kind == WITNESS_ANSWER:
        if f[0] != "-" and not valid_board_id(f[0]):
            raise FrameError("bad board id")
        return (f[0], check_word(f[1], VERDICTS, "verdict"), f[2] if f[2] == "-" else check_time(f[2]))
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
