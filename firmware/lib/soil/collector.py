"""The collector: sample, store on the card, send, and delete only what the gateway committed.

This is the book's Listing 8-7 loop done so that nothing is lost:
- every reading goes to the card journal *before* it is sent, so a reset, an outage or a dead gateway never loses
  it (flaws F1, F2);
- a reading leaves the card only when the gateway acknowledged its COMMIT;
- it carries the RTC time of the sample, zero-padded UTC, flagged when the clock was not trustworthy (F4, F7);
- the clock is set only when the gateway says so (F3);
- when the card fails, readings wait in a small RAM queue instead of vanishing, and what is dropped is counted and
  reported (F6).

Everything hardware is handed in; `step()` never blocks, so the same object runs under a MicroPython main loop, a
CircuitPython `code.py` or the CPython virtual board.
"""

from soil import ondemand, utc, wire
from soil.uplink import Uplink

try:
    from soil.journal import JournalFull
except ImportError:  # pragma: no cover - journal always ships with the core
    JournalFull = OSError


class Collector:
    def __init__(self, board_id, boot, rtc, adc, journal, link, ticks_ms, ticks_diff, role="single",
                 interval_ms=1000, window=24, status_interval_ms=10000, ram_queue=64, led=None, fw="0.1.0",
                 log=None, ring_size=64):
        if not wire.valid_board_id(board_id):
            raise ValueError("board id must be 1-32 characters from A-Z a-z 0-9 _ -")
        self.board_id = board_id
        self.boot = boot
        self.role = role
        self.rtc = rtc
        self.adc = adc
        self.journal = journal
        self.ticks_ms = ticks_ms
        self.ticks_diff = ticks_diff
        self.interval_ms = interval_ms
        self.status_interval_ms = status_interval_ms
        self.led = led
        self.fw = fw
        self._log = log
        self.uplink = Uplink(link, ticks_ms, ticks_diff, window=window)
        self.uplink.make_hello = self._hello_frame
        self.seq = 0
        self.ram = []                 # records waiting in RAM while the card cannot take them
        self.ram_limit = ram_queue
        self.ram_dropped = 0
        self.card_state = "ok"
        self._fresh = None            # the reading sampled in this step, if any: sending it now makes it live
        self._next_sample = None
        self._next_status = None
        self._last_tm = None
        self._last_tm_ticks = 0
        self.clock_state = "unset"
        self._led_off_at = None
        # Redundancy (soil.redundancy): only the active collector publishes; the other keeps a ring in RAM.
        self.publishing = True
        self.publish_from = None      # publish samples from this epoch on (a master taking back from a standby)
        self.publish_until = None     # stop publishing at this epoch (a standby handing back)
        self.ring = []                # (epoch, raw, flags) of samples not published, oldest first (the time
                                      # is rebuilt from the epoch: a 6-tuple per entry would double its RAM)
        self.ring_limit = ring_size
        self.last_published_epoch = None
        self.role_logic = None        # a StandbyRole or MasterRole, stepped with the collector

    # --- start-up -----------------------------------------------------------------------------------------------
    def start(self):
        now = self.ticks_ms()
        self._next_sample = now
        self._next_status = now
        if self.journal is not None:
            try:
                self.journal.open()
            except OSError as e:
                ondemand("soil.cardstate.failed", self, e)
        if self.role_logic is not None and hasattr(self.role_logic, "start"):
            self.role_logic.start()       # a returning master learns whether a standby covers, before sampling
        self.send_hello()

    def send_hello(self):
        self.uplink.send_control(self._hello_frame())

    def _hello_frame(self):
        tm, state = self.read_clock()
        n_next = self.uplink.oldest_unacked()
        self.uplink.hello_sent(n_next)
        return wire.hello(self.board_id, self.boot, n_next, utc.iso(tm), state, self.role, self.fw)

    # --- the clock -------------------------------------------------------------------------------------------------
    def read_clock(self):
        """(tm, state) from one read of the RTC. A clock that cannot be trusted ('halted', 'invalid', or an I2C
        error) gives an estimate from the last good reading and the tick counter, and its state says so: the
        reading is flagged, never silently given a made-up time."""
        try:
            tm, state = self.rtc.read()
        except OSError:
            tm, state = None, "invalid"
        if tm is not None and (state == "ok" or state == "unset"):
            self._last_tm = tm
            self._last_tm_ticks = self.ticks_ms()
        elif self._last_tm is not None:
            secs = utc.to_epoch(self._last_tm) + self.ticks_diff(self.ticks_ms(), self._last_tm_ticks) // 1000
            tm = ondemand("soil.timefmt.from_epoch", secs)   # a clock fault: rare
        elif tm is None:
            tm = (2000, 1, 1, 0, 0, 0)    # no good reading yet: the DS1307's zero, flagged by its state
        self.clock_state = state
        return tm, state

    def set_clock(self, iso_time):
        """The gateway's `T` frame: set the RTC (soil.clockset, loaded for the call), then report the new state."""
        ondemand("soil.clockset.set_clock", self, iso_time)

    # --- the loop ----------------------------------------------------------------------------------------------------
    def step(self):
        """Do whatever is due now; never blocks."""
        now = self.ticks_ms()
        if self.ticks_diff(now, self._next_sample) >= 0:
            self.sample()
            self._next_sample += self.interval_ms
            if self.ticks_diff(now, self._next_sample) >= self.interval_ms:
                self._next_sample = now + self.interval_ms   # fell far behind (a long stall): do not burst
        for event in self.uplink.poll():
            kind = event[0]
            if kind == "acked":
                self._acked(event[1])
            elif kind == "time":
                self.set_clock(event[1])
            elif kind == "query":
                self.send_hello()
                self.uplink._resend_from(0)
            elif kind == "witness" and self.role_logic is not None and hasattr(self.role_logic, "on_witness"):
                last = ondemand("soil.timeparse.epoch_or_none", event[3])
                self.role_logic.on_witness(event[1], event[2], last)
        if self.role_logic is not None:
            self.role_logic.step()
        self._fill_window()
        if self._led_off_at is not None and self.ticks_diff(now, self._led_off_at) >= 0:
            self._led_off_at = None
            self.led.value(0)
        if self.ticks_diff(now, self._next_status) >= 0:
            self._next_status = now + self.status_interval_ms
            self.send_status()
            if self.journal is not None and (self.card_state == "absent" or self.card_state == "error"):
                # A card that failed or was pulled may be back; a full one is retried per sample.
                ondemand("soil.cardstate.retry", self)

    def sample(self):
        raw = self.adc.read_u16()
        tm, state = self.read_clock()
        flags = "" if state == "ok" else "Q"
        if self.role == "standby":
            flags += "S"
        epoch = utc.to_epoch(tm)
        if self.publish_until is not None and epoch >= self.publish_until:
            self.publishing = False           # handed back: the other collector publishes from here
            self.publish_until = None
        if self.publishing and (self.publish_from is None or epoch >= self.publish_from):
            self._fresh = self._publish(epoch, tm, raw, flags)
        else:
            if len(self.ring) >= self.ring_limit:
                self.ring.pop(0)
            self.ring.append((epoch, raw, flags))
        return epoch

    def _publish(self, epoch, tm, raw, flags):
        """Give a sample its identity and store it; returns where it went (journal position or RAM entry)."""
        self.seq += 1
        self.last_published_epoch = epoch
        return self._store(wire.reading_record(self.boot, self.seq, utc.iso(tm), raw, flags))

    def _store(self, record):
        """Journal first; RAM if the card cannot take it. Returns a token identifying where it went."""
        if self.journal is not None and self.card_state in ("ok", "full"):
            try:
                position = self.journal.append(record)
                self.card_state = "ok"
                return position
            except JournalFull:
                self.card_state = "full"
            except OSError as e:
                ondemand("soil.cardstate.failed", self, e)
        if len(self.ram) >= self.ram_limit:
            self.ram.pop(0)
            self.ram_dropped += 1
        entry = [record]
        self.ram.append(entry)
        return entry

    def _next_record(self):
        """Oldest unsent record: the card's backlog first, then RAM."""
        if self.journal is not None and self.card_state != "absent" and self.card_state != "error":
            try:
                item = self.journal.read_next()
            except OSError as e:
                ondemand("soil.cardstate.failed", self, e)
                item = None
            if item is not None:
                return item[0], item[1]
        if self.ram:
            entry = self.ram.pop(0)
            return entry[0], entry
        return None

    def _fill_window(self):
        up = self.uplink
        while up.room():
            item = self._next_record()
            if item is None:
                break
            record, token = item
            live = self._fresh is not None and (token is self._fresh or token == self._fresh)
            position = None if isinstance(token, list) else token   # a RAM record has no card position
            up.send_reading(record, position, live)
        self._fresh = None

    def _acked(self, position):
        if position is None or self.journal is None:
            return
        try:
            self.journal.ack(position)
        except OSError as e:
            ondemand("soil.cardstate.failed", self, e)
        if self.led is not None:
            # A blink is a state with a deadline checked by step(), never a delay in a callback (flaw F11).
            self.led.value(1)
            self._led_off_at = self.ticks_ms() + 50

    # --- status -----------------------------------------------------------------------------------------------------
    def pending(self):
        journal_pending = self.journal.pending if (self.journal is not None and self.card_state != "absent") else 0
        return journal_pending + len(self.ram) + sum(1 for e in self.uplink.inflight if e[2] is None)

    def dropped(self):
        journal_dropped = self.journal.dropped if self.journal is not None else 0
        return journal_dropped + self.ram_dropped

    def send_status(self):
        tm, state = self.read_clock()
        journal_bytes = 0
        if self.journal is not None:
            try:
                journal_bytes = self.journal.pending_bytes
            except (OSError, AttributeError):
                journal_bytes = 0
        self.uplink.send_control(wire.status(utc.iso(tm), state, self.pending(), self.dropped(),
                                               self.card_state, journal_bytes))
