"""Switchover, failover, errant transactions and semi-synchronous replication over a Topology.

Decision rules (docs/REPLICATION.md explains them at length):

* **Switchover** (planned, the primary is alive): fence the old primary (read_only), read its GTID position, wait
  on the candidate with MASTER_GTID_WAIT / WAIT_FOR_EXECUTED_GTID_SET until it has applied all of it, promote the
  candidate, point every other server (the old primary too) at it. If the candidate does not catch up within the
  timeout, the old primary is unfenced and nothing else changed. No committed transaction can be lost: nothing
  commits on the fenced primary after its position is read.
* **Failover** (the primary is gone): stop every replica's IO thread (nothing more can arrive), let each apply
  its relay log (wait for the GTIDs it received), then pick the replica with the most transactions. A replica with
  errant transactions (GTIDs of its own that no other server has) is refused unless force=True. A named candidate
  that is behind another replica first catches up from that replica (every server keeps log_slave_updates).
  Promote: stop and forget replication, read_only=OFF. Point the others at it. Fence the old primary if it still
  answers (read_only=ON); it is not re-attached automatically, since it may hold transactions nobody received:
  `rejoin()` re-attaches it once repaired, and refuses while it holds transactions the primary lacks.
* **Errant transactions**: GTIDs a replica executed that the primary never had. MariaDB numbers GTIDs
  domain-server_id-seq_no, so those are entries of the replica's @@gtid_binlog_state whose (domain, server_id) the
  primary's state lacks or has at a lower seq_no (the primary's own server_id excepted). MySQL: GTID_SUBTRACT.
* **Skipping an errant GTID** makes every server agree the transaction exists without replaying its data (the
  data stays only where it was written): the primary commits a no-data transaction with that exact GTID.
"""

import time

import pymysql

from tools.dbserver import ServerError
from tools.rpl.topology import RplError, run

DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT_REJOIN = 5
SEMISYNC_CLIENT_WAIT = 10.0   # seconds a change of primary waits for a semi-sync replica to connect to it


def _alive(server, timeout=1):
    try:
        run(server, [("SELECT 1", None)], timeout)
        return True
    except pymysql.err.MySQLError:
        return False


def _emit(log, text):
    if log is not None:
        log(text)


# -- errant transactions -----------------------------------------------------------------------------------------
def errant_transactions(topo, states=None, primary_alive=None):
    """{server_id: [errant GTIDs]} for every reachable replica (empty lists when clean).

    With the primary reachable the reference is its executed set; without it, the union of the other reachable
    servers' sets (a GTID no other server has and that did not come from the old primary is errant).
    """
    primary = topo.primary()
    if states is None:
        states = {}
        for s in topo.servers:
            try:
                states[s.server_id] = topo.gtid_state(s)["executed"]
            except pymysql.err.MySQLError:
                pass
    if primary_alive is None:
        primary_alive = primary.server_id in states
    origin = topo.origin_of(primary.server_id)
    out = {}
    for sid, executed in states.items():
        if sid == primary.server_id:
            continue
        if primary_alive and primary.server_id in states:
            ref = states[primary.server_id]
        else:
            ref = topo.flavour.gtids("")
            for other, ex in states.items():
                if other not in (sid, primary.server_id):
                    ref = ref.union(ex)
        out[sid] = executed.missing_from(ref, exclude_origins=(origin,))
    return out


