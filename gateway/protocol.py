"""The gateway's half of docs/PROTOCOL.md for one board, driven line by line.

`BoardProtocol` is what pyserial's `serial.threaded.Protocol` / `LineReader` is to its `ReaderThread`: a transport
(gateway/transport.py) calls `connection_made(transport)`, `data_received(bytes)` and `connection_lost(exc)`, and
the protocol answers through `transport.write(frame)`. It opens no port and starts no thread, so a test can feed it
lines and read what it sends.

What it does with the lines: it validates every one (garbage is counted and logged, never stored: a frame that
fails a field check, an impossible time say, takes no frame number), tracks the board's hello and epoch, accepts
reading frames strictly in order and hands them to the writer, and sends the cumulative acknowledgement only when
the writer reports the COMMIT (`committed_through`). Resend (N), wait (W) and query (Q) answers are rate limited
per board. Status and event frames go to the status sink, witness queries to the witness. When a board's clock
needs setting is the clock keeper's decision (gateway/clock.py).

Identity (docs/PROTOCOL.md, "Identities"): a port serves one board, `(board id, uid)`. A hello naming another one
is taken only as a fresh boot (`n_next` = 1) and is otherwise refused, also after the port was reopened (a stale
tty link reaching a stranger's board), so nothing is acknowledged to a board the port did not serve. Before a
hello is confirmed, `identity(protocol, board, uid)` (the gateway's registry, gateway/identity.py) may refuse it:
a board id that belongs to another board's uid. A refused board is never acknowledged: it keeps its readings.
"""

import logging
import threading
import time

from gateway import frames
from gateway.clock import ClockKeeper
from gateway.db import Reading
from soil import utc

log = logging.getLogger("gateway.protocol")

_CONTROL_INTERVAL_S = 1.0     # at most one Q, W or N per second per board: a flood of bad frames gets few answers
_RECENT_FRAME_S = 0.5         # a board heard this recently is alive without asking it
# A frame number this far ahead of the one expected is not a gap in the board's window (24 frames) but another
# numbering: the hello we hold is not the board's current one (a stray or forged hello). Ask it for a fresh one.
_FAR_AHEAD = 1024
SAMPLE_FUTURE_S = 600         # a sample time further ahead of the gateway's clock is stored time_quality='suspect'
SEQ_SEEN_BOOTS = 8            # boots whose highest seq seen on the line a session remembers
SAMPLE_PAST_S = 366 * 86400   # and one further behind it (a card can hold months of readings, not years)


class SessionStats:
    """Counters of one board's line, shown in the gateway's status snapshot."""

    def __init__(self):
        self.frames = 0
        self.readings = 0
        self.bad_frames = 0
        self.overruns = 0
        self.gaps = 0
        self.duplicates = 0
        self.clock_sets = 0
        self.stray_hellos = 0      # hellos refused: they claimed frames acknowledged that this gateway never acked
        self.far_times = 0         # readings whose time was far from the gateway's clock (stored as suspect)
        self.refused_hellos = 0    # hellos refused: an identity change without a fresh boot, a board id collision


