"""The standby's side of a redundant pair (soil.heartbeat has the wire, the states and the decision table).

The standby watches the master's beats on its I2C target, asks the gateway (the witness) before it takes over, so
a cut wire alone never makes two boards publish, publishes the samples the master did not when it takes over, and
hands back at an agreed second when the master returns. Its own module so that a master never holds the standby's
code in RAM, nor a standby the master's.
"""

from soil import codec, utc
from soil import heartbeat as hb


class StandbyRole:
    """The standby's role. `mailbox` is the pair wire's I2C target (a Mailbox). The timeouts are the pair's
    settings (soil.board): the master beats every `beat_interval_ms`; silence for `timeout_ms` makes the standby
    ask the gateway, which has `witness_timeout_ms` to answer; beats arriving for `handback_after_ms` while active
    start a hand-back `handback_margin_s` ahead; an active standby without beats asks again every `recheck_ms`."""

    ROLE = codec.STANDBY

    def __init__(self, mailbox, timeout_ms=10000, witness_timeout_ms=3000, beat_interval_ms=3000,
                 handback_after_ms=9000, handback_margin_s=7, recheck_ms=30000):
        self.mailbox = mailbox
        self.timeout_ms = timeout_ms
        self.witness_timeout_ms = witness_timeout_ms
        self.beat_interval_ms = beat_interval_ms
        self.handback_after_ms = handback_after_ms
        self.handback_margin_s = handback_margin_s
        self.recheck_ms = recheck_ms
        self.state = hb.WATCHING
        self.master_id = None
        self.master_last_epoch = None     # last sample time the master told us about
        self.since = 0
        self.handback_at = 0
        self.takeovers = 0
        self.c = None
        self.watchdog = None
        self._asked_at = None
        self._beats_since = None          # ticks of the first beat of the current run of beats while active
        self._last_check = None

    def ring_size(self, interval_ms):
        """Samples to keep while watching: everything a takeover may have to publish (the silence before the
        timeout, the wait for the witness, two beats of slack), and some."""
        return (self.timeout_ms + self.witness_timeout_ms + 2 * self.beat_interval_ms) // interval_ms + 8

    def bind(self, collector):
        """Called by the Collector this role serves, when it is built: a standby starts by watching."""
        self.c = collector
        self.watchdog = Watchdog(collector.ticks_ms, collector.ticks_diff, self.timeout_ms)
        collector.stand_by()
        self._publish_status()

    def start(self):
        """Nothing to do at boot: silence is counted from start-up until the first beat."""

    def may_publish(self, epoch):
        """The collector sampled second `epoch`: publish it? While handing back, the seconds from H on are the
        master's: the first sample stamped H or later ends the standby's publishing, however late it is taken."""
        if self.state == hb.HANDBACK and epoch >= self.handback_at:
            self.c.stand_by()
        return self.c.publishing

    def _publish_status(self):
        self.mailbox.set_status(self.state, self.since, self.handback_at)

    def step(self):
        c = self.c
        now = c.ticks_ms()
        beat = self.mailbox.take_beat()
        if beat is not None:
            self._on_beat(beat, now)
        if self.state == hb.WATCHING:
            if self.watchdog.expired():
                self.state = hb.ASKING
                self._asked_at = now
                self._publish_status()
                c.ask_witness(self.master_id)
        elif self.state == hb.ASKING:
            if c.ticks_diff(now, self._asked_at) >= self.witness_timeout_ms:
                self._take_over(self.master_last_epoch, "no answer from the gateway")
        elif self.state == hb.ACTIVE:
            if self._beats_since is not None and self.watchdog.expired():
                self._beats_since = None          # the run of beats broke: start counting again
            if self._beats_since is not None and c.ticks_diff(now, self._beats_since) >= self.handback_after_ms:
                self._start_handback()
            elif self._beats_since is None and self.watchdog.expired() and \
                    c.ticks_diff(now, self._last_check) >= self.recheck_ms:
                self._last_check = now
                c.ask_witness(self.master_id)
        elif self.state == hb.HANDBACK:
            if not c.publishing:                  # the collector passed H: the master has it from here
                self._finish_handback()

    def _on_beat(self, beat, now):
        master_id, boot, seq, last_epoch, link_ok, mstate = beat
        self.master_id = master_id
        self.master_last_epoch = last_epoch
        if self.state == hb.ACTIVE and self.watchdog.expired():
            self._beats_since = None
        self.watchdog.feed()
        if self.state == hb.ASKING:
            self.state = hb.WATCHING              # the wire works again before anyone answered
            self._publish_status()
        elif self.state == hb.ACTIVE and self._beats_since is None:
            self._beats_since = now

    def on_witness(self, master_id, verdict, last_epoch):
        """The gateway's answer to a witness query (an `M` frame): `verdict` alive, dead or unknown about
        `master_id`, whose last sample the gateway has at `last_epoch` (None if it has none)."""
        if self.state == hb.ASKING:
            if verdict == codec.ALIVE:
                self.state = hb.WATCHING
                self.watchdog.feed()              # ask again only after another full timeout
                self._publish_status()
            else:
                since = last_epoch if last_epoch else self.master_last_epoch
                self._take_over(since, "gateway: master %s" % verdict)
        elif self.state == hb.ACTIVE and verdict == codec.ALIVE and self._beats_since is None:
            # Active without beats, and the gateway hears the master: only the wire was cut. Stand down.
            self.c.stand_by()
            self.state = hb.WATCHING
            self.handback_at = self._published_until()
            self.watchdog.feed()
            self._publish_status()
            self.c.send_event(codec.HANDBACK, "gateway hears master %s: standing down" % (master_id,))

    def _take_over(self, since, why):
        """Become the active collector: publish the ring's samples after the master's last second, then publish
        every sample. The master's last second is the latest of `since` (what the gateway stored, or the last beat
        decoded; None if neither) and the claim in its beat as the wire holds it now: a master publishes no second
        it has not claimed first, and it claims nothing new while this standby's status says `asking`."""
        c = self.c
        beat = self.mailbox.peek_beat()
        if beat is not None and beat[3] > (since or 0):
            since = beat[3]
        self.state = hb.ACTIVE
        self.since = since or 0
        self.handback_at = 0
        self.takeovers += 1
        self._beats_since = None
        self._last_check = c.ticks_ms()
        published = c.take_over(since)       # what the master did not publish
        self._publish_status()
        c.send_event(codec.TAKEOVER, "%s; %d ring samples after %s"
                     % (why, published, utc.iso(utc.from_epoch(since)) if since else "-"))

    def _start_handback(self):
        """The master has been beating again for `handback_after_ms`: agree on a hand-back time a margin from now
        (written to the status record, which the master reads), publish until then."""
        tm, _ = self.c.read_clock()
        self.handback_at = utc.to_epoch(tm) + self.handback_margin_s
        self.state = hb.HANDBACK
        self._publish_status()

    def _finish_handback(self):
        """The collector passed the hand-back time and stopped publishing: the master has it from here. The
        status keeps saying which seconds were the standby's, ending one past the last it published (a sample taken
        late may end it before H), so a master whose loop missed the hand-back still starts right after it."""
        self.state = hb.WATCHING
        self.handback_at = self._published_until()
        self.watchdog.feed()
        self._publish_status()
        self.c.send_event(codec.HANDBACK, "master %s publishes from here" % (self.master_id,))

    def _published_until(self):
        """One past the last second this standby published while it covered (since + 1 if it published none)."""
        last = self.c.last_published_epoch
        return (last if last is not None and last > self.since else self.since) + 1


