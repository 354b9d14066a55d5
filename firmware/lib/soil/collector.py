"""The collector: sample, store on the card, send, and delete only what the gateway committed.

This is the book's Listing 8-7 loop done so that nothing is lost:
- every reading goes to the card journal *before* it is sent, so a reset, an outage or a dead gateway never loses
  it (flaws F1, F2);
- a reading leaves the card only when the gateway acknowledged its COMMIT;
- it carries the RTC time of the sample, zero-padded UTC, flagged when the clock was not trustworthy (F4, F7);
- the clock is set only when the gateway says so (F3);
- when the card is pulled, fails or refuses a record, readings wait in the fallback journal on the board's own flash
  (a second soil.journal.Journal on the flash filesystem, when the port has one), or else in a small RAM queue, and
  are moved to the card, oldest first, when it works again; what is dropped is counted once and reported (F6).

The fallback (docs/JOURNAL.md, "Fallback"): while it holds records, new records go there too, so the card receives
them in their order; `step()` moves at most MOVE_BATCH of them per call, appending each to the card and then
acknowledging the batch on the flash (one slot write per batch). A power cut between the two leaves the batch on
both; it is moved again and the gateway stores a reading once by its identity (board, boot, seq): a duplicate,
never a loss. While the card cannot be read, the gateway is sent the flash's records and its acks free the flash.
The fallback journal exists in RAM only while it is in use (about 900 B): it is made when the card first cannot take
a record, or at start-up to recover what a power cut left on the flash, and let go once all of it is on the card.

In a redundant pair (soil.heartbeat) only the active collector publishes; the other keeps its samples in a
bounded RAM ring, which the pair's role (soil.master, soil.standby) publishes when it takes over or hands back.
The role decides when; this class owns what is published and keeps the ring.

Everything hardware is handed in; `step()` never blocks, so the same object runs under a MicroPython main loop, a
CircuitPython `code.py` or the CPython virtual board. soil.board builds it from a board's settings.
"""

from soil import __version__, codec, const, ds1307, utc
from soil.card import ENODEV, ENOSPC, errno_of
from soil.journal import DROP_OLDEST, Journal, JournalFull
from soil.uplink import Uplink

_AFTER_EDGE_MS = const(20)    # a sample is taken this long after its second begins, once the collector knows when
MOVE_BATCH = const(8)         # fallback records moved to the card per step (and acknowledged on the flash at once)
FALLBACK_MAX_BYTES = const(512 << 10)   # of the board's flash (a Pico's LittleFS has about 1.4 MB): hours at 1 Hz
_RAM_DROPS_NVRAM = const(8)   # DS1307 NVRAM bytes 8..15: the RAM queue's lifetime drop count (0..7: soil.bootcount)


def _ram_drops_record(n):
    """The count and its complement (8 bytes): a new battery's random RAM does not read as a count."""
    return n.to_bytes(4, "little") + (n ^ 0xFFFFFFFF).to_bytes(4, "little")


