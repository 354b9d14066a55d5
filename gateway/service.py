"""The gateway service: one protocol per board, each on its serial transport, feeding one database writer.

Why one writer for all boards: a transaction per reading (the book's autocommit INSERT per row) caps a Pi at a few
hundred rows per second, and a transaction per board multiplies round trips. The writer takes everything that is
waiting, inserts it as one multi-row statement, COMMITs, and only then acknowledges each board up to its highest
committed frame. When the database is away it keeps trying with bounded backoff while the boards keep caching.
"""

import json
import logging
import os
import queue
import threading
import time

from gateway.alerts import AlertBook, AlertStore
from gateway.alertwatch import AlertWatch
from gateway.moisture import latest_moisture
from gateway.mqttpub import MqttPublisher
from gateway.clock import ClockKeeper
from gateway.db import InvalidReading, ReadingStore, check_reading
from gateway.dbconn import DatabaseConfigError, DatabaseError
from gateway.galera import ClusterWatch, newest
from gateway.hourly import HourlyJob
from gateway.identity import IdentityRegistry
from gateway.notify import Email, Notifier, Webhook
from gateway.outagelog import OutageLog
from gateway.primary import ROUND_PAUSE_S, look_at_servers
from gateway.protocol import BoardProtocol
from gateway.ratelimit import RepeatLimiter
from gateway.supervisor import Supervisor
from gateway.tap import LineTap
from gateway.transport import SerialTransport
from gateway.web.server import DashboardServer
from gateway.metrics import MetricsServer
from gateway.web.state import board_view

log = logging.getLogger("gateway")

# A status frame's card states in which the board's `pending` counts its card: with the card away (absent) or
# failing (error) readings may still be on it, so an earlier boot's missing readings may still arrive.
CARD_READABLE = ("ok", "full")


