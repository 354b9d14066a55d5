"""Reading an A/B slot file (soil.slots): which slot is valid and newest. Once per boot for each slot file.

Its own module because a board runs it so rarely: soil.ondemand loads it for the call and drops it after.
"""

from soil.crc import crc32
from soil.slots import _errno

try:
    from micropython import const
except ImportError:  # CPython, CircuitPython without the micropython module
    def const(x):
        return x

_HEADER = const(6)  # soil.slots' layout: gen u32 + len u16, payload, crc u32
_CRC = const(4)
_ENOENT = const(2)


def load(s):
    """SlotFile.load(): the newest valid payload of SlotFile `s`, or None; remembers where the next store goes."""
    best = None
    s._gen = 0
    s._newest = 1
    try:
        f = s._card.open(s.name, "rb")
    except OSError as e:
        if _errno(e) != _ENOENT:
            raise
        s._loaded = True
        return None
    try:
        for slot in (0, 1):
            payload, gen = _read_slot(s, f, slot)
            if payload is not None and gen > s._gen:
                best = payload
                s._gen = gen
                s._newest = slot
    finally:
        f.close()
    s._loaded = True
    return best


def _read_slot(s, f, slot):
    buf = s._buf
    f.seek(slot * s.span)
    mv = memoryview(buf)
    n = f.readinto(mv[:_HEADER])
    if n != _HEADER:
        return None, 0
    gen = int.from_bytes(bytes(buf[0:4]), "little")
    length = buf[4] | (buf[5] << 8)
    if gen == 0 or length > s.size:
        return None, 0
    want = length + _CRC
    n = f.readinto(mv[_HEADER:_HEADER + want])
    if n != want:
        return None, 0
    end = _HEADER + length
    stored = int.from_bytes(bytes(buf[end:end + _CRC]), "little")
    if crc32(mv[:end]) != stored:
        return None, 0
    return bytes(buf[_HEADER:end]), gen
