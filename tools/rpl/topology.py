"""A local replication topology: N private servers (tools.dbserver) wired with GTID auto-positioning.

Layout of a topology directory (`python -m tools.rpl create --dir run/rpl --servers 3`)::

    run/rpl/topology.json     who is primary, each server's id/port/socket, the replication account (mode 0600)
    run/rpl/s1/ s2/ s3/ ...   one PrivateServer each (data/, error.log, dbserver.json; the socket moves to a short
                              /tmp folder when this path is too long for a Unix socket)

Every server runs with a binary log, log_slave_updates and GTIDs (gtid_strict_mode on MariaDB, gtid_mode=ON on
MySQL), so any replica can become the primary and every other server can follow it by GTID alone. The replication
account is created on the first primary with parameterised SQL and replicated to the others, so it exists on
whichever server is promoted later.

Adding a replica to a running topology (`add_replica`) starts an empty server and points it at the primary with
an empty GTID position: it replays the primary's binary log from its first event. That is a complete copy ONLY
while the primary still has every binary log since the topology was created (nothing purged, no
expire_logs_days/binlog_expire_logs_seconds rotation, no data loaded with sql_log_bin=0). `add_replica` checks the
first binary log's GTID list and refuses otherwise; then clone with mariadb-backup / MySQL's CLONE plugin and
start replication at the backup's GTID position (not done here).
"""

import json
import os
import secrets
import shutil
import subprocess
import time

import pymysql
import pymysql.cursors

from tools.dbserver import PrivateServer, ServerError, find_server
from tools.rpl import flavour as flavours

STATE_FILE = "topology.json"
REPL_USER = "rpl"
CONNECT_TIMEOUT = 2


class RplError(Exception):
    """A replication operation cannot be done; the message is meant for the operator."""


class _ReplServer(PrivateServer):
    """A PrivateServer that reports its own port to its primary (SHOW SLAVE HOSTS / SHOW REPLICAS)."""

    def __init__(self, base_dir, *, flavour, **kw):
        super().__init__(base_dir, **kw)
        self._rpl_flavour = flavour

    def _command(self):
        # The port is chosen inside start(), so the options that name it are added at launch time. Every server
        # starts fenced (read-only): a restarted old primary must not take writes before it rejoins; the primary is
        # unfenced explicitly (create, start, switchover, failover).
        return super()._command() + self._rpl_flavour.server_options(self.port) + [self._rpl_flavour.fence_option()]


class Server:
    """One member of a topology: where to reach it and how to control its process."""

    def __init__(self, server_id, base_dir, host="127.0.0.1", port=None, socket=None, flavour=None):
        self.server_id = int(server_id)
        self.base_dir = base_dir
        self.host = host
        self.port = port
        self.socket = socket
        self.flavour = flavour          # the servers' options at start-up depend on it
        self._proc = None

    def __repr__(self):
        return "<Server %d %s:%s>" % (self.server_id, self.host, self.port)

    @property
    def process(self):
        """The PrivateServer (re-read from its state file, so kill/stop work from another process)."""
        if self._proc is None:
            self._proc = _ReplServer(self.base_dir, flavour=self.flavour, server_id=self.server_id)
        return self._proc

    def refresh(self):
        proc = self.process
        if proc.port:
            self.port, self.socket = proc.port, proc.socket
        return self

    @property
    def running(self):
        return self.process.running

    def admin_kwargs(self, timeout=CONNECT_TIMEOUT, read_timeout=30):
        """root over the Unix socket (private servers have no root password)."""
        return {"unix_socket": self.socket, "user": "root", "password": "", "charset": "utf8mb4",
                "connect_timeout": timeout, "read_timeout": read_timeout, "write_timeout": 30,
                "autocommit": True}

    def tcp_kwargs(self, user, password, database=None, timeout=CONNECT_TIMEOUT):
        kw = {"host": self.host, "port": self.port, "user": user, "password": password, "charset": "utf8mb4",
              "connect_timeout": timeout}
        if database:
            kw["database"] = database
        return kw

    def connect(self, timeout=CONNECT_TIMEOUT, dict_rows=True, read_timeout=30):
        kw = self.admin_kwargs(timeout, read_timeout)
        if dict_rows:
            kw["cursorclass"] = pymysql.cursors.DictCursor
        return pymysql.connect(**kw)

    def to_json(self):
        return {"server_id": self.server_id, "dir": self.base_dir, "host": self.host, "port": self.port,
                "socket": self.socket}


