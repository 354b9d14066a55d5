"""Which of the configured database servers is the writable primary, and is a commit on it durable?

The gateway may list several servers (`[database] servers = ["db1:3306", "db2:3306", "db3:3306"]`). It writes
only to the one that is the primary: it accepts connections, `read_only` (and MySQL's `super_read_only`) is off,
and it is not itself replicating (no running replica SQL thread). A replica whose read_only was forgotten is not
a primary; two servers that both look like primaries are a split brain and the gateway writes to neither (it says
so and keeps the boards caching until one of them is demoted).

A look-up is one round over the list with a short connect timeout per server (a dead server on a reachable host
refuses at once; an unreachable host costs at most `FIND_CONNECT_TIMEOUT`). The writer repeats rounds about every
250 ms while the database is unavailable (gateway/service.py), telling boards to wait meanwhile.

Semi-synchronous replication (flaw F15): with `semisync = "require"` or `"prefer"`, after every COMMIT the gateway
reads `Rpl_semi_sync_master_status` (MySQL >= 8.0.26: `Rpl_semi_sync_source_status`). ON after the commit means
the transaction is on at least one replica: either a replica acknowledged it, or the primary fell back to
asynchronous for it and switched back on only after a replica caught up past it. OFF means the commit may exist on
the primary alone. The fall-back is logged at ERROR level when it happens and at WARNING when it recovers, so it is
never silent. The policy then decides:

* `require`: the batch is treated as not acknowledged (DatabaseUnavailable): the rows stay in the database, the
  boards keep them cached and resend; the resent identities are duplicates that count as committed once
  semi-sync is ON again. The gateway keeps committing meanwhile: a primary switches semi-sync back ON only when
  a replica acknowledges a new commit (a freshly promoted MariaDB primary reports ON with no client; its first
  commit then waits out the timeout and turns it OFF).
* `prefer`: acknowledge, but record a `durability_reduced` board event for each board in the batch (once per
  fall-back) besides the log line.
* `off`: no check (async replication: an acknowledged reading can be lost in a failover).

Only status variables and session variables are read: the gateway's least-privilege account needs no extra grant.
"""

import collections
import dataclasses
import logging

import pymysql

from gateway import galera
from gateway.dbconn import DatabaseConfigError, DatabaseUnavailable, classify

log = logging.getLogger("gateway.primary")

FIND_CONNECT_TIMEOUT = 1.0   # seconds per server during a look-up
FIND_READ_TIMEOUT = 2.0
ROUND_PAUSE_S = 0.25         # between look-up rounds (the writer's retry interval with several servers)
SEMISYNC_POLICIES = ("off", "prefer", "require")

ServerRole = collections.namedtuple("ServerRole", "cfg reachable read_only replicating error wsrep",
                                    defaults=(None,))
ServerRole.__doc__ = "What one probe found: a DbConfig for the server, and why it is or is not the primary."


