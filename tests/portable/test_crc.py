"""soil.crc against published CRC-32 (IEEE 802.3) vectors, on both paths: the interpreter's binascii.crc32 when
there is one, and the pure-Python table fallback (soil.crc.crc32_table) that CircuitPython and small MicroPython
builds use.

Runs unchanged under CPython and MicroPython; prints `OK crc <n> checks` at the end.
"""

import sys

from portable import Checks

import soil.crc as crc

checks = Checks("crc")

# (data, CRC-32) -- the first is the "check" value of the CRC catalogue; the others agree with zlib.crc32.
VECTORS = (
    (b"123456789", 0xCBF43926),
    (b"", 0x00000000),
    (b"a", 0xE8B7BE43),
    (b"abc", 0x352441C2),
    (b"The quick brown fox jumps over the lazy dog", 0x414FA339),
    (bytes(range(256)), 0x29058C73),
    (bytes(32), 0x190A55AD),
    (b"\xff" * 32, 0xFF6CAB0B),
)

print("crc32 path: %s (%s)" % (
    "native binascii.crc32" if crc.NATIVE else "pure-Python fallback",
    sys.implementation.name,
))

for data, want in VECTORS:
    what = "crc32(%r)" % (data[:12],)
    checks.equal(crc.crc32(data), want, what)
    checks.equal(crc.crc32_table(data), want, "crc32_table." + what)
    checks.equal(crc.crc32(bytearray(data)), want, what + " as bytearray")
    checks.equal(crc.crc32(memoryview(data)), want, what + " as memoryview")

checks.equal(crc.crc32(b"123456789"), 0xCBF43926, "the CRC catalogue's check value")
checks.equal(crc.crc32_hex(b"123456789"), b"cbf43926", "crc32_hex is 8 lower-case hex digits")
checks.equal(crc.crc32_hex(b""), b"00000000", "crc32_hex pads with zeros")
checks.equal(crc.crc32_hex(b"a"), b"e8b7be43", "crc32_hex(b'a')")

# Continuing from an earlier value gives the CRC of the concatenation, on both paths.
for split in range(10):
    head, tail = b"123456789"[:split], b"123456789"[split:]
    checks.equal(crc.crc32(tail, crc.crc32(head)), 0xCBF43926, "crc32 continued at %d" % split)
    checks.equal(crc.crc32_table(tail, crc.crc32_table(head)), 0xCBF43926, "crc32_table continued at %d" % split)

# The fallback and the public function agree on every length 0..300 of deterministic pseudo-random data
# (a 32-bit LCG: no `random` module needed, the same bytes on every interpreter).
state = 12345
data = bytearray(300)
for i in range(len(data)):
    state = (state * 1103515245 + 12345) & 0xFFFFFFFF
    data[i] = state >> 24
for n in range(0, 301, 7):
    a = crc.crc32(data[:n])
    b = crc.crc32_table(data[:n])
    checks.equal(b, a, "crc32_table == crc32 on %d bytes" % n)
    checks.check(0 <= a <= 0xFFFFFFFF, "crc32 is a non-negative 32-bit value")

checks.done()
