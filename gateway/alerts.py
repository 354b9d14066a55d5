"""Alerts: what a grower or an operator must be told, each opened once, cleared once, stored and delivered.

The kinds, and what opens and clears each (docs/ALERTS.md has the settings):

* `dry`: a probe's moisture below `dry_below` % opens it; it clears only above `dry_clear_above` % (hysteresis, so
  a probe that hovers at the line does not open and clear it every sample). Moisture in % needs a calibration.
* `silent`: no frame from a board for `silent_after_s`. Its detail says why: the board's port is gone (unplugged,
  the wrong path) or the board does not answer on it. A board whose readings wait on its card because the
  database is down is not silent: its frames still arrive, it is waiting, and no alert opens.
* `card`: a board reports its card full, absent or failing, or readings it had to drop.
* `clock`: a board's clock is halted or unset and not being set, or its samples are stamped far from the gateway's
  clock.
* `identity`: two boards claim one board id (gateway/identity.py refuses the second; nothing is deleted).

An alert is one row of `alerts` (opened_at, cleared_at, what, detail), so what was open survives a restart of the
gateway: the book loads the open ones at start and clears them when their condition is gone. Delivery (the log at
once; a webhook and e-mail when configured) runs in a thread of its own with retries (gateway/notify.py): a receiver
that is down delays its messages, never the writer, and never the alert's row.
"""

import logging
import threading
import time

from gateway.dbconn import DatabaseError

log = logging.getLogger("gateway.alerts")

KINDS = ("dry", "silent", "card", "clock", "identity")


class Alert:
    """One alert: `kind`, `board`, `probe` (or None), `detail` (text), `opened_at` (epoch seconds, UTC), `id` (its
    row, None until stored)."""

    def __init__(self, kind, board, probe, detail, opened_at, alert_id=None):
        self.kind = kind
        self.board = board
        self.probe = probe
        self.detail = detail
        self.opened_at = opened_at
        self.id = alert_id

    @property
    def key(self):
        return (self.kind, self.board, self.probe)

    def as_dict(self):
        return {"id": self.id, "kind": self.kind, "board": self.board, "probe": self.probe, "detail": self.detail,
                "opened_at": _iso(self.opened_at)}


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Hysteresis:
    """Dry soil per probe: `update(key, pct)` -> "open", "clear" or None. Opens below `below`, clears above
    `clear_above`; between the two the state stays what it was. `clear_above` must not be below `below`."""

    def __init__(self, below, clear_above):
        if clear_above < below:
            raise ValueError("dry_clear_above (%s) must be at least dry_below (%s)" % (clear_above, below))
        self.below = below
        self.clear_above = clear_above
        self._dry = {}

    def update(self, key, pct):
        dry = self._dry.get(key, False)
        if not dry and pct < self.below:
            self._dry[key] = True
            return "open"
        if dry and pct > self.clear_above:
            self._dry[key] = False
            return "clear"
        return None

    def assume(self, key, dry):
        """What the book loaded: an alert open at start means the probe was dry when the gateway stopped."""
        self._dry[key] = dry


class AlertStore:
    """The `alerts` table, through a ReadingStore of its own (its connection, failover and error handling)."""

    def __init__(self, store):
        self._store = store

    def open(self, alert):
        def work(cur):
            cur.execute("INSERT INTO alerts (kind, board, probe, detail, opened_at) VALUES (%s, %s, %s, %s, "
                        "FROM_UNIXTIME(%s))", (alert.kind, alert.board, alert.probe, alert.detail[:255],
                                               int(alert.opened_at)))
            return cur.lastrowid
        return self._store.run_statement(work)

    def clear(self, alert, at):
        def work(cur):
            cur.execute("UPDATE alerts SET cleared_at = FROM_UNIXTIME(%s) WHERE id = %s AND cleared_at IS NULL",
                        (int(at), alert.id))
        self._store.run_statement(work)

    def load_open(self):
        def work(cur):
            cur.execute("SELECT id, kind, board, probe, detail, UNIX_TIMESTAMP(opened_at) FROM alerts "
                        "WHERE cleared_at IS NULL ORDER BY id")
            return [Alert(k, b, p, d, float(t), alert_id=i) for i, k, b, p, d, t in cur.fetchall()]
        return self._store.run_statement(work)

    def close(self):
        self._store.close()


class AlertBook:
    """The open alerts, kept in step with the `alerts` table. `set(kind, board, probe, active, detail)` opens an
    alert when `active` and none is open for (kind, board, probe), clears the open one when not; each opening and
    clearing is stored, then handed to `deliver(event, alert)` ("open" or "clear"). A row that cannot be stored
    (the database is down) is tried again at the next `set` of the same key: the alert's state is what the table
    says, and nothing is delivered that is not stored first."""

    def __init__(self, store, deliver=None, now=time.time):
        self._store = store
        self._deliver = deliver or (lambda event, alert: None)
        self._now = now
        self._lock = threading.Lock()
        self._open = {}
        self.loaded = False
        self._said = None        # the last reason the open alerts could not be read, said once

    def load(self):
        """Read the alerts left open (by a gateway that stopped); True once done (the database may be down)."""
        if not self.loaded:
            try:
                for a in self._store.load_open():
                    self._open[a.key] = a
                self.loaded = True
            except DatabaseError as e:
                if str(e) != self._said:     # e.g. no alerts table yet: `soil-gateway migrate` makes it
                    self._said = str(e)
                    log.warning("alerts: cannot read the alerts table (%s); alerts wait for it", e)
        return self.loaded

    # open_alerts and is_open read memory only: the gateway's status asks from another thread than the one that
    # owns the store (the alert thread, which calls load() and set()).
    def open_alerts(self):
        with self._lock:
            return sorted(self._open.values(), key=lambda a: a.opened_at)

    def is_open(self, kind, board, probe=None):
        with self._lock:
            return (kind, board, probe) in self._open

    def set(self, kind, board, probe, active, detail=""):
        """Returns "open", "clear" or None (no change, or not stored yet)."""
        if not self.load():
            return None
        key = (kind, board, probe)
        with self._lock:
            current = self._open.get(key)
        if active and current is None:
            alert = Alert(kind, board, probe, detail, self._now())
            try:
                alert.id = self._store.open(alert)
            except DatabaseError as e:
                log.debug("alerts: %s %s not stored yet: %s", kind, board, e)
                return None
            with self._lock:
                self._open[key] = alert
            self._deliver("open", alert)
            return "open"
        if not active and current is not None:
            try:
                self._store.clear(current, self._now())
            except DatabaseError as e:
                log.debug("alerts: clearing %s %s not stored yet: %s", kind, board, e)
                return None
            with self._lock:
                self._open.pop(key, None)
            current.detail = detail or current.detail
            self._deliver("clear", current)
            return "clear"
        return None
