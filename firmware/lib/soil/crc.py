"""CRC-32 (IEEE 802.3, the one `zlib.crc32` computes) for frames and journal records.

Uses the interpreter's C implementation where there is one (CPython's and most MicroPython ports' `binascii`)
and a table-driven fallback elsewhere, so both ends of the link compute the same value.
"""

try:
    from binascii import crc32 as _native_crc32
except ImportError:  # CircuitPython and minimal MicroPython builds
    _native_crc32 = None

_table = None


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


def _crc32_py(data, crc=0):
    global _table
    if _table is None:
        _table = _make_table()
    t = _table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32 of `data` (bytes-like), continuing from `crc`; always a non-negative int below 2**32."""
    if _native_crc32 is not None:
        return _native_crc32(data, crc) & 0xFFFFFFFF
    return _crc32_py(data, crc)


_HEX = b"0123456789abcdef"


def crc32_hex(data):
    """The CRC-32 of `data` as 8 lower-case hex digits (bytes)."""
    c = crc32(data)
    out = bytearray(8)
    for i in range(7, -1, -1):
        out[i] = _HEX[c & 0xF]
        c >>= 4
    return bytes(out)