def skip_errant(topo, gtid, timeout=DEFAULT_TIMEOUT, log=None):
    """Commit a no-data transaction with `gtid` on the primary so every server agrees it exists (Listing 8-3).

    MariaDB: SET server_id / gtid_domain_id / gtid_seq_no in the session, then FLUSH PRIVILEGES (binlogged, no
    data). The errant replica ignores the event (its own server_id), the others record the GTID. With
    gtid_strict_mode the primary must not have passed that seq_no in the domain yet; if it has, the errant replica
    has already stopped with an out-of-order error and must be rebuilt (refused here with that message).
    """
    f = topo.flavour
    if not f.valid_gtid(gtid):
        raise RplError("%r is not a %s GTID" % (gtid, f.name))
    primary = topo.primary()
    executed = topo.gtid_state(primary)["executed"]
    if executed.covers(f.gtids(gtid)):
        raise RplError("the primary (server %d) already has %s" % (primary.server_id, gtid))
    try:
        run(primary, f.inject_empty(gtid))
    except pymysql.err.MySQLError as exc:
        if exc.args and exc.args[0] == 1950:
            raise RplError("cannot inject %s: the primary is already past that sequence number in its domain "
                           "(gtid_strict_mode). The errant replica has stopped on it; rebuild that replica "
                           "(server error: %s)" % (gtid, exc.args[1])) from None
        raise
    # Recorded as soon as it is done: what follows only waits, and a replica that is down must not undo the record.
    topo.log_event("skipped errant %s with an empty transaction on server %d" % (gtid, primary.server_id))
    topo.save()
    _emit(log, "injected %s on server %d" % (gtid, primary.server_id))
    position = topo.gtid_state(primary)["position"]
    for s in topo.replicas():
        try:
            applied = topo.wait_applied(s, position, timeout)
        except pymysql.err.MySQLError as exc:
            _emit(log, "server %d does not answer (%s); it gets %s from the binary log when it replicates again"
                  % (s.server_id, exc.args[-1] if exc.args else exc, gtid))
            continue
        if not applied:
            _emit(log, "server %d has not applied %s within %.0f s" % (s.server_id, position, timeout))


# -- promotion helpers ------------------------------------------------------------------------------------------
def _promote(topo, server):
    f = topo.flavour
    run(server, [f.stop_replica(), f.reset_replica_all()] + f.unfence())
    if topo.state.get("semisync"):
        _semisync_role(topo, server, "source", topo.state["semisync"].get("timeout_ms"))


def _follow(topo, server, source, demoted=False):
    """Make `server` a read-only replica of `source`. With semi-sync on, its replica side is switched on before
    its threads start, so that their first connection announces it: restarting the IO thread just after (what
    _semisync_role does to a replica already running) opens a second connection, and a source that drops the first
    one after registering the second can be left with no semi-sync client, each commit then waiting out the
    whole semi-sync timeout."""
    f = topo.flavour
    if topo.state.get("semisync"):
        if demoted:
            run(server, [("SET GLOBAL %s = OFF" % f.semisync_vars["enabled"], None)])
        _semisync_role(topo, server, "replica", reconnect=False)
    topo.point_at(server, source, demoted=demoted)
    run(server, f.fence())


def _await_semisync_clients(topo, primary, followers, log, timeout=SEMISYNC_CLIENT_WAIT):
    """After a change of primary with semi-sync on: wait until a replica acknowledges the new primary, and say
    so; or say that none does, since until one does every commit waits out the timeout before falling back."""
    if not topo.state.get("semisync") or not followers:
        return
    deadline = time.monotonic() + timeout
    while True:
        clients = semisync_status(topo)["clients"]
        if clients or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if clients:
        _emit(log, "semi-sync: %d replica(s) acknowledge server %d" % (clients, primary.server_id))
    else:
        _emit(log, "semi-sync: no replica acknowledges server %d after %.0f s: each commit waits %d ms before it "
                   "falls back to asynchronous (`soil-rpl semisync status`)"
              % (primary.server_id, timeout, topo.state["semisync"].get("timeout_ms") or 0))


def _set_primary(topo, server, event):
    topo.state["primary"] = server.server_id
    topo.log_event(event)
    topo.save()


