"""A register-level DS1307 for the simulated `machine.I2C` (MicroPython subset), written from the datasheet.

64 bytes of registers behind an address pointer that auto-increments and wraps from 0x3F to 0x00:

    0x00 CH|10s|s   0x01 0|10m|m   0x02 0|12/24|PM or 10h|10h|h   0x03 00000|day   0x04 00|10d|d   0x05 000|10mo|mo
    0x06 10y|y      0x07 OUT|00|SQWE|00|RS1|RS0      0x08..0x3F 56 bytes of battery-backed RAM

Rules: the time registers count in BCD while CH (0x00 bit 7) is clear; a write to the seconds register restarts
the one-second countdown; bits the datasheet shows as 0 are stored as 0; leap years are every fourth year
(2000-2099); 12-hour mode counts 12, 1 .. 11 and toggles PM. At first power-up without a battery the registers are
undefined except that CH is set: the oscillator does not run until someone clears it.
"""

_MASK = (0xFF, 0x7F, 0x7F, 0x07, 0x3F, 0x1F, 0xFF, 0x93)
_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _bcd(v):
    return (v // 10) << 4 | v % 10


def _dec(b):
    return (b >> 4) * 10 + (b & 0x0F)


class DS1307Chip:
    ADDRESS = 0x68

    def __init__(self, clock_ms, regs=None):
        self._clock = clock_ms
        if regs is None:
            self.regs = bytearray(64)
            self.regs[0] = 0x80              # CH set at first power-up
            self.regs[3] = 1
            self.regs[4] = 1
            self.regs[5] = 1
        else:
            self.regs = bytearray(regs)
        self.ptr = 0
        self._last = clock_ms()
        self._sub = 0

    # --- time keeping ---------------------------------------------------------------------------------------
    def advance(self, seconds):
        """Run the oscillator for `seconds` (e.g. while the board was off on battery)."""
        if not self.regs[0] & 0x80:
            for _ in range(seconds):
                self._tick()

    def _catch_up(self):
        now = self._clock()
        self._sub += now - self._last
        self._last = now
        if self.regs[0] & 0x80:
            self._sub = 0
            return
        while self._sub >= 1000:
            self._sub -= 1000
            self._tick()

    def _tick(self):
        r = self.regs
        s = _dec(r[0] & 0x7F) + 1
        if s < 60:
            r[0] = _bcd(s)
            return
        r[0] = 0
        m = _dec(r[1]) + 1
        if m < 60:
            r[1] = _bcd(m)
            return
        r[1] = 0
        if r[2] & 0x40:                      # 12-hour mode: 11 AM -> 12 PM -> 1 PM ... 11 PM -> 12 AM (new day)
            h = _dec(r[2] & 0x1F) + 1
            pm = r[2] & 0x20
            if h == 12:
                pm ^= 0x20
            if h == 13:
                h = 1
            r[2] = 0x40 | pm | _bcd(h)
            if not (h == 12 and not pm):
                return
        else:
            h = _dec(r[2] & 0x3F) + 1
            if h < 24:
                r[2] = _bcd(h)
                return
            r[2] = 0
        r[3] = r[3] % 7 + 1
        year = _dec(r[6])
        month = _dec(r[5])
        last = _MDAYS[(month - 1) % 12] + (1 if month == 2 and year % 4 == 0 else 0)
        d = _dec(r[4]) + 1
        if d <= last:
            r[4] = _bcd(d)
            return
        r[4] = 1
        if month < 12:
            r[5] = _bcd(month + 1)
            return
        r[5] = 1
        r[6] = _bcd((year + 1) % 100)

    # --- the I2C side (called by the simulated bus) --------------------------------------------------------
    def i2c_write(self, data):
        """A write transaction: the first byte sets the pointer, the rest are stored from there."""
        self._catch_up()
        if not data:
            return
        self.ptr = data[0] & 0x3F
        for b in data[1:]:
            p = self.ptr
            self.regs[p] = b & _MASK[p] if p < 8 else b
            if p == 0:
                self._sub = 0                # writing the seconds restarts the countdown chain
            self.ptr = (p + 1) & 0x3F

    def i2c_read(self, n):
        self._catch_up()
        out = bytearray(n)
        for i in range(n):
            out[i] = self.regs[self.ptr]
            self.ptr = (self.ptr + 1) & 0x3F
        return bytes(out)
