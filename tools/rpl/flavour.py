"""The one place that knows how MariaDB and MySQL 8.0/8.4 spell replication.

Everything above this module (topology, switchover, failover, the monitor) asks a flavour for a statement or
hands it a row to normalise; nothing else compares version strings. Statements are returned as `(sql, args)` for
PyMySQL's `cursor.execute`, so host names and passwords are always escaped by the driver (F5/F14), never
formatted into the text.

What differs (all of it is here):

===========================  ===============================  =============================================
                             MariaDB 10.3+                    MySQL 8.0.23+ / 8.4 (older 8.0: MASTER words)
===========================  ===============================  =============================================
point a replica              CHANGE MASTER TO ...             CHANGE REPLICATION SOURCE TO ...
GTID auto-positioning        MASTER_USE_GTID=slave_pos        SOURCE_AUTO_POSITION=1
start / stop / forget        START/STOP SLAVE, RESET SLAVE    START/STOP REPLICA, RESET REPLICA ALL
                             ALL
replica status               SHOW SLAVE STATUS                SHOW REPLICA STATUS (Replica_*, *_Source)
replicas of a primary        SHOW SLAVE HOSTS                 SHOW REPLICAS
executed GTIDs               @@gtid_binlog_state (with        @@gtid_executed (a set of uuid:intervals)
                             log_slave_updates: the last
                             seq_no per domain+server_id)
received GTIDs               Gtid_IO_Pos                      Retrieved_Gtid_Set
wait until applied           MASTER_GTID_WAIT(pos, t) = 0     WAIT_FOR_EXECUTED_GTID_SET(set, t) = 0
fence writes                 read_only=ON (READ_ONLY ADMIN,   super_read_only=ON (stops root too)
                             e.g. root, may still write)
semi-sync                    built in: rpl_semi_sync_master_* plugin semisync_source.so:
                             / rpl_semi_sync_slave_*          rpl_semi_sync_source_* / _replica_*
skip an errant GTID          SET server_id, gtid_domain_id,   SET GTID_NEXT='uuid:n'; BEGIN; COMMIT;
                             gtid_seq_no; FLUSH PRIVILEGES    SET GTID_NEXT='AUTOMATIC' (book, Listing 8-3)
                             (an empty BEGIN/COMMIT is not
                             binlogged by MariaDB)
===========================  ===============================  =============================================
"""

import re

# -- GTID arithmetic ---------------------------------------------------------------------------------------------


class MariaGtids:
    """A MariaDB GTID state: the highest seq_no per (domain_id, server_id), as @@gtid_binlog_state shows it.

    MariaDB numbers transactions per domain; with gtid_strict_mode a server's seq_no only grows within a domain, so
    "server A has everything B has" is "for every (domain, server_id) of B, A's seq_no is at least B's".
    """

    def __init__(self, text=""):
        self.last = {}
        for item in (text or "").replace("\n", "").split(","):
            item = item.strip()
            if not item:
                continue
            domain, server_id, seq = (int(x) for x in item.split("-"))
            key = (domain, server_id)
            self.last[key] = max(seq, self.last.get(key, 0))

    def domains(self):
        """{domain: highest seq_no}: the server's position."""
        out = {}
        for (domain, _), seq in self.last.items():
            out[domain] = max(seq, out.get(domain, 0))
        return out

    def covers(self, other):
        return all(self.last.get(key, 0) >= seq for key, seq in other.last.items())

    def missing_from(self, reference, exclude_origins=()):
        """GTIDs here that `reference` lacks, ignoring those whose server_id is in exclude_origins."""
        return ["%d-%d-%d" % (d, s, n) for (d, s), n in sorted(self.last.items())
                if s not in exclude_origins and reference.last.get((d, s), 0) < n]

    def union(self, other):
        out = MariaGtids()
        out.last = dict(self.last)
        for key, seq in other.last.items():
            out.last[key] = max(seq, out.last.get(key, 0))
        return out

    def rank(self):
        return sum(self.domains().values())

    def __str__(self):
        return ",".join("%d-%d-%d" % (d, s, n) for (d, s), n in sorted(self.last.items()))


