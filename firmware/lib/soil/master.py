"""The master's side of a redundant pair (soil.heartbeat has the wire, the states and the decision table).

The master writes a beat to the standby's I2C target and reads the standby's status back, in one exchange. It
notices a standby that stops answering (flaw F12) and never publishes a second the standby's status gives to the
standby: before it publishes second s it claims s in a beat (so a standby that takes over later starts after s),
then reads the status, and publishes s only if that status leaves s to the master. A loop that runs late therefore
cannot double a second, whatever the standby did meanwhile. Its own module so that a standby never holds the
master's code in RAM, nor a master the standby's.
"""

from soil import codec, const
from soil import heartbeat as hb
from soil.card import EIO, ENODEV, errno_of

_LINK_OK_MS = const(30000)  # the gateway counts as heard when a frame came within this long (told in each beat)


class MasterRole:
    """The master's role. `i2c` is the controller on the pair's own wire (MicroPython's `machine.I2C` methods).
    A standby that answers with no readable status (a timeout, a torn record) for `timeout_ms` counts as gone."""

    ROLE = codec.MASTER

    def __init__(self, i2c, address=hb.ADDRESS, interval_ms=3000, handback_margin_s=7, timeout_ms=10000):
        self.i2c = i2c
        self.address = address
        self.interval_ms = interval_ms
        self.handback_margin_s = handback_margin_s
        self.timeout_ms = timeout_ms
        self.state = hb.ACTIVE
        self.standby_present = None
        self.beats_failed = 0
        self.status = None                # the standby's last status (state, since, until); None: no standby
        self.c = None
        self._next = None
        self._unknown_since = None        # ticks since the standby answers without a readable status

    def ring_size(self, interval_ms):
        """Samples to keep while a standby covers: four times the standby's hand-back margin, and some."""
        return 4 * self.handback_margin_s * 1000 // interval_ms + 16

    def bind(self, collector):
        """Called by the Collector this role serves, when it is built."""
        self.c = collector
        self._next = collector.ticks_ms()

    def start(self):
        """At boot, before publishing anything: is a standby covering for us?"""
        self._exchange()

    def on_witness(self, master_id, verdict, last_epoch):
        """A master never asks the gateway about anyone: an M frame is not for it."""

    def may_publish(self, epoch):
        """The collector sampled second `epoch`: claim it on the wire, read the standby's status, and say whether
        the master publishes it now (otherwise the sample waits in the ring for the status to decide)."""
        self._exchange()
        return self.owns(epoch) is True

    def step(self):
        c = self.c
        now = c.ticks_ms()
        if c.ticks_diff(now, self._next) < 0:
            return
        self._exchange()

    def _exchange(self):
        """One beat and one status read. The beat claims the newest second sampled (the master publishes nothing
        it has not claimed first); the status decides which ring samples are ours now. True if the master is the
        active collector afterwards."""
        c = self.c
        self._next = c.ticks_ms() + self.interval_ms
        beat = encode_beat(c.board_id, c.boot, c.seq, c.last_sample_epoch or 0,
                           c.uplink.heard_within(_LINK_OK_MS), self.state)
        try:
            self.i2c.writeto_mem(self.address, hb.BEAT_OFF, beat)
        except OSError as e:
            self.beats_failed += 1            # F12: a failed beat is noticed, not ignored
            self._standby(False)
            return self._no_status(e)
        try:
            data = self.i2c.readfrom_mem(self.address, hb.STATUS_OFF, hb.STATUS_LEN)
        except OSError as e:
            self._standby(False)
            return self._no_status(e)
        self._standby(True)
        st = decode_status(data)
        if st is None:
            return self._no_status(None)
        self._unknown_since = None
        return self._settle(st)

    def _standby(self, present):
        if present != self.standby_present:
            if present is False:
                self.c.send_event(codec.STANDBY_MISSING, "no ACK from the standby at 0x%02x" % self.address)
            elif self.standby_present is False:
                self.c.send_event(codec.STANDBY_BACK, "the standby at 0x%02x answers again" % self.address)
            self.standby_present = present

    def _no_status(self, err):
        """No status this time. Nobody ACKs: there is no standby to cover (a cut wire with the master alive is the
        witness's case: docs/REDUNDANCY.md). A NACK is ENODEV on esp32 and EIO on rp2 (its port maps every pico-sdk
        error but a timeout to EIO). Anything else (a timeout, a torn record) says nothing about who holds which
        second: wait, unless it lasts the standby's whole timeout."""
        c = self.c
        if err is not None and errno_of(err) in (ENODEV, EIO):
            return self._settle(None)
        now = c.ticks_ms()
        if self._unknown_since is None:
            self._unknown_since = now
        if c.ticks_diff(now, self._unknown_since) >= self.timeout_ms:
            return self._settle(None)
        return self._settle(UNKNOWN)

    def _settle(self, st):
        self.status = st
        active = st is None or st[0] == hb.WATCHING
        self.state = hb.ACTIVE if active else hb.RETURNING
        self.c.settle_ring(self.owns, active)
        return active

    def owns(self, epoch):
        """Who publishes second `epoch` by the standby's last status: see owner()."""
        return owner(self.status, epoch)


UNKNOWN = (hb.ASKING, 0, 0)  # a status that gives the master nothing yet: it waits, as while the standby asks


def owner(st, epoch):
    """Who publishes second `epoch`, by the standby's status `st` (None: there is no standby): True the master,
    False the standby (for good), None not decided yet (the sample waits in the master's ring).

    The standby publishes exactly the seconds after `since` and before `until` (0: no end yet): `active` since,
    `handback` since..until, and after a hand-back `watching` keeps since..until, `until` being one past the last
    second it published. While it asks the gateway it may take over from the master's claim: nothing is decided."""
    if st is None:
        return True
    state, since, until = st
    if state == hb.ASKING:
        return None
    if epoch <= since:
        return True
    if until and epoch >= until:
        return True
    if state == hb.WATCHING:
        return until == 0          # never covered: all ours; after a hand-back since..until was the standby's
    return None


# --- the master's side of the wire's records ----------------------------------------------------------------

def encode_beat(master_id, boot, seq, last_epoch, link_ok, state):
    body = ("B1,%s,%d,%d,%d,%d,%s" % (master_id, boot, seq, last_epoch, 1 if link_ok else 0, state)).encode()
    rec = hb.seal(body)
    if len(rec) > hb.BEAT_LEN:
        raise ValueError("beat record too long")
    return rec


def decode_status(buf):
    """(state, since_epoch, until_epoch) or None."""
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
