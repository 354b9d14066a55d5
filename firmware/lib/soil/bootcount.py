"""The boot counter: the middle part of a reading's identity (board, boot, seq).

A reading's identity must never be reused, or an idempotent insert would mistake a new reading for a resend of an
old one. The counter is kept in two places that fail independently: the DS1307's battery-backed NVRAM and an A/B
slot file on the SD card (soil.slots). At start-up the board takes the larger of the two, adds one, and writes it
back to both before the first sample, so losing either the battery or the card alone never repeats a boot number.

Record (8 bytes, the same in both places): `BT`, the boot number (u32 LE), the low 16 bits of the CRC-32 of the
first six bytes (u16 LE). Anything else reads as 0: a new battery's random RAM, a blank card.
"""

from soil import const
from soil.crc import crc32
from soil.slots import SlotFile

_NVRAM_OFFSET = const(0)    # bytes 0..7 of the DS1307's caller NVRAM area
_MAGIC = const(b"BT")
CARD_FILE = "boot.slt"


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
            slot = SlotFile(card, CARD_FILE, 16)
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
