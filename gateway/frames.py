"""The gateway's half of the frame codec (docs/PROTOCOL.md): decoding every frame, encoding the gateway's own.

soil.codec is the wire format and the board's half (envelope, field checks, the vocabulary, the frames a board
sends); this module adds what only the host runs: `decode` for every frame type (the gateway reads H R S E V from
boards; the serial monitor shows both directions) and the encoders of A K N W T Q M. The gateway, the tools and the
tests import the codec through here, so there is one place to read it from off the board.
"""

from soil.codec import (  # noqa: F401 - re-exported: the codec's one face off the board
    ACK, ALIVE, CARD_STATES, DEAD, EVENT, EVENT_ACK, EVENTS, FIELDS, HELLO, MAX_DETAIL, MAX_FRAME, MAX_FW, MAX_N,
    PROTO, QUERY, READING, RESEND, ROLES, SETTIME, STATUS, UNKNOWN, VERDICTS, WAIT, WITNESS_ANSWER, WITNESS_QUERY,
    FrameError, LineSplitter, check_int, check_text, check_time, check_word, downlink_fields, encode, encode_body,
    envelope, event, hello, n_after, n_diff, reading_frame, reading_record, status, valid_board_id, valid_uid,
    witness_query)
from soil.ds1307 import CLOCK_STATES  # noqa: F401 - the clock field's words are the driver's states

READING_FLAGS = "LCQS"      # L live, C from cache, Q questionable time, S sampled by a standby


class OldProtocol(FrameError):
    """A hello of an older protocol version: a board that needs the current firmware (the gateway says so once)."""


# --- the gateway's frames ------------------------------------------------------------------------------------------

def ack(n, boot):
    """Every R frame up to `n` of boot `boot` is committed (a board ignores an ack of another boot)."""
    return encode(ACK, (n, boot))


def event_ack(boot, k):
    """Event `k` of boot `boot` is committed (stored once: its identity is the board, boot and k)."""
    return encode(EVENT_ACK, (boot, k))


def resend(n):
    return encode(RESEND, (n,))


def wait(ms):
    return encode(WAIT, (ms,))


def settime(utc_time):
    return encode(SETTIME, (utc_time,))


def query():
    return encode(QUERY)


def witness_answer(master_id, verdict, last_time):
    """`verdict` is alive, dead or unknown; `last_time` the master's last stored sample time, or '-'."""
    return encode(WITNESS_ANSWER, (master_id, verdict, last_time or "-"))


# --- decoding every type ---------------------------------------------------------------------------------------------

def _flags(text):
    if len(text) > 4:
        raise FrameError("bad flags")
    for ch in text:
        if ch not in READING_FLAGS or text.count(ch) > 1:
            raise FrameError("bad flags")
    if ("L" in text) == ("C" in text):
        raise FrameError("flags need exactly one of L, C")
    return text


def decode(line):
    """Parse one line (bytes, with or without the newline) into `(kind, fields)`.

    `fields` is a tuple of typed values: ints where the protocol has numbers, str elsewhere. Raises FrameError
    with a short reason for anything that is not a valid frame.
    """
    try:
        kind, f = envelope(line)
    except FrameError as e:
        _older_hello(line, e)
        raise
    if kind == READING:
        return kind, (check_int(f[0], 1, MAX_N, "n"), check_int(f[1], 1, MAX_N, "boot"),
                      check_int(f[2], 1, MAX_N, "seq"), check_time(f[3]), check_int(f[4], 0, 65535, "raw"),
                      _flags(f[5]))
    if kind == HELLO:
        if check_int(f[0], 0, 99, "proto") != PROTO:
            raise FrameError("unsupported protocol version " + f[0])
        if not valid_board_id(f[1]):
            raise FrameError("bad board id")
        if not valid_uid(f[8]):
            raise FrameError("bad uid")
        return kind, (PROTO, f[1], check_int(f[2], 1, MAX_N, "boot"), check_int(f[3], 1, MAX_N, "n_next"),
                      check_time(f[4]), check_word(f[5], CLOCK_STATES, "clock"), check_word(f[6], ROLES, "role"),
                      check_text(f[7], MAX_FW, "fw"), f[8])
    if kind == EVENT:
        return kind, (check_int(f[0], 1, MAX_N, "boot"), check_int(f[1], 1, MAX_N, "event number"),
                      check_word(f[2], EVENTS, "event"), check_text(f[3], MAX_DETAIL, "event detail"),
                      check_time(f[4]))
    if kind == WITNESS_QUERY:
        if f[0] != "-" and not valid_board_id(f[0]):
            raise FrameError("bad board id")
        return kind, (f[0],)
    if kind == STATUS:
        return kind, (check_time(f[0]), check_word(f[1], CLOCK_STATES, "clock"),
                      check_int(f[2], 0, MAX_N, "pending"), check_int(f[3], 0, MAX_N, "dropped"),
                      check_word(f[4], CARD_STATES, "card"), check_int(f[5], 0, MAX_N, "journal_bytes"))
    return kind, downlink_fields(kind, f)


def _older_hello(line, error):
    """Raise OldProtocol for a well-formed hello of an older protocol version (its field count differs, so the
    envelope refused it); otherwise return and let `error` stand."""
    if str(error) != "wrong field count" or line.rfind(b"$H,") < 0:
        return
    proto = line[line.rfind(b"$H,") + 3:].split(b",")[0]
    if proto.isdigit() and int(proto) < PROTO:
        raise OldProtocol("protocol version %s: re-flash the board with this release's firmware (protocol %d)"
                          % (proto.decode(), PROTO))