# --- the standby's side of the wire ------------------------------------------------------------------------

def decode_beat(buf):
    """(master_id, boot, seq, last_epoch, link_ok, state) or None."""
    body = hb.unseal(buf)
    if body is None:
        return None
    f = body.split(",")
    if len(f) != 7 or f[0] != "B1" or f[6] not in hb.STATES:
        return None
    try:
        return f[1], int(f[2]), int(f[3]), int(f[4]), f[5] == "1", f[6]
    except ValueError:
        return None


def encode_status(state, since, handback_at):
    rec = hb.seal(("S1,%s,%d,%d" % (state, since, handback_at)).encode())
    if len(rec) > hb.STATUS_LEN:
        raise ValueError("status record too long")
    return rec


class Watchdog:
    """Has the master been silent for `timeout_ms`? One tick difference, never an accumulated sum (F10)."""

    def __init__(self, ticks_ms, ticks_diff, timeout_ms):
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.timeout_ms = timeout_ms
        self._last = ticks_ms()     # silence is counted from start-up until the first beat

    def feed(self):
        self._last = self._ticks_ms()

    def expired(self):
        return self._ticks_diff(self._ticks_ms(), self._last) >= self.timeout_ms


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

    def peek_beat(self):
        """The beat the memory holds now, decoded, or None (torn by a write in progress, or never written)."""
        return decode_beat(self.mem[hb.BEAT_OFF:hb.BEAT_OFF + hb.BEAT_LEN])

    def take_beat(self):
        """The beat written since the last call, decoded, or None."""
        if not self._written:
            return None
        self._written = False
        beat = self.peek_beat()
        if beat is not None:
            self.beats += 1
        return beat

    def set_status(self, state, since, handback_at):
        rec = encode_status(state, since, handback_at)
        self.mem[hb.STATUS_OFF:hb.STATUS_OFF + len(rec)] = rec
