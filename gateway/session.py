"""One board on one serial port: the gateway's side of docs/PROTOCOL.md.

The session validates every line (garbage is counted and logged, never stored), accepts reading frames strictly in
order, hands accepted readings to the writer, and sends the cumulative acknowledgement only when the writer reports
the COMMIT. Opening the port goes through `serial.serial_for_url`, so `/dev/ttyACM0`, a pseudo-terminal,
`socket://`, `spy://` and `hwgrep://` all work the same.
"""

import logging
import threading
import time

import serial

from gateway import frames
from soil import utc
from gateway.db import Reading

log = logging.getLogger("gateway.session")

_CONTROL_INTERVAL_S = 1.0     # at most one Q, W or N per second per board: a flood of bad frames gets few answers


class SessionStats:
    def __init__(self):
        self.frames = 0
        self.readings = 0
        self.bad_frames = 0
        self.overruns = 0
        self.gaps = 0
        self.duplicates = 0
        self.clock_sets = 0


class BoardSession:
    """Reads one board. `submit(session, epoch, n, reading)` hands an accepted reading to the writer;
    `writer_ok()` says whether the database is currently taking writes.

    `epoch` changes at every hello: frame numbers restart when a board resets, so an acknowledgement the writer
    computed for the old numbering must never reach the board under the new one."""

    def __init__(self, board_cfg, submit, writer_ok, status_sink=None, clock_tolerance_s=2.0, wait_ms=2000,
                 now=time.time, witness=None):
        self.cfg = board_cfg
        self._submit = submit
        self._writer_ok = writer_ok
        self._status_sink = status_sink
        self.clock_tolerance_s = clock_tolerance_s
        self.wait_ms = wait_ms
        self._now = now
        self.board_id = None
        self.role = "single"
        self.boot = None
        self.synced = False
        self.epoch = 0
        self.expected = 1
        self.committed = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._last_control = {}
        self._stop = threading.Event()
        self._thread = None
        self.port = None
        self.stats = SessionStats()
        self.splitter = frames.LineSplitter()
        self.connected = threading.Event()
        self._settime_timer = None
        self._witness = witness           # callable(session, master_id) -> (verdict, last_time_iso or None)
        self.last_frame_at = 0.0
        self.frame_seen = threading.Event()

    # --- port handling --------------------------------------------------------------------------------------
    def open(self):
        port = serial.serial_for_url(self.cfg.url, do_not_open=True)
        port.baudrate = self.cfg.baudrate
        port.timeout = 0.5               # a read returns as soon as a byte arrives; this only bounds stop()
        port.open()
        self.port = port
        self.connected.set()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="board:%s" % self.cfg.name, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.port is not None:
            try:
                self.port.close()
            except Exception:
                pass

    def _run(self):
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.port is None or not self.port.is_open:
                    self.open()
                    log.info("%s: port open", self.cfg.name)
                    backoff = 0.2
                    self._send(frames.query())   # a gateway that (re)starts asks the board where it stands
                self._read_some()
            except (serial.SerialException, OSError) as e:
                self.connected.clear()
                with self._lock:
                    self.synced = False
                if self.port is not None:
                    try:
                        self.port.close()
                    except Exception:
                        pass
                    self.port = None
                log.warning("%s: %s; retrying in %.1f s", self.cfg.name, e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _read_some(self):
        port = self.port
        data = port.read(max(1, port.in_waiting))
        if not data:
            return
        lines = self.splitter.feed(data)
        if self.splitter.overruns != self.stats.overruns:
            log.warning("%s: %d over-long line(s) dropped", self.cfg.name, self.splitter.overruns - self.stats.overruns)
            self.stats.overruns = self.splitter.overruns
        for line in lines:
            self.handle_line(line)

    def _send(self, frame):
        port = self.port
        if port is None:
            return
        with self._write_lock:
            try:
                port.write(frame)
            except (serial.SerialException, OSError) as e:
                log.warning("%s: write failed: %s", self.cfg.name, e)

    def _send_rate_limited(self, key, frame):
        now = self._now()
        if now - self._last_control.get(key, 0.0) >= _CONTROL_INTERVAL_S:
            self._last_control[key] = now
            self._send(frame)

    # --- protocol -------------------------------------------------------------------------------------------
    def handle_line(self, line):
        line = line.rstrip(b"\r")
        if not line:
            return
        try:
            kind, f = frames.decode(line)
        except frames.FrameError as e:
            self.stats.bad_frames += 1
            log.warning("%s: dropped a bad line (%s): %r", self.cfg.name, e, bytes(line[:60]))
            return
        self.stats.frames += 1
        self.last_frame_at = self._now()
        self.frame_seen.set()
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
        _, board, boot, n_next, rtc_time, clock, role, fw = f
        with self._lock:
            if self.board_id is not None and board != self.board_id:
                log.warning("%s: board id changed from %s to %s", self.cfg.name, self.board_id, board)
            self.board_id, self.boot, self.role = board, boot, role
            self.expected = n_next
            self.committed = n_next - 1
            self.synced = True
            self.epoch += 1
            self._last_control.pop("N", None)
        # Confirm the hello: until the board sees A,n_next-1 it ignores acks, which could otherwise come from our
        # numbering of its previous boot (a hello lost after a reset) and delete readings never committed.
        self._send(frames.ack(n_next - 1))
        log.info("%s: hello from %s boot %d (%s, clock %s, fw %s)", self.cfg.name, board, boot, role, clock, fw)
        self._check_clock(rtc_time, clock)
        if self._status_sink:
            self._status_sink(self, "hello", {"role": role, "fw": fw, "boot": boot, "clock": clock,
                                              "board_time": rtc_time})

    def _on_status(self, f):
        rtc_time, clock, pending, dropped, card, journal_bytes = f
        if self.board_id is None:
            self._send_rate_limited("Q", frames.query())
            return
        self._check_clock(rtc_time, clock)
        if self._status_sink:
            self._status_sink(self, "status", {"clock": clock, "pending": pending, "dropped": dropped,
                                               "card": card, "journal_bytes": journal_bytes,
                                               "board_time": rtc_time})

    def _on_event(self, f):
        name, detail, board_time = f
        if self.board_id is None:
            self._send_rate_limited("Q", frames.query())
            return
        log.info("%s: %s event: %s", self.cfg.name, self.board_id, detail)
        if self._status_sink:
            self._status_sink(self, "event", {"event": name, "detail": detail, "board_time": board_time})

    def _on_witness_query(self, master_id):
        """A standby stopped hearing its master and asks whether we still do (split-brain guard)."""
        verdict, last_time = "unknown", None
        if self._witness is not None and master_id != "-":
            verdict, last_time = self._witness(self, master_id)
        log.info("%s: witness for %s asks about %s: %s (last stored sample %s)", self.cfg.name, self.board_id,
                 master_id, verdict, last_time)
        self._send(frames.witness_answer(master_id, verdict, last_time))
        if verdict == "alive" and self._status_sink and self.board_id:
            self._status_sink(self, "event", {"event": "witness_refused",
                                              "detail": "master %s still heard by the gateway" % master_id,
                                              "board_time": None})

    def probe(self, timeout):
        """Is the board on this port alive right now? Ask it for a hello and wait for any frame."""
        if self._now() - self.last_frame_at < 0.5:
            return True
        if not self.connected.is_set():
            return False                  # its port is gone (unplugged, powered off): no need to wait
        self.frame_seen.clear()
        self._send(frames.query())
        return self.frame_seen.wait(timeout)

    def _check_clock(self, rtc_time, clock):
        """Keep the board's clock right (flaw F3): set it when it is not running right or has drifted."""
        off = None
        try:
            off = utc.to_epoch(utc.parse_iso(rtc_time)) - self._now()
        except ValueError:
            pass
        if clock != "ok" or off is None or abs(off) > self.clock_tolerance_s:
            if self._settime_timer is not None and self._settime_timer.is_alive():
                return
            self.stats.clock_sets += 1
            log.info("%s: setting the clock of %s (was %s, %s)", self.cfg.name, self.board_id, rtc_time, clock)
            # The DS1307 counts whole seconds and restarts its second when set, so the frame goes out on a second
            # boundary carrying that second: the board's clock then agrees with ours to a few milliseconds.
            now = self._now()
            boundary = int(now) + 1
            self._settime_timer = threading.Timer(boundary - now, self._send,
                                                  (frames.settime(utc.iso(time.gmtime(boundary)[:6])),))
            self._settime_timer.daemon = True
            self._settime_timer.start()

    def _on_reading(self, f):
        n, boot, seq, time_str, raw, flags = f
        with self._lock:
            if not self.synced:
                self._send_rate_limited("Q", frames.query())
                return
            if not self._writer_ok():
                # Nothing is kept while the database is down: the board holds everything on its card.
                self.expected = self.committed + 1
                self._send_rate_limited("W", frames.wait(self.wait_ms))
                return
            if n != self.expected:
                if n > self.expected:
                    self.stats.gaps += 1
                    self._send_rate_limited("N", frames.resend(self.expected))
                elif n <= self.committed:
                    self.stats.duplicates += 1
                    self._send_rate_limited("A", frames.ack(self.committed))
                return
            self.expected = n + 1
            self._last_control.pop("N", None)
            epoch = self.epoch
            board = self.board_id
            role = "standby" if "S" in flags else self.role
        self.stats.readings += 1
        try:
            tm = utc.parse_iso(time_str)
            sample_time = utc.sql(tm)
            quality = "suspect" if "Q" in flags else "rtc"
        except ValueError:
            sample_time = utc.sql(time.gmtime()[:6])
            quality = "suspect"
        reading = Reading(board, role, boot, seq, sample_time, raw, "live" if "L" in flags else "replay", quality)
        self._submit(self, epoch, n, reading)

    # --- called by the writer --------------------------------------------------------------------------------
    def committed_through(self, epoch, n):
        """The writer committed every accepted reading up to frame n: tell the board it may forget them."""
        with self._lock:
            if epoch != self.epoch:
                return
            if n > self.committed:
                self.committed = n
        self._send(frames.ack(n))

    def resume(self):
        """The database is back: ask the board to resend from the first uncommitted frame right away."""
        with self._lock:
            if not self.synced:
                return
            self.expected = self.committed + 1
            frame = frames.resend(self.expected)
        self._send(frame)

    def rollback(self, epoch):
        """The writer could not commit: forget what was accepted but not committed; the board resends it."""
        with self._lock:
            if epoch != self.epoch:
                return
            self.expected = self.committed + 1
        self._send_rate_limited("W", frames.wait(self.wait_ms))