def run(server, statements, timeout=CONNECT_TIMEOUT):
    """Run (sql, args) statements on one server as root; return the last result set (list of dicts)."""
    conn = server.connect(timeout)
    try:
        rows = []
        with conn.cursor() as cur:
            for sql, args in statements:
                cur.execute(sql, args)
                rows = cur.fetchall()
        return list(rows)
    finally:
        conn.close()


def binary_flavour():
    """The flavour of the installed server binary (the options to start it with depend on it)."""
    kind, server, _ = find_server()
    if kind == "mariadb":
        return flavours.MariaDB((10, 11, 0))
    out = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=30).stdout
    return flavours.from_binary_version(out)


class Topology:
    """The servers of one topology directory and which of them is the primary."""

    def __init__(self, directory, state):
        self.dir = os.path.abspath(directory)
        self.state = state
        self.flavour = flavours.from_version(state.get("version", ""), state.get("flavour", ""))
        self.servers = [Server(s["server_id"], s["dir"], s.get("host", "127.0.0.1"), s.get("port"),
                               s.get("socket"), self.flavour) for s in state.get("servers", [])]

    # -- persistence -----------------------------------------------------------------------------------------------
    @property
    def state_file(self):
        return os.path.join(self.dir, STATE_FILE)

    @classmethod
    def load(cls, directory):
        path = os.path.join(os.path.abspath(directory), STATE_FILE)
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            raise RplError("no topology in %s (create one with `python -m tools.rpl create --dir %s`)"
                           % (directory, directory)) from None
        except ValueError as exc:
            raise RplError("%s is not valid JSON: %s" % (path, exc)) from None
        return cls(directory, state)

    def reload(self):
        """Re-read the state file (another process, e.g. the monitor, may have failed over)."""
        fresh = Topology.load(self.dir)
        self.state, self.servers = fresh.state, fresh.servers
        return self

    def save(self):
        self.state["servers"] = [s.to_json() for s in self.servers]
        tmp = self.state_file + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the replication password
        with os.fdopen(fd, "w") as f:
            json.dump(self.state, f, indent=2)
        os.replace(tmp, self.state_file)

    def log_event(self, text):
        events = self.state.setdefault("events", [])
        events.append({"time": time.time(), "event": text})
        del events[:-50]

    # -- lookup ----------------------------------------------------------------------------------------------------
    def server(self, server_id):
        for s in self.servers:
            if s.server_id == int(server_id):
                return s
        raise RplError("no server with id %s in %s (ids: %s)"
                       % (server_id, self.dir, ", ".join(str(s.server_id) for s in self.servers)))

    def primary(self):
        return self.server(self.state["primary"])

    def replicas(self):
        return [s for s in self.servers if s.server_id != self.state["primary"]]

    @property
    def repl_credentials(self):
        return self.state["repl_user"], self.state["repl_password"]

    # -- building --------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory, servers=3, flavour=None):
        """Start `servers` fresh servers; server 1 is the primary, the rest replicate from it by GTID."""
        if servers < 1:
            raise RplError("a topology needs at least one server")
        directory = os.path.abspath(directory)
        if os.path.exists(os.path.join(directory, STATE_FILE)):
            raise RplError("%s already holds a topology; `stop` it and remove the folder first" % directory)
        os.makedirs(directory, exist_ok=True)
        flav = flavour or binary_flavour()
        state = {"flavour": flav.name, "version": "", "primary": 1, "repl_user": REPL_USER,
                 "repl_password": secrets.token_hex(16), "servers": [], "events": []}
        topo = cls(directory, state)
        topo.flavour = flav
        try:
            topo.start_server(1)
            topo.detect_flavour()
            primary = topo.primary()
            run(primary, topo.flavour.unfence())
            user, password = topo.repl_credentials
            # Parameterised: the driver escapes the name and password (F5). Binlogged on purpose: every server
            # gets the account, so whichever is promoted later can serve the others.
            run(primary, [("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (user, password)),
                          ("GRANT REPLICATION SLAVE ON *.* TO %s@'127.0.0.1'", (user,))])
            topo.save()
            for _ in range(servers - 1):
                topo.add_replica()
        except BaseException:
            topo.stop(kill=True)
            raise
        topo.log_event("created with %d servers" % servers)
        topo.save()
        return topo

    def start_server(self, server_id):
        """Start an empty server with this id (its folder s<id>), add it to the topology and save the state."""
        base = os.path.join(self.dir, "s%d" % server_id)
        server = Server(server_id, base, flavour=self.flavour)
        for attempt in (1, 2):
            try:
                server.process.start()
                break
            except ServerError as exc:
                # mariadb-install-db occasionally fails on a loaded 2-core machine; a fresh data dir, once.
                if attempt == 2 or "initialising" not in str(exc):
                    raise RplError("server %d did not start: %s" % (server_id, exc)) from None
                shutil.rmtree(server.process.datadir, ignore_errors=True)
        server.refresh()
        if self.flavour.name == "mysql":
            uuid = run(server, [("SELECT @@server_uuid AS u", None)])[0]["u"]
            self.state.setdefault("uuids", {})[str(server_id)] = uuid
        self.servers.append(server)
        self.save()
        return server

    def detect_flavour(self):
        """Ask the first server what it is (MariaDB or MySQL, its version) and make that the topology's flavour."""
        conn = self.servers[0].connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION() AS v, @@version_comment AS c")
                row = cur.fetchone()
        finally:
            conn.close()
        self.flavour = flavours.from_version(row["v"], row["c"])
        self.state["flavour"], self.state["version"] = self.flavour.name, row["v"]
        for s in self.servers:
            s.flavour = self.flavour

    def point_at(self, replica, source, demoted=False):
        """Make `replica` replicate from `source` by GTID (stop, optionally align, change source, start)."""
        f = self.flavour
        user, password = self.repl_credentials
        stmts = [f.stop_replica()]
        if demoted:
            stmts += f.align_demoted_primary()
        stmts += [f.change_source(source.host, source.port, user, password), f.start_replica()]
        run(replica, stmts)

    def check_binlog_complete(self, primary=None):
        """Refuse to seed a replica from an empty position when the primary's first binlog does not start at the
        beginning of history (its GTID list event names earlier transactions: logs were purged)."""
        primary = primary or self.primary()
        rows = run(primary, [("SHOW BINARY LOGS", None)])
        if not rows:
            raise RplError("server %d has no binary log" % primary.server_id)
        first = rows[0]["Log_name"]
        events = run(primary, [("SHOW BINLOG EVENTS IN %s LIMIT 4", (first,))])
        for ev in events:
            kind = ev.get("Event_type", "")
            info = (ev.get("Info") or "").strip()
            if kind == "Gtid_list" and info not in ("[]", ""):
                raise RplError("server %d's oldest binary log %s starts after GTIDs %s (older logs were purged): "
                               "an empty replica cannot catch up; clone it with mariadb-backup instead"
                               % (primary.server_id, first, info))
            if kind == "Previous_gtids" and info:
                raise RplError("server %d's oldest binary log %s starts after GTIDs %s (older logs were purged): "
                               "an empty replica cannot catch up; clone it with the CLONE plugin instead"
                               % (primary.server_id, first, info))

    def add_replica(self, wait_timeout=60):
        """Start one more (empty) server and let it replay the primary's binary log from the start."""
        primary = self.primary()
        self.check_binlog_complete(primary)
        server_id = max([s.server_id for s in self.servers] + [0]) + 1
        replica = self.start_server(server_id)
        self.point_at(replica, primary)
        run(replica, self.flavour.fence())  # replicas are read-only for the application
        target = run(primary, [self.flavour.gtid_state_sql()])[0]["position"]
        if target and not self.wait_applied(replica, target, wait_timeout):
            raise RplError("new replica %d did not catch up with %s within %.0f s: %s"
                           % (server_id, target, wait_timeout, self.replica_status(replica)))
        self.log_event("added replica %d" % server_id)
        self.save()
        return replica

    # -- observation -----------------------------------------------------------------------------------------------
    def replica_status(self, server, timeout=CONNECT_TIMEOUT):
        rows = run(server, [self.flavour.replica_status()], timeout)
        return self.flavour.normalize_status(rows[0]) if rows else None

    def gtid_state(self, server, timeout=CONNECT_TIMEOUT):
        """{'executed': GTID object, 'origin': server_id/uuid, 'position': text}"""
        row = run(server, [self.flavour.gtid_state_sql()], timeout)[0]
        return {"executed": self.flavour.gtids(row["executed"]), "origin": row["origin"],
                "position": (row["position"] or "").replace("\n", "")}

    def wait_applied(self, server, gtids, timeout):
        """Block (on the server, not by polling) until `server` has applied `gtids`; False on timeout."""
        conn = server.connect(read_timeout=timeout + 10)
        try:
            with conn.cursor() as cur:
                sql, args = self.flavour.wait_for_gtids(gtids, timeout)
                cur.execute(sql, args)
                value = list(cur.fetchone().values())[0]
        finally:
            conn.close()
        return self.flavour.wait_succeeded(value)

    def health(self):
        """One dict per server: role, reachable, read_only, replica threads, lag, GTID position, errant GTIDs."""
        primary_id = self.state["primary"]
        out, states = [], {}
        for s in self.servers:
            h = {"server_id": s.server_id, "host": s.host, "port": s.port,
                 "role": "primary" if s.server_id == primary_id else "replica", "reachable": False,
                 "read_only": None, "io_running": None, "sql_running": None, "seconds_behind": None,
                 "source": None, "gtid_position": None, "errant": [], "error": None}
            try:
                conn = s.connect()
                try:
                    with conn.cursor() as cur:
                        cur.execute(*self.flavour.read_only_sql())
                        h["read_only"] = bool(list(cur.fetchone().values())[0])
                        cur.execute(*self.flavour.replica_status())
                        row = cur.fetchone()
                        cur.execute(*self.flavour.gtid_state_sql())
                        g = cur.fetchone()
                finally:
                    conn.close()
                h["reachable"] = True
                st = self.flavour.normalize_status(row) if row else None
                if st:
                    h.update(io_running=st["io_running"], sql_running=st["sql_running"],
                             seconds_behind=st["seconds_behind"],
                             source="%s:%s" % (st["source_host"], st["source_port"]))
                    if st["last_io_errno"] or st["last_sql_errno"]:
                        h["error"] = st["last_sql_error"] or st["last_io_error"]
                h["gtid_position"] = (g["position"] or "").replace("\n", "")
                states[s.server_id] = self.flavour.gtids(g["executed"])
            except pymysql.err.MySQLError as exc:
                h["error"] = str(exc)
            out.append(h)
        if primary_id in states:
            ref = states[primary_id]
            origin_primary = self.origin_of(primary_id)
            for h in out:
                if h["server_id"] != primary_id and h["server_id"] in states:
                    h["errant"] = states[h["server_id"]].missing_from(ref, exclude_origins=(origin_primary,))
        return out

    def origin_of(self, server_id):
        """What a server's own transactions are stamped with: its server_id (MariaDB) or server_uuid (MySQL)."""
        if self.flavour.name == "mariadb":
            return int(server_id)
        return self.state.get("uuids", {}).get(str(server_id))

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self, timeout=60):
        """Start every stopped server again (after `stop`, a reboot or a crash): same ports, same data. The primary
        first, then the replicas, which resume replication from where they were (their replication settings live
        in their data directories); read_only is set again (it is not kept across a restart; ha.start() sets
        semi-sync again too). Returns the servers this call started."""
        started = []
        primary = self.primary()
        for s in [primary] + self.replicas():
            if s.running:
                continue
            try:
                s.process.start()
            except ServerError as exc:
                raise RplError("server %d did not start: %s" % (s.server_id, exc)) from None
            s.refresh()
            started.append(s)
        run(primary, self.flavour.unfence())
        position = run(primary, [self.flavour.gtid_state_sql()])[0]["position"]
        for s in self.replicas():
            if s not in started:
                continue
            run(s, self.flavour.fence())
            status = self.replica_status(s)
            if status is None:
                continue  # not replicating before the stop either (e.g. a failed-over old primary): see rejoin
            if status["io_state"] == "No" or not status["sql_running"]:
                run(s, [self.flavour.start_replica()])
            if position and not self.wait_applied(s, position, timeout):
                raise RplError("server %d did not catch up with %s within %.0f s after the start: %s"
                               % (s.server_id, position, timeout, self.replica_status(s)))
        if started:
            self.log_event("started servers %s" % ", ".join(str(s.server_id) for s in started))
        self.save()
        return started

    def stop(self, kill=False):
        errors = []
        for s in self.servers:
            try:
                if kill:
                    s.process.kill()
                else:
                    s.process.stop()
            except ServerError as exc:
                errors.append(str(exc))
        if errors:
            raise RplError("; ".join(errors))
