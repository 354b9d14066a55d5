"""soil.frames, the uplink's wire format, under CPython and the real MicroPython interpreter.

Every frame type survives encode -> decode with typed fields; damaged, overlong and garbage lines are refused with
FrameError (never turned into a reading); LineSplitter keeps its buffer bounded (flaw F8) and recovers after an
overlong line. Runs unchanged under both interpreters; prints `OK frames_portable <n> checks` at the end.
"""

from portable import Checks

from soil import frames
from soil.crc import crc32_hex

checks = Checks("frames_portable")
T0 = "2026-11-21T09:55:04Z"


def refused(line, what):
    try:
        frames.decode(line)
    except frames.FrameError:
        checks.check(True, what)
        return
    raise AssertionError("accepted a bad line (%s): %r" % (what, line))


def framed(body):
    """A correctly checksummed frame around an arbitrary body: only the content checks can refuse it."""
    return b"$" + body + b"*" + crc32_hex(body) + b"\n"


# --- round trips of every frame type ----------------------------------------------------------------------------
cases = (
    (frames.hello("b-1_X", 3, 1, T0, "ok", "master", "0.1.0"),
     ("H", (1, "b-1_X", 3, 1, T0, "ok", "master", "0.1.0"))),
    (frames.hello("B" * 32, 0x7FFFFFFF, 17, T0, "halted", "standby", "fw"),
     ("H", (1, "B" * 32, 0x7FFFFFFF, 17, T0, "halted", "standby", "fw"))),
    (frames.status(T0, "unset", 5, 0, "full", 1234), ("S", (T0, "unset", 5, 0, "full", 1234))),
    (frames.ack(0), ("A", (0,))),
    (frames.ack(0x7FFFFFFF), ("A", (0x7FFFFFFF,))),
    (frames.resend(17), ("N", (17,))),
    (frames.wait(2000), ("W", (2000,))),
    (frames.settime(T0), ("T", (T0,))),
    (frames.query(), ("Q", ())),
)
for raw, want in cases:
    checks.check(raw[:1] == b"$" and raw[-1:] == b"\n", "frame is one line: %r" % raw)
    checks.check(len(raw) <= frames.MAX_FRAME, "frame within MAX_FRAME")
    checks.equal(frames.decode(raw), want, "round trip of %r" % raw)
    checks.equal(frames.decode(raw[:-1]), want, "decode without the newline")
    checks.equal(frames.decode(raw[:-1] + b"\r\n"), want, "a \\r before the newline is ignored")
    checks.equal(frames.decode(b"noise$$garbage" + raw), want, "noise before the last $ is ignored")

# Readings: the journal record plus the link number and the L/C source flag.
for flags in ("", "Q", "S", "QS"):
    for source in (b"L", b"C"):
        rec = frames.reading_record(7, 42, T0, 512, flags)
        checks.equal(rec, ("7,42," + T0 + ",512," + flags).encode(), "reading_record " + flags)
        raw = frames.reading_frame(99, rec, source)
        checks.equal(frames.decode(raw), ("R", (99, 7, 42, T0, 512, flags + source.decode())),
                     "reading round trip flags %r source %r" % (flags, source))
checks.equal(frames.decode(frames.reading_frame(0x7FFFFFFF, frames.reading_record(0x7FFFFFFF, 0x7FFFFFFF, T0, 65535,
                                                                                 "QS"), b"C"))[1],
             (0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, T0, 65535, "QSC"), "largest reading fits")
checks.equal(frames.decode(frames.reading_frame(1, frames.reading_record(1, 1, T0, 0), b"L"))[1][4], 0, "raw 0")
checks.equal(frames.decode(b"$R,1,1,1,2026-11-21T09:55:04Z,512,L*" +
                           crc32_hex(b"R,1,1,1,2026-11-21T09:55:04Z,512,L") + b"\n")[0], "R", "hand-made frame")
checks.equal(frames.encode_body(b"A,5"), frames.ack(5), "encode_body == encode")

# --- rejection: bad checksum -----------------------------------------------------------------------------------
good = frames.reading_frame(3, frames.reading_record(2, 9, T0, 1000, ""), b"L")
for i in range(1, len(good) - 1):
    if good[i] in b"$*\n":
        continue
    bad = bytearray(good)
    bad[i] = bad[i] ^ 0x01
    refused(bytes(bad), "one flipped bit at %d" % i)
refused(good[:-10] + b"00000000\n", "wrong crc")
refused(good[:-9] + good[-9:-1].upper() + b"\n", "crc must be lower-case hex")
refused(good[:-2] + b"\n", "short crc")
refused(good.replace(b"*", b""), "no checksum")

# --- rejection: overlong ------------------------------------------------------------------------------------------
try:
    frames.hello("b1", 1, 1, T0, "ok", "single", "x" * 120)
    raise AssertionError("encode built a frame longer than MAX_FRAME")
except frames.FrameError:
    checks.check(True, "encode refuses an overlong frame")
try:
    frames.encode_body(b"A," + b"1" * 120)
    raise AssertionError("encode_body built an overlong frame")
except frames.FrameError:
    checks.check(True, "encode_body refuses an overlong frame")
