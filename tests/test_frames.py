"""The frame codec (soil.codec, the board's half, and gateway/frames.py, the gateway's): what the board sends is what
the gateway reads, and nothing damaged gets through."""

import zlib

import pytest
from hypothesis import given, settings, strategies as st

from gateway import frames
from soil import codec

times = st.builds(
    lambda y, mo, d, h, mi, s: "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s),
    st.integers(2000, 2099), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
    st.integers(0, 59))
numbers = st.integers(1, frames.MAX_N)
flags = st.sampled_from(["", "Q", "S", "QS"])
board_ids = st.text("abcXYZ019_-", min_size=1, max_size=32)


@given(numbers, numbers, numbers, times, st.integers(0, 65535), flags, st.sampled_from([b"L", b"C"]))
def test_reading_round_trip(n, boot, seq, t, raw, fl, source):
    line = frames.reading_frame(n, frames.reading_record(boot, seq, t, raw, fl), source)
    assert len(line) <= frames.MAX_FRAME and line.endswith(b"\n")
    kind, f = frames.decode(line)
    assert kind == "R"
    assert f[:5] == (n, boot, seq, t, raw)
    assert set(f[5]) == set(fl + source.decode())


@given(board_ids, numbers, numbers, times, st.sampled_from(frames.CLOCK_STATES), st.sampled_from(frames.ROLES))
def test_hello_round_trip(board, boot, n_next, t, clock, role):
    kind, f = frames.decode(frames.hello(board, boot, n_next, t, clock, role, "0.1.0", "e660383b13572a2f"))
    assert (kind, f) == ("H", (2, board, boot, n_next, t, clock, role, "0.1.0", "e660383b13572a2f"))


def test_control_frames_round_trip():
    assert frames.decode(frames.ack(42, 3)) == ("A", (42, 3))
    assert frames.decode(frames.event_ack(3, 9)) == ("K", (3, 9))
    assert frames.decode(frames.event(3, 9, "takeover", "x", "2026-11-21T09:55:04Z")) == \
        ("E", (3, 9, "takeover", "x", "2026-11-21T09:55:04Z"))
    assert frames.decode(frames.resend(7)) == ("N", (7,))
    assert frames.decode(frames.wait(2000)) == ("W", (2000,))
    assert frames.decode(frames.settime("2026-11-21T09:55:04Z")) == ("T", ("2026-11-21T09:55:04Z",))
    assert frames.decode(frames.query()) == ("Q", ())
    st_ = frames.decode(frames.status("2026-11-21T09:55:04Z", "ok", 3, 0, "full", 512))
    assert st_ == ("S", ("2026-11-21T09:55:04Z", "ok", 3, 0, "full", 512))


def test_checksum_is_zlib_crc32_of_the_body():
    line = frames.ack(5, 1)
    body = line[1:line.index(b"*")]
    assert line[line.index(b"*") + 1:-1] == b"%08x" % zlib.crc32(body)


@settings(max_examples=300)
@given(st.integers(0, 200), st.integers(1, 255))
def test_any_single_byte_change_is_rejected(pos, delta):
    line = frames.reading_frame(17, frames.reading_record(3, 42, "2026-11-21T09:55:04Z", 512), b"L")
    pos = pos % (len(line) - 1)                       # leave the newline alone
    damaged = bytearray(line)
    damaged[pos] = (damaged[pos] + delta) % 256
    if damaged[pos] == ord("\n"):
        return
    try:
        kind, f = frames.decode(bytes(damaged))
    except frames.FrameError:
        return
    # The only change that can decode is one before the '$' (noise ahead of a frame is skipped)...
    assert pos < damaged.rfind(b"$")
    assert (kind, f[0]) == ("R", 17)


@given(st.binary(max_size=300))
def test_garbage_never_decodes_to_a_reading(noise):
    try:
        kind, _ = frames.decode(noise)
    except frames.FrameError:
        return
    # Random bytes that happen to be a complete valid frame are astronomically unlikely; if hypothesis finds one
    # it must at least carry a valid checksum.
    body = noise[noise.rfind(b"$") + 1:noise.rfind(b"*")]
    assert noise[noise.rfind(b"*") + 1:].rstrip(b"\r\n") == b"%08x" % zlib.crc32(body)


def test_noise_before_a_frame_is_skipped():
    line = b"\x00\xffboot banner $garbage" + frames.ack(3, 1)
    assert frames.decode(line) == ("A", (3, 1))


