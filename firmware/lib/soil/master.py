"""The master's side of a redundant pair (soil.heartbeat has the wire, the states and the decision table).

The master writes a beat to the standby's I2C target every interval and reads the standby's status back. It
notices a standby that stops answering (flaw F12) and, after its own reset, waits for the hand-back time when the
standby covers. Its own module so that a standby never holds the master's code in RAM, nor a master the standby's.
"""

from soil import codec, const
from soil import heartbeat as hb

_LINK_OK_MS = const(30000)  # the gateway counts as heard when a frame came within this long (told in each beat)


class MasterRole:
    """The master's role. `i2c` is the controller on the pair's own wire (MicroPython's `machine.I2C` methods)."""

    ROLE = codec.MASTER

    def __init__(self, i2c, address=hb.ADDRESS, interval_ms=3000, handback_margin_s=7):
        self.i2c = i2c
        self.address = address
        self.interval_ms = interval_ms
        self.handback_margin_s = handback_margin_s
        self.state = hb.ACTIVE
        self.standby_present = None
        self.beats_failed = 0
        self.c = None
        self._next = None

    def ring_size(self, interval_ms):
        """Samples to keep while a standby covers: four times the standby's hand-back margin, and some."""
        return 4 * self.handback_margin_s * 1000 // interval_ms + 16

    def bind(self, collector):
        """Called by the Collector this role serves, when it is built."""
        self.c = collector
        self._next = collector.ticks_ms()

    def start(self):
        """At boot, before publishing anything: is a standby covering for us?"""
        st = self._read_status()
        if st is not None and st[0] in (hb.ACTIVE, hb.HANDBACK, hb.ASKING):
            self.state = hb.RETURNING
            self.c.stand_by()
            if st[0] == hb.HANDBACK and st[2]:
                self._resume_at(st[2])

    def on_witness(self, master_id, verdict, last_epoch):
        """A master never asks the gateway about anyone: an M frame is not for it."""

    def step(self):
        c = self.c
        now = c.ticks_ms()
        if c.ticks_diff(now, self._next) < 0:
            return
        self._next = now + self.interval_ms
        beat = encode_beat(c.board_id, c.boot, c.seq, c.last_published_epoch or 0, c.uplink.heard_within(_LINK_OK_MS),
                           self.state)
        try:
            self.i2c.writeto_mem(self.address, hb.BEAT_OFF, beat)
        except OSError:
            self.beats_failed += 1            # F12: a failed beat is noticed, not ignored
            self._standby(False)
            return
        st = self._read_status()
        if self.state == hb.RETURNING and st is not None:
            if st[0] == hb.HANDBACK and st[2]:
                self._resume_at(st[2])
            elif st[0] == hb.WATCHING:
                self._resume_at(None)         # nobody covers: publish the whole ring and go on
        elif self.state == hb.RETURNING and st is None and self.standby_present is False:
            self._resume_at(None)

    def _read_status(self):
        try:
            data = self.i2c.readfrom_mem(self.address, hb.STATUS_OFF, hb.STATUS_LEN)
        except OSError:
            self._standby(False)
            return None
        self._standby(True)
        return decode_status(data)

    def _standby(self, present):
        if present != self.standby_present:
            if present is False:
                self.c.send_event(codec.STANDBY_MISSING, "no ACK from the standby at 0x%02x" % self.address)
            elif self.standby_present is False:
                self.c.send_event(codec.STANDBY_BACK, "the standby at 0x%02x answers again" % self.address)
            self.standby_present = present

    def _resume_at(self, handback_epoch):
        # The ring from the hand-back time on (all of it if None): nothing before H is ours.
        self.c.resume_from(handback_epoch)
        self.state = hb.ACTIVE


# --- the master's side of the wire's records ----------------------------------------------------------------

def encode_beat(master_id, boot, seq, last_epoch, link_ok, state):
    body = ("B1,%s,%d,%d,%d,%d,%s" % (master_id, boot, seq, last_epoch, 1 if link_ok else 0, state)).encode()
    rec = hb.seal(body)
    if len(rec) > hb.BEAT_LEN:
        raise ValueError("beat record too long")
    return rec


def decode_status(buf):
    """(state, since_epoch, handback_epoch) or None."""
    body = hb.unseal(buf)
    if body is None:
        return None
    f = body.split(",")
    if len(f) != 4 or f[0] != "S1" or f[1] not in hb.STATES:
        return None
    try:
        return f[1], int(f[2]), int(f[3])
    except ValueError:
        return None