class Collector:
    """One board's collector. `pair` is its role in a redundant pair (a soil.master.MasterRole or a
    soil.standby.StandbyRole), None for a single collector; the collector binds it and steps it."""

    def __init__(self, board_id, boot, rtc, adc, journal, link, ticks_ms, ticks_diff, pair=None, interval_ms=1000,
                 window=24, status_interval_ms=10000, ram_queue=64, led=None, fw=__version__, log=None, uid=None,
                 flash=None):
        # soil.board checked the id (a setting) and made the uid; the asserts guard other callers (the tests, the
        # virtual boards), and mpy-cross -O3 leaves them out of a board's .mpy, which has no heap to spare.
        assert codec.valid_board_id(board_id), "board id must be 1-32 characters from A-Z a-z 0-9 _ -"
        assert uid is not None and codec.valid_uid(uid), "uid must be 4-32 lower-case hex digits, got %r" % (uid,)
        self.board_id = board_id
        self.uid = uid                # the hardware's unique id: the part of the identity no setting repeats
        self.boot = boot
        self.rtc = rtc
        self.adc = adc
        self.journal = journal
        self.flash = flash            # a folder of the board's flash with the card interface (None: RAM only)
        self.fallback = None          # that Journal, opened, while it is in use (the module docstring)
        self.fallback_failing = False  # the flash failed (or is read-only): tried again at the next status
        self._fallback_dropped = 0    # the flash journal's `dropped` when it was let go
        self.ticks_ms = ticks_ms
        self.ticks_diff = ticks_diff
        self.interval_ms = interval_ms
        self.status_interval_ms = status_interval_ms
        self.led = led
        self.fw = fw
        self._log = log
        self.uplink = Uplink(link, ticks_ms, ticks_diff, self._hello_frame, boot, window=window)
        self.seq = 0
        self.event_no = 0             # events of this boot, numbered from 1: (board, boot, event_no) is their identity
        self.sampling = True          # False: no more samples (a bench run that stops after N); the link is served
        self.ram = []                 # records waiting in RAM while the card cannot take them
        self.ram_limit = ram_queue
        self.ram_dropped = 0
        self.card_state = codec.CARD_OK
        self.clock_state = ds1307.UNSET
        self._fresh = None            # the reading sampled in this step, if any: sending it now makes it live
        self._next_sample = None
        self._stamp_floor = None      # the newest second a sample was stamped with (whole-second intervals only)
        self._waiting = False         # a due sample waits for the clock's next second
        self._seeking = False         # looking for the tick at which the clock's second changes
        self._seen_second = None
        self._next_status = None
        self._last_tm = None
        self._last_tm_ticks = 0
        self._led_off_at = None
        # The pair: only the active collector publishes; the other keeps a ring in RAM.
        self.pair = pair
        self.role = pair.ROLE if pair is not None else codec.SINGLE
        self.publishing = True        # a standby's role stands it by when it binds
        self.ring = []                # (epoch, raw, flags) of samples not published, oldest first (the time
                                      # is rebuilt from the epoch: a 6-tuple per entry would double its RAM)
        self.ring_limit = pair.ring_size(interval_ms) if pair is not None else 0
        self.last_published_epoch = None
        self.last_sample_epoch = None  # the newest second sampled, published or not (what a master claims)
        if pair is not None:
            pair.bind(self)

    # --- start-up -----------------------------------------------------------------------------------------------
    def start(self):
        """Recover the journal, let the pair's role look at the wire (a returning master learns whether a standby
        covers, before sampling), and say hello."""
        now = self.ticks_ms()
        self._next_sample = now
        self._next_status = now
        self._seeking = self.interval_ms % 1000 == 0
        self._seen_second = None
        try:
            kept = bytes(self.rtc.nvram_read(_RAM_DROPS_NVRAM, 8))
            if kept == _ram_drops_record(int.from_bytes(kept[:4], "little")):
                self.ram_dropped = int.from_bytes(kept[:4], "little")   # never reset: the gateway counts increases
        except OSError:
            pass                      # no clock on the bus: the count starts at 0 (the gateway says dropped_reset)
        if self.journal is not None:
            try:
                self.journal.open()
            except OSError as e:
                self._card_failed(e)
        if self._use_fallback() is not None and not self.fallback.pending and self.card_state == codec.CARD_OK:
            self._let_fallback_go()   # opened to recover it; nothing left to move
        if self.pair is not None:
            self.pair.start()
        self.send_hello()

    def send_hello(self):
        self.uplink.send_control(self._hello_frame())

    def _hello_frame(self):
        tm, state = self.read_clock()
        n_next = self.uplink.oldest_unacked()
        self.uplink.hello_sent(n_next)
        return codec.hello(self.board_id, self.boot, n_next, utc.iso(tm), state, self.role, self.fw, self.uid)

    # --- the clock -------------------------------------------------------------------------------------------------
    def read_clock(self):
        """(tm, state) from one read of the RTC. A clock that cannot be trusted ('halted', 'invalid', or an I2C
        error) gives an estimate from the last good reading and the tick counter, and its state says so: the
        reading is flagged, never silently given a made-up time."""
        try:
            tm, state = self.rtc.read()
        except OSError:
            tm, state = None, ds1307.INVALID
        if tm is not None and (state == ds1307.OK or state == ds1307.UNSET):
            self._last_tm = tm
            self._last_tm_ticks = self.ticks_ms()
        elif self._last_tm is not None:
            secs = utc.to_epoch(self._last_tm) + self.ticks_diff(self.ticks_ms(), self._last_tm_ticks) // 1000
            tm = utc.from_epoch(secs)
        elif tm is None:
            tm = (2000, 1, 1, 0, 0, 0)    # no good reading yet: the DS1307's zero, flagged by its state
        self.clock_state = state
        return tm, state

    def set_clock(self, iso_time):
        """The gateway's `T` frame: set the RTC to `iso_time` and send a status frame with the new clock state.
        A time that does not parse is ignored (the codec checked its shape; Feb 30 still gets here); a clock that
        refuses it is logged, and the status frame tells the gateway, which sets it again."""
        try:
            tm = utc.parse_iso(iso_time)
        except ValueError:
            return
        try:
            self.rtc.set_datetime(tm)
        except (OSError, ValueError) as e:
            self.log("rtc: cannot set the clock (%r)" % (e,))
        else:
            self._stamp_floor = None  # the clock may have gone back: the seconds of the old clock do not count
            self._seeking = False
            self._align(self.ticks_ms())   # a DS1307 starts its second when it is set
        self.send_status()

    # --- the loop ----------------------------------------------------------------------------------------------------
    def step(self):
        """Do whatever is due now; never blocks."""
        now = self.ticks_ms()
        if self._seeking:
            self._seek_edge(now)
        if self.sampling and self.ticks_diff(now, self._next_sample) >= 0 and self._new_second():
            self.sample()
            self._next_sample += self.interval_ms
            if self._waiting or self.ticks_diff(now, self._next_sample) >= self.interval_ms:
                self._next_sample = now + self.interval_ms   # just after the clock's second began, or far
            self._waiting = False                            # behind (a long stall): do not burst
        for event in self.uplink.poll():
            kind = event[0]
            if kind == "acked":
                self._acked(event[1])
            elif kind == "time":
                self.set_clock(event[1])
            elif kind == "query":
                self.send_hello()
                self.uplink.resend_from(0)
            elif kind == "witness" and self.pair is not None:
                self.pair.on_witness(event[1], event[2], utc.epoch_or_none(event[3]))
        if self.pair is not None:
            self.pair.step()
        self._fill_window()
        if self._led_off_at is not None and self.ticks_diff(now, self._led_off_at) >= 0:
            self._led_off_at = None
            self.led.value(0)
        if self.ticks_diff(now, self._next_status) >= 0:
            self._next_status = now + self.status_interval_ms
            self.send_status()
            if self.journal is not None and (self.card_state == codec.CARD_ABSENT or
                                             self.card_state == codec.CARD_ERROR):
                self._retry_card()    # a card that failed or was pulled may be back; a full one is retried per sample
            elif self.card_state == codec.CARD_FULL and self._fallback_holds():
                self.move_fallback()  # and at every status: with sampling stopped, the card's sent backlog frees it
            self.fallback_failing = False
        if self.card_state == codec.CARD_OK and self.fallback is not None:
            self.move_fallback()      # what the gateway has not acknowledged from the flash; then it is let go

    def ms_until_sample(self):
        """Milliseconds until the next sample is due (0 or less: now); a main loop sleeps at most this long."""
        if not self.sampling:
            return self.status_interval_ms
        if self._waiting or self._seeking:
            return 10                 # waiting for the clock's next second: look again soon
        return self.ticks_diff(self._next_sample, self.ticks_ms())

    def _seek_edge(self, now):
        """After start-up, watch the clock until its second changes: that tick is where a second begins."""
        tm, state = self.read_clock()
        if state != ds1307.OK:
            self._seeking = False         # a clock that does not run: the gateway's setting aligns the samples
            return
        second = utc.to_epoch(tm)
        if self._seen_second is not None and second != self._seen_second:
            self._seeking = False
            self._align(now)
        self._seen_second = second

    def _align(self, edge):
        """A second of the clock began at tick `edge`: a sample due later in that same second is taken just after
        it begins instead, and every interval from there, where a loop that runs late (up to a second) keeps its
        second. The sample stays in its second: none is added, none skipped."""
        if self.interval_ms % 1000 == 0 and self._next_sample is not None:
            ahead = self.ticks_diff(self._next_sample, edge)
            if _AFTER_EDGE_MS < ahead < 1000:
                self._next_sample = edge + _AFTER_EDGE_MS

    def _new_second(self):
        """May the due sample be taken now? With a whole-second interval and a running clock, one second never
        gets two samples: a sample due in the second of the one before waits for the next second, and the schedule
        restarts there, just after a second began, where a loop that runs late (up to a second) keeps its second."""
        if self._stamp_floor is None:
            return True
        if self.ticks_diff(self.ticks_ms(), self._next_sample) >= self.interval_ms:
            return True               # a clock that does not move on (stopped, or wrong): sample by ticks
        tm, state = self.read_clock()
        if state != ds1307.OK or utc.to_epoch(tm) > self._stamp_floor:
            return True
        self._waiting = True
        return False

    def sample(self):
        raw = self.adc.read_u16()
        tm, state = self.read_clock()
        flags = "" if state == ds1307.OK else "Q"
        if self.role == codec.STANDBY:
            flags += "S"
        epoch = utc.to_epoch(tm)
        self.last_sample_epoch = epoch
        if state == ds1307.OK and self.interval_ms % 1000 == 0:
            self._stamp_floor = epoch
        # In a pair, the role decides at the moment of publishing, from the record the two boards share.
        if self.publishing if self.pair is None else self.pair.may_publish(epoch):
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
        return self._store(codec.reading_record(self.boot, self.seq, utc.iso(tm), raw, flags))

    def _store(self, record):
        """The card first; the flash fallback if the card cannot take it or the fallback still holds records (they
        reach the card first); RAM last. Returns a token identifying where it went: a card position, (fallback,
        position) for the flash, or a RAM entry (a list). Counted as dropped only what is gone: a RAM record pushed
        out of a full queue (the journals of a collector do not count what they refuse, soil.board)."""
        if self.journal is not None and self.card_state == codec.CARD_FULL and self._fallback_holds():
            self.move_fallback()      # a full card is tried once per sample
        if self.journal is not None and (self.card_state == codec.CARD_OK or self.card_state == codec.CARD_FULL) \
                and not self._fallback_holds():
            try:
                position = self.journal.append(record)
                self.card_state = codec.CARD_OK
                return position
            except JournalFull:
                self.card_state = codec.CARD_FULL
            except OSError as e:
                self._card_failed(e)
        fb = self._use_fallback()
        if fb is not None:
            try:
                return (fb, fb.append(record))
            except JournalFull:
                pass                  # the flash is full too: RAM
            except OSError as e:
                self._fallback_failed(e)
        if len(self.ram) >= self.ram_limit:
            self.ram.pop(0)
            self.ram_dropped += 1
            try:                      # in the clock's NVRAM: what fails here is the card and the flash, not it
                self.rtc.nvram_write(_RAM_DROPS_NVRAM, _ram_drops_record(self.ram_dropped))
            except OSError:
                pass
        entry = [record]
        self.ram.append(entry)
        return entry

    def _next_record(self):
        """Oldest unsent record: the card's backlog first (the fallback's records are moved there while the card
        works), else the fallback's, then RAM."""
        if self.journal is not None and self.card_state != codec.CARD_ABSENT and self.card_state != codec.CARD_ERROR:
            try:
                item = self.journal.read_next()
            except OSError as e:
                self._card_failed(e)
                item = None
            if item is not None:
                return item[0], item[1]
        elif self.fallback is not None:
            try:
                item = self.fallback.read_next()
            except OSError as e:
                self._fallback_failed(e)
                item = None
            if item is not None:
                return item[0], (self.fallback, item[1])
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
        if position is None:
            return
        if len(position) == 2:        # (fallback, position): a record on the flash
            if position[0] is self.fallback:
                try:
                    self.fallback.ack(position[1])
                except OSError as e:
                    self._fallback_failed(e)
        elif self.journal is not None:
            try:
                self.journal.ack(position)
            except OSError as e:
                self._card_failed(e)
        if self.led is not None:
            # A blink is a state with a deadline checked by step(), never a delay in a callback (flaw F11).
            self.led.value(1)
            self._led_off_at = self.ticks_ms() + 50

    # --- the card failing and coming back (flaw F6: reported, and readings wait in RAM, never vanish) ---------------
    def _card_failed(self, err):
        """The card raised OSError `err`: 'full' (ENOSPC), 'absent' (ENODEV: pulled or never there) or 'error';
        logged. Until the card works again, readings wait in RAM."""
        code = errno_of(err)
        if code == ENOSPC:
            self.card_state = codec.CARD_FULL
        elif code == ENODEV:
            self.card_state = codec.CARD_ABSENT
        else:
            self.card_state = codec.CARD_ERROR
        self.log("card: %s (%r)" % (self.card_state, err))

    def _retry_card(self):
        """Open the journal again (a card pushed back in is mounted again by the HAL): 'ok' if it works."""
        try:
            self.journal.open()
            self.card_state = codec.CARD_OK
        except OSError as e:
            self._card_failed(e)

    # --- the fallback on the board's flash ---------------------------------------------------------------------------
    def _fallback_holds(self):
        return self.fallback is not None and self.fallback.pending > 0

    def _use_fallback(self):
        """The fallback journal, made and opened (recovered) when first needed; None without one, or failing."""
        if self.fallback is None and self.flash is not None and not self.fallback_failing:
            # The card journal's policy; a record it refuses is not counted: RAM takes it (see _store).
            fb = Journal(self.flash, max_bytes=FALLBACK_MAX_BYTES,
                         policy=self.journal.policy if self.journal is not None else DROP_OLDEST)
            try:
                fb.open()
            except OSError as e:
                self._fallback_failed(e)
                return None
            self.fallback = fb
        return self.fallback

    def _let_fallback_go(self):
        self._fallback_dropped = self.fallback.dropped
        self.fallback = None

    def _fallback_failed(self, err):
        self.log("flash fallback: failed (%r), readings wait in RAM" % (err,))
        if self.fallback is not None:
            self._let_fallback_go()   # what it holds stays on the flash, for the next open
        self.fallback_failing = True

    def move_fallback(self):
        """Move at most MOVE_BATCH records from the flash fallback to the card, oldest first, then acknowledge them
        on the flash (one pointer write). Records the gateway has acknowledged from the flash are not moved.
        Returns how many were moved; a card that refuses or fails keeps the rest on the flash."""
        fb = self.fallback
        moved = 0
        last = None
        try:
            fb.rewind()           # from the flash's ack pointer: a record moved is acknowledged there at once
            while moved < MOVE_BATCH:
                item = fb.read_next()
                if item is None:
                    break
                try:
                    self.journal.append(item[0])
                except JournalFull:
                    self.card_state = codec.CARD_FULL
                    break
                except OSError as e:
                    self._card_failed(e)
                    break
                self.card_state = codec.CARD_OK
                last = item[1]
                moved += 1
            if last is not None:
                fb.ack(last)
            fb.rewind()
        except OSError as e:
            self._fallback_failed(e)
        if self.fallback is fb and not fb.pending:
            self._let_fallback_go()
            self.log("flash fallback: all moved to the card")
        return moved

    # --- what the pair's role asks of its collector ------------------------------------------------------------------
    def stand_by(self):
        """Stop publishing: samples go to the ring (a standby watching its master, or handing back)."""
        self.publishing = False

    def take_over(self, after_epoch):
        """Publish the ring's samples later than `after_epoch` (the last second the other collector claimed; all
        of them if None), then every sample. Returns how many ring samples were published."""
        n = 0
        for epoch, raw, flags in self.ring:
            if after_epoch is None or epoch > after_epoch:
                self._publish(epoch, utc.from_epoch(epoch), raw, flags)
                n += 1
        self.ring = []
        self.publishing = True
        return n

    def settle_ring(self, owns, publishing):
        """A master's role read the standby's status: publish the ring's samples `owns(epoch)` gives to this
        collector (True), oldest first, drop those it gives to the other for good (False), keep the undecided
        (None) for a later status. `publishing`: whether this collector is the active one now."""
        self.publishing = publishing
        if not self.ring:
            return
        keep = []
        for entry in self.ring:
            mine = owns(entry[0])
            if mine:
                self._publish(entry[0], utc.from_epoch(entry[0]), entry[1], entry[2])
            elif mine is None:
                keep.append(entry)
        self.ring = keep

    def send_event(self, name, detail):
        """Send event `name` (codec.EVENTS) stamped with the board's clock, and log it. The uplink repeats it until
        the gateway acknowledges its COMMIT; its number makes it one row however often it arrives."""
        tm, _ = self.read_clock()
        self.event_no += 1
        self.uplink.send_event(self.event_no, codec.event(self.boot, self.event_no, name, detail, utc.iso(tm)))
        self.log("event %s: %s" % (name, detail))

    def ask_witness(self, master_id):
        """Ask the gateway whether it still hears `master_id` (None: a master never heard); the answer comes back
        through step() to the pair's `on_witness`."""
        self.uplink.send_control(codec.witness_query(master_id or "-"))

    # --- status -----------------------------------------------------------------------------------------------------
    def log(self, msg):
        if self._log is not None:
            self._log(msg)

    def pending(self):
        journal_pending = self.journal.pending if (self.journal is not None and
                                                   self.card_state != codec.CARD_ABSENT) else 0
        fallback_pending = self.fallback.pending if self.fallback is not None else 0
        return journal_pending + fallback_pending + len(self.ram) + \
            sum(1 for e in self.uplink.inflight if e[2] is None)

    def dropped(self):
        journal_dropped = self.journal.dropped if self.journal is not None else 0
        journal_dropped += self.fallback.dropped if self.fallback is not None else self._fallback_dropped
        return journal_dropped + self.ram_dropped

    def send_status(self):
        tm, state = self.read_clock()
        journal_bytes = 0
        if self.journal is not None:
            try:
                journal_bytes = self.journal.pending_bytes
            except (OSError, AttributeError):
                journal_bytes = 0
        self.uplink.send_control(codec.status(utc.iso(tm), state, self.pending(), self.dropped(),
                                              self.card_state, journal_bytes))
