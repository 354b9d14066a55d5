"""Master and standby: two collectors, one series of readings, no gap and no double when either side fails.

Both boards sample all the time. Only the *active* one publishes (journal + uplink); the other keeps its samples
in a bounded RAM ring. That ring is what closes the gap: when a standby takes over, it publishes what it sampled
since the master's last stored sample, so the database has no missing slot across the failover.

Standby (decision table, also in docs/REDUNDANCY.md):

| heartbeat | gateway (witness) says | standby does |
| --- | --- | --- |
| arriving | - | watch: ring only |
| silent for the timeout | master alive (only the wire is cut) | stay standby, ask again after another timeout |
| silent for the timeout | master dead, last stored sample T | take over: publish ring samples after T, then live |
| silent for the timeout | no answer (gateway unreachable) | take over from the last beat's sample; rows say `standby` |
| arriving again while active | - | after a stable period pick a hand-back time H; publish samples before H, stop |
| silent while active | master alive (asked again every recheck period) | stand down to watching |

Master: it writes a beat every interval and reads the standby's status back. A NACK means the standby is gone
(flaw F12: the book ignored the result of the write): it reports `standby_missing`, and `standby_back` later.
After a reset it first reads the standby's status: if the standby is active, the master samples into its ring and
waits for the hand-back time H, then publishes its samples from H on.

All times here are the RTC's UTC epoch seconds (both clocks are set by the gateway); all durations are tick
differences.
"""

from soil import heartbeat as hb
from soil import timefmt


class StandbyRole:
    def __init__(self, collector, mailbox, timeout_ms=10000, witness_timeout_ms=3000, handback_after_ms=9000,
                 handback_margin_s=7, recheck_ms=30000):
        self.c = collector
        self.mailbox = mailbox
        self.watchdog = hb.Watchdog(collector.ticks_ms, collector.ticks_diff, timeout_ms)
        self.witness_timeout_ms = witness_timeout_ms
        self.handback_after_ms = handback_after_ms
        self.handback_margin_s = handback_margin_s
        self.recheck_ms = recheck_ms
        self.state = hb.WATCHING
        self.master_id = None
        self.master_last_epoch = None     # last sample time the master told us about
        self.since = 0
        self.handback_at = 0
        self._asked_at = None
        self._beats_since = None          # ticks of the first beat of the current run of beats while active
        self._last_check = None
        self.takeovers = 0
        collector.publishing = False
        self._publish_status()

    def _publish_status(self):
        self.mailbox.set_status(self.state, self.since, self.handback_at)

    def _event(self, name, detail):
        self.c.send_event(name, detail)

    def step(self):
        now = self.c.ticks_ms()
        beat = self.mailbox.take_beat()
        if beat is not None:
            self._on_beat(beat, now)
        if self.state == hb.WATCHING:
            if self.watchdog.expired():
                self._ask_witness(now)
        elif self.state == hb.ASKING:
            if self.c.ticks_diff(now, self._asked_at) >= self.witness_timeout_ms:
                self._take_over(self.master_last_epoch, "no answer from the gateway")
        elif self.state == hb.ACTIVE:
            if self._beats_since is not None and self.watchdog.expired():
                self._beats_since = None          # the run of beats broke: start counting again
            if self._beats_since is not None and \
                    self.c.ticks_diff(now, self._beats_since) >= self.handback_after_ms:
                self._start_handback()
            elif self._beats_since is None and self.watchdog.expired() and \
                    self.c.ticks_diff(now, self._last_check) >= self.recheck_ms:
                self._last_check = now
                self.c.send_witness_query(self.master_id or "-")
        elif self.state == hb.HANDBACK:
            if not self.c.publishing:             # the collector passed H: the master has it from here
                self.state = hb.WATCHING
                self.since = 0
                self.handback_at = 0
                self.watchdog.feed()
                self._publish_status()
                self._event("handback", "master %s publishes from here" % (self.master_id,))

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

    def _ask_witness(self, now):
        self.state = hb.ASKING
        self._asked_at = now
        self._publish_status()
        self.c.send_witness_query(self.master_id or "-")

    def on_witness(self, master_id, verdict, last_epoch):
        """The gateway's answer to a witness query (an `M` frame)."""
        if self.state == hb.ASKING:
            if verdict == "alive":
                self.state = hb.WATCHING
                self.watchdog.feed()              # ask again only after another full timeout
                self._publish_status()
            else:
                since = last_epoch if last_epoch else self.master_last_epoch
                self._take_over(since, "gateway: master %s" % verdict)
        elif self.state == hb.ACTIVE and verdict == "alive" and self._beats_since is None:
            # Active without beats, and the gateway hears the master: only the wire was cut. Stand down.
            self.c.publishing = False
            self.state = hb.WATCHING
            self.since = 0
            self.watchdog.feed()
            self._publish_status()
            self._event("handback", "gateway hears master %s: standing down" % (master_id,))

    def _take_over(self, since, why):
        self.state = hb.ACTIVE
        self.since = since or 0
        self.takeovers += 1
        self._beats_since = None
        self._last_check = self.c.ticks_ms()
        published = self.c.publish_ring(after_epoch=since)
        self.c.publishing = True
        self._publish_status()
        self._event("takeover", "%s; %d ring samples after %s" % (why, published, _iso_or_dash(since)))

    def _start_handback(self):
        tm, _ = self.c.read_clock()
        self.handback_at = timefmt.to_epoch(tm) + self.handback_margin_s
        self.c.publish_until = self.handback_at
        self.state = hb.HANDBACK
        self._publish_status()


