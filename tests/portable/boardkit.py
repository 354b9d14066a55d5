"""What the portable board scripts hand a collector, in the common subset of CPython and MicroPython (imported by
test_collector_portable.py and tests/test_downlink.py's scripts): ticks that wrap at 2**30 like MicroPython's, an
I2C controller over the byte-level chip models, a fixed ADC, a link that records what the board writes, and the
gateway's frames as the gateway encodes them.
"""

from soil import codec

TICKS_PERIOD = 1 << 30
_HALF = TICKS_PERIOD // 2


class Ticks:
    """The board's tick counter (wrapping at 2**30 like MicroPython's) and the simulated time the chips run on."""

    def __init__(self, start):
        self.now = start
        self.ms = 0

    def ticks_ms(self):
        return self.now & (TICKS_PERIOD - 1)

    def clock_ms(self):
        return self.ms

    def advance(self, ms):
        self.now = (self.now + ms) & (TICKS_PERIOD - 1)
        self.ms += ms


def ticks_diff(a, b):
    return ((a - b + _HALF) & (TICKS_PERIOD - 1)) - _HALF


class ChipI2C:
    """machine.I2C's readfrom_mem/writeto_mem/writeto over byte-level targets (the chip models) by 7-bit address:
    START, the bytes, STOP, as the simulated buses drive them; OSError(19) when nothing answers."""

    def __init__(self):
        self.targets = {}

    def _start(self, addr, read):
        dev = self.targets.get(addr)
        if dev is None or dev.on_start(read) is False:
            raise OSError(19, "no ACK from 0x%02x" % addr)
        return dev

    def readfrom_mem(self, addr, memaddr, nbytes):
        dev = self._start(addr, False)
        dev.on_write(memaddr)
        dev.on_start(True)                   # repeated START
        out = bytearray(nbytes)
        for i in range(nbytes):
            out[i] = dev.on_read()
        dev.on_stop()
        return bytes(out)

    def writeto_mem(self, addr, memaddr, buf):
        dev = self._start(addr, False)
        dev.on_write(memaddr)
        for b in buf:
            dev.on_write(b)
        dev.on_stop()

    def writeto(self, addr, buf):
        dev = self._start(addr, False)
        for b in buf:
            dev.on_write(b)
        dev.on_stop()
        return len(buf)


class FixedADC:
    def __init__(self, values):
        self.values = values
        self.reads = 0

    def read_u16(self):
        v = self.values[self.reads % len(self.values)]
        self.reads += 1
        return v


class RecordingLink:
    """Accepts everything the board writes (kept in `sent`); `read()` hands over what the script queued."""

    def __init__(self):
        self.sent = b""
        self.inbox = b""

    def write(self, data):
        self.sent += bytes(data)
        return len(data)

    def read(self):
        data = self.inbox
        self.inbox = b""
        return data

    def take(self):
        """The frames the board wrote since the last call, checked by the codec's envelope, numbers as ints."""
        out = []
        for line in self.sent.split(b"\n")[:-1]:
            kind, f = codec.envelope(line)
            out.append((kind, tuple(int(x) if x.isdigit() else x for x in f)))
        self.sent = b""
        return out


def gateway_frame(kind, *fields):
    """What the gateway would send (gateway/frames.py encodes the same bytes)."""
    return codec.encode(kind, fields)


def of_kind(decoded, kind):
    return [f for k, f in decoded if k == kind]
