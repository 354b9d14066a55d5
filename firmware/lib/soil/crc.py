"""CRC-32 (IEEE 802.3, the one `zlib.crc32` computes) for frames and journal records.

Uses the interpreter's C implementation where there is one (CPython's and most MicroPython ports' `binascii`)
and the table-driven soil.crc_table elsewhere (CircuitPython), so both ends of the link compute the same value and
a board with `binascii.crc32` never loads the table's code.
"""

try:
    from binascii import crc32 as _crc32
except ImportError:  # CircuitPython and minimal MicroPython builds
    from soil.crc_table import crc32 as _crc32


def crc32(data, crc=0):
    """CRC-32 of `data` (bytes-like), continuing from `crc`; always a non-negative int below 2**32."""
    return _crc32(data, crc) & 0xFFFFFFFF


_HEX = b"0123456789abcdef"


def crc32_hex(data):
    """The CRC-32 of `data` as 8 lower-case hex digits (bytes)."""
    c = crc32(data)
    out = bytearray(8)
    for i in range(7, -1, -1):
        out[i] = _HEX[c & 0xF]
        c >>= 4
    return bytes(out)
