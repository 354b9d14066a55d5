"""Just enough of the gateway to exercise a board's link: confirm hellos, ack reading frames in order and events,
set a clock that is not ok. (The real gateway, with its database, is tested in tests/test_pair.py and friends.)

Written on its own, with binascii's CRC and nothing of the firmware's: it checks the board's framing independently,
and it imports none of the firmware's modules, so a heap run that sets it up before the firmware (simpeak.py) is
not charged for them.
"""

import binascii

_SET_TIME = "2026-05-04T03:02:01Z"


def seal(body):
    """`body*crc32hex\n`: the envelope the board's frames and the pair's heartbeat records share."""
    return body + b"*" + b"%08x" % (binascii.crc32(body) & 0xFFFFFFFF) + b"\n"


def _frame(body):
    return b"$" + seal(body)


def _fields(line):
    """The fields of a well-formed frame line (without its newline), or None."""
    start = line.rfind(b"$")
    star = line.rfind(b"*")
    if start < 0 or star < start:
        return None
    body = line[start + 1:star]
    if line[star + 1:].strip() != b"%08x" % (binascii.crc32(body) & 0xFFFFFFFF):
        return None
    return body.split(b",")


class Gateway:
    def __init__(self, rx, tx):
        self.rx = rx                         # gateway -> board
        self.tx = tx                         # board -> gateway
        self.buf = b""
        self.expected = None
        self.boot = None
        self.clock_set = False

    def step(self):
        data = self.buf + bytes(self.tx.pending)
        self.tx.pending = bytearray()
        lines = data.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            f = _fields(line)
            if f is None:
                continue
            if f[0] == b"H" and len(f) == 10:
                n_next = int(f[4])
                self.boot = int(f[3])
                self.expected = n_next
                self.rx.write(_frame(b"A,%d,%d" % (n_next - 1, self.boot)))
                if f[6] != b"ok" and not self.clock_set:
                    self.clock_set = True
                    self.rx.write(_frame(b"T," + _SET_TIME.encode()))
            elif f[0] == b"R" and len(f) == 7 and self.expected is not None:
                n = int(f[1])
                if n == self.expected:
                    self.expected += 1
                    self.rx.write(_frame(b"A,%d,%d" % (n, self.boot)))
                elif n < self.expected:
                    self.rx.write(_frame(b"A,%d,%d" % (self.expected - 1, self.boot)))
            elif f[0] == b"E" and len(f) == 6:
                self.rx.write(_frame(b"K,%s,%s" % (f[1], f[2])))     # events: stored at once, acknowledged
