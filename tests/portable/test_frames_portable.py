"""soil.codec, the uplink's wire format and the board's half of it, under CPython and the real MicroPython
interpreter.

Every frame a board sends survives encode -> envelope with its fields; every frame a board receives survives
encode -> decode with typed fields; damaged, overlong and garbage lines are refused with FrameError (never turned
into a reading or an order); LineSplitter keeps its buffer bounded (flaw F8) and recovers after an overlong line.
The gateway's half (gateway/codec.py: typed decoding of H R S E V) is CPython's and tested in tests/test_codec.py.
Runs unchanged under both interpreters; prints `OK frames_portable <n> checks` at the end.
"""

from portable import Checks

from soil import codec
from soil.crc import crc32_hex

checks = Checks("frames_portable")
T0 = "2026-11-21T09:55:04Z"


def refused(line, what, decode=codec.decode):
    try:
        decode(line)
    except codec.FrameError:
        checks.check(True, what)
        return
    raise AssertionError("accepted a bad line (%s): %r" % (what, line))


def framed(body):
    """A correctly checksummed frame around an arbitrary body: only the content checks can refuse it."""
    return b"$" + body + b"*" + crc32_hex(body) + b"\n"


def ack(n, boot=1):
    return codec.encode(codec.ACK, (n, boot))


def query():
    return codec.encode(codec.QUERY)


def settime(t):
    return codec.encode(codec.SETTIME, (t,))


# --- what a board sends: encode -> envelope (kind and field texts) -------------------------------------------------
sent = (
    (codec.hello("b-1_X", 3, 1, T0, "ok", "master", "0.1.0", "e660383b"), ("H", ["2", "b-1_X", "3", "1", T0, "ok",
                                                                                "master", "0.1.0", "e660383b"])),
    (codec.status(T0, "unset", 5, 0, "full", 1234), ("S", [T0, "unset", "5", "0", "full", "1234"])),
    (codec.event(3, 7, "takeover", "a, b*c$d\x01" + "x" * 30, T0),
     ("E", ["3", "7", "takeover", "a  b c d " + "x" * 30, T0])),
    (codec.witness_query("-"), ("V", ["-"])),
)
for raw, want in sent:
    checks.check(raw[:1] == b"$" and raw[-1:] == b"\n", "frame is one line: %r" % raw)
    checks.check(len(raw) <= codec.MAX_FRAME, "frame within MAX_FRAME")
    checks.equal(codec.envelope(raw), want, "envelope of %r" % raw)
    checks.equal(codec.envelope(b"noise$$garbage" + raw[:-1] + b"\r\n"), want, "noise and \\r are ignored")
    refused(raw, "a board never takes its own frame type as an order: %r" % raw[:3])

# --- what a board receives: encode -> decode with typed fields ------------------------------------------------------
cases = (
    (ack(0), ("A", (0, 1))),
    (ack(0x7FFFFFFF, 0x7FFFFFFF), ("A", (0x7FFFFFFF, 0x7FFFFFFF))),
    (codec.encode(codec.EVENT_ACK, (4, 9)), ("K", (4, 9))),
    (codec.encode(codec.RESEND, (17,)), ("N", (17,))),
    (codec.encode(codec.WAIT, (2000,)), ("W", (2000,))),
    (settime(T0), ("T", (T0,))),
    (query(), ("Q", ())),
    (codec.encode(codec.WITNESS_ANSWER, ("bed-1-a", "dead", T0)), ("M", ("bed-1-a", "dead", T0))),
    (codec.encode(codec.WITNESS_ANSWER, ("-", "unknown", "-")), ("M", ("-", "unknown", "-"))),
)
for raw, want in cases:
    checks.check(raw[:1] == b"$" and raw[-1:] == b"\n", "frame is one line: %r" % raw)
    checks.equal(codec.decode(raw), want, "round trip of %r" % raw)
    checks.equal(codec.decode(raw[:-1]), want, "decode without the newline")
    checks.equal(codec.decode(raw[:-1] + b"\r\n"), want, "a \\r before the newline is ignored")
    checks.equal(codec.decode(b"noise$$garbage" + raw), want, "noise before the last $ is ignored")

# Readings: the journal record plus the link number and the L/C source flag.
for flags in ("", "Q", "S", "QS"):
    for source in (b"L", b"C"):
        rec = codec.reading_record(7, 42, T0, 512, flags)
        checks.equal(rec, ("7,42," + T0 + ",512," + flags).encode(), "reading_record " + flags)
        raw = codec.reading_frame(99, rec, source)
        checks.equal(codec.envelope(raw), ("R", ["99", "7", "42", T0, "512", flags + source.decode()]),
                     "reading frame flags %r source %r" % (flags, source))
longest = codec.reading_frame(0x7FFFFFFF, codec.reading_record(0x7FFFFFFF, 0x7FFFFFFF, T0, 65535, "QS"), b"C")
checks.check(len(longest) <= codec.MAX_FRAME, "the largest reading fits in a frame")
checks.equal(codec.encode_body(b"A,5,1"), ack(5), "encode_body == encode")
# The longest event: 10-digit numbers, the longest event word and a detail cut to MAX_DETAIL still fit a frame.
longest = codec.event(0x7FFFFFFF, 0x7FFFFFFF, "standby_missing", "y" * 80, T0)
checks.check(len(longest) <= codec.MAX_FRAME, "the largest event fits in a frame")
checks.equal(codec.envelope(longest)[1][3], "y" * codec.MAX_DETAIL, "its detail is cut to MAX_DETAIL")
checks.equal(codec.envelope(codec.event(2, 1, "takeover", "z, *" + "z" * 80, T0))[1][3], "z   " + "z" * 56,
             "with ordinary numbers the detail keeps MAX_DETAIL characters")