# -- switchover --------------------------------------------------------------------------------------------------
def switchover(topo, to, timeout=DEFAULT_TIMEOUT, log=None):
    """Planned change of primary to server `to`; returns the new primary. Loses nothing."""
    old = topo.primary()
    new = topo.server(to)
    if new.server_id == old.server_id:
        raise RplError("server %d is already the primary" % new.server_id)
    if not _alive(old):
        raise RplError("the primary (server %d) does not answer: use failover" % old.server_id)
    status = topo.replica_status(new)
    if status is None or not (status["io_running"] and status["sql_running"]):
        raise RplError("server %d is not a running replica (%s)" % (new.server_id, status and (
            status["last_io_error"] or status["last_sql_error"] or status["io_state"])))
    errant = errant_transactions(topo).get(new.server_id)
    if errant:
        raise RplError("server %d has errant transactions %s: skip them first (`skip-errant`)"
                       % (new.server_id, ", ".join(errant)))
    f = topo.flavour
    t0 = time.monotonic()
    run(old, f.fence())
    try:
        position = topo.gtid_state(old)["position"]
        if not topo.wait_applied(new, position, timeout):
            raise RplError("server %d did not apply %s within %.0f s; switchover abandoned"
                           % (new.server_id, position, timeout))
        _promote(topo, new)
    except BaseException:
        run(old, f.unfence())
        raise
    _set_primary(topo, new, "switchover %d -> %d at %s" % (old.server_id, new.server_id, position))
    for s in topo.servers:
        if s.server_id not in (new.server_id, old.server_id):
            _follow(topo, s, new)
    _follow(topo, old, new, demoted=True)
    _emit(log, "switchover: server %d is the primary (%.2f s), server %d follows it"
          % (new.server_id, time.monotonic() - t0, old.server_id))
    _await_semisync_clients(topo, new, [s for s in topo.servers if s.server_id != new.server_id], log)
    return new


# -- failover ----------------------------------------------------------------------------------------------------
def _drain(topo, server, timeout):
    """Stop receiving, apply what was received; return the executed set (None if it cannot finish)."""
    f = topo.flavour
    run(server, [f.stop_io_thread()])
    status = topo.replica_status(server)
    if status is None:
        return None
    received = status["gtid_received"]
    if received and not topo.wait_applied(server, received, timeout):
        return None
    return topo.gtid_state(server)["executed"]


def failover(topo, candidate=None, force=False, timeout=DEFAULT_TIMEOUT, log=None):
    """Promote the most advanced healthy replica (or `candidate`); returns the new primary Server."""
    t0 = time.monotonic()
    old = topo.primary()
    f = topo.flavour
    old_alive = _alive(old)
    if old_alive:
        run(old, f.fence())
        _emit(log, "failover: the old primary %d still answers; fenced it (read_only=ON)" % old.server_id)
        position = topo.gtid_state(old)["position"]
        for s in topo.replicas():
            if _alive(s):
                topo.wait_applied(s, position, min(timeout, 5))
    states = {}
    for s in topo.replicas():
        if not _alive(s):
            _emit(log, "failover: server %d does not answer; not a candidate" % s.server_id)
            continue
        try:
            executed = _drain(topo, s, timeout)
        except pymysql.err.MySQLError as exc:
            _emit(log, "failover: server %d: %s" % (s.server_id, exc))
            continue
        if executed is None:
            _emit(log, "failover: server %d cannot apply its relay log; not a candidate" % s.server_id)
            continue
        states[s.server_id] = executed
    if not states:
        raise RplError("no reachable replica can be promoted")
    errant = errant_transactions(topo, states, primary_alive=False)
    ranked = sorted(states, key=lambda sid: (-states[sid].rank(), sid))
    if candidate is not None:
        candidate = int(candidate)
        if candidate not in states:
            raise RplError("server %d is not a usable candidate (down, not a replica, or stuck)" % candidate)
        if errant.get(candidate) and not force:
            raise RplError("server %d has errant transactions %s; refusing it (skip them, pick another, or "
                           "--force)" % (candidate, ", ".join(errant[candidate])))
        chosen = candidate
    else:
        usable = [sid for sid in ranked if force or not errant.get(sid)]
        for sid in ranked:
            if sid not in usable:
                _emit(log, "failover: refusing server %d: errant transactions %s" % (sid, ", ".join(errant[sid])))
        if not usable:
            raise RplError("every candidate has errant transactions (%s); skip them or use --force"
                           % "; ".join("%d: %s" % (k, ", ".join(v)) for k, v in errant.items() if v))
        chosen = usable[0]
    new = topo.server(chosen)
    # A named (or errant-free) candidate may be behind another clean replica: let it catch up from that one.
    for sid in ranked:
        if sid == chosen or errant.get(sid):
            continue
        if not states[chosen].covers(states[sid]):
            donor = topo.server(sid)
            _emit(log, "failover: server %d catches up from server %d first" % (chosen, sid))
            topo.point_at(new, donor)
            target = topo.gtid_state(donor)["position"]
            if not topo.wait_applied(new, target, timeout):
                raise RplError("server %d did not catch up from server %d within %.0f s" % (chosen, sid, timeout))
            states[chosen] = topo.gtid_state(new)["executed"]
    for sid in ranked:
        if errant.get(sid) and sid != chosen and not states[chosen].covers(states[sid]):
            _emit(log, "failover: server %d (errant) holds transactions the new primary lacks; rebuild it" % sid)
    _promote(topo, new)
    _set_primary(topo, new, "failover %d -> %d (old primary %s)" % (
        old.server_id, new.server_id, "fenced" if old_alive else "unreachable"))
    followers = []
    for s in topo.replicas():
        if s.server_id in (chosen, old.server_id) or not s.running:
            continue
        # A replica that did not answer in time to be a candidate (a loaded machine) still follows the new
        # primary, or it would wait on the dead one and leave semi-sync with nobody to acknowledge.
        try:
            _follow(topo, s, new)
            followers.append(s)
        except pymysql.err.MySQLError as exc:
            _emit(log, "failover: could not repoint server %d: %s" % (s.server_id, exc))
    if not old_alive and _alive(old):  # it came back while we worked: fence it now
        run(old, f.fence())
    _emit(log, "failover: server %d is the primary (%.2f s)" % (new.server_id, time.monotonic() - t0))
    _await_semisync_clients(topo, new, followers, log)
    return new