class MysqlGtids:
    """A MySQL GTID set: {source_uuid[:tag]: [(first, last), ...]} as @@gtid_executed shows it (8.4 tags too)."""

    def __init__(self, text=""):
        self.sets = {}
        for part in (text or "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            fields = part.split(":")
            source = fields[0].lower()
            for field in fields[1:]:
                if not field[:1].isdigit():  # a tag (MySQL 8.4): uuid:tag:1-5
                    source = "%s:%s" % (fields[0].lower(), field)
                    continue
                first, _, last = field.partition("-")
                self.add(source, int(first), int(last or first))

    def add(self, source, first, last):
        """Add the transactions first..last of `source`, merging touching intervals."""
        ivs = sorted(self.sets.get(source, []) + [(first, last)])
        merged = []
        for a, b in ivs:
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        self.sets[source] = merged

    def count(self):
        return sum(b - a + 1 for ivs in self.sets.values() for a, b in ivs)

    def contains(self, source, n):
        return any(a <= n <= b for a, b in self.sets.get(source, ()))

    def subtract(self, other):
        out = MysqlGtids()
        for source, ivs in self.sets.items():
            for a, b in ivs:
                n = a
                while n <= b:  # interval walk; errant sets are small, the common case is one subtraction
                    hole = next(((x, y) for x, y in other.sets.get(source, ()) if x <= n <= y), None)
                    if hole is not None:
                        n = hole[1] + 1
                        continue
                    nxt = min([x for x, _ in other.sets.get(source, ()) if x > n] + [b + 1])
                    out.add(source, n, min(b, nxt - 1))
                    n = nxt
        return out

    def covers(self, other):
        return other.subtract(self).count() == 0

    def union(self, other):
        out = MysqlGtids(str(self))
        for source, ivs in other.sets.items():
            for a, b in ivs:
                out.add(source, a, b)
        return out

    def missing_from(self, reference, exclude_origins=()):
        rest = self.subtract(reference)
        out = []
        for source, ivs in sorted(rest.sets.items()):
            if source.split(":")[0] in exclude_origins:
                continue
            out.extend("%s:%d" % (source, n) for a, b in ivs for n in range(a, b + 1))
        return out

    def rank(self):
        return self.count()

    def __str__(self):
        return ",".join("%s:%s" % (src, ":".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in ivs))
                        for src, ivs in sorted(self.sets.items()))


# -- flavours ----------------------------------------------------------------------------------------------------


class Flavour:
    name = "?"

    def __init__(self, version=(0, 0, 0)):
        self.version = tuple(version)

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, ".".join(map(str, self.version)))

    # Subclasses fill these in. Each statement is (sql, args).
    def execute(self, cur, statement):
        sql, args = statement
        cur.execute(sql, args)