# --- rejection: bad checksum -----------------------------------------------------------------------------------
good = codec.reading_frame(3, codec.reading_record(2, 9, T0, 1000, ""), b"L")
for i in range(1, len(good) - 1):
    if good[i] in b"$*\n":
        continue
    bad = bytearray(good)
    bad[i] = bad[i] ^ 0x01
    refused(bytes(bad), "one flipped bit at %d" % i, codec.envelope)
refused(good[:-10] + b"00000000\n", "wrong crc", codec.envelope)
refused(good[:-9] + good[-9:-1].upper() + b"\n", "crc must be lower-case hex", codec.envelope)
refused(good[:-2] + b"\n", "short crc", codec.envelope)
refused(good.replace(b"*", b""), "no checksum", codec.envelope)

# --- rejection: overlong ------------------------------------------------------------------------------------------
longest_hello = codec.hello("b" * 32, codec.MAX_N, codec.MAX_N, T0, "invalid", "standby", "0.2.0", "f" * codec.UID_MAX)
checks.check(len(longest_hello) <= codec.MAX_FRAME, "the longest hello (32-character id and uid) fits in a frame")
try:
    codec.hello("b1", 1, 1, T0, "ok", "single", "x" * 160, "e660383b")
    raise AssertionError("encode built a frame longer than MAX_FRAME")
except codec.FrameError:
    checks.check(True, "encode refuses an overlong frame")
try:
    codec.encode_body(b"A," + b"1" * codec.MAX_FRAME)
    raise AssertionError("encode_body built an overlong frame")
except codec.FrameError:
    checks.check(True, "encode_body refuses an overlong frame")
refused(b" " * (codec.MAX_FRAME + 1 - len(good)) + good, "a line over MAX_FRAME even with a valid frame in it",
        codec.envelope)
ok_long = b" " * (codec.MAX_FRAME - len(good)) + good
checks.equal(len(ok_long), codec.MAX_FRAME, "padded to exactly MAX_FRAME")
checks.equal(codec.envelope(ok_long)[0], "R", "exactly MAX_FRAME bytes is accepted")

# --- rejection: garbage and content checks -------------------------------------------------------------------------
for line in (b"", b"\n", b"hello world", b"$", b"*", b"$*", b"$R*", b"*$A,1", b"\xff\xfe$\x00*",
             b"MicroPython v1.27.0 on 2026-01-01; REPL", bytes(range(256))[:100]):
    refused(line, "garbage %r" % line[:20])
for body in (b"X,1", b"r,1", b"", b"AA,1", b"A", b"A,1", b"A,1,2,3", b"Q,1", b"A,-1,1", b"A,+1,1", b"A, 1,1",
             b"A,1x,1", b"A,1,0", b"A,1,", b"K,0,1", b"K,1,0", b"K,1", b"A,12345678901,1", b"A,2147483648,1",
             b"W,3600001", b"N,", b"T,2026-11-21 09:55:04Z", b"T,2026-11-21T09:55:04",
             b"T,2026-1-21T09:55:04Z", b"T,2026-11-21T9:55:04ZZ", b"M,b 1,dead,-", b"M,b1,gone,-",
             b"M,b1,dead,yesterday", b"M,b1,dead", b"\xc3\xa9,1"):
    refused(framed(body), "content check on %r" % body)
checks.equal(codec.valid_board_id("a-Z_9"), True, "valid board id")
checks.equal(codec.valid_board_id("a.b"), False, "dot is not allowed in a board id")

# --- LineSplitter --------------------------------------------------------------------------------------------------
s = codec.LineSplitter()
stream = ack(1) + query() + good
got = []
for i in range(len(stream)):  # one byte at a time
    got += s.feed(stream[i:i + 1])
checks.equal(got, [ack(1)[:-1], query()[:-1], good[:-1]], "byte-at-a-time split")
checks.equal(s.feed(stream + stream), [ack(1)[:-1], query()[:-1], good[:-1]] * 2, "one big chunk")
checks.equal(s.feed(b"$A,1"), [], "partial line is held")
checks.equal(s.feed(b"*x\n"), [b"$A,1*x"], "and completed by the next chunk")
checks.equal(s.overruns, 0, "no overruns so far")

s = codec.LineSplitter()
exact = b"x" * codec.MAX_FRAME
checks.equal(s.feed(exact + b"\n"), [exact], "a line of exactly the limit is kept")
checks.equal(s.feed(exact + b"y\n" + ack(2)), [ack(2)[:-1]], "a line over the limit is dropped")
checks.equal(s.overruns, 1, "and counted")
for k in range(50):  # a stuck line: 50 chunks of 100 bytes, no newline
    checks.equal(s.feed(b"z" * 100), [], "stuck line yields nothing")
    checks.check(len(s._buf) <= codec.MAX_FRAME, "buffer stays bounded")
checks.equal(s.overruns, 2, "a stuck line counts once")
checks.equal(s.feed(b"tail-of-the-stuck-line\n" + ack(3)), [ack(3)[:-1]],
             "the rest of the stuck line is discarded up to its newline, then lines flow again")
checks.equal(s.feed(b"q" * 200 + b"\n" + ack(4)), [ack(4)[:-1]], "overlong in one chunk")
checks.equal(s.overruns, 3, "counted once more")
small = codec.LineSplitter(limit=10)
checks.equal(small.feed(b"0123456789\n01234567890\nok\n"), [b"0123456789", b"ok"], "custom limit")
for line in s.feed(b"\x00\xff$garb\n" + settime(T0)):
    try:
        codec.decode(line)
        checks.equal(codec.decode(line), ("T", (T0,)), "only the real frame decodes")
    except codec.FrameError:
        checks.check(True, "noise line refused")

checks.done()
