"""A small GTID replication topology of private MariaDB servers for the gateway's failover and read-scaling tests.

Minimal on purpose (tools/rpl is the project's replication tooling): start N servers with binary logs, GTID,
semi-sync built in, point servers 2..N at server 1 with MASTER_USE_GTID=slave_pos, promote the most advanced
replica after the primary dies, and a planned switchover. Every process is one this module started, ended by its
own PID through tools.dbserver.PrivateServer.
"""


import pymysql

from tools.dbserver import PrivateServer, free_port
from tools.demo.stack import wait_for  # noqa: F401  (tests import it from here)

RPL_USER, RPL_PASSWORD = "rpl", "rpl-test-only"

SERVER_OPTIONS = ("--log-bin=binlog", "--log-slave-updates=ON", "--binlog-format=ROW", "--gtid-strict-mode=ON",
                  "--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-slave-enabled=ON",
                  "--rpl-semi-sync-master-timeout=1000", "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
                  "--report-host=127.0.0.1", "--slave-net-timeout=5", "--read-only=ON")


def admin(srv, database=None):
    kw = srv.admin_kwargs()
    if database:
        kw["database"] = database
    return pymysql.connect(autocommit=True, **kw)


def sql(srv, statement, args=None):
    conn = admin(srv)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()
    finally:
        conn.close()


def replica_status(srv):
    conn = admin(srv)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SHOW SLAVE STATUS")
            return cur.fetchone()
    finally:
        conn.close()


class Topology:
    """servers[0] starts as the primary; `primary` always names the current one."""

    def __init__(self, base_dir, n=3, semisync=True):
        self.servers = []
        for i in range(n):
            opts = list(SERVER_OPTIONS)
            if not semisync:
                opts = [o for o in opts if "semi-sync" not in o]
            opts.append("--gtid-domain-id=0")
            self.servers.append(PrivateServer("%s/s%d" % (base_dir, i + 1), server_id=i + 1, extra_options=opts))
        self.primary = self.servers[0]

    def start(self):
        for srv in self.servers:
            # The port is chosen first so that --report-port can name it: SHOW SLAVE HOSTS (the book's
            # read-scaling selector) shows what replicas report. PrivateServer keeps a port it already has.
            srv._port = free_port()
            srv.extra_options = srv.extra_options + ("--report-port=%d" % srv._port,)
            srv.start()
        p = self.primary
        sql(p, "SET GLOBAL read_only = OFF")
        sql(p, "CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", (RPL_USER, RPL_PASSWORD))
        sql(p, "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO %s@'127.0.0.1'", (RPL_USER,))
        for srv in self.servers[1:]:
            self.point(srv, p)
        return self

    def point(self, replica, primary):
        """Make `replica` replicate from `primary` by GTID (from its own gtid_slave_pos)."""
        conn = admin(replica)
        try:
            with conn.cursor() as cur:
                cur.execute("STOP SLAVE")
                cur.execute("SET GLOBAL read_only = ON")
                cur.execute("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER=%s, "
                            "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                            (primary.port, RPL_USER, RPL_PASSWORD))
                cur.execute("START SLAVE")
        finally:
            conn.close()
        wait_for(lambda: (replica_status(replica) or {}).get("Slave_IO_Running") == "Yes", 20,
                 "replica %d to connect" % replica.server_id)

    def replicas(self):
        return [s for s in self.servers if s is not self.primary and s.running]

    def gtid_pos(self, srv):
        return sql(srv, "SELECT @@gtid_current_pos")[0][0]

    def wait_caught_up(self, timeout=30):
        """Every running replica has applied everything the primary has logged."""
        want = sql(self.primary, "SELECT @@gtid_binlog_pos")[0][0]
        for r in self.replicas():
            conn = admin(r)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (want, timeout))
                    if cur.fetchone()[0] != 0:
                        raise TimeoutError("replica %d did not reach %s" % (r.server_id, want))
            finally:
                conn.close()

    def semisync_clients(self):
        return int(sql(self.primary, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")[0][1])

    @staticmethod
    def _seq(pos):
        """The sequence number of domain 0 in a GTID position ('0-1-57' -> 57); one domain in these tests."""
        best = 0
        for part in filter(None, (pos or "").split(",")):
            domain, _, seq = part.strip().split("-")
            if domain == "0":
                best = max(best, int(seq))
        return best

    def promote_most_advanced(self):
        """After the primary died: let each replica apply what it received, pick the one furthest ahead, make it the
        primary and point the others at it. Returns the new primary."""
        candidates = self.replicas()
        for r in candidates:
            # Apply the relay log fully before comparing (the IO thread cannot get anything more).
            wait_for(lambda r=r: _relay_applied(r), 20, "replica %d to apply its relay log" % r.server_id)
        best = max(candidates, key=lambda r: self._seq(self.gtid_pos(r)))
        conn = admin(best)
        try:
            with conn.cursor() as cur:
                cur.execute("STOP SLAVE")
                cur.execute("RESET SLAVE ALL")
                cur.execute("SET GLOBAL read_only = OFF")
        finally:
            conn.close()
        self.primary = best
        for r in candidates:
            if r is not best:
                self.point(r, best)
        return best

    def switchover(self, new):
        """Planned: old primary read-only, wait until `new` has everything, promote it, repoint the rest (the old
        primary included)."""
        old = self.primary
        sql(old, "SET GLOBAL read_only = ON")
        want = sql(old, "SELECT @@gtid_binlog_pos")[0][0]
        conn = admin(new)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, 30)", (want,))
                if cur.fetchone()[0] != 0:
                    raise TimeoutError("replica %d did not reach %s" % (new.server_id, want))
                cur.execute("STOP SLAVE")
                cur.execute("RESET SLAVE ALL")
                cur.execute("SET GLOBAL read_only = OFF")
        finally:
            conn.close()
        self.primary = new
        for r in self.servers:
            if r is not new and r.running:
                self.point(r, new)
        return new

    def close(self):
        for srv in self.servers:
            try:
                if srv.running:
                    srv.kill()
            except Exception:
                pass


def _relay_applied(r):
    st = replica_status(r)
    if not st:
        return True
    if st.get("Slave_SQL_Running") != "Yes":
        return True
    return st.get("Read_Master_Log_Pos") == st.get("Exec_Master_Log_Pos") and \
        st.get("Master_Log_File") == st.get("Relay_Master_Log_File")