class Writer:
    """Batches readings from every session into one transaction and acknowledges after COMMIT.

    A session is a board's gateway.protocol.BoardProtocol: the writer reads its cfg, board_id, role and boot, and
    calls its committed_through(epoch, n), rollback(epoch), event_stored(board, boot, event_no) and seen_seqs()."""

    def __init__(self, store, batch_max=5000, retry_initial_s=0.25, retry_max_s=5.0, linger_s=0.01):
        self.store = store
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.queue = queue.Queue()
        self._ok = threading.Event()
        self._ok.set()
        self._stop = threading.Event()
        self._thread = None
        self.committed_rows = 0
        self.batches = 0
        self.last_error = None
        self.cluster_watch = None      # a gateway.galera.ClusterWatch: a newer look at the nodes than the store's
        self._outage = OutageLog(log, "database")   # the log's account of an outage, thinned (gateway/outagelog.py)
        self.on_commit = None          # optional callback(readings) for observers (benchmarks, the demo)
        self.on_recovered = None       # called when the database answers again after an outage
        self.on_batch = None           # optional callback(rows, seconds) after each COMMIT (gateway/metrics.py)
        self.last_sample = {}          # board -> newest committed sample time (for the witness)
        self.stored_by_board = {}      # board -> readings committed since start (gateway/supervisor.py's summary)
        self._busy_since = None        # monotonic time the writer began its current round of database work

    def ok(self):
        return self._ok.is_set()

    def alive(self):
        """The writer's thread runs (False before start() and after it ended, normally or not)."""
        return self._thread is not None and self._thread.is_alive()

    def busy_for(self):
        """Seconds the writer has spent in its current round of database work (a probe, or a batch and its
        acknowledgements); 0.0 while it waits, for readings or out a retry backoff: both are bounded waits. A
        number that keeps growing past the database's own timeouts is a writer that is stuck (gateway/supervisor.py
        then stops the systemd watchdog's pings)."""
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def database_state(self):
        """The database as the writer last found it, for people watching: {"ok", "last_error" (the last failure's
        message, kept after recovery), "server" ((host, port) in use, None before the first connection),
        "semisync" (gateway.db.ReadingStore.semisync_state), "committed_rows", "batches", "queued"}."""
        return {"ok": self.ok(), "last_error": self.last_error, "server": self.store.server_in_use(),
                "semisync": self.store.semisync_state(), "committed_rows": self.committed_rows,
                "batches": self.batches, "queued": self.queue.qsize(),
                "cluster": self.cluster_state()}

    def cluster_state(self):
        """A Galera cluster's nodes as the newest look-up round found them: the store's own (at its connections) or
        the cluster watch's; "in use" is always the store's server. None when the servers are not Galera nodes."""
        mine = self.store.cluster_state() if hasattr(self.store, "cluster_state") else None
        if self.cluster_watch is None:
            return mine
        return newest(mine, self.cluster_watch.view.state(self.store.server_in_use()))

    def submit(self, session, epoch, n, reading):
        self.queue.put(("r", session, epoch, n, reading))

    def submit_status(self, session, kind, fields):
        self.queue.put(("s", session, kind, fields))

    def start(self):
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self.queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.store.close()

    def _take_batch(self):
        """Everything waiting. When that is only a reading or three (live traffic), also what arrives within
        `linger_s`: with many boards sampling, one COMMIT then serves several readings (group commit) for a few
        milliseconds of latency. A burst is never held back: its board is waiting for the ack to send more."""
        item = self.queue.get()
        items = [item]
        deadline = time.monotonic() + self.linger_s
        while len(items) < self.batch_max and item is not None:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or len(items) >= 4:
                    break          # a burst (a replay window) is committed at once: its board waits for the ack
                try:
                    item = self.queue.get(timeout=left)
                except queue.Empty:
                    break
            items.append(item)
        return items

    def _run(self):
        backoff = self.retry_initial_s
        while not self._stop.is_set():
            if not self._ok.is_set():
                # Probe until the database answers again; the sessions meanwhile tell boards to wait.
                try:
                    self._busy_since = time.monotonic()
                    self.store.check()
                    self._ok.set()
                    self._outage.recovered()
                    backoff = self.retry_initial_s
                    if self.on_recovered is not None:
                        self.on_recovered()
                except DatabaseError as e:
                    self._busy_since = None
                    self._report(e)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
                    self._drop_queued()
                    continue
            self._busy_since = None
            items = self._take_batch()
            if None in items:
                return
            self._busy_since = time.monotonic()
            readings = [it for it in items if it[0] == "r"]
            statuses = [it for it in items if it[0] == "s"]
            if readings:
                self._write_readings(readings)
            if statuses and self._ok.is_set():
                self._write_statuses(statuses)

    def _write_readings(self, items):
        rows = [it[4] for it in items]
        started = time.monotonic()
        try:
            try:
                self.store.insert_batch(rows)
            except InvalidReading:
                # The database is fine; one reading can never be a row. Store the others, report that one
                # loudly, and let the board forget it: resending it forever would stall every reading behind it.
                rows = self._without_invalid(items)
                self.store.insert_batch(rows)
        except DatabaseError as e:
            self._ok.clear()
            self._report(e)
            for session, epoch in {(it[1], it[2]) for it in items}:
                session.rollback(epoch)
            return
        elapsed = time.monotonic() - started
        self.committed_rows += len(rows)
        self.batches += 1
        for r in rows:
            self.stored_by_board[r.board] = self.stored_by_board.get(r.board, 0) + 1
            if r.sample_time > self.last_sample.get(r.board, ""):
                self.last_sample[r.board] = r.sample_time
        highest = {}
        for _, session, epoch, n, _ in items:
            highest[(session, epoch)] = n      # a session submits in frame order: its last is its highest (the
                                               # numbers wrap at 2**31, so the largest need not be the last)
        for (session, epoch), n in highest.items():
            session.committed_through(epoch, n)
        if self.on_commit is not None:
            self.on_commit(rows)
        if self.on_batch is not None:      # after the acks: an observer never delays one
            self.on_batch(len(rows), elapsed)

    def _without_invalid(self, items):
        good = []
        for _, session, _, n, reading in items:
            try:
                check_reading(reading)
                good.append(reading)
            except InvalidReading as e:
                log.error("%s: reading %s/%s/%s cannot be stored (%s); it is reported and skipped",
                          session.cfg.name, reading.board, reading.boot, reading.seq, e)
                try:
                    self.store.add_board_event(session.board_id, "invalid_reading", str(e)[:200], None)
                except DatabaseError:
                    pass
        return good

    def _write_statuses(self, items):
        for _, session, kind, fields in items:
            try:
                if kind == "alert":
                    self.store.add_board_event(fields["board"], fields["event"], fields["detail"])
                    continue
                if kind == "event":
                    board = session.board_id
                    self.store.add_collector_event(board, fields["event"], fields["detail"],
                                                   _sql_time(fields.get("board_time")), fields.get("boot"),
                                                   fields.get("event_no"))
                    if fields.get("event_no") is not None:
                        session.event_stored(board, fields["boot"], fields["event_no"])
                    continue
                self.store.upsert_board_status(session.board_id, **_status_columns(session, fields))
                if kind == "status":
                    self._record_losses(session, fields)
                if kind == "hello":
                    self.store.add_board_event(session.board_id, "boot", "boot %d, fw %s, clock %s"
                                               % (fields["boot"], fields["fw"], fields["clock"]),
                                               _sql_time(fields.get("board_time")))
            except DatabaseError as e:
                self._ok.clear()
                self._report(e)
                return

    def _record_losses(self, session, fields):
        """A status frame: its `dropped` against what the database holds for the board (one event per increase,
        gateway.db.ReadingStore.record_dropped); and, when it says the board holds nothing more (pending 0, its card
        readable), the readings of earlier boots that never arrived (ReadingStore.close_boots)."""
        board = session.board_id
        readable = fields["card"] in CARD_READABLE
        self.store.record_dropped(board, fields["dropped"], _sql_time(fields.get("board_time")), readable)
        if fields["pending"] == 0 and readable and session.boot is not None:
            for boot, missing, lost, ranges in self.store.close_boots(board, session.boot, session.seen_seqs()):
                if lost:
                    log.warning("%s: %s boot %d: %d readings never arrived and were not counted as dropped (seq %s)",
                                session.cfg.name, board, boot, lost, ranges)

    def _drop_queued(self):
        """While the database is away, whatever was accepted is rolled back so the boards resend it later."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._stop.set()
                return
            if item[0] == "r":
                item[1].rollback(item[2])

    def _report(self, err):
        self.last_error = str(err)
        self._outage.failed(err, logging.ERROR if isinstance(err, DatabaseConfigError) else logging.WARNING)


def _sql_time(iso):
    if not iso:
        return None
    return iso.replace("T", " ").rstrip("Z")


def _status_columns(session, fields):
    cols = {"role": session.role, "boot": session.boot, "port": session.cfg.name}
    for key in ("fw", "clock", "pending", "card", "journal_bytes"):    # dropped: Writer._record_losses
        if key in fields:
            cols[key] = fields[key]
    if fields.get("board_time"):
        cols["last_board_time"] = _sql_time(fields["board_time"])
    return cols


class Gateway:
    """A session (BoardProtocol) and a SerialTransport for each configured board, plus the writer. `start()`
    returns at once; `stop()` joins."""

    def __init__(self, config, store=None):
        self.config = config
        self.store = store or ReadingStore(config.database)
        retry_max_s = config.retry_max_s
        if config.database.servers:
            # Several servers: look for the (new) primary every ~250 ms while the database is unavailable, so
            # writes resume within a round or two of a promotion (gateway/primary.py).
            retry_max_s = min(retry_max_s, ROUND_PAUSE_S)
        self.writer = Writer(self.store, config.batch_max, min(config.retry_initial_s, retry_max_s), retry_max_s,
                             config.linger_ms / 1000.0)
        self.writer.on_recovered = self._resume_boards
        # Several servers: a look at every one now and then for the status (gateway/galera.py ClusterWatch; the
        # writer looks only when it connects or reconnects). Its state is None unless they are Galera nodes.
        self.cluster_watch = None
        if config.database.servers:
            self.cluster_watch = ClusterWatch(lambda view: look_at_servers(config.database, view=view))
            self.writer.cluster_watch = self.cluster_watch
        self._witness_store = None
        # Which board owns each board id (gateway/identity.py), with its own connection like the witness's.
        self.identity = IdentityRegistry(ReadingStore(config.database, announce_moves=False))
        self.sessions = []             # one BoardProtocol per board, in the order of config.boards
        self.transports = []           # the SerialTransport that reads each session's port
        self.tap = LineTap(config.tap_path) if config.tap_path else None
        self.warnings = RepeatLimiter()    # per-port warnings, rate limited (gateway/ratelimit.py)
        self._started_at = None
        self.notifier = self.alerts = self.alert_watch = None
        self.mqtt = None               # the MQTT view of the database (gateway/mqttpub.py), when [mqtt] is set
        if config.mqtt is not None:
            self.mqtt = MqttPublisher(config.mqtt, config.database, board_views=self._board_views)
        if config.alerts is not None:
            self._make_alerts(config.alerts)
        self.hourly = None             # the hourly aggregates and retention (gateway/hourly.py), its own connection
        if config.hourly is not None and config.hourly.enabled:
            self.hourly = HourlyJob(config.hourly, ReadingStore(config.database, announce_moves=False))
        self.dashboard = None          # the read-only web page (gateway/web/), when [dashboard] enables it
        if config.dashboard is not None and config.dashboard.enabled:
            self.dashboard = DashboardServer(config.dashboard, self)
        self.metrics = None            # the Prometheus endpoint (gateway/metrics.py), when [metrics] enables it
        if config.metrics is not None and config.metrics.enabled:
            self.metrics = MetricsServer(config.metrics, self)
            self.writer.on_batch = self.metrics.observe_batch
        for board in config.boards:
            self.add_board(board)
        # systemd's READY/STATUS/WATCHDOG/STOPPING and the periodic summary line (gateway/supervisor.py)
        self.supervisor = Supervisor(self, config.summary_every_s)

    def _make_alerts(self, settings):
        """The alert book (its rows in `alerts`), the notifier that delivers what it opens and clears, and the
        thread that applies the rules; the book and the rules share one connection of their own (gateway/alerts.py)."""
        receivers = []
        if settings.webhook_url:
            receivers.append(Webhook(settings.webhook_url, settings.webhook_token))
        if settings.smtp is not None:
            receivers.append(Email(settings.smtp))
        if self.mqtt is not None:
            receivers.append(self.mqtt.alert_receiver())
        self.notifier = Notifier(receivers)
        store = ReadingStore(self.config.database, announce_moves=False)
        self.alerts = AlertBook(AlertStore(store), deliver=self.notifier.deliver)
        self.alert_watch = AlertWatch(settings, self.alerts, store, self.alert_state, moisture_query=latest_moisture)

    def add_board(self, board_cfg):
        """One board: its protocol with its own clock keeper, and the transport that reads its port into it."""
        s = BoardProtocol(board_cfg, self.writer.submit, self.writer.ok, self.writer.submit_status,
                          clock=ClockKeeper(self.config.clock_tolerance_s), wait_ms=self.config.wait_ms,
                          witness=self.witness, identity=self.identity.claim)
        transport = SerialTransport(board_cfg, s, tap=self.tap)
        if self.tap is not None:
            self.tap.add_port(board_cfg.name, board_cfg.url)
        self.sessions.append(s)
        self.transports.append(transport)
        return s

    def witness(self, asking, master_id, probe_timeout=1.0):
        """Split-brain guard: does the gateway still hear `master_id`? Returns (verdict, last stored sample time).

        A standby asks when the heartbeat wire went quiet. If the master's port still answers, only the wire is
        cut and the standby must not take over. The last stored sample time lets a standby that does take over
        publish exactly the samples the database lacks."""
        master = None
        for s in self.sessions:
            if s is not asking and s.board_id == master_id:
                master = s
        if master is None:
            verdict = "unknown"
        else:
            verdict = "alive" if master.probe(probe_timeout) else "dead"
        last = self.writer.last_sample.get(master_id)
        if last is None:
            try:
                last = self._lookup_store().last_sample_time(master_id)
            except DatabaseError:
                last = None
        return verdict, (last.replace(" ", "T") + "Z") if last else None

    def _lookup_store(self):
        # The writer's connection belongs to the writer thread; witness look-ups get their own.
        if self._witness_store is None:
            self._witness_store = ReadingStore(self.config.database, announce_moves=False)
        return self._witness_store

    def _resume_boards(self):
        """The database is back: ask every board to resend now instead of waiting out its hold."""
        for s in self.sessions:
            s.resume()

    def check_database(self):
        """Fail fast with a clear message on a configuration error (wrong password, unknown database)."""
        self.store.check()

    _LIMITED_LOGGERS = ("gateway.protocol", "gateway.transport")

    def start(self):
        for name in self._LIMITED_LOGGERS:
            logging.getLogger(name).addFilter(self.warnings)
        if self.tap is not None:
            try:
                self.tap.start()
            except OSError as e:          # the tap is for people watching; the boards are served without it
                log.warning("tap: cannot serve %s (%s); monitor --listen is unavailable", self.tap.path, e)
        self.writer.start()
        if self.cluster_watch is not None:
            self.cluster_watch.start()
        self._started_at = time.time()
        for t in self.transports:
            t.start()
        if self.alert_watch is not None:
            self.notifier.start()
            self.alert_watch.start()
        if self.hourly is not None:
            self.hourly.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.dashboard is not None:
            try:
                self.dashboard.start()
            except OSError as e:          # like the tap: the page is for people watching; boards are served
                log.error("dashboard: cannot listen on %s:%d (%s); the boards are served without it",
                          self.config.dashboard.bind, self.config.dashboard.port, e.strerror or e)
                self.dashboard = None
        if self.metrics is not None:
            try:
                self.metrics.start()
            except OSError as e:          # like the dashboard: boards are served without it
                log.error("metrics: cannot listen on %s:%d (%s); the boards are served without it",
                          self.config.metrics.bind, self.config.metrics.port, e.strerror or e)
                self.metrics = None
        self.supervisor.start()

    def stop(self):
        self.supervisor.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.alert_watch is not None:
            self.alert_watch.stop()
            self.notifier.stop()
        if self.hourly is not None:
            self.hourly.stop()
        for t in self.transports:
            t.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.cluster_watch is not None:
            self.cluster_watch.stop()
        self.writer.stop()
        if self.tap is not None:
            self.tap.stop()
        self.warnings.flush()
        for name in self._LIMITED_LOGGERS:
            logging.getLogger(name).removeFilter(self.warnings)
        self.identity.close()

    def alert_state(self):
        """What the alert rules need of the gateway's own state (gateway/alertwatch.py): per board its port, id,
        whether the port is open (and why not), seconds since its last frame (None: none yet), why its last hello
        was refused (None: served); and how long the gateway has been listening."""
        now = time.time()
        boards = []
        for s, t in zip(self.sessions, self.transports):
            port = t.status()
            boards.append({"port": s.cfg.name, "board": s.board_id, "port_open": port["port_open"],
                           "port_error": port["port_error"], "refused": s.refused,
                           "last_frame_age_s": now - s.last_frame_at if s.last_frame_at else None})
        return {"database_ok": self.writer.ok(), "boards": boards,
                "listening_s": now - self._started_at if self._started_at else 0.0}

    def _board_views(self):
        """Each board as the dashboard sees it (online or caching, and why; pending, card, clock): for MQTT."""
        now, db = time.time(), self.writer.database_state()
        return [board_view(s, t, db["ok"], db["last_error"], now, self.config.mqtt.silent_after_s)
                for s, t in zip(self.sessions, self.transports)]

    def snapshot(self):
        return {
            "mqtt": self.mqtt.state() if self.mqtt is not None else None,
            "database_ok": self.writer.ok(),
            "database_cluster": self.writer.database_state()["cluster"],
            "open_alerts": [a.as_dict() for a in self.alerts.open_alerts()] if self.alerts is not None else [],
            "committed_rows": self.writer.committed_rows,
            "batches": self.writer.batches,
            "alerts": list(self.identity.alerts),
            "dashboard": self.dashboard.url if self.dashboard is not None else None,
            "metrics": self.metrics.url if self.metrics is not None else None,
            "boards": [{"port": s.cfg.name, "board": s.board_id, "uid": s.uid, "synced": s.synced,
                        "committed_n": s.committed, "refused": s.refused, **vars(s.stats), **t.status(),
                        "seq_seen": {str(b): q for b, q in sorted(s.seen_seqs().items())},
                        "warnings_suppressed": self.warnings.suppressed(s.cfg.name)}
                       for s, t in zip(self.sessions, self.transports)],
        }

    def run_forever(self, stop_event=None, status_every_s=10.0):
        stop_event = stop_event or threading.Event()
        self.start()
        try:
            while not stop_event.wait(status_every_s):
                self.warnings.flush()
                if self.config.status_path:
                    tmp = self.config.status_path + ".tmp"
                    text = json.dumps(self.snapshot())   # dumps uses the C encoder; dump(f) does not
                    with open(tmp, "w") as f:
                        f.write(text)
                    os.replace(tmp, self.config.status_path)
        finally:
            self.stop()
