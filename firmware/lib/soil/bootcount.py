"""The boot counter: the middle part of a reading's identity (board, boot, seq).

A reading's identity must never be reused, or an idempotent insert would mistake a new reading for a resend of an
old one. The counter is kept in two places that fail independently: the DS1307's battery-backed NVRAM and an A/B
slot file on the SD card (soil.slots). At start-up the board takes the larger of the two, adds one, and writes it
back to both before the first sample, so losing either the battery or the card alone never repeats a boot number.

Record (8 bytes, the same in both places): `BT`, the boot number (u32 LE), the low 16 bits of the CRC-32 of the
first six bytes (u16 LE). Anything else reads as 0: a new battery's random RAM, a blank card.

The `dropped` counter (DropCounter, below) is kept the same way: the readings this board lost for good, over its
lifetime, never reset by a reboot (the S frame's `dropped`, docs/PROTOCOL.md).

The DS1307's caller NVRAM (soil.ds1307.NVRAM_SIZE = 48 bytes, registers 0x08..0x37; the driver keeps 0x38..0x3F
for its own "set by a gateway" marker). Nothing else on the board uses it: the pair's heartbeat state lives on
the I2C wire and in RAM (soil.heartbeat), not in NVRAM.

    offset  bytes  register     what
    0       8      0x08..0x0F   boot counter   `BT` | boot u32 | crc16
    8       12     0x10..0x1B   dropped        `DR` | total u32 | seen u32 | crc16 (the card's record; `seen`
                                               is read only from the card)
    20      28     0x1C..0x37   free
"""

from soil import const
from soil.crc import crc32
from soil.slots import SlotFile

_NVRAM_OFFSET = const(0)    # bytes 0..7 of the DS1307's caller NVRAM area
_MAGIC = b"BT"
CARD_FILE = "boot.slt"
_DROP_NVRAM_OFFSET = const(8)   # bytes 8..19: the dropped counter (the layout above)
_DROP_MAGIC = const(b"DR")      # (consts with a leading `_`: no name kept on the board)
_DROP_FILE = const("drop.slt")


def _pack(value, magic=_MAGIC, more=b""):
    body = magic + value.to_bytes(4, "little") + more
    return body + (crc32(body) & 0xFFFF).to_bytes(2, "little")


def _unpack(data, magic=_MAGIC, size=6):
    """The u32 at bytes 2..5 of a record `magic | ... | crc16` of `size` bytes before its CRC (with the record's
    body: a u32 more at 6..9 in the dropped counter's); (0, None) for anything else."""
    if not data or len(data) < size + 2 or bytes(data[:2]) != magic:
        return 0, None
    body = bytes(data[:size])
    if (crc32(body) & 0xFFFF).to_bytes(2, "little") != bytes(data[size:size + 2]):
        return 0, None
    return int.from_bytes(body[2:6], "little"), body


def next_boot(rtc=None, card=None):
    """Advance and persist the boot counter; returns (boot, stores) where `stores` counts the places it was
    written to (0 means neither the NVRAM nor the card could keep it: the caller must report that)."""
    slot = None
    found = 0
    if rtc is not None:
        try:
            found = max(found, _unpack(rtc.nvram_read(_NVRAM_OFFSET, 8))[0])
        except OSError:
            rtc = None
    if card is not None:
        try:
            slot = SlotFile(card, CARD_FILE, 16)
            data = slot.load()
            if data:
                found = max(found, _unpack(data)[0])
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


class DropCounter:
    """The readings this board lost for good (a full card's policy, a RAM queue that overflowed), over its lifetime.

    Kept like the boot number, in the NVRAM and on the card (`drop.slt`, an A/B slot), the same 12 bytes:
    `DR` | total u32 | seen u32 | crc16; the larger total wins, so a dead battery or a new card alone never resets it.
    It rises through `add(n)` (a loss the collector saw: RAM) and `add(0, j)` with the journal's own never-reset
    counter of the card it is on (soil.journal's `dropped`): `seen` is the journal count already in the total, kept
    on that same card, so a loss the journal persisted just before a power cut (and this counter did not) is added
    at the next start, once, and a new card (a blank record, its journal counting from 0) adds only its own losses.
    `add(0, None)`: the card is away; whichever card comes back, its record is read again.

    Written when it rises: the card first, then the NVRAM, so a cut between the two can leave the card ahead (the
    larger wins) but never a total without its `seen`. A card that cannot take it now (pulled, failing) gets it at
    the next call; the NVRAM alone keeps it meanwhile."""

    def __init__(self, rtc=None, card=None):
        self._rtc = rtc
        self._slot = None if card is None else SlotFile(card, _DROP_FILE, 12)
        self.seen = None          # the journal count included in `total`, from the card's record; None: not read
        self.total = 0
        self._stale = True        # a store is behind the total
        if rtc is not None:
            try:
                self.total = _unpack(rtc.nvram_read(_DROP_NVRAM_OFFSET, 12), _DROP_MAGIC, 10)[0]
            except OSError:
                self._rtc = None
        self.add(0)

    def add(self, n, j=-1):
        """`n` more readings gone for good; `j`: the journal's count on the card now (-1: not looked at)."""
        if j is None:
            self.seen = None
        total = self.total + n
        if self.seen is None and j is not None and self._slot is not None:
            try:
                v, body = _unpack(self._slot.load(), _DROP_MAGIC, 10)
                self.seen = 0 if body is None else int.from_bytes(body[6:10], "little")
                self._stale = self._stale or v != total
                total = max(total, v)
            except OSError:
                pass
        if self.seen is not None and j is not None and j > self.seen:
            total += j - self.seen
            self.seen = j
        if total == self.total and (not self._stale or self.seen is None):
            return                # nothing new, or only a card that cannot be read now is behind
        self.total = total = min(total, 0x7FFFFFFF)   # the S frame's field: 0..2**31-1
        self._stale = self.seen is None
        record = _pack(total, _DROP_MAGIC, (self.seen or 0).to_bytes(4, "little"))
        if not self._stale:
            try:
                self._slot.store(record)
            except OSError:
                self._stale = True
        if self._rtc is not None:
            try:
                self._rtc.nvram_write(_DROP_NVRAM_OFFSET, record)    # its `seen` is not read: the card's is
            except OSError:
                pass