class BoardProtocol:
    """One board's protocol state. `submit(protocol, epoch, n, reading)` hands an accepted reading to the writer;
    `writer_ok()` says whether the database is currently taking writes; `status_sink(protocol, kind, fields)`
    takes hello, status and event frames; `witness(protocol, master_id)` answers a standby's witness query with
    (verdict, last stored sample time or None).

    `epoch` changes at every hello: frame numbers restart when a board resets, so an acknowledgement the writer
    computed for the old numbering must never reach the board under the new one.

    Thread safety: the transport's thread feeds lines, the writer's thread calls committed_through, rollback and
    resume, another board's thread may call probe; the numbering is kept under one lock."""

    def __init__(self, board_cfg, submit, writer_ok, status_sink=None, clock=None, wait_ms=2000, now=time.time,
                 witness=None, identity=None):
        self.cfg = board_cfg
        self._submit = submit
        self._writer_ok = writer_ok
        self._status_sink = status_sink
        self.seq_seen = {}            # boot -> the highest seq of the served board seen on the line (under _lock)
        self.clock = clock if clock is not None else ClockKeeper(now=now)
        self.wait_ms = wait_ms
        self._now = now
        self._witness = witness
        self._identity = identity
        self.board_id = None
        self.uid = None
        self.refused = None           # why the last hello was refused (shown in the status), None when served
        self._refusals = set()        # (served, offered) identities already alerted, so an alert is said once
        self._old_protocol_said = False
        self.role = "single"
        self.boot = None
        self.synced = False
        self.epoch = 0
        self.expected = 1
        self.committed = 0
        # The highest frame this gateway has acknowledged to this board's boot on this connection (hello
        # confirmations and acks after COMMIT); a hello of the same boot can never honestly claim more.
        self._numbering_known = False
        self._acked_high = 0
        self._lock = threading.Lock()
        self._last_control = {}
        self.transport = None
        self.connected = threading.Event()
        self.stats = SessionStats()
        self.splitter = frames.LineSplitter()
        self.last_frame_at = 0.0
        self.last_reading_at = 0.0    # when the last reading frame was accepted (a pair: who publishes)
        self.last_reading_source = None   # "live" or "replay": a replay draining the card shows here
        self.fw = None                # the firmware version of the last confirmed hello
        self._last_status = None      # the last status frame's fields, with the time it arrived
        self.frame_seen = threading.Event()

    # --- called by the transport ------------------------------------------------------------------------------
    def connection_made(self, transport):
        """The port is open: frames go out through `transport.write`. A gateway that (re)starts asks the board
        where it stands."""
        self.transport = transport
        with self._lock:
            self._numbering_known = False
        self.connected.set()
        self._send(frames.query())

    def connection_lost(self, exc):
        """The port failed: nothing can be sent, and the numbering is unknown until the next hello."""
        self.connected.clear()
        with self._lock:
            self.synced = False
            self._numbering_known = False   # the board may come back from another port, its frames acked there
        self.transport = None

    def data_received(self, data):
        """Bytes from the port: split into lines (bounded, flaw F8) and handle each."""
        lines = self.splitter.feed(data)
        if self.splitter.overruns != self.stats.overruns:
            log.warning("%s: %d over-long line(s) dropped", self.cfg.name, self.splitter.overruns - self.stats.overruns)
            self.stats.overruns = self.splitter.overruns
        for line in lines:
            self.handle_line(line)

    def _send(self, frame):
        transport = self.transport
        if transport is not None:
            transport.write(frame)

    def _send_rate_limited(self, key, frame):
        now = self._now()
        if now - self._last_control.get(key, 0.0) >= _CONTROL_INTERVAL_S:
            self._last_control[key] = now
            self._send(frame)

    # --- frames from the board ------------------------------------------------------------------------------
    def handle_line(self, line):
        """One line from the board, without its b"\\n"."""
        line = line.rstrip(b"\r")
        if not line:
            return
        try:
            kind, f = frames.decode(line)
        except frames.OldProtocol as e:
            self.stats.bad_frames += 1
            if not self._old_protocol_said:
                self._old_protocol_said = True
                log.error("%s: the board speaks %s", self.cfg.name, e)
            return
        except frames.FrameError as e:
            self.stats.bad_frames += 1
            log.warning("%s: dropped a bad line (%s): %r", self.cfg.name, e, bytes(line[:60]))
            return
        self.stats.frames += 1
        self.last_frame_at = self._now()
        try:
            self._dispatch(kind, f)
        finally:
            self.frame_seen.set()         # after the frame was handled: a probe then sees a hello's verdict

    def _dispatch(self, kind, f):
        if kind == frames.READING:
            self._on_reading(f)
        elif kind == frames.HELLO:
            self._on_hello(f)
        elif kind == frames.STATUS:
            self._on_status(f)
        elif kind == frames.EVENT:
            self._on_event(f)
        elif kind == frames.WITNESS_QUERY:
            self._on_witness_query(f[0])
        else:
            self.stats.bad_frames += 1
            log.warning("%s: unexpected %s frame from a board", self.cfg.name, kind)

    def _on_hello(self, f):
        _, board, boot, n_next, rtc_time, clock, role, fw, uid = f
        if self.board_id is not None and (board, uid) != (self.board_id, self.uid) and n_next != 1:
            self._refuse_change(board, uid, boot, n_next)
            return
        if self._identity is not None:
            refusal = self._identity(self, board, uid)
            if refusal is not None:
                # Another board owns this id: confirm nothing, acknowledge nothing; the board keeps its readings.
                self.stats.refused_hellos += 1
                with self._lock:
                    self.synced = False
                    self.refused = refusal
                return
        with self._lock:
            same = self._numbering_known and (board, uid, boot) == (self.board_id, self.uid, self.boot)
            stray = same and frames.n_diff(n_next - 1, self._acked_high) > 0
            if not stray:
                self._accept_hello(board, uid, boot, n_next, role)
                if not same:
                    self._acked_high = n_next - 1
        if stray:
            # The board's n_next is the oldest frame it has not had acknowledged, and in this boot, on this
            # connection, only we acknowledge: a hello claiming more than we committed is not the board's (a stray
            # or forged line). Confirming it would be an ack of readings never stored; ask the board instead.
            self.stats.stray_hellos += 1
            log.warning("%s: a hello for %s boot %d says frames up to %d are acknowledged, but this gateway acked "
                        "only up to %d: not confirmed, asking the board", self.cfg.name, board, boot, n_next - 1,
                        self._acked_high)
            self._send_rate_limited("Q", frames.query())
            return
        # Confirm the hello: until the board sees A,n_next-1 it ignores acks, which could otherwise come from our
        # numbering of its previous boot (a hello lost after a reset) and delete readings never committed.
        self._send(frames.ack(n_next - 1, boot))
        log.info("%s: hello from %s boot %d (%s, clock %s, fw %s)", self.cfg.name, board, boot, role, clock, fw)
        self.fw = fw
        self._check_clock(rtc_time, clock)
        if self._status_sink:
            self._status_sink(self, "hello", {"role": role, "fw": fw, "boot": boot, "clock": clock,
                                              "board_time": rtc_time, "uid": uid})

    def _refuse_change(self, board, uid, boot, n_next):
        """A hello naming another board than the one this port serves, without a fresh boot (a forged or stray
        frame, or a stranger's board behind a reused tty path): refused, said once, nothing confirmed."""
        self.stats.refused_hellos += 1
        detail = ("port %s serves board %s (uid %s); a hello from board %s (uid %s, boot %d, n_next %d) without a "
                  "fresh boot was refused: nothing of it is acknowledged"
                  % (self.cfg.name, self.board_id, self.uid, board, uid, boot, n_next))
        self.refused = detail
        key = ((self.board_id, self.uid), (board, uid))
        if key in self._refusals:
            return
        self._refusals.add(key)
        log.error("%s: %s", self.cfg.name, detail)
        if self._status_sink:
            self._status_sink(self, "alert", {"board": self.board_id, "event": "identity_refused",
                                              "detail": detail[:255]})

    def _accept_hello(self, board, uid, boot, n_next, role):
        """Take the hello's identity and numbering (under the lock): a new epoch expecting frame n_next."""
        if self.board_id is not None and (board, uid) != (self.board_id, self.uid):
            log.warning("%s: a new board at a fresh boot: %s (uid %s), was %s (uid %s)", self.cfg.name, board,
                        uid, self.board_id, self.uid)
            self.seq_seen = {}        # another board's seq numbers are not this one's
        self.board_id, self.uid, self.boot, self.role = board, uid, boot, role
        self.refused = None
        self.expected = n_next
        self.committed = n_next - 1
        self.synced = True
        self._numbering_known = True
        self.epoch += 1
        self._last_control.pop("N", None)

    def _on_status(self, f):
        rtc_time, clock, pending, dropped, card, journal_bytes = f
        if not self.synced:           # no confirmed hello on this open port: whose status is it?
            self._send_rate_limited("Q", frames.query())
            return
        self._check_clock(rtc_time, clock)
        self._last_status = {"clock": clock, "pending": pending, "dropped": dropped, "card": card,
                             "journal_bytes": journal_bytes, "board_time": rtc_time, "at": self._now()}
        if self._status_sink:
            self._status_sink(self, "status", {"clock": clock, "pending": pending, "dropped": dropped,
                                               "card": card, "journal_bytes": journal_bytes,
                                               "board_time": rtc_time})

    def _on_event(self, f):
        boot, k, name, detail, board_time = f
        if not self.synced:
            self._send_rate_limited("Q", frames.query())
            return
        log.info("%s: %s event %d/%d %s: %s", self.cfg.name, self.board_id, boot, k, name, detail)
        if self._status_sink:
            self._status_sink(self, "event", {"event": name, "detail": detail, "board_time": board_time,
                                              "boot": boot, "event_no": k})

    def event_stored(self, board, boot, k):
        """The writer committed (or had already stored) event k of `board`'s boot `boot`: the board may forget it.
        Not for a board that is no longer this port's (its hello changed the id in between)."""
        if board == self.board_id:
            self._send(frames.event_ack(boot, k))

    def _on_witness_query(self, master_id):
        """A standby stopped hearing its master and asks whether we still do (split-brain guard)."""
        verdict, last_time = "unknown", None
        if not self.synced:
            self._send_rate_limited("Q", frames.query())
            return
        if self._witness is not None and master_id != "-":
            verdict, last_time = self._witness(self, master_id)
        log.info("%s: witness for %s asks about %s: %s (last stored sample %s)", self.cfg.name, self.board_id,
                 master_id, verdict, last_time)
        self._send(frames.witness_answer(master_id, verdict, last_time))
        if verdict == "alive" and self._status_sink and self.board_id:
            self._status_sink(self, "event", {"event": "witness_refused",
                                              "detail": "master %s still heard by the gateway" % master_id,
                                              "board_time": None})

    def _check_clock(self, rtc_time, clock):
        if self.clock.check(rtc_time, clock, self._send):
            self.stats.clock_sets += 1
            log.info("%s: setting the clock of %s (was %s, %s)", self.cfg.name, self.board_id, rtc_time, clock)

    def _on_reading(self, f):
        n, boot, seq, time_str, raw, flags = f
        with self._lock:
            if not self.synced:
                self._send_rate_limited("Q", frames.query())
                return
            self._saw_seq(boot, seq)
            if not self._writer_ok():
                # Nothing is kept while the database is down: the board holds everything on its card.
                self.expected = frames.n_after(self.committed)
                self._send_rate_limited("W", frames.wait(self.wait_ms))
                return
            ahead = frames.n_diff(n, self.expected)     # frame numbers wrap at 2**31: compare on the circle
            if ahead != 0:
                if ahead > _FAR_AHEAD:
                    # Not this board's numbering (we hold a stray hello): nothing is acked or expected from it
                    # until the board says where it stands.
                    self.stats.gaps += 1
                    self._send_rate_limited("Q", frames.query())
                elif ahead > 0:
                    self.stats.gaps += 1
                    self._send_rate_limited("N", frames.resend(self.expected))
                elif frames.n_diff(n, self.committed) <= 0:
                    self.stats.duplicates += 1
                    self._send_rate_limited("A", frames.ack(self.committed, self.boot))
                return
            self.expected = frames.n_after(n)
            self._last_control.pop("N", None)
            epoch = self.epoch
            board = self.board_id
            role = "standby" if "S" in flags else self.role
        self.stats.readings += 1
        tm = utc.parse_iso(time_str)          # a real instant: frames.decode checked the calendar
        sample_time = utc.sql(tm)
        quality = "suspect" if "Q" in flags else "rtc"
        if quality == "rtc" and self._far_from_clock(tm, board, boot, seq, time_str):
            quality = "suspect"
        reading = Reading(board, role, boot, seq, sample_time, raw, "live" if "L" in flags else "replay", quality)
        self.last_reading_at = self._now()
        self.last_reading_source = reading.source
        self._submit(self, epoch, n, reading)

    def seen_seqs(self):
        """{boot: the highest seq of the served board seen on the line}, a copy."""
        with self._lock:
            return dict(self.seq_seen)

    def _saw_seq(self, boot, seq):
        """Remember the highest seq seen per boot of the served board (the newest SEQ_SEEN_BOOTS boots): a reading
        seen on the line while the database was away and never stored later is a loss the gateway can name
        (gateway.db.ReadingStore.close_boots)."""
        if seq > self.seq_seen.get(boot, 0):
            self.seq_seen[boot] = seq
            if len(self.seq_seen) > SEQ_SEEN_BOOTS:
                del self.seq_seen[min(self.seq_seen)]

    def _far_from_clock(self, tm, board, boot, seq, time_str):
        """A sample time the board's clock cannot have read if it ran right: more than SAMPLE_FUTURE_S ahead of
        the gateway's clock, or more than SAMPLE_PAST_S behind it (year 9999, 2000-01-01). Counted in the status;
        the first of the port is logged."""
        t = utc.to_epoch(tm)
        now = self._now()
        if now - SAMPLE_PAST_S <= t <= now + SAMPLE_FUTURE_S:
            return False
        self.stats.far_times += 1
        if self.stats.far_times == 1:
            log.warning("%s: %s reading %d/%d has the time %s, far from the gateway's clock: stored with "
                        "time_quality 'suspect' (further ones are counted in the status)", self.cfg.name, board,
                        boot, seq, time_str)
        return True

    # --- asked by the gateway ---------------------------------------------------------------------------------
    def board_state(self):
        """What the gateway knows of its board right now, for people (the dashboard, `soil-gateway status`): the
        identity, role and firmware of its last confirmed hello, when its last frame and last reading arrived
        (gateway clock, epoch seconds; None before the first), and its last status frame (pending on its card,
        dropped, card and clock state, or None before the first). A copy: the caller may keep it."""
        last = self._last_status
        return {"board": self.board_id, "uid": self.uid, "role": self.role, "boot": self.boot, "fw": self.fw,
                "synced": self.synced, "connected": self.connected.is_set(), "refused": self.refused,
                "last_frame_at": self.last_frame_at or None, "last_reading_at": self.last_reading_at or None,
                "last_reading_source": self.last_reading_source,
                "last_status": dict(last) if last is not None else None}

    def probe(self, timeout):
        """Is the board this port serves alive right now? Ask it for a hello and wait for a frame. Frames count
        only while the port is synced (a hello of its board confirmed since the port opened): a stranger's board
        behind a reused tty path is no sign that the master lives."""
        if self.synced and self._now() - self.last_frame_at < _RECENT_FRAME_S:
            return True
        if not self.connected.is_set():
            return False                  # its port is gone (unplugged, powered off): no need to wait
        deadline = time.monotonic() + timeout
        self.frame_seen.clear()
        self._send(frames.query())
        while self.frame_seen.wait(max(0.0, deadline - time.monotonic())):
            if self.synced:
                return True
            self.frame_seen.clear()
            if time.monotonic() >= deadline:
                break
        return False

    # --- called by the writer --------------------------------------------------------------------------------
    def committed_through(self, epoch, n):
        """The writer committed every accepted reading up to frame n: tell the board it may forget them."""
        with self._lock:
            if epoch != self.epoch:
                return
            if frames.n_diff(n, self.committed) > 0:
                self.committed = n
            if frames.n_diff(n, self._acked_high) > 0:
                self._acked_high = n
            frame = frames.ack(n, self.boot)
        self._send(frame)

    def resume(self):
        """The database is back: ask the board to resend from the first uncommitted frame right away."""
        with self._lock:
            if not self.synced:
                return
            self.expected = frames.n_after(self.committed)
            frame = frames.resend(self.expected)
        self._send(frame)

    def rollback(self, epoch):
        """The writer could not commit: forget what was accepted but not committed; the board resends it."""
        with self._lock:
            if epoch != self.epoch:
                return
            self.expected = frames.n_after(self.committed)
        self._send_rate_limited("W", frames.wait(self.wait_ms))