refused(b" " * (frames.MAX_FRAME + 1 - len(good)) + good, "a line over MAX_FRAME even with a valid frame in it")
ok_long = b" " * (frames.MAX_FRAME - len(good)) + good
checks.equal(len(ok_long), frames.MAX_FRAME, "padded to exactly MAX_FRAME")
checks.equal(frames.decode(ok_long)[0], "R", "exactly MAX_FRAME bytes is accepted")

# --- rejection: garbage and content checks -------------------------------------------------------------------------
for line in (b"", b"\n", b"hello world", b"$", b"*", b"$*", b"$R*", b"*$A,1", b"\xff\xfe$\x00*",
             b"MicroPython v1.27.0 on 2026-01-01; REPL", bytes(range(256))[:100]):
    refused(line, "garbage %r" % line[:20])
for body in (b"X,1", b"r,1", b"", b"AA,1", b"A", b"A,1,2", b"Q,1", b"A,-1", b"A,+1", b"A, 1", b"A,1x",
             b"A,12345678901", b"A,2147483648", b"W,3600001", b"N,", b"T,2026-11-21 09:55:04Z", b"T,2026-11-21T09:55:04",
             b"T,2026-1-21T09:55:04Z", b"T,2026-11-21T9:55:04ZZ",
             b"R,0,1,1," + T0.encode() + b",5,L", b"R,1,0,1," + T0.encode() + b",5,L",
             b"R,1,1,0," + T0.encode() + b",5,L", b"R,1,1,1," + T0.encode() + b",65536,L",
             b"R,1,1,1," + T0.encode() + b",5,", b"R,1,1,1," + T0.encode() + b",5,LC",
             b"R,1,1,1," + T0.encode() + b",5,Q", b"R,1,1,1," + T0.encode() + b",5,LL",
             b"R,1,1,1," + T0.encode() + b",5,LX", b"R,1,1,1," + T0.encode() + b",5,QSLCQ",
             b"R,1,1,1," + T0.encode() + b",5", b"H,2,b1,1,1," + T0.encode() + b",ok,single,fw",
             b"H,1,b 1,1,1," + T0.encode() + b",ok,single,fw", b"H,1,,1,1," + T0.encode() + b",ok,single,fw",
             b"H,1," + b"b" * 33 + b",1,1," + T0.encode() + b",ok,single,fw",
             b"H,1,b1,1,1," + T0.encode() + b",fine,single,fw", b"H,1,b1,1,1," + T0.encode() + b",ok,boss,fw",
             b"S," + T0.encode() + b",ok,1,0,wet,0", b"\xc3\xa9,1"):
    refused(framed(body), "content check on %r" % body)
checks.equal(frames.valid_board_id("a-Z_9"), True, "valid board id")
checks.equal(frames.valid_board_id("a.b"), False, "dot is not allowed in a board id")

# --- LineSplitter --------------------------------------------------------------------------------------------------
s = frames.LineSplitter()
stream = frames.ack(1) + frames.query() + good
got = []
for i in range(len(stream)):  # one byte at a time
    got += s.feed(stream[i:i + 1])
checks.equal(got, [frames.ack(1)[:-1], frames.query()[:-1], good[:-1]], "byte-at-a-time split")
checks.equal(s.feed(stream + stream), [frames.ack(1)[:-1], frames.query()[:-1], good[:-1]] * 2, "one big chunk")
checks.equal(s.feed(b"$A,1"), [], "partial line is held")
checks.equal(s.feed(b"*x\n"), [b"$A,1*x"], "and completed by the next chunk")
checks.equal(s.overruns, 0, "no overruns so far")

s = frames.LineSplitter()
exact = b"x" * frames.MAX_FRAME
checks.equal(s.feed(exact + b"\n"), [exact], "a line of exactly the limit is kept")
checks.equal(s.feed(exact + b"y\n" + frames.ack(2)), [frames.ack(2)[:-1]], "a line over the limit is dropped")
checks.equal(s.overruns, 1, "and counted")
for k in range(50):  # a stuck line: 50 chunks of 100 bytes, no newline
    checks.equal(s.feed(b"z" * 100), [], "stuck line yields nothing")
    checks.check(len(s._buf) <= frames.MAX_FRAME, "buffer stays bounded")
checks.equal(s.overruns, 2, "a stuck line counts once")
checks.equal(s.feed(b"tail-of-the-stuck-line\n" + frames.ack(3)), [frames.ack(3)[:-1]],
             "the rest of the stuck line is discarded up to its newline, then lines flow again")
checks.equal(s.feed(b"q" * 200 + b"\n" + frames.ack(4)), [frames.ack(4)[:-1]], "overlong in one chunk")
checks.equal(s.overruns, 3, "counted once more")
small = frames.LineSplitter(limit=10)
checks.equal(small.feed(b"0123456789\n01234567890\nok\n"), [b"0123456789", b"ok"], "custom limit")
for line in s.feed(b"\x00\xff$garb\n" + frames.settime(T0)):
    try:
        frames.decode(line)
        checks.equal(frames.decode(line), ("T", (T0,)), "only the real frame decodes")
    except frames.FrameError:
        checks.check(True, "noise line refused")

checks.done()
