"""The journal when the card refuses a record: the full-card policy (flaw F6) and the aftermath of a failed write.

Its own module because a board needs it only when something went wrong: soil.ondemand loads it for the call and
drops it after (soil.journal's docstring describes the policies).
"""

from soil.journal import JournalFull, _errno, _seg_name

try:
    from micropython import const
except ImportError:  # CPython, CircuitPython without the micropython module
    def const(x):
        return x

_ENOSPC = const(28)
_VALID = const(0)   # soil.journal's _VALID and _EOF: what Journal._parse found
_EOF = const(3)


def make_room(j, size):
    """Before a write of `size` bytes that would pass `max_bytes`: drop the oldest segments ('drop_oldest') until it
    fits, or refuse the record (JournalFull)."""
    if j.policy == "drop_oldest":
        while j._total + size > j.max_bytes and drop_oldest(j):
            pass
    if j._total + size > j.max_bytes:
        refuse(j)


def after_enospc(j, size):
    """The card answered ENOSPC to a write of `size` bytes. 'drop_oldest': free the oldest segment and retry, again
    while the card keeps answering ENOSPC; stop when a drop gave no space back (a card that reports itself full
    whatever is deleted must not eat the cache). Returns the record's position, or raises JournalFull."""
    if j.policy == "drop_oldest":
        while drop_oldest(j):
            if j._card.free_bytes() <= 0:
                break
            try:
                return j._write(size)
            except OSError as e:
                if _errno(e) != _ENOSPC:
                    raise
    refuse(j)


def refuse(j):
    j.dropped += 1
    j.state = "full"
    try:
        j._persist(j._ack_seg, j._ack_off, j.dropped)
    except OSError:
        pass  # still counted in RAM; the next successful persist writes it
    raise JournalFull("journal full: record dropped (%d dropped so far)" % j.dropped)


def drop_oldest(j):
    """Give up the oldest unacknowledged segment (policy 'drop_oldest'). False if there is none."""
    if not j._segs:
        return False
    seg = j._segs[0]
    off = j._ack_off if seg == j._ack_seg else 0
    count = 0
    while True:
        kind, off = j._parse(seg, off)
        if kind == _EOF:
            break
        if kind == _VALID:
            count += 1
    size = j._card.size(_seg_name(seg))
    j._persist(seg + 1, 0, j.dropped + count)
    j.dropped += count
    j.pending -= count
    j._ack_idx += count
    j._ack_seg = seg + 1
    j._ack_off = 0
    if (j._rseg, j._roff) < (j._ack_seg, 0):
        j._rseg, j._roff, j._ridx = j._ack_seg, 0, j._ack_idx
    j._segs.pop(0)
    j._total -= size
    j._remove(seg)
    return True


def after_failed_write(j, seg, name):
    """Whatever part of the record reached the card is a torn tail: never append behind it."""
    try:
        size = j._card.size(name)
    except OSError:
        j._wsealed = True  # unknown: assume the worst
        return
    if size != j._wsize:
        j._wsealed = True  # part of the record landed
    j._total += size - j._wsize
    j._wsize = size
    if j._bseg == seg:
        j._bseg = None
