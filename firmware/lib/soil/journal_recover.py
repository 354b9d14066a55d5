"""The journal's recovery: what `Journal.open()` does once per boot, and again when a failed card comes back.

Its own module because a board runs it so rarely: soil.ondemand loads it for the call and drops it after, so the
running firmware does not hold its code in RAM (soil.journal's docstring describes the recovery itself).
"""

from soil.journal import _seg_name

try:
    from micropython import const
except ImportError:  # CPython, CircuitPython without the micropython module
    def const(x):
        return x

_NL = const(0x0A)
_VALID = const(0)   # soil.journal's _VALID: what Journal._step found


def recover(j):
    """Read the ack pointer, finish an interrupted compaction, count the pending records, find a torn tail.
    Deletes only segments wholly before the ack pointer (flaw F2). OSError from the card propagates."""
    card = j._card
    raw = j._slot.load()
    if raw is not None and len(raw) == 12:
        j._ack_seg = int.from_bytes(raw[0:4], "little")
        j._ack_off = int.from_bytes(raw[4:8], "little")
        j.dropped = int.from_bytes(raw[8:12], "little")
    else:
        j.dropped = 0
        j._persist(0, 0, 0)  # reserve the state file's blocks while there is room
    segs = []
    for name in card.listdir():
        n = _seg_number(name)
        if n is not None:
            segs.append(n)
    segs.sort()
    while segs and segs[0] < j._ack_seg:
        j._remove(segs.pop(0))
    total = 0
    size = 0
    for s in segs:
        size = card.size(_seg_name(s))
        total += size
    j._segs = segs
    j._total = total
    if segs:
        j._wseg = segs[-1]
        j._wsize = size
        j._wsealed = size > 0 and _last_byte(card, segs[-1], size) != _NL
    j._rseg = j._ack_seg
    j._roff = j._ack_off
    seg, off = j._ack_seg, j._ack_off
    count = 0
    while True:
        kind, seg, off = j._step(seg, off)
        if kind != _VALID:
            break
        count += 1
    j.pending = count


def _seg_number(name):
    """The number in a segment's file name (`j0000042.log` -> 42), None for any other file."""
    if len(name) != 12 or name[0] != "j" or name[8:] != ".log":
        return None
    digits = name[1:8]
    for ch in digits:
        if ch < "0" or ch > "9":
            return None
    return int(digits)


def _last_byte(card, seg, size):
    f = card.open(_seg_name(seg), "rb")
    try:
        f.seek(size - 1)
        b = f.read(1)
    finally:
        f.close()
    return b[0] if b else -1