@pytest.mark.parametrize("bad", [
    b"$R,1,1,1,2026-11-21T09:55:04Z,512,L\n",                         # no checksum
    b"$X,1*00000000\n",                                                # unknown type, bad crc
    frames.encode("R", (1, 1, 1, "2026-11-21T09:55:04Z", 70000, "L")),  # raw out of range
    frames.encode("R", (1, 1, 1, "2026-11-21 09:55:04", 5, "L")),       # not the wire time format
    frames.encode("R", (1, 1, 1, "2026-11-21T9:5:4Z", 5, "L")),         # F4: unpadded time is refused
    frames.encode("R", (1, 1, 1, "2026-11-21T09:55:04Z", 5, "LC")),     # live and cached at once
    frames.encode("R", (0, 1, 1, "2026-11-21T09:55:04Z", 5, "L")),      # n starts at 1
    frames.encode("H", (1, "b1", 1, 1, "2026-11-21T09:55:04Z", "ok", "single", "x")),  # an older version
    frames.encode("H", (frames.PROTO, "b 1", 1, 1, "2026-11-21T09:55:04Z", "ok", "single", "x")),  # bad board id
    frames.encode("A", (1,)),                                           # wrong field count (A has n, boot)
    frames.encode("A", (1, 0)),                                         # boot starts at 1
    frames.encode("K", (1, 0)),                                         # event numbers start at 1
    frames.encode("E", (1, 0, "takeover", "x", "2026-11-21T09:55:04Z")),  # event numbers start at 1
] + [b"$" + body + b"*" + b"%08x" % zlib.crc32(body) + b"\n" for body in (  # valid checksums, bad content
    b"R,1,0,1,2026-11-21T09:55:04Z,5,L", b"R,1,1,0,2026-11-21T09:55:04Z,5,L", b"R,1,1,1,2026-11-21T09:55:04Z,5,",
    b"R,1,1,1,2026-11-21T09:55:04Z,5,Q", b"R,1,1,1,2026-11-21T09:55:04Z,5,LL", b"R,1,1,1,2026-11-21T09:55:04Z,5,LX",
    b"R,1,1,1,2026-11-21T09:55:04Z,5,QSLCQ", b"R,1,1,1,2026-11-21T09:55:04Z,5", b"H,2,,1,1,2026-11-21T09:55:04Z,ok,single,fw",
    b"H,2," + b"b" * 33 + b",1,1,2026-11-21T09:55:04Z,ok,single,fw", b"H,2,b1,1,1,2026-11-21T09:55:04Z,fine,single,fw",
    b"H,2,b1,1,1,2026-11-21T09:55:04Z,ok,boss,fw", b"S,2026-11-21T09:55:04Z,ok,1,0,wet,0",
    b"E,1,1,exploded,x,2026-11-21T09:55:04Z", b"E,1,1,takeover,x,2026-11-21", b"V,b 1")])
def test_invalid_frames_are_rejected(bad):
    with pytest.raises(frames.FrameError):
        frames.decode(bad)


@pytest.mark.parametrize("frame", [
    frames.hello("b1", 1, 1, "2026-11-21T09:55:04Z", "ok", "single", "x", "0badc0de"),
    frames.status("2026-11-21T09:55:04Z", "ok", 3, 0, "full", 512),
    frames.reading_frame(1, frames.reading_record(1, 1, "2026-11-21T09:55:04Z", 5), b"L"),
    frames.event(1, 1, "takeover", "x", "2026-11-21T09:55:04Z"),
    frames.witness_query("b1"),
])
def test_a_board_refuses_its_own_frame_types_as_orders(frame):
    """An echo on the line is not an order: the board's decoder takes only A K N W T Q M."""
    assert frames.decode(frame)[0] in "HSREV"
    with pytest.raises(codec.FrameError):
        codec.decode(frame)


def test_f4_wire_times_are_zero_padded():
    line = frames.reading_frame(1, frames.reading_record(1, 1, "2015-11-27T15:09:08Z", 456), b"C")
    assert b"2015-11-27T15:09:08Z" in line


def test_f8_overlong_lines_are_dropped_with_a_bounded_buffer():
    sp = frames.LineSplitter()
    good = frames.ack(1, 1)
    lines = sp.feed(b"x" * 5000)                  # a stuck line: no newline for thousands of bytes
    assert lines == [] and len(sp._buf) <= frames.MAX_FRAME and sp.overruns == 1
    lines = sp.feed(b"yyy\n" + good + good[:10])
    assert lines == [good[:-1]]                   # the overlong line is dropped, the next frame survives
    lines = sp.feed(good[10:])
    assert lines == [good[:-1]]
    assert sp.overruns == 1


@given(st.lists(st.binary(max_size=40), max_size=30))
def test_splitter_matches_split_for_short_lines(chunks):
    sp = frames.LineSplitter(limit=1000)
    out = []
    for c in chunks:
        out += sp.feed(c)
    whole = b"".join(chunks)
    assert out == whole.split(b"\n")[:-1]


def test_too_long_frame_cannot_be_encoded():
    with pytest.raises(frames.FrameError):
        frames.encode("S", ("x" * (frames.MAX_FRAME + 1),))
