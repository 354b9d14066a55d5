"""CRC-32 (IEEE 802.3, the one `zlib.crc32` computes) for frames, journal records and slot files.

Uses the interpreter's C implementation where there is one (CPython's and most MicroPython ports' `binascii`) and
a table-driven pure-Python one elsewhere (CircuitPython, minimal MicroPython builds), so both ends of the link
compute the same value. The table (1 KB of ints) is built on first use, so a board with `binascii.crc32` never
builds it.
"""

from soil import const

try:
    from binascii import crc32 as _native
except ImportError:  # CircuitPython and minimal MicroPython builds
    _native = None

NATIVE = _native is not None    # which path crc32() takes here (the tests check both)
_table = None


def crc32_table(data, crc=0):
    """CRC-32 of `data` in pure Python (the same contract as binascii.crc32); the fallback, tested on its own."""
    global _table
    if _table is None:
        _table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            _table.append(c)
    t = _table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32 of `data` (bytes-like), continuing from `crc`; always a non-negative int below 2**32."""
    if _native is None:
        return crc32_table(data, crc)
    return _native(data, crc) & 0xFFFFFFFF


_HEX = const(b"0123456789abcdef")


def crc32_hex(data):
    """The CRC-32 of `data` as 8 lower-case hex digits (bytes)."""
    c = crc32(data)
    out = bytearray(8)
    for i in range(7, -1, -1):
        out[i] = _HEX[c & 0xF]
        c >>= 4
    return bytes(out)
