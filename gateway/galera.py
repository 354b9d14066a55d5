"""Which node of a MariaDB Galera cluster the gateway writes to, and what each node is doing.

With `[database] servers = [...]` listing the nodes (the site's own node first) and `cluster = "galera"` (or
`"auto"`, the default: a server whose `wsrep_on` is ON makes the round a Galera one), the gateway writes to the
first node in the configured order that is

* `wsrep_ready = ON`                         (it accepts queries),
* `wsrep_local_state_comment = Synced`       (not joining, not a donor behind the others),
* `wsrep_cluster_status = Primary`           (it is in the component that has the quorum).

`read_only` means nothing here: every node of the primary component is writable. A node cut off from the quorum
answers error 1047 ("WSREP has not yet prepared node for application use"), which gateway/dbconn.py classifies as
unavailable, so the writer drops the connection and the next round picks another synced node; with none left the
boards cache on their cards. A COMMIT that loses certification against another node's write of the same rows
fails with 1213 (deadlock), also a retry: the resent readings then meet the rows the other gateway stored, and
gateway/db.py counts the identical ones as committed (a same identity with another value is kept as stored and
recorded as an identity_conflict event). A COMMIT that returned on a node of the primary component has been
certified by the cluster: that is when the boards are acknowledged.

The node states shown in the status are those of the newest look-up round: the writer's (its first connection,
and each reconnection after trouble) or the ClusterWatch's, which looks at every node every WATCH_EVERY_S seconds
from a thread of its own, so a far node's death shows while the gateway's own node is fine; `checked_at` says when.
"""

import logging
import threading
import time

from gateway.dbconn import DatabaseUnavailable

WSREP_STATUS = ("wsrep_ready", "wsrep_local_state_comment", "wsrep_cluster_status", "wsrep_cluster_size")
NOT_READY = 1047        # ER_UNKNOWN_COM_ERROR, what a Galera node outside the primary component answers
CLUSTER_KINDS = ("auto", "galera")
WATCH_EVERY_S = 10.0    # the ClusterWatch's rounds: a few short connections, one per node

log = logging.getLogger("gateway.galera")


def read_state(cur):
    """The node's wsrep state {"ready", "state", "status", "size"}, or None when it is not a Galera node
    (`wsrep_on` OFF or missing). Status and variables only: no privilege needed."""
    cur.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
    row = cur.fetchone()
    if not row or str(row[1]).upper() != "ON":
        return None
    cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (%s)" % ", ".join("'%s'" % v for v in WSREP_STATUS))
    st = {k: str(v) for k, v in cur.fetchall()}
    return {"ready": st.get("wsrep_ready"), "state": st.get("wsrep_local_state_comment"),
            "status": st.get("wsrep_cluster_status"),
            "size": int(st["wsrep_cluster_size"]) if str(st.get("wsrep_cluster_size", "")).isdigit() else None}


def not_ready_state():
    """What a node that refused us with 1047 is: Galera, outside the primary component."""
    return {"ready": "OFF", "state": None, "status": "non-Primary", "size": None}


def usable(wsrep):
    return (wsrep is not None and wsrep.get("ready") == "ON" and wsrep.get("state") == "Synced"
            and wsrep.get("status") == "Primary")


def is_galera_round(cfg, roles):
    """Whether this look-up is over a Galera cluster: configured so, or any reachable node says wsrep_on."""
    return getattr(cfg, "cluster", "auto") == "galera" or any(r.wsrep is not None for r in roles)


def _where(role):
    return "%s:%s" % (role.cfg.host, role.cfg.port)


def _why_not(role):
    if not role.reachable:
        return "down (%s)" % role.error
    w = role.wsrep
    if w is None:
        return "not a Galera node (wsrep_on is OFF)"
    return "%s, %s, wsrep_ready=%s" % (w.get("state") or "not ready", w.get("status"), w.get("ready"))


def choose(roles):
    """The DbConfig of the first usable node in the configured order, or DatabaseUnavailable naming each node."""
    for r in roles:
        if r.reachable and usable(r.wsrep):
            return r.cfg
    raise DatabaseUnavailable("no synced Galera node in the primary component: " +
                              "; ".join("%s %s" % (_where(r), _why_not(r)) for r in roles), None)


class ClusterView:
    """The last look-up round over the nodes, for people watching (status file, /api/status)."""

    def __init__(self):
        self.roles = []
        self.checked_at = None

    def record(self, roles):
        self.roles = list(roles)
        self.checked_at = time.time()

    def is_galera(self):
        """Whether the last look-up round found Galera nodes (then there is no primary: every synced node writes)."""
        return any(r.wsrep is not None for r in self.roles)

    def state(self, in_use):
        """None unless the last round was a Galera one; else {"kind", "checked_at", "nodes": [{"server",
        "in_use", "usable", "state", "status", "ready", "size", "error"}]}. in_use is (host, port) or None."""
        if not self.is_galera():
            return None
        nodes = []
        for r in self.roles:
            w = r.wsrep or {}
            nodes.append({"server": _where(r), "in_use": in_use is not None and (r.cfg.host, int(r.cfg.port)) ==
                          tuple(in_use), "usable": bool(r.reachable and usable(r.wsrep)),
                          "state": w.get("state"), "status": w.get("status"), "ready": w.get("ready"),
                          "size": w.get("size"), "error": None if r.reachable else r.error})
        return {"kind": "galera", "checked_at": self.checked_at, "nodes": nodes}


class ClusterWatch:
    """Looks at every configured node now and then, for the status only: `look(view)` runs one round recording
    into `view` (gateway.primary.look_at_servers: short connections of its own; the writer's connection belongs to
    the writer thread). What it finds never changes where the writer writes (the writer learns that from its own
    commits), and it logs nothing: a node's trouble is shown, not said again every round."""

    def __init__(self, look, every_s=WATCH_EVERY_S):
        self.view = ClusterView()
        self.every_s = every_s
        self.rounds = 0
        self._look = look
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="cluster-watch", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self):
        while not self._stop.wait(self.every_s):
            try:
                self._look(self.view)
            except Exception:             # a bug must not end the watch, nor the gateway
                log.exception("cluster watch: a look-up round failed")
            self.rounds += 1


def newest(*states):
    """The most recent of several ClusterView.state() results (None ones skipped), or None."""
    states = [st for st in states if st is not None]
    return max(states, key=lambda st: st["checked_at"] or 0) if states else None
