"""The standby's side of a redundant pair (the decision table is in soil.redundancy and docs/REDUNDANCY.md).

Its own module so that a master never holds the standby's code in RAM, nor a standby the master's.
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


def _iso_or_dash(epoch):
    if not epoch:
        return "-"
    return timefmt.iso(timefmt.from_epoch(epoch))