# -- start / rejoin ---------------------------------------------------------------------------------------------
def start(topo, timeout=DEFAULT_TIMEOUT, log=None):
    """Start a stopped topology again (Topology.start) and switch semi-sync back on where it was enabled."""
    started = topo.start(timeout=timeout)
    semisync = topo.state.get("semisync")
    if semisync:
        _semisync_role(topo, topo.primary(), "source", semisync.get("timeout_ms"))
        for s in topo.replicas():
            if s.running and topo.replica_status(s) is not None:
                _semisync_role(topo, s, "replica")
    for s in started:
        _emit(log, "started server %d (port %s)%s" % (s.server_id, s.port,
                                                       " (primary)" if s is topo.primary() else ""))
    return started


def rejoin(topo, server_id, timeout=DEFAULT_TIMEOUT, log=None):
    """Make a server that is not the primary (a repaired old primary, a replica that was detached or restarted)
    replicate from the current primary again. Starts its process if it is down. Refused while it holds
    transactions the primary does not have (committed on it and never replicated: they would be lost, and under
    gtid_strict_mode its replication would stop on the next primary GTID): compare, save what matters, rebuild."""
    primary = topo.primary()
    server = topo.server(server_id)
    if server.server_id == primary.server_id:
        raise RplError("server %d is the primary; rejoin a replica or a former primary" % server.server_id)
    if not _alive(primary):
        raise RplError("the primary (server %d) does not answer: fail over first" % primary.server_id)
    if not server.running:
        try:
            server.process.start()
        except ServerError as exc:
            raise RplError("server %d did not start: %s" % (server.server_id, exc)) from None
        server.refresh()
        _emit(log, "rejoin: started server %d (port %s)" % (server.server_id, server.port))
    if not _alive(server, timeout=CONNECT_TIMEOUT_REJOIN):
        raise RplError("server %d does not answer" % server.server_id)
    f = topo.flavour
    run(server, f.fence())  # nothing may commit on it while it is compared and re-attached
    mine = topo.gtid_state(server)["executed"]
    ref = topo.gtid_state(primary)["executed"]
    lost = mine.missing_from(ref)
    if lost:
        raise RplError("server %d holds transactions the primary (server %d) does not have: %s (never replicated, "
                       "e.g. committed just before a failover). Rejoining would drop them and stop on the next "
                       "primary transaction; save what matters from it and rebuild it"
                       % (server.server_id, primary.server_id, ", ".join(lost)))
    status = topo.replica_status(server)
    demoted = status is None or status["source_port"] != primary.port
    _follow(topo, server, primary, demoted=demoted)
    position = topo.gtid_state(primary)["position"]
    if position and not topo.wait_applied(server, position, timeout):
        raise RplError("server %d did not catch up with %s within %.0f s: %s"
                       % (server.server_id, position, timeout, topo.replica_status(server)))
    topo.log_event("server %d rejoined as a replica of server %d" % (server.server_id, primary.server_id))
    topo.save()
    _emit(log, "rejoin: server %d replicates from server %d (at %s)" % (server.server_id, primary.server_id, position))
    return server


