"""The whole frame codec of the uplink protocol (docs/PROTOCOL.md): what the gateway, the tools and the tests import.

soil.wire holds the envelope and the board's half (encoding H R S, decoding A N W T Q M), soil.events the E and V
encoders, soil.fields the checks of times and words; this module adds the gateway's half (decoding H R S E V,
encoding A N W T Q M) and re-exports the rest, so `frames.decode` parses every frame type. A board imports
soil.wire only: code it never runs would sit in its RAM.
"""

from soil.wire import (  # noqa: F401 - re-exported: frames is the codec's one public face off the board
    MAX_FRAME, MAX_N, PROTO, FrameError, LineSplitter, _int, downlink_fields, encode, encode_body, envelope, hello,
    reading_frame, reading_record, status, valid_board_id)
from soil.events import event, witness_query  # noqa: F401 - re-exported as well
from soil.fields import VERDICTS, check_time, check_word  # noqa: F401 - re-exported as well

# The frame types by name (soil.wire's _FIELDS table says what each carries).
HELLO = "H"
READING = "R"
STATUS = "S"
EVENT = "E"
WITNESS_QUERY = "V"
ACK = "A"
RESEND = "N"
WAIT = "W"
SETTIME = "T"
QUERY = "Q"
WITNESS_ANSWER = "M"
MAX_DETAIL = 60             # characters of an event's free text (soil.events.event cuts it)

ROLES = ("master", "standby", "single")
CLOCK_STATES = ("ok", "unset", "halted", "invalid")
CARD_STATES = ("ok", "full", "absent", "error")
READING_FLAGS = "LCQS"      # L live, C from cache, Q questionable time, S sampled by a standby
EVENTS = ("takeover", "handback", "standby_missing", "standby_back")


# --- the gateway's frames ------------------------------------------------------------------------------------------

def ack(n):
    return encode(ACK, (n,))


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
    kind, f = envelope(line)
    if kind == READING:
        return kind, (_int(f[0], 1, MAX_N, "n"), _int(f[1], 1, MAX_N, "boot"), _int(f[2], 1, MAX_N, "seq"),
                      check_time(f[3]), _int(f[4], 0, 65535, "raw"), _flags(f[5]))
    if kind == HELLO:
        if _int(f[0], 0, 99, "proto") != PROTO:
            raise FrameError("unsupported protocol version " + f[0])
        if not valid_board_id(f[1]):
            raise FrameError("bad board id")
        return kind, (PROTO, f[1], _int(f[2], 1, MAX_N, "boot"), _int(f[3], 1, MAX_N, "n_next"), check_time(f[4]),
                      check_word(f[5], CLOCK_STATES, "clock"), check_word(f[6], ROLES, "role"), f[7][:16])
    if kind == EVENT:
        return kind, (check_word(f[0], EVENTS, "event"), f[1], check_time(f[2]))
    if kind == WITNESS_QUERY:
        if f[0] != "-" and not valid_board_id(f[0]):
            raise FrameError("bad board id")
        return kind, (f[0],)
    if kind == STATUS:
        return kind, (check_time(f[0]), check_word(f[1], CLOCK_STATES, "clock"), _int(f[2], 0, MAX_N, "pending"),
                      _int(f[3], 0, MAX_N, "dropped"), check_word(f[4], CARD_STATES, "card"),
                      _int(f[5], 0, MAX_N, "journal_bytes"))
    return kind, downlink_fields(kind, f)
