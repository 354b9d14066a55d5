"""What the gateway tells its service manager and its log, on a thread of its own: systemd's READY=1, STATUS=...,
WATCHDOG=1 and STOPPING=1 (gateway/sdnotify.py), and a periodic one-line summary in the log.

READY=1 is sent once the writer thread runs and every configured port has had its first open attempt (opened, or
failed and now retried on its own backoff), or after READY_WAIT_S at the latest: from then on each board is being
served or waited for, which is all a start can promise (a board may be unplugged for days).

The watchdog proves that readings still reach the database. The loop that loses data when it stalls is the writer
(gateway/service.py Writer): the boards keep their readings until it commits them, so a writer stuck inside one
database call holds every board up. This thread pings WATCHDOG=1 at half of $WATCHDOG_USEC only while the writer is
healthy: its thread alive, and either waiting (for readings, or out a retry backoff while the database is down:
bounded waits) or inside a round of database work that began less than one watchdog period ago. A database that is
down makes each call fail within its connect/read timeout and keeps the pings going (the boards cache meanwhile); a
writer stuck past one period, or a writer thread that died, stops them, and systemd restarts the gateway
(Restart=always) one period later. The unit's WatchdogSec= (60 s) is therefore above the database read timeout
(30 s, gateway/dbconn.py): a slow or vanished server is reported, not restarted.

The STATUS line is what `systemctl status soil-gateway` prints: "2/2 boards online, database ok, 1234 readings
stored". The summary (every `[gateway] summary_every_s`, default 600; 0 turns it off) is one log line: readings
stored per board and bad frames since the last summary, and the database's state; at warning level when the
database is not ok, so `journalctl -p warning` shows it.
"""

import logging
import threading
import time

from gateway.sdnotify import SdNotify

log = logging.getLogger("gateway.supervisor")

READY_WAIT_S = 10.0       # READY=1 at the latest this long after start, even if a port has not been tried yet
ONLINE_S = 60.0           # a board counts as online while its port is open and it was heard within this long
STALL_S = 60.0            # without a watchdog, the writer counts as stalled (STATUS) after this long in one round


class Supervisor:
    def __init__(self, gateway, summary_every_s=600.0, notify=None, tick_s=5.0):
        self.gateway = gateway
        self.notify = notify if notify is not None else SdNotify()
        self.watchdog_s = self.notify.watchdog_s
        self.stall_s = self.watchdog_s or STALL_S
        self.tick_s = min([tick_s] + [v for v in (self.watchdog_s and self.watchdog_s / 2, summary_every_s) if v])
        self.summary_every_s = summary_every_s
        self.pings = 0
        self.ready = False
        self._stop = threading.Event()
        self._thread = None
        self._status = None
        self._stalled_logged = False
        self._last_summary = (time.monotonic(), {}, 0)

    def start(self):
        self._started = time.monotonic()
        self._last_summary = (self._started, dict(self.gateway.writer.stored_by_board), self._bad_frames())
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self):
        """STOPPING=1 first (systemd then shows "deactivating"), then the thread ends."""
        self.notify.send(STOPPING=1, STATUS="stopping")
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.notify.close()

    # --- what the gateway's state says ----------------------------------------------------------------------
    def writer_healthy(self):
        """Alive, and waiting or inside a round of database work younger than one watchdog period."""
        writer = self.gateway.writer
        return writer.alive() and writer.busy_for() < self.stall_s

    def ports_tried(self):
        return all(s["opens"] or s["open_failures"] for s in (t.status() for t in self.gateway.transports))

    def database_text(self):
        writer = self.gateway.writer
        if not writer.alive():
            return "database writer stopped (see the log)"
        busy = writer.busy_for()
        if busy >= self.stall_s:
            return "database writer stuck for %.0f s in one call" % busy
        if writer.ok():
            return "database ok"
        # "database soil_gateway@db:3306 unavailable: cannot connect (is the server...) (error 2003: ...)": the
        # reason, short (the log line has the whole message)
        reason = (writer.last_error or "unreachable").split(" unavailable: ", 1)[-1].split(" (", 1)[0]
        return "database down (%s)" % reason[:80]

    def status_text(self):
        boards = self.gateway.alert_state()["boards"]
        online = sum(1 for b in boards if b["port_open"] and b["last_frame_age_s"] is not None
                     and b["last_frame_age_s"] < ONLINE_S)
        return "%d/%d boards online, %s, %d readings stored" % (online, len(boards), self.database_text(),
                                                                self.gateway.writer.committed_rows)

    def summary_text(self):
        """The summary since the last one (and resets its counters): "summary (600 s): stored b1 120, b2 118;
        bad frames 0; database ok"."""
        now = time.monotonic()
        since, before, bad_before = self._last_summary
        stored = dict(self.gateway.writer.stored_by_board)
        bad = self._bad_frames()
        self._last_summary = (now, stored, bad)
        names = sorted({s.board_id or s.cfg.name for s in self.gateway.sessions} | set(stored))
        per_board = ", ".join("%s %d" % (b, stored.get(b, 0) - before.get(b, 0)) for b in names) or "no boards"
        return "summary (%.0f s): stored %s; bad frames %d; %s" % (now - since, per_board, bad - bad_before,
                                                                  self.database_text())

    def _bad_frames(self):
        return sum(s.stats.bad_frames for s in self.gateway.sessions)

    # --- the loop -------------------------------------------------------------------------------------------
    def _run(self):
        while True:
            self._tick()
            if self._stop.wait(self.tick_s):
                return

    def _tick(self):
        now = time.monotonic()
        fields = {}
        serving = self.gateway.writer.alive() and self.ports_tried()
        if not self.ready and (serving or now - self._started >= READY_WAIT_S):
            fields["READY"] = 1
            self.ready = True
            log.info("ready: %s", self.status_text())
        if self.watchdog_s:
            if self.writer_healthy():
                fields["WATCHDOG"] = 1
                self.pings += 1
                if self._stalled_logged:
                    log.warning("watchdog: the database writer is moving again; pinging systemd again")
                    self._stalled_logged = False
            elif not self._stalled_logged:
                log.error("watchdog: %s; no more watchdog pings: systemd restarts the gateway within %.0f s",
                          self.database_text(), self.watchdog_s)
                self._stalled_logged = True
        status = self.status_text()
        if status != self._status:
            fields["STATUS"] = status
            self._status = status
        if fields:
            self.notify.send(**fields)
        since = self._last_summary[0]
        if self.summary_every_s and now - since >= self.summary_every_s:
            ok = self.gateway.writer.ok() and self.writer_healthy()
            log.log(logging.INFO if ok else logging.WARNING, "%s", self.summary_text())
