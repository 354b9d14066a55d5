"""The master's side of a redundant pair (the decision table is in soil.redundancy and docs/REDUNDANCY.md).

Its own module so that a standby never holds the master's code in RAM, nor a master the standby's; with it the
master's side of the heartbeat records (writing beats, reading the standby's status; soil.heartbeat has the layout).
"""

from soil import heartbeat as hb
from soil import ondemand


class MasterRole:
    def __init__(self, collector, i2c, address=hb.ADDRESS, interval_ms=3000):
        self.c = collector
        self.i2c = i2c
        self.address = address
        self.interval_ms = interval_ms
        self.state = "active"
        self.standby_present = None
        self.beats_failed = 0
        self._next = collector.ticks_ms()
        self._started = False

    def start(self):
        """At boot, before publishing anything: is a standby covering for us?"""
        st = self._read_status()
        if st is not None and st[0] in ("active", "handback", "asking"):
            self.state = "returning"
            self.c.publishing = False
            if st[0] == "handback" and st[2]:
                self._resume_at(st[2])
        self._started = True

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
                ondemand("soil.events.send_event", self.c, "standby_missing",
                         "no ACK from the standby at 0x%02x" % self.address)
            elif self.standby_present is False:
                ondemand("soil.events.send_event", self.c, "standby_back",
                         "the standby at 0x%02x answers again" % self.address)
            self.standby_present = present

    def step(self):
        if not self._started:
            self.start()
        now = self.c.ticks_ms()
        if self.c.ticks_diff(now, self._next) < 0:
            return
        self._next = now + self.interval_ms
        c = self.c
        beat = encode_beat(c.board_id, c.boot, c.seq, c.last_published_epoch or 0, _link_ok(c), self.state)
        try:
            self.i2c.writeto_mem(self.address, hb.BEAT_OFF, beat)
        except OSError:
            self.beats_failed += 1            # F12: a failed beat is noticed, not ignored
            self._standby(False)
            return
        st = self._read_status()
        if self.state == "returning" and st is not None:
            if st[0] == "handback" and st[2]:
                self._resume_at(st[2])
            elif st[0] == "watching":
                self._resume_at(None)         # nobody covers: publish the whole ring and go on
        elif self.state == "returning" and st is None and self.standby_present is False:
            self._resume_at(None)

    def _resume_at(self, handback_epoch):
        # The ring from the hand-back time on (all of it if None); also sets publish_from: nothing before H is ours.
        ondemand("soil.ring.publish", self.c, None, handback_epoch)
        self.c.publishing = True
        self.state = "active"


def _link_ok(c):
    """Has the gateway been heard from lately? (told to the standby in each beat)"""
    last = c.uplink.last_rx
    return last is not None and c.ticks_diff(c.ticks_ms(), last) < 30000


# --- the master's side of the wire's records (soil.heartbeat has the layout) ---------------------------------

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