class MariaDB(Flavour):
    name = "mariadb"
    gtids = MariaGtids

    def server_options(self, port):
        return ["--log-bin=binlog", "--log-slave-updates", "--gtid-strict-mode=1", "--relay-log=relay-bin",
                "--report-host=127.0.0.1", "--report-port=%d" % port, "--slave-net-timeout=5"]

    def change_source(self, host, port, user, password):
        return ("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
                (host, int(port), user, password))

    def start_replica(self):
        return ("START SLAVE", None)

    def stop_replica(self):
        return ("STOP SLAVE", None)

    def stop_io_thread(self):
        return ("STOP SLAVE IO_THREAD", None)

    def start_io_thread(self):
        return ("START SLAVE IO_THREAD", None)

    def reset_replica_all(self):
        return ("RESET SLAVE ALL", None)

    def replica_status(self):
        return ("SHOW SLAVE STATUS", None)

    def list_replicas(self):
        return ("SHOW SLAVE HOSTS", None)

    def gtid_state_sql(self):
        """Executed (every transaction this server has, in its binlog) and its origin (server_id)."""
        # position: @@gtid_binlog_pos, not gtid_current_pos, which drops a domain whose last GTID carries another
        # server_id than ours (as after an injected errant GTID) and falls back to gtid_slave_pos there.
        return ("SELECT @@gtid_binlog_state AS executed, @@server_id AS origin, @@gtid_binlog_pos AS position",
                None)

    def align_demoted_primary(self):
        """Before a former primary replicates: its own transactions are in the binlog, not in gtid_slave_pos."""
        return [("SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos", None)]

    def wait_for_gtids(self, gtids, timeout):
        return ("SELECT MASTER_GTID_WAIT(%s, %s)", (str(gtids), float(timeout)))

    @staticmethod
    def wait_succeeded(value):
        return value == 0

    def fence(self):
        return [("SET GLOBAL read_only = ON", None)]

    def unfence(self):
        return [("SET GLOBAL read_only = OFF", None)]

    def fence_option(self):
        """Start-up option: a (re)started server takes no application writes until the topology unfences it."""
        return "--read-only"

    def read_only_sql(self):
        return ("SELECT @@read_only", None)

    def inject_empty(self, gtid):
        """Commit a transaction with this exact GTID that changes no data (the MariaDB form of Listing 8-3).

        MariaDB does not binlog an empty BEGIN/COMMIT, so the carrier is FLUSH PRIVILEGES: binlogged, no data
        changed, harmless where it is replayed. The session's server_id and gtid_seq_no make its GTID the errant
        one; with gtid_strict_mode the seq_no must still be above the primary's in that domain.
        """
        domain, server_id, seq = (int(x) for x in gtid.split("-"))
        return [("SET SESSION gtid_domain_id = %s", (domain,)),
                ("SET SESSION server_id = %s", (server_id,)),
                ("SET SESSION gtid_seq_no = %s", (seq,)),
                ("FLUSH PRIVILEGES", None)]

    @staticmethod
    def valid_gtid(text):
        return re.match(r"^\d+-\d+-\d+$", text or "") is not None

    # semi-sync
    def semisync_install(self, role):
        return []  # built in since 10.3

    def semisync_enable(self, role, timeout_ms=None):
        if role == "source":
            out = [("SET GLOBAL rpl_semi_sync_master_enabled = ON", None),
                   ("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'", None)]
            if timeout_ms is not None:
                out.append(("SET GLOBAL rpl_semi_sync_master_timeout = %s", (int(timeout_ms),)))
            return out
        return [("SET GLOBAL rpl_semi_sync_slave_enabled = ON", None)]

    semisync_vars = {"enabled": "rpl_semi_sync_master_enabled", "timeout": "rpl_semi_sync_master_timeout",
                     "replica_enabled": "rpl_semi_sync_slave_enabled"}
    semisync_status_vars = {"status": "Rpl_semi_sync_master_status", "clients": "Rpl_semi_sync_master_clients",
                            "yes_tx": "Rpl_semi_sync_master_yes_tx", "no_tx": "Rpl_semi_sync_master_no_tx",
                            "replica_status": "Rpl_semi_sync_slave_status"}

    def normalize_status(self, row):
        return _normalize(row, "Slave_IO_Running", "Slave_SQL_Running", "Seconds_Behind_Master",
                          "Master_Host", "Master_Port", "Master_Server_Id", "Gtid_IO_Pos")

    def normalize_replica_host(self, row):
        return {"server_id": row.get("Server_id"), "host": row.get("Host"), "port": row.get("Port"),
                "source_id": row.get("Master_id")}


