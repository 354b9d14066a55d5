"""CRC-32 (IEEE 802.3) in pure Python, table-driven: soil.crc's fallback where `binascii.crc32` is missing
(CircuitPython, minimal MicroPython builds). The 256-entry table is built on first use."""

_table = None


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


def crc32(data, crc=0):
    """CRC-32 of `data` (bytes-like), continuing from `crc` (same contract as binascii.crc32)."""
    global _table
    if _table is None:
        _table = _make_table()
    t = _table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