# -- semi-synchronous replication --------------------------------------------------------------------------------
def _semisync_role(topo, server, role, timeout_ms=None, reconnect=True):
    """Switch semi-sync on for `server` as a "source" or a "replica"; a running replica's IO thread is restarted
    (`reconnect`) to announce it, unless its threads are about to be started anyway."""
    f = topo.flavour
    for stmt in f.semisync_install(role):
        try:
            run(server, [stmt])
        except pymysql.err.MySQLError as exc:
            if exc.args[0] != 1125:  # ER_PLUGIN_INSTALLED
                raise
    run(server, f.semisync_enable(role, timeout_ms))
    if role == "replica" and reconnect:
        # A replica announces semi-sync when its IO thread connects: reconnect it.
        status = topo.replica_status(server)
        if status is not None and status["io_state"] != "No":
            run(server, [f.stop_io_thread(), f.start_io_thread()])


def semisync_enable(topo, timeout_ms=10000):
    """Semi-sync on the primary (AFTER_SYNC, `timeout_ms` before it falls back) and on every replica."""
    _semisync_role(topo, topo.primary(), "source", timeout_ms)
    for s in topo.replicas():
        _semisync_role(topo, s, "replica")
    topo.state["semisync"] = {"timeout_ms": int(timeout_ms)}
    topo.log_event("semi-sync enabled, timeout %d ms" % timeout_ms)
    topo.save()


def _variables(server, statement):
    return {r["Variable_name"].lower(): r["Value"] for r in run(server, [(statement, None)])}


def semisync_status(topo):
    """The primary's semi-sync state: enabled, status (True = ON), clients, yes_tx, no_tx, timeout_ms."""
    f = topo.flavour
    primary = topo.primary()
    variables = _variables(primary, "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'")
    status = _variables(primary, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'")
    names, snames = f.semisync_vars, f.semisync_status_vars

    def num(v):
        try:
            return int(v)
        except (TypeError, ValueError):
            return None
    return {"server_id": primary.server_id,
            "enabled": variables.get(names["enabled"].lower(), "OFF") == "ON",
            "status": status.get(snames["status"].lower(), "OFF") == "ON",
            "clients": num(status.get(snames["clients"].lower())),
            "yes_tx": num(status.get(snames["yes_tx"].lower())),
            "no_tx": num(status.get(snames["no_tx"].lower())),
            "timeout_ms": num(variables.get(names["timeout"].lower()))}


def semisync_check(topo):
    """(ok, message). Not ok when semi-sync is off, on but fallen back to asynchronous (F15), or on with no replica
    acknowledging (a just-promoted primary, every IO thread stopped): the primary still says ON then, and only its
    next commit, after the timeout, would show the fallback."""
    st = semisync_status(topo)
    if not st["enabled"]:
        return False, "ALERT: semi-synchronous replication is not enabled on the primary (server %d)" % (
            st["server_id"])
    if not st["status"]:
        return False, ("ALERT: the primary (server %d) has fallen back to ASYNCHRONOUS replication: %s "
                       "replica(s) acknowledging, %s transaction(s) committed without an acknowledgement, "
                       "timeout %s ms. A commit no longer means a replica has it."
                       % (st["server_id"], st["clients"], st["no_tx"], st["timeout_ms"]))
    if not st["clients"]:
        return False, ("ALERT: semi-sync is ON on the primary (server %d) but no replica acknowledges: its next "
                       "commit waits %s ms and falls back to ASYNCHRONOUS replication. Check the replicas' IO "
                       "threads and rpl_semi_sync_slave_enabled." % (st["server_id"], st["timeout_ms"]))
    return True, ("semi-sync OK on server %d: %s replica(s) acknowledging, %s acknowledged / %s not"
                  % (st["server_id"], st["clients"], st["yes_tx"], st["no_tx"]))
