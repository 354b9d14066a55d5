"""Board side of the uplink protocol: frame numbering, the window of frames in flight, acknowledgements, resends.

Why a window: at 115200 baud a reading frame takes ~4 ms on the wire, while a database commit and the ack coming
back take longer. Stop-and-wait per row (the book's way) would leave the line idle most of the time; here up to
`window` frames are in flight and the gateway acknowledges them cumulatively after COMMIT (docs/PROTOCOL.md).

The uplink never decides what a reading is or where it is stored: the collector hands it journal records with
their positions, and gets back the position up to which the gateway has committed.

What it believes: an ack only of its own boot (`A,n,boot`) and only for frames it has sent; frame numbers compared
on their circle (`codec.n_diff`), so the wrap from 2**31-1 to 1 loses and doubles nothing. It also keeps the
collector's events until the gateway acknowledges each one's COMMIT (`K,boot,k`), sending them again meanwhile.
"""

from soil import codec

_OUT_LIMIT = 2 * codec.MAX_FRAME   # keep at most ~2 frames queued for the link beyond what it accepted


class Uplink:
    """The board's end of the link. `make_hello()` returns a fresh H frame: the uplink sends one again when the
    gateway has not confirmed the last (see `synced`) and when the gateway waits for a frame it already acked."""

    def __init__(self, link, ticks_ms, ticks_diff, make_hello, boot, window=24, rto_ms=3000, rto_max_ms=30000,
                 event_slots=8):
        self.link = link
        self.boot = boot              # an A or K for another boot is not ours (a stale ack of the previous boot)
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.window = window
        self.rto_ms = rto_ms
        self.rto_max_ms = rto_max_ms
        self.rto = rto_ms
        self.inflight = []            # [n, record, position], oldest first; position None for RAM-only records
        self.next_n = 1
        self._out = b""
        self._hold_start = None       # a W frame holds sending for _hold_ms from _hold_start
        self._hold_ms = 0
        self._last_progress = ticks_ms()
        self._splitter = codec.LineSplitter()
        self.rx_errors = 0
        self.resends = 0
        self.last_rx = None           # ticks of the last valid frame from the gateway
        # Acks are numbered in this boot's link numbering only once the gateway has our hello: until it answers
        # the hello with `A,n_next-1`, an A may come from the gateway's numbering of the previous boot (the hello
        # was lost) and would delete readings it never committed. Until then acks are ignored and the hello goes
        # again at every retransmit timeout.
        self.synced = False
        self._hello_ack = 0
        self.make_hello = make_hello
        self.ignored_acks = 0         # acks of another boot, or before the hello is confirmed
        self.acks_beyond_sent = 0     # acks of a frame number this board never sent (forged, or another numbering)
        self._resync = False          # the gateway's numbering is not ours: say hello at the next retransmit timeout
        # Events are kept until the gateway acknowledges their COMMIT with K,boot,k, and sent again at every
        # retransmit timeout of theirs and when the gateway confirms a hello (it has just opened the port).
        self.events = []              # [k, frame], oldest first; at most event_slots
        self.event_slots = event_slots
        self.events_dropped = 0
        self._event_sent = 0

    # --- sending -----------------------------------------------------------------------------------------------
    def holding(self):
        if self._hold_start is None:
            return False
        if self._ticks_diff(self._ticks_ms(), self._hold_start) < self._hold_ms:
            return True
        self._hold_start = None
        self.resend_from(0)           # the hold is over: everything unacknowledged goes again
        return False

    def room(self):
        """True when one more reading may be sent now."""
        return len(self.inflight) < self.window and len(self._out) < _OUT_LIMIT and not self.holding()

    def number_from(self, n):
        """Number the next reading frame `n` (before any is sent; the frame numbers' wrap tests start near it)."""
        self.next_n = n

    def send_reading(self, record, position, live):
        n = self.next_n
        self.next_n = codec.n_after(n)
        if not self.inflight:
            self._last_progress = self._ticks_ms()
        self.inflight.append([n, record, position])
        self._queue(codec.reading_frame(n, record, b"L" if live else b"C"))

    def send_control(self, frame):
        """Hello and status frames: not numbered, not acknowledged."""
        self._queue(frame)

    def send_event(self, k, frame):
        """Event frame number `k`: sent now and kept until the gateway acknowledges it (K,boot,k). When all the
        slots are taken the oldest is dropped and counted: RAM is bounded."""
        if len(self.events) >= self.event_slots:
            self.events.pop(0)
            self.events_dropped += 1
        self.events.append([k, frame])
        self._event_sent = self._ticks_ms()
        self._queue(frame)

    def _resend_events(self):
        for entry in self.events:
            self._out += entry[1]
        self._event_sent = self._ticks_ms()

    def hello_sent(self, n_next):
        """A hello announcing `n_next` went out; the gateway confirms it with `A,n_next-1`."""
        if not self.synced:
            self._hello_ack = n_next - 1

    def oldest_unacked(self):
        return self.inflight[0][0] if self.inflight else self.next_n

    def busy(self):
        """True while frames are in flight or bytes wait for the link: the main loop should come back soon."""
        return bool(self._out) or bool(self.inflight)

    def has_output(self):
        """True while bytes wait for the link to take them."""
        return bool(self._out)

    def heard_within(self, ms):
        """Has a valid frame come from the gateway in the last `ms` milliseconds?"""
        return self.last_rx is not None and self._ticks_diff(self._ticks_ms(), self.last_rx) < ms

    def _queue(self, data):
        self._out += data
        self.flush()

    def flush(self):
        if self._out:
            n = self.link.write(self._out)
            if n:
                self._out = self._out[n:]

    def resend_from(self, n):
        """Send again every frame in flight numbered `n` or later (0: all of them), as cached readings."""
        for entry in self.inflight:
            if n == 0 or codec.n_diff(entry[0], n) >= 0:
                self._out += codec.reading_frame(entry[0], entry[1], b"C")
                self.resends += 1
        self._last_progress = self._ticks_ms()
        self.flush()

    # --- receiving ---------------------------------------------------------------------------------------------
    def poll(self):
        """Handle what the gateway sent and the retransmit timer. Returns a list of events for the collector:
        ('acked', position, count) with the newest committed journal position (None if only RAM records were
        acked) and how many readings that acknowledged,
        ('time', 'YYYY-MM-DDTHH:MM:SSZ'), ('query',), ('witness', master_id, verdict, last_epoch)."""
        events = []
        data = self.link.read()
        if data:
            for line in self._splitter.feed(data):
                try:
                    kind, f = codec.decode(line)
                except codec.FrameError:
                    self.rx_errors += 1
                    continue
                self.last_rx = self._ticks_ms()
                if kind == codec.ACK:
                    self._on_ack(f[0], f[1], events)
                elif kind == codec.EVENT_ACK:
                    self._on_event_ack(f[0], f[1])
                elif kind == codec.RESEND:
                    self._hold_start = None      # the gateway asks now: a pending wait is over
                    if codec.n_diff(f[0], self.next_n) > 0 or \
                            (self.inflight and codec.n_diff(f[0], self.inflight[0][0]) < 0):
                        # The gateway waits for a frame it has already acknowledged (an A crossed our hello on
                        # the line), or for one we never sent (its numbering is not ours: a stray hello): that
                        # frame never comes, so tell the gateway where we stand.
                        self._out += self.make_hello()
                    self.resend_from(f[0])
                elif kind == codec.WAIT:
                    self._hold_start = self._ticks_ms()
                    self._hold_ms = f[0]
                elif kind == codec.SETTIME:
                    events.append(("time", f[0]))
                elif kind == codec.QUERY:
                    events.append(("query",))
                elif kind == codec.WITNESS_ANSWER:
                    events.append(("witness", f[0], f[1], f[2]))
        self.flush()
        if self.inflight and not self.holding() and \
                self._ticks_diff(self._ticks_ms(), self._last_progress) >= self.rto:
            if not self.synced or self._resync:
                self._resync = False
                self._out += self.make_hello()
            self.resend_from(0)
            self.rto = min(self.rto * 2, self.rto_max_ms)
        if self.events and self._ticks_diff(self._ticks_ms(), self._event_sent) >= self.rto_ms:
            self._resend_events()
            self.flush()
        return events

    def _on_ack(self, n, boot, events):
        if boot != self.boot:
            # Another boot's numbering (a stale A of the previous boot, or a gateway that took a stray hello):
            # never ours to act on. If we wait for acks, the next retransmit timeout says hello again.
            self.ignored_acks += 1
            self._resync = True
            return
        if codec.n_diff(n, self.next_n - 1) > 0:
            # An ack of a frame this board never sent: whatever the gateway committed, it is not these readings.
            self.acks_beyond_sent += 1
            self._resync = True
            return
        if not self.synced:
            if codec.n_diff(n, self._hello_ack) != 0:
                self.ignored_acks += 1
                return
            self.synced = True
            self._resend_events()      # the gateway has just heard us: events it may have missed go again
        acked = 0
        position = None
        inflight = self.inflight
        while acked < len(inflight) and codec.n_diff(inflight[acked][0], n) <= 0:
            if inflight[acked][2] is not None:
                position = inflight[acked][2]
            acked += 1
        if acked:
            del inflight[:acked]
            self.rto = self.rto_ms
            self._last_progress = self._ticks_ms()
            events.append(("acked", position, acked))

    def _on_event_ack(self, boot, k):
        """K,boot,k: the gateway committed event k of this boot; forget it."""
        if boot != self.boot:
            self.ignored_acks += 1
            return
        events = self.events
        for i in range(len(events)):
            if events[i][0] == k:
                del events[i]
                return
