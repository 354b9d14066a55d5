"""The standby's side of a redundant pair (the decision table is in soil.redundancy and docs/REDUNDANCY.md).

Its own module so that a master never holds the standby's code in RAM, nor a standby the master's; with it the
standby's side of the heartbeat wire (reading beats, writing its status, the silence watchdog and the I2C target's
mailbox; soil.heartbeat has the layout).
"""

from soil import heartbeat as hb
from soil import ondemand


class StandbyRole:
    def __init__(self, collector, mailbox, timeout_ms=10000, witness_timeout_ms=3000, handback_after_ms=9000,
                 handback_margin_s=7, recheck_ms=30000):
        self.c = collector
        self.mailbox = mailbox
        self.watchdog = Watchdog(collector.ticks_ms, collector.ticks_diff, timeout_ms)
        self.witness_timeout_ms = witness_timeout_ms
        self.handback_after_ms = handback_after_ms
        self.handback_margin_s = handback_margin_s
        self.recheck_ms = recheck_ms
        self.state = "watching"
        self.master_id = None
        self.master_last_epoch = None     # last sample time the master told us about
        self.since = 0
        self.handback_at = 0
        self._asked_at = None
        self._beats_since = None          # ticks of the first beat of the current run of beats while active
        self._last_check = None
        collector.publishing = False
        self._publish_status()

    def _publish_status(self):
        self.mailbox.set_status(self.state, self.since, self.handback_at)

    def step(self):
        now = self.c.ticks_ms()
        beat = self.mailbox.take_beat()
        if beat is not None:
            self._on_beat(beat, now)
        if self.state == "watching":
            if self.watchdog.expired():
                self.state = "asking"
                self._asked_at = now
                self._publish_status()
                ondemand("soil.events.send_witness_query", self.c, self.master_id or "-")
        elif self.state == "asking":
            if self.c.ticks_diff(now, self._asked_at) >= self.witness_timeout_ms:
                ondemand("soil.takeover.take_over", self, self.master_last_epoch, "no answer from the gateway")
        elif self.state == "active":
            if self._beats_since is not None and self.watchdog.expired():
                self._beats_since = None          # the run of beats broke: start counting again
            if self._beats_since is not None and \
                    self.c.ticks_diff(now, self._beats_since) >= self.handback_after_ms:
                ondemand("soil.takeover.start_handback", self)
            elif self._beats_since is None and self.watchdog.expired() and \
                    self.c.ticks_diff(now, self._last_check) >= self.recheck_ms:
                self._last_check = now
                ondemand("soil.events.send_witness_query", self.c, self.master_id or "-")
        elif self.state == "handback":
            if not self.c.publishing:             # the collector passed H: the master has it from here
                ondemand("soil.takeover.finish_handback", self)

    def _on_beat(self, beat, now):
        master_id, boot, seq, last_epoch, link_ok, mstate = beat
        self.master_id = master_id
        self.master_last_epoch = last_epoch
        if self.state == "active" and self.watchdog.expired():
            self._beats_since = None
        self.watchdog.feed()
        if self.state == "asking":
            self.state = "watching"              # the wire works again before anyone answered
            self._publish_status()
        elif self.state == "active" and self._beats_since is None:
            self._beats_since = now

    def on_witness(self, master_id, verdict, last_epoch):
        """The gateway's answer to a witness query (an `M` frame). soil.takeover decides (loaded for the call)."""
        ondemand("soil.takeover.on_witness", self, master_id, verdict, last_epoch)




# --- the standby's side of the wire (soil.heartbeat has the layout) ------------------------------------------

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


def encode_status(state, since_epoch, handback_epoch):
    rec = hb.seal(("S1,%s,%d,%d" % (state, since_epoch, handback_epoch)).encode())
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

    def take_beat(self):
        """The beat written since the last call, decoded, or None."""
        if not self._written:
            return None
        self._written = False
        beat = decode_beat(self.mem[hb.BEAT_OFF:hb.BEAT_OFF + hb.BEAT_LEN])
        if beat is not None:
            self.beats += 1
        return beat

    def set_status(self, state, since_epoch, handback_epoch):
        rec = encode_status(state, since_epoch, handback_epoch)
        self.mem[hb.STATUS_OFF:hb.STATUS_OFF + len(rec)] = rec
