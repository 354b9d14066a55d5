"""A/B slot store: a small record on the card that survives a power cut in the middle of its own update.

Why: the journal's ack pointer, the dropped-readings counter and the boot counter are rewritten often and must never
be lost or half-written. Rewriting one copy in place is unsafe (a cut leaves neither the old nor the new value), and
writing a new file then deleting the old one needs a rename that FAT does not make atomic. Two slots that are
written alternately are the classic answer: a cut can only damage the slot being written, and the other slot still
holds the previous value.

On-card format of `<name>` (fixed size, created once with zeros):

    offset 0       slot 0   gen:u32 LE | len:u16 LE | payload (len bytes) | crc:u32 LE   (zero padding to SPAN)
    offset SPAN    slot 1   the same

- `crc` is the CRC-32 of `gen | len | payload`.
- `SPAN` is the slot size rounded up to a multiple of 512 bytes, so each slot lives in its own sector: a torn write
  that also scrambles the rest of its sector (as an SD card can) still cannot reach the other slot.
- `load()` returns the payload of the valid slot with the highest generation; `store()` writes generation + 1 into
  the other slot, in place ('r+b'), and flushes. An in-place rewrite needs no new cluster, so the store still works
  on a full card.
- Generations are 32-bit; at one store per second they last 136 years.
"""

from soil import const
from soil.card import ENOENT, errno_of
from soil.crc import crc32

_HEADER = const(6)  # gen u32 + len u16
_CRC = const(4)
_SECTOR = const(512)


class SlotFile:
    """A record of at most `size` bytes kept in two alternately written slots of the card file `name`."""

    def __init__(self, card, name, size):
        if size < 0 or size > 0xFFFF:
            raise ValueError("slot payload size out of range")
        self._card = card
        self.name = name
        self.size = size
        self.span = ((_HEADER + size + _CRC + _SECTOR - 1) // _SECTOR) * _SECTOR
        self._buf = bytearray(_HEADER + size + _CRC)  # the one buffer for reads and writes
        self._gen = 0  # generation of the newest valid slot, 0 = none
        self._newest = 1  # index of the newest valid slot; the next store goes to the other one
        self._loaded = False

    def load(self):
        """The newest valid payload (bytes), or None when neither slot is valid (first boot, or both destroyed);
        remembers where the next store goes."""
        best = None
        self._gen = 0
        self._newest = 1
        try:
            f = self._card.open(self.name, "rb")
        except OSError as e:
            if errno_of(e) != ENOENT:
                raise
            self._loaded = True
            return None
        try:
            for slot in (0, 1):
                payload, gen = self._read_slot(f, slot)
                if payload is not None and gen > self._gen:
                    best = payload
                    self._gen = gen
                    self._newest = slot
        finally:
            f.close()
        self._loaded = True
        return best

    def _read_slot(self, f, slot):
        buf = self._buf
        f.seek(slot * self.span)
        mv = memoryview(buf)
        n = f.readinto(mv[:_HEADER])
        if n != _HEADER:
            return None, 0
        gen = int.from_bytes(bytes(buf[0:4]), "little")
        length = buf[4] | (buf[5] << 8)
        if gen == 0 or length > self.size:
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

    def store(self, payload):
        """Write `payload` as the new newest record; flushed before returning. OSError from the card propagates
        and leaves the previous record intact (only the slot being written can be damaged)."""
        n = len(payload)
        if n > self.size:
            raise ValueError("payload larger than the slot")
        if not self._loaded:
            self.load()
        self._ensure_file()
        gen = self._gen + 1
        slot = self._newest ^ 1
        buf = self._buf
        buf[0:4] = gen.to_bytes(4, "little")
        buf[4] = n & 0xFF
        buf[5] = n >> 8
        buf[_HEADER:_HEADER + n] = payload
        end = _HEADER + n
        buf[end:end + _CRC] = crc32(memoryview(buf)[:end]).to_bytes(4, "little")
        f = self._card.open(self.name, "r+b")
        try:
            f.seek(slot * self.span)
            f.write(memoryview(buf)[:end + _CRC])
            f.flush()
        finally:
            f.close()
        self._gen = gen
        self._newest = slot

    def _ensure_file(self):
        """Create the file at its full size (both slots) before any slot is written in place. A file that is
        shorter holds no valid slot beyond its end (creation was cut short), so recreating it loses nothing
        that `load()` could have returned from the missing part; a valid slot 0 in a short file cannot exist
        because slots are only written after creation completed."""
        try:
            if self._card.size(self.name) >= 2 * self.span:
                return
        except OSError as e:
            if errno_of(e) != ENOENT:
                raise
        buf = self._buf
        for i in range(len(buf)):
            buf[i] = 0
        left = 2 * self.span
        f = self._card.open(self.name, "wb")
        try:
            while left:
                k = min(left, len(buf))
                f.write(memoryview(buf)[:k])
                left -= k
            f.flush()
        finally:
            f.close()
        self._gen = 0
        self._newest = 1
