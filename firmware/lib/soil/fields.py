"""Field checks of the frame codec beyond numbers and board ids (soil.wire has those): times, words from a fixed
set, and the two gateway frames that carry them (T set time, M witness answer).

The gateway checks these fields in nearly every frame it receives (soil.frames imports this module). A board
meets them only in T and M frames, which come rarely, so soil.wire reaches this module through soil.ondemand:
loaded for the call, not held in RAM.
"""

from soil.wire import FrameError, valid_board_id

VERDICTS = ("alive", "dead", "unknown")


def check_time(text):
    """`text` if it has the shape `YYYY-MM-DDTHH:MM:SSZ`, else FrameError. Calendar validity (Feb 30) is checked
    by soil.timeparse where the value is used."""
    if len(text) != 20 or text[4] != "-" or text[7] != "-" or text[10] != "T" or text[13] != ":" \
            or text[16] != ":" or text[19] != "Z":
        raise FrameError("bad time")
    for i in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
        if text[i] < "0" or text[i] > "9":
            raise FrameError("bad time")
    return text


def check_word(text, allowed, what):
    """`text` if it is one of `allowed`, else FrameError naming `what`."""
    if text not in allowed:
        raise FrameError("bad " + what)
    return text


def downlink_fields(kind, f):
    """The typed fields of a T or M frame (soil.wire.downlink_fields does the other gateway frames)."""
    if kind == "T":
        return (check_time(f[0]),)
    if f[0] != "-" and not valid_board_id(f[0]):
        raise FrameError("bad board id")
    return (f[0], check_word(f[1], VERDICTS, "verdict"), f[2] if f[2] == "-" else check_time(f[2]))