class MySQL(Flavour):
    """MySQL 8.0 and 8.4. Before 8.0.22/8.0.23 the MASTER/SLAVE words; 8.4 has only the new ones."""
    name = "mysql"
    gtids = MysqlGtids

    @property
    def new_words(self):
        return self.version >= (8, 0, 23)

    @property
    def new_semisync(self):
        return self.version >= (8, 0, 26)

    def server_options(self, port):
        updates = "--log-replica-updates" if self.new_semisync else "--log-slave-updates"
        return ["--log-bin=binlog", updates, "--gtid-mode=ON", "--enforce-gtid-consistency=ON",
                "--relay-log=relay-bin", "--report-host=127.0.0.1", "--report-port=%d" % port,
                "--replica-net-timeout=5" if self.new_semisync else "--slave-net-timeout=5"]

    def change_source(self, host, port, user, password):
        if self.new_words:
            return ("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
                    "SOURCE_PASSWORD=%s, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_RETRY_COUNT=86400, "
                    "SOURCE_HEARTBEAT_PERIOD=1, GET_SOURCE_PUBLIC_KEY=1", (host, int(port), user, password))
        return ("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                "MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1, MASTER_RETRY_COUNT=86400, "
                "MASTER_HEARTBEAT_PERIOD=1, GET_MASTER_PUBLIC_KEY=1", (host, int(port), user, password))

    def _word(self):
        return "REPLICA" if self.version >= (8, 0, 22) else "SLAVE"

    def start_replica(self):
        return ("START %s" % self._word(), None)

    def stop_replica(self):
        return ("STOP %s" % self._word(), None)

    def stop_io_thread(self):
        return ("STOP %s IO_THREAD" % self._word(), None)

    def start_io_thread(self):
        return ("START %s IO_THREAD" % self._word(), None)

    def reset_replica_all(self):
        return ("RESET %s ALL" % self._word(), None)

    def replica_status(self):
        return ("SHOW %s STATUS" % self._word(), None)

    def list_replicas(self):
        return ("SHOW REPLICAS" if self.version >= (8, 0, 22) else "SHOW SLAVE HOSTS", None)

    def gtid_state_sql(self):
        return ("SELECT @@GLOBAL.gtid_executed AS executed, @@server_uuid AS origin, "
                "@@GLOBAL.gtid_executed AS position", None)

    def align_demoted_primary(self):
        return []  # gtid_executed already holds the old primary's own transactions; auto-positioning uses it

    def wait_for_gtids(self, gtids, timeout):
        return ("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (str(gtids), float(timeout)))

    @staticmethod
    def wait_succeeded(value):
        return value == 0

    def fence(self):
        return [("SET GLOBAL super_read_only = ON", None)]  # implies read_only; stops SUPER users too

    def unfence(self):
        return [("SET GLOBAL super_read_only = OFF", None), ("SET GLOBAL read_only = OFF", None)]

    def fence_option(self):
        return "--super-read-only"

    def read_only_sql(self):
        return ("SELECT @@read_only", None)

    def inject_empty(self, gtid):
        """Listing 8-3: an empty transaction carrying the errant GTID."""
        return [("SET GTID_NEXT = %s", (gtid,)), ("BEGIN", None), ("COMMIT", None),
                ("SET GTID_NEXT = 'AUTOMATIC'", None)]

    @staticmethod
    def valid_gtid(text):
        return re.match(r"^[0-9a-fA-F-]{36}(:[A-Za-z_][A-Za-z0-9_]{0,31})?:\d+$", text or "") is not None

    def semisync_install(self, role):
        if self.new_semisync:
            plugin = ("rpl_semi_sync_source", "semisync_source.so") if role == "source" else \
                ("rpl_semi_sync_replica", "semisync_replica.so")
        else:
            plugin = ("rpl_semi_sync_master", "semisync_master.so") if role == "source" else \
                ("rpl_semi_sync_slave", "semisync_slave.so")
        return [("INSTALL PLUGIN %s SONAME '%s'" % plugin, None)]  # constants; error 1125 = already installed

    def semisync_enable(self, role, timeout_ms=None):
        v = self.semisync_vars
        if role == "source":
            out = [("SET GLOBAL %s = ON" % v["enabled"], None),
                   ("SET GLOBAL %s = 'AFTER_SYNC'" % v["enabled"].replace("_enabled", "_wait_point"), None)]
            if timeout_ms is not None:
                out.append(("SET GLOBAL %s = %%s" % v["timeout"], (int(timeout_ms),)))
            return out
        return [("SET GLOBAL %s = ON" % v["replica_enabled"], None)]

    @property
    def semisync_vars(self):
        src, rep = ("source", "replica") if self.new_semisync else ("master", "slave")
        return {"enabled": "rpl_semi_sync_%s_enabled" % src, "timeout": "rpl_semi_sync_%s_timeout" % src,
                "replica_enabled": "rpl_semi_sync_%s_enabled" % rep}

    @property
    def semisync_status_vars(self):
        src, rep = ("source", "replica") if self.new_semisync else ("master", "slave")
        return {"status": "Rpl_semi_sync_%s_status" % src, "clients": "Rpl_semi_sync_%s_clients" % src,
                "yes_tx": "Rpl_semi_sync_%s_yes_tx" % src, "no_tx": "Rpl_semi_sync_%s_no_tx" % src,
                "replica_status": "Rpl_semi_sync_%s_status" % rep}

    def normalize_status(self, row):
        if "Replica_IO_Running" in row:
            return _normalize(row, "Replica_IO_Running", "Replica_SQL_Running", "Seconds_Behind_Source",
                              "Source_Host", "Source_Port", "Source_Server_Id", "Retrieved_Gtid_Set")
        return _normalize(row, "Slave_IO_Running", "Slave_SQL_Running", "Seconds_Behind_Master",
                          "Master_Host", "Master_Port", "Master_Server_Id", "Retrieved_Gtid_Set")

    def normalize_replica_host(self, row):
        return {"server_id": row.get("Server_Id", row.get("Server_id")), "host": row.get("Host"),
                "port": row.get("Port"), "source_id": row.get("Source_Id", row.get("Master_id"))}


def _normalize(row, io, sql, behind, host, port, source_id, received):
    """One shape for SHOW SLAVE/REPLICA STATUS on every flavour."""
    if not row:
        return None
    io_state = row.get(io) or "No"
    return {
        "io_state": io_state,  # Yes / No / Connecting
        "io_running": io_state == "Yes",
        "sql_running": (row.get(sql) or "No") == "Yes",
        "seconds_behind": row.get(behind),
        "last_io_errno": int(row.get("Last_IO_Errno") or 0),
        "last_io_error": row.get("Last_IO_Error") or "",
        "last_sql_errno": int(row.get("Last_SQL_Errno") or 0),
        "last_sql_error": row.get("Last_SQL_Error") or "",
        "source_host": row.get(host),
        "source_port": int(row[port]) if row.get(port) else None,
        "source_server_id": row.get(source_id),
        "gtid_received": (row.get(received) or "").replace("\n", ""),
        "gtid_executed": (row.get("Executed_Gtid_Set") or "").replace("\n", "") or None,  # MySQL only
    }


def from_version(version, comment=""):
    """The flavour for a VERSION() string (and @@version_comment): '10.11.6-MariaDB-0+deb12u1', '8.4.3'."""
    text = "%s %s" % (version or "", comment or "")
    numbers = tuple(int(x) for x in re.findall(r"\d+", version or "0")[:3])
    numbers = numbers + (0,) * (3 - len(numbers))
    if "mariadb" in text.lower():
        return MariaDB(numbers)
    return MySQL(numbers)


def detect(conn):
    """Ask a live server which flavour it is."""
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION() AS v, @@version_comment AS c")
        row = cur.fetchone()
        version, comment = (row["v"], row["c"]) if isinstance(row, dict) else row[:2]
    return from_version(version, comment)


def from_binary_version(text):
    """The flavour from `mysqld --version` output, before any server runs (to choose the start-up options)."""
    m = re.search(r"Ver\s+(\S+)", text or "")
    return from_version(m.group(1) if m else text, text)
