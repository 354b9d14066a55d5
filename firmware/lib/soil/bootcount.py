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
    8       8      0x10..0x17   dropped        `DR` | total u32 | crc16
    16      32     0x18..0x37   free
"""

from soil import const
from soil.crc import crc32
from soil.slots import SlotFile

_NVRAM_OFFSET = const(0)    # bytes 0..7 of the DS1307's caller NVRAM area
_MAGIC = b"BT"
CARD_FILE = "boot.slt"
_DROP_NVRAM_OFFSET = const(8)   # bytes 8..15: the dropped counter (the layout above)
_DROP_MAGIC = b"DR"
DROP_FILE = "drop.slt"
_MAX_U32 = const(0xFFFFFFFF)


def _pack(boot):
    body = _MAGIC + boot.to_bytes(4, "little")
    return body + (crc32(body) & 0xFFFF).to_bytes(2, "little")


def _unpack(data, magic=_MAGIC, words=1):
    """The `words` u32 values of a record `magic | words * u32 | crc16`; None for anything else."""
    size = 2 + 4 * words
    if not data or len(data) < size + 2 or bytes(data[:2]) != magic:
        return None
    body = bytes(data[:size])
    if (crc32(body) & 0xFFFF).to_bytes(2, "little") != bytes(data[size:size + 2]):
        return None
    return [int.from_bytes(body[2 + 4 * i:6 + 4 * i], "little") for i in range(words)]


def _pack_words(magic, values):
    body = magic + b"".join(v.to_bytes(4, "little") for v in values)
    return body + (crc32(body) & 0xFFFF).to_bytes(2, "little")


def next_boot(rtc=None, card=None):
    """Advance and persist the boot counter; returns (boot, stores) where `stores` counts the places it was
    written to (0 means neither the NVRAM nor the card could keep it: the caller must report that)."""
    slot = None
    found = 0
    if rtc is not None:
        try:
            found = max(found, (_unpack(rtc.nvram_read(_NVRAM_OFFSET, 8)) or (0,))[0])
        except OSError:
            rtc = None
    if card is not None:
        try:
            slot = SlotFile(card, CARD_FILE, 16)
            data = slot.load()
            if data:
                found = max(found, (_unpack(data) or (0,))[0])
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

    Kept like the boot number, in the NVRAM (`DR` | total) and on the card (DROP_FILE, an A/B slot:
    `DR` | total | seen | crc16); at start-up the larger total wins, so a dead battery or a new card alone never
    resets it. It rises through `count(n)` (a loss the collector saw: RAM) and `journal_total(j)` (the journal's own
    never-reset counter of the card it is on, soil.journal's `dropped`): `seen` is the journal count already added,
    kept on that same card, so a loss the journal persisted just before a power cut (and the counter did not) is
    added at the next start, once, and a new card (its journal counting from 0, its record blank) adds only its
    own losses; after `card_away()` the record is read again from whichever card is back.

    Written when it rises: the card first, then the NVRAM, so a cut between the two leaves a total on the card that
    the NVRAM's cannot hide, and never a total without its `seen`. A card that cannot take it now (pulled, failing)
    gets it at the next rise or `journal_total` call; the NVRAM alone keeps it meanwhile."""

    def __init__(self, rtc=None, card=None):
        self._rtc = rtc
        self._card = card
        self._slot = None
        self.total = 0
        self.seen = None          # the journal count included in `total`, from this card's record; None: not read
        self.stale = False        # the card's copy is behind the total (it could not be written)
        if rtc is not None:
            try:
                v = _unpack(rtc.nvram_read(_DROP_NVRAM_OFFSET, 8), _DROP_MAGIC)
                if v is not None:
                    self.total = v[0]
            except OSError:
                self._rtc = None
        if self._load_card() and self.stale:
            self._store()

    def _load_card(self):
        """Read the card's record; True once it is known (a blank card: total 0, seen 0)."""
        if self.seen is not None:
            return True
        if self._card is None:
            return False
        try:
            if self._slot is None:
                self._slot = SlotFile(self._card, DROP_FILE, 12)
            v = _unpack(self._slot.load(), _DROP_MAGIC, 2)
        except OSError:
            return False
        if v is None:
            v = (0, 0)
        self.seen = v[1]
        if v[0] > self.total:
            self.total = v[0]
            self._store_nvram()   # a new battery: the NVRAM gets the card's total back
        elif v[0] < self.total:
            self.stale = True     # a new card: it gets the NVRAM's total at the next write
        return True

    def count(self, n):
        """`n` more readings are gone for good."""
        if n > 0:
            self.total = min(self.total + n, _MAX_U32)
            self._store()

    def journal_total(self, j):
        """The journal on the card counts `j` dropped in all (it is open: its count was read from the card)."""
        if not self._load_card():
            return
        if j > self.seen:
            self.total = min(self.total + j - self.seen, _MAX_U32)
            self.seen = j
            self._store()
        elif self.stale:
            self._store()

    def card_away(self):
        """The card is pulled or failing: whichever card comes back, its own record says what of its journal's
        count is already in the total (a new card's blank record: none)."""
        self.seen = None
        self.stale = True

    def _store(self):
        if self._load_card():
            try:
                self._slot.store(_pack_words(_DROP_MAGIC, (self.total, self.seen)))
                self.stale = False
            except OSError:
                self.stale = True
        else:
            self.stale = True
        self._store_nvram()

    def _store_nvram(self):
        if self._rtc is not None:
            try:
                self._rtc.nvram_write(_DROP_NVRAM_OFFSET, _pack_words(_DROP_MAGIC, (self.total,)))
            except OSError:
                pass