def parse_server(text, default_port=3306):
    """'host:port', 'host' or '[v6addr]:port' -> (host, port). ValueError on anything else."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a server must be 'host:port', got %r" % (text,))
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("bad server address %r" % text)
        port = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        raise ValueError("an IPv6 server address needs brackets: [%s]:3306" % text)
    else:
        host, port = text, ""
    if not host:
        raise ValueError("bad server address %r: no host" % text)
    if port == "":
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad port in server address %r" % text)
    return host, int(port)


def server_configs(cfg):
    """One DbConfig per listed server (same account, TLS and timeouts), in the configured order."""
    out = []
    for entry in cfg.servers:
        host, port = parse_server(entry, cfg.port)
        out.append(dataclasses.replace(cfg, host=host, port=port, unix_socket=None, servers=()))
    return out


def probe(cfg, connect_timeout=FIND_CONNECT_TIMEOUT):
    """Connect to one server briefly and say what it is. Never raises for an unreachable or read-only server;
    raises DatabaseConfigError for credentials or schema problems (retrying elsewhere will not fix those)."""
    kw = dict(cfg.connect_kwargs(), connect_timeout=min(cfg.connect_timeout, connect_timeout),
              read_timeout=FIND_READ_TIMEOUT, write_timeout=FIND_READ_TIMEOUT)
    try:
        conn = pymysql.connect(**kw)
    except pymysql.MySQLError as exc:
        err = classify(exc, cfg)
        if isinstance(err, DatabaseConfigError):
            raise err from exc
        if err.errno == galera.NOT_READY:      # a Galera node outside the primary component
            return ServerRole(cfg, True, None, None, str(err), galera.not_ready_state())
        return ServerRole(cfg, False, None, None, str(err))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'super_read_only')")
            read_only = any(str(v).upper() in ("ON", "1") for _, v in cur.fetchall())
            replicating = replica_threads_running(cur)
            wsrep = galera.read_state(cur)
        return ServerRole(cfg, True, read_only, replicating, None, wsrep)
    except pymysql.MySQLError as exc:
        err = classify(exc, cfg)
        if err.errno == galera.NOT_READY:
            return ServerRole(cfg, True, None, None, str(err), galera.not_ready_state())
        return ServerRole(cfg, False, None, None, str(err))
    finally:
        try:
            conn.close()
        except Exception:
            pass


def replica_threads_running(cur):
    """True when the server runs replica (SQL) threads. MariaDB: Slaves_running / Slave_running status, readable
    without privileges. MySQL 8 has neither: there we rely on read_only/super_read_only (replicas should set it)."""
    cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Slaves_running', 'Slave_running')")
    for name, value in cur.fetchall():
        if name == "Slaves_running" and str(value).isdigit() and int(value) > 0:
            return True
        if name == "Slave_running" and str(value).upper() == "ON":
            return True
    return False


def look_at_servers(cfg, connect_timeout=FIND_CONNECT_TIMEOUT, view=None):
    """One look at every configured server (what each one is), recorded in `view` (a galera.ClusterView) when
    given. Decides nothing and logs nothing: find_primary decides; gateway.galera.ClusterWatch only shows."""
    roles = [probe(one, connect_timeout) for one in server_configs(cfg)]
    if view is not None:
        view.record(roles)
    return roles


def find_primary(cfg, connect_timeout=FIND_CONNECT_TIMEOUT, view=None):
    """One round over cfg.servers: the DbConfig of the single writable primary, or DatabaseUnavailable naming what
    each server is (down / read-only / replicating), or naming the split brain when two are writable. On a Galera
    cluster (gateway/galera.py): the first synced node of the primary component, in the configured order. `view`
    (a galera.ClusterView) records the round for the status."""
    roles = look_at_servers(cfg, connect_timeout, view)
    if galera.is_galera_round(cfg, roles):
        return galera.choose(roles)
    writable = [r for r in roles if r.reachable and not r.read_only and not r.replicating]
    if len(writable) == 1:
        return writable[0].cfg
    if len(writable) > 1:
        names = ", ".join("%s:%s" % (r.cfg.host, r.cfg.port) for r in writable)
        log.error("several servers are writable primaries (%s): refusing to write to any until all but one are "
                  "read-only (split brain)", names)
        raise DatabaseUnavailable("several writable primaries (%s): split brain, holding writes" % names, None)
    parts = []
    for r in roles:
        where = "%s:%s" % (r.cfg.host, r.cfg.port)
        if not r.reachable:
            parts.append("%s down (%s)" % (where, r.error))
        elif r.replicating:
            parts.append("%s is a replica" % where)
        else:
            parts.append("%s is read-only" % where)
    raise DatabaseUnavailable("no writable primary among the configured servers: " + "; ".join(parts), None)


def semisync_status(cur):
    """'ON', 'OFF', or None when the server has no semi-sync primary side (plugin not loaded)."""
    cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN "
                "('Rpl_semi_sync_master_status', 'Rpl_semi_sync_source_status')")
    rows = cur.fetchall()
    if not rows:
        return None
    return "ON" if any(str(v).upper() == "ON" for _, v in rows) else "OFF"


class Durability:
    """Applies the semi-sync policy after each COMMIT. One per ReadingStore (one writer thread)."""

    def __init__(self, policy):
        if policy not in SEMISYNC_POLICIES:
            raise ValueError("semisync must be one of %s, got %r" % (", ".join(SEMISYNC_POLICIES), policy))
        self.policy = policy
        self.degraded = False      # semi-sync seen OFF and not yet seen ON again
        self.reduced_acks = 0      # batches acknowledged while OFF (prefer)
        self._recorded = False     # the board events of the current fall-back are written

    def observe(self, status, where):
        """Log transitions loudly (F15). Returns True when commits are currently on a replica too."""
        if status is None:
            if self.policy == "require":
                raise DatabaseConfigError("semisync = \"require\" but %s has no semi-synchronous replication "
                                          "(rpl_semi_sync_master_enabled / the semisync plugin)" % where)
            return False
        if status == "ON":
            if self.degraded:
                log.warning("semi-sync replication is ON again on %s: acknowledgements are durable again", where)
                self.degraded = False
            return True
        if not self.degraded:
            log.error("SEMI-SYNC REPLICATION FELL BACK TO ASYNCHRONOUS on %s: committed readings may exist on the "
                      "primary only and would be lost if it failed now; policy %r: %s", where, self.policy,
                      "holding acknowledgements (boards keep caching)" if self.policy == "require"
                      else "acknowledging anyway (durability reduced)")
            self.degraded = True
            self._recorded = False
        return False

    def check_commit(self, store, boards):
        """After a COMMIT on `store`: raise DatabaseUnavailable (require) or record reduced durability (prefer)."""
        if self.policy == "off":
            return
        status = store.run_statement(semisync_status)
        if self.observe(status, store.where()):
            return
        if self.policy == "require":
            raise DatabaseUnavailable("semi-sync is OFF on %s: commit not yet on a replica, holding acknowledgements"
                                      % store.where(), None)
        self.reduced_acks += 1
        if not self._recorded:         # once per fall-back, not once per batch
            self._recorded = True
            for board in sorted(boards):
                store.add_board_event(board, "durability_reduced",
                                      "semi-sync OFF on %s: acknowledged on the primary only" % store.where())

    def check_probe(self, store):
        """While probing after an outage: report the semi-sync state, but do not refuse the database when it is
        OFF. A primary switches semi-sync back ON only when a replica acknowledges a new commit (MariaDB 10.11: a
        freshly promoted primary says ON with no client until its first commit times out), so the gateway must keep
        committing (without acknowledging, under `require`) for durability to come back."""
        if self.policy == "off":
            return
        self.observe(store.run_statement(semisync_status), store.where())
