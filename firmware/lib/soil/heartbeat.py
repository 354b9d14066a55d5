"""The heartbeat between a master and a standby collector over a dedicated I2C wire (the book's Listing 8-6, fixed).

The standby is an I2C target in "memory mode" (MicroPython's `machine.I2CTarget(mem=...)`, CircuitPython's
`i2ctarget` behind the same interface, the simulation's `MemTarget`). Its memory has two records:

    0x00..0x5F  beat    written by the master every interval: who it is, its boot, its last sample (seq and
                        time), whether its uplink works, and whether it is active or returning after a reset
    0x60..0x8F  status  read by the master after each beat: the standby's state, since when it has been active,
                        and the time from which it hands the sampling back

Both records are text with a CRC (`B1,...*crc\\n`, `S1,...*crc\\n`) so a torn or half-updated record is rejected,
and a logic analyser shows them as readable ASCII.

The book's standby accumulated `elapsedTime += millis() - startTime` on every loop, adding the whole time since
the last beat again and again (flaw F10); `Watchdog` measures one tick difference, wrap-around safe. The book
blinked an LED with a one-second delay inside the receive interrupt (F11); `Mailbox`'s handler only sets a flag.
"""

from soil.crc import crc32_hex

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

ADDRESS = const(8)
MEM_SIZE = const(144)
BEAT_OFF = const(0)
BEAT_LEN = const(96)
STATUS_OFF = const(96)
STATUS_LEN = const(48)

WATCHING = "watching"     # standby: the master is alive, samples go to the ring
ASKING = "asking"         # standby: no beat for the timeout; asking the gateway (the witness)
ACTIVE = "active"         # collecting and publishing
HANDBACK = "handback"     # standby: the master is back; publishing until the agreed hand-back time
RETURNING = "returning"   # master: back after a reset while the standby is active; waiting for the hand-back
STATES = (WATCHING, ASKING, ACTIVE, HANDBACK, RETURNING)


def _seal(body):
    return body + b"*" + crc32_hex(body) + b"\n"


def _open(buf):
    """The body of a sealed record in `buf` (bytes-like), or None if it is torn, stale garbage or corrupt."""
    data = bytes(buf)
    nl = data.find(b"\n")
    if nl < 0:
        return None
    star = data.rfind(b"*", 0, nl)
    if star < 0 or data[star + 1:nl] != crc32_hex(data[:star]):
        return None
    try:
        return data[:star].decode()
    except UnicodeError:
        return None


def encode_beat(master_id, boot, seq, last_epoch, link_ok, state):
    body = ("B1,%s,%d,%d,%d,%d,%s" % (master_id, boot, seq, last_epoch, 1 if link_ok else 0, state)).encode()
    rec = _seal(body)
    if len(rec) > BEAT_LEN:
        raise ValueError("beat record too long")
    return rec


def decode_beat(buf):
    """(master_id, boot, seq, last_epoch, link_ok, state) or None."""
    body = _open(buf)
    if body is None:
        return None
    f = body.split(",")
    if len(f) != 7 or f[0] != "B1" or f[6] not in STATES:
        return None
    try:
        return f[1], int(f[2]), int(f[3]), int(f[4]), f[5] == "1", f[6]
    except ValueError:
        return None


def encode_status(state, since_epoch, handback_epoch):
    rec = _seal(("S1,%s,%d,%d" % (state, since_epoch, handback_epoch)).encode())
    if len(rec) > STATUS_LEN:
        raise ValueError("status record too long")
    return rec


def decode_status(buf):
    """(state, since_epoch, handback_epoch) or None."""
    body = _open(buf)
    if body is None:
        return None
    f = body.split(",")
    if len(f) != 4 or f[0] != "S1" or f[1] not in STATES:
        return None
    try:
        return f[1], int(f[2]), int(f[3])
    except ValueError:
        return None


class Watchdog:
    """Has the master been silent for `timeout_ms`? One tick difference, never an accumulated sum (F10)."""

    def __init__(self, ticks_ms, ticks_diff, timeout_ms):
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.timeout_ms = timeout_ms
        self._last = ticks_ms()     # silence is counted from start-up until the first beat

    def feed(self):
        self._last = self._ticks_ms()

    def silent_ms(self):
        return self._ticks_diff(self._ticks_ms(), self._last)

    def expired(self):
        return self.silent_ms() >= self.timeout_ms


class Mailbox:
    """The standby's side of the wire: the target memory and an interrupt handler that only sets a flag.

    `target` is a memory-mode I2C target whose `irq(handler, trigger)` calls `handler(target)` after a
    controller's write ended (MicroPython's I2CTarget.IRQ_END_WRITE). Everything else happens in the main loop.
    """

    def __init__(self, target, mem, end_write_trigger):
        self.mem = mem
        self._written = False
        self.beats = 0
        target.irq(self._on_irq, end_write_trigger)

    def _on_irq(self, target):
        # Interrupt context: no allocation, no I/O, no delay (F11). The main loop reads the record.
        self._written = True

    def take_beat(self):
        """The beat written since the last call, decoded, or None."""
        if not self._written:
            return None
        self._written = False
        beat = decode_beat(self.mem[BEAT_OFF:BEAT_OFF + BEAT_LEN])
        if beat is not None:
            self.beats += 1
        return beat

    def set_status(self, state, since_epoch, handback_epoch):
        rec = encode_status(state, since_epoch, handback_epoch)
        self.mem[STATUS_OFF:STATUS_OFF + len(rec)] = rec
