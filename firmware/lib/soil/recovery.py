"""What a board reads back after a boot: its boot counter, the journal's state (`Journal.open()`, once per boot and
again when a failed card comes back) and the newest value of an A/B slot file (`SlotFile.load()`).

Its own module because a board runs it so rarely: soil.ondemand loads it for the call and drops it after, so the
running firmware does not hold its code in RAM (soil.journal and soil.slots describe their formats).

The boot counter is the middle part of a reading's identity (board, boot, seq). A reading's identity must never be
reused, or an idempotent insert would mistake a new reading for a resend of an old one. The counter is kept in two
places that fail independently: the DS1307's battery-backed NVRAM and an A/B slot file on the SD card. At start-up
the board takes the larger of the two, adds one, and writes it back to both before the first sample, so losing
either the battery or the card alone never repeats a boot number.
"""

from soil.crc import crc32
from soil.journal import _errno, _seg_name

try:
    from micropython import const
except ImportError:  # CPython, CircuitPython without the micropython module
    def const(x):
        return x

_NL = const(0x0A)
_VALID = const(0)   # soil.journal's _VALID: what Journal._step found
_ENOENT = const(2)
_HEADER = const(6)  # soil.slots' layout: gen u32 + len u16, payload, crc u32
_CRC = const(4)
_NVRAM_OFFSET = const(0)    # the boot counter: bytes 0..7 of the DS1307's caller NVRAM area
_MAGIC = const(b"BT")
_CARD_NAME = const("boot.slt")


# --- the boot counter ---------------------------------------------------------------------------------------------

def _pack(boot):
    body = _MAGIC + boot.to_bytes(4, "little")
    return body + (crc32(body) & 0xFFFF).to_bytes(2, "little")


def _unpack(data):
    if not data or len(data) < 8 or data[:2] != _MAGIC:
        return 0
    body = bytes(data[:6])
    if (crc32(body) & 0xFFFF).to_bytes(2, "little") != bytes(data[6:8]):
        return 0
    return int.from_bytes(body[2:6], "little")


def next_boot(rtc=None, card=None):
    """Advance and persist the boot counter; returns (boot, stores) where `stores` counts the places it was
    written to (0 means neither the NVRAM nor the card could keep it: the caller must report that)."""
    slot = None
    found = 0
    if rtc is not None:
        try:
            found = max(found, _unpack(rtc.nvram_read(_NVRAM_OFFSET, 8)))
        except OSError:
            rtc = None
    if card is not None:
        try:
            from soil.slots import SlotFile
            slot = SlotFile(card, _CARD_NAME, 16)
            data = slot.load()
            if data:
                found = max(found, _unpack(data))
        except OSError:
            slot = None
    boot = found + 1 if found < 0x7FFFFFFE else 1
    stores = 0
    record = _pack(boot)
    if rtc is not None:
        try:
            rtc.nvram_write(_NVRAM_OFFSET, record)
            stores += 1
        except OSError:
            pass
    if slot is not None:
        try:
            slot.store(record)
            stores += 1
        except OSError:
            pass
    return boot, stores


# --- the journal ----------------------------------------------------------------------------------------------

def open_journal(j):
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


# --- slot files (soil.slots) ---------------------------------------------------------------------------------

def load_slot(s):
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
