"""Automatic failover: watch the primary, confirm its death with the replicas, promote.

Rules:

* The primary is pinged (connect + SELECT 1, 1 s timeout) every `interval` seconds (default 1 s).
* One failed ping is not a death. The monitor then looks at the replicas for up to `confirm_window` seconds
  (default 4 s), every 0.2 s: the primary is dead when it still fails our ping AND a majority of the reachable
  replicas say they lost it too (their IO thread is not `Yes`, with a connection error). If the primary answers
  again, or the replicas keep their connection to it for the whole window (only the monitor is cut off), nothing
  is done and the event is logged.
* Then `ha.failover()` runs (no force: a candidate with errant transactions is refused) and `on_promote(server)`
  is called with the new primary. The monitor goes on watching the new primary.
* When semi-sync is enabled in the topology, each poll also checks it and logs one ALERT when the primary falls
  back to asynchronous replication (F15), and one line when it recovers.

With kill -9 the replicas see the connection drop at once, so promotion takes roughly one poll interval plus the
failover itself (docs/REPLICATION.md has measurements).
"""

import sys
import threading
import time

import pymysql

from tools.rpl import ha
from tools.rpl.topology import RplError, run

# MySQL client errors a replica reports when it cannot reach its source.
_CONNECT_ERRORS = {2003, 2005, 2006, 2013, 1159, 1158}


class Monitor:
    def __init__(self, topology, on_promote=None, interval=1.0, confirm_window=4.0, log=None, failover_timeout=10.0):
        self.topology = topology
        self.on_promote = on_promote
        self.interval = float(interval)
        self.confirm_window = float(confirm_window)
        self.failover_timeout = float(failover_timeout)
        self._log = log or (lambda text: print(text, file=sys.stdout, flush=True))
        self.events = []  # (monotonic time, text)
        self.promotions = []  # dicts: old, new, detected_at, promoted_at (time.time())
        self._semisync_alerted = False

    def log(self, text):
        self.events.append((time.monotonic(), text))
        self._log("%s rpl-monitor: %s" % (time.strftime("%H:%M:%S"), text))

    # -- checks ------------------------------------------------------------------------------------------------
    def ping(self, server):
        try:
            run(server, [("SELECT 1", None)], timeout=1)
            return True
        except pymysql.err.MySQLError:
            return False

    def replicas_lost_primary(self):
        """(votes that the primary is gone, reachable replicas)."""
        topo = self.topology
        primary = topo.primary()
        votes = reachable = 0
        for s in topo.replicas():
            try:
                st = topo.replica_status(s, timeout=1)
            except pymysql.err.MySQLError:
                continue
            if st is None or st["source_port"] != primary.port:
                continue  # not (or no longer) a replica of this primary: no opinion
            reachable += 1
            if not st["io_running"] and st["last_io_errno"] in _CONNECT_ERRORS:
                votes += 1
        return votes, reachable

    def confirm_dead(self):
        """Within the confirmation window: True when the replicas agree the primary is gone."""
        deadline = time.monotonic() + self.confirm_window
        primary = self.topology.primary()
        while True:
            if self.ping(primary):
                self.log("primary %d answers again: no failover" % primary.server_id)
                return False
            votes, reachable = self.replicas_lost_primary()
            if reachable and votes * 2 > reachable:
                self.log("primary %d confirmed dead: %d of %d replicas lost it too"
                         % (primary.server_id, votes, reachable))
                return True
            if time.monotonic() >= deadline:
                self.log("primary %d fails our ping but %d of %d replicas still reach it: no failover "
                         "(the monitor may be the one cut off)" % (primary.server_id, reachable - votes, reachable))
                return False
            time.sleep(0.2)

    def check_semisync(self):
        if not self.topology.state.get("semisync"):
            return
        try:
            ok, message = ha.semisync_check(self.topology)
        except pymysql.err.MySQLError:
            return
        if not ok and not self._semisync_alerted:
            self.log(message)
        elif ok and self._semisync_alerted:
            self.log("semi-sync is back: " + message)
        self._semisync_alerted = not ok

    # -- the loop ----------------------------------------------------------------------------------------------
    def step(self):
        """One poll; returns the new primary when this step failed over, else None."""
        topo = self.topology
        primary = topo.primary()
        if self.ping(primary):
            self.check_semisync()
            return None
        detected = time.time()
        self.log("primary %d (port %s) does not answer; asking the replicas" % (primary.server_id, primary.port))
        if not self.confirm_dead():
            return None
        try:
            new = ha.failover(topo, timeout=self.failover_timeout, log=self.log)
        except RplError as exc:
            self.log("failover impossible: %s" % exc)
            return None
        promoted = time.time()
        self.promotions.append({"old": primary.server_id, "new": new.server_id, "detected_at": detected,
                                "promoted_at": promoted})
        self.log("promoted server %d (port %s) %.2f s after the first failed ping"
                 % (new.server_id, new.port, promoted - detected))
        if self.on_promote is not None:
            self.on_promote(new)
        return new

    def run(self, stop_event=None, max_failovers=None):
        """Poll until stop_event is set (or after max_failovers promotions)."""
        stop_event = stop_event or threading.Event()
        self.log("watching primary %d (port %s), poll %.1f s, confirmation window %.1f s"
                 % (self.topology.primary().server_id, self.topology.primary().port, self.interval,
                    self.confirm_window))
        while not stop_event.is_set():
            started = time.monotonic()
            if self.step() is not None and max_failovers is not None and len(self.promotions) >= max_failovers:
                return
            stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))