class MasterRole:
    def __init__(self, collector, i2c, address=hb.ADDRESS, interval_ms=3000):
        self.c = collector
        self.i2c = i2c
        self.address = address
        self.interval_ms = interval_ms
        self.state = hb.ACTIVE
        self.standby_present = None
        self.standby_state = None
        self.beats_sent = 0
        self.beats_failed = 0
        self._next = collector.ticks_ms()
        self._started = False

    def start(self):
        """At boot, before publishing anything: is a standby covering for us?"""
        st = self._read_status()
        if st is not None and st[0] in (hb.ACTIVE, hb.HANDBACK, hb.ASKING):
            self.state = hb.RETURNING
            self.c.publishing = False
            if st[0] == hb.HANDBACK and st[2]:
                self._resume_at(st[2])
        self._started = True

    def _read_status(self):
        try:
            data = self.i2c.readfrom_mem(self.address, hb.STATUS_OFF, hb.STATUS_LEN)
        except OSError:
            self._standby(False)
            return None
        self._standby(True)
        st = hb.decode_status(data)
        if st is not None:
            self.standby_state = st[0]
        return st

    def _standby(self, present):
        if present != self.standby_present:
            if present is False:
                self.c.send_event("standby_missing", "no ACK from the standby at 0x%02x" % self.address)
            elif self.standby_present is False:
                self.c.send_event("standby_back", "the standby at 0x%02x answers again" % self.address)
            self.standby_present = present

    def step(self):
        if not self._started:
            self.start()
        now = self.c.ticks_ms()
        if self.c.ticks_diff(now, self._next) < 0:
            return
        self._next = now + self.interval_ms
        c = self.c
        beat = hb.encode_beat(c.board_id, c.boot, c.seq, c.last_published_epoch or 0, c.link_ok(), self.state)
        try:
            self.i2c.writeto_mem(self.address, hb.BEAT_OFF, beat)
            self.beats_sent += 1
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

    def _resume_at(self, handback_epoch):
        self.c.publish_ring(from_epoch=handback_epoch)   # also sets publish_from: nothing before H is ours
        self.c.publishing = True
        self.state = hb.ACTIVE


def _iso_or_dash(epoch):
    if not epoch:
        return "-"
    return timefmt.iso(timefmt.from_epoch(epoch))
