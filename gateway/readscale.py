"""Round-robin read scaling over replicas, with the shared turn kept on the primary (the book's Listing 8-4, F14).

The book's selector formats SQL with str.format, takes LOCK TABLES and can leave it held when anything fails
between LOCK and UNLOCK, opens three connections per call and hands out replicas that are down or far behind.
This one:

* takes the turn with one atomic, parameter-free statement on the primary,
  `UPDATE read_scaling.current_slave SET n = LAST_INSERT_ID(n + 1) WHERE id = 1` (autocommit: the row lock lasts
  for that statement only; nothing can be left held by an error later in the call), so several clients on several
  machines share one rotation;
* opens one connection to the primary per call (discovery with SHOW SLAVE HOSTS, the turn, the record of the
  choice), plus a short-timeout connection to each candidate it checks;
* skips a candidate that cannot be reached, whose IO or SQL replica thread is not running, or whose
  Seconds_Behind_Master is unknown or above `max_lag`;
* passes every value as a parameter; the only names in SQL are the fixed database/table names checked below.

Library::

    sel = ReadScaler(primary={"host": "db1", "port": 3306, "user": "reader", "password": pw}, max_lag=5)
    ensure_state(admin_conn)                  # once, with an account that may CREATE (idempotent)
    r = sel.next_replica()                    # Replica(server_id=3, host='db3', port=3306)

Command line (prints one `host:port` per call on stdout)::

    python -m gateway.readscale --primary db1:3306 --user reader --password-env READER_PW [--count 4] [--setup]
                                [--database read_scaling]

The state is the book's table (Listing 8-4's `read_scaling.current_slave(server_id, host, port)`), adopted in
place when it exists: `--setup` adds our columns as INVISIBLE ones, so the book's own selector keeps working on it
beside this one.

Privileges: on the primary SELECT, UPDATE on read_scaling.current_slave (and REPLICATION MASTER ADMIN for SHOW
SLAVE HOSTS on MariaDB >= 10.5.2, unless --replica lists the candidates); on each replica SLAVE MONITOR (MariaDB)
or REPLICATION CLIENT (MySQL) for SHOW SLAVE STATUS. Replicas must run with --report-host/--report-port to appear
in SHOW SLAVE HOSTS.
"""

import argparse
import collections
import os
import re
import sys

import pymysql

from gateway.primary import parse_server

DATABASE = "read_scaling"
TABLE = "current_slave"
_IDENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")

Replica = collections.namedtuple("Replica", "server_id host port")


class ReadScaleError(Exception):
    """No replica can serve reads right now, or the shared state cannot be used; the message says why."""


def _q(name):
    if not _IDENT.match(name):
        raise ValueError("not a plain identifier: %r" % (name,))
    return "`%s`" % name


# The book's table (Listing 8-4) has the visible columns; ours adds the turn and the record of the choice as
# INVISIBLE columns, so the book's `INSERT ... VALUES (0,NULL,0)`, `SELECT server_id` and SELECT * keep working on
# it, the way the migration adopts `plants` (gateway/schema.py).
_BOOK_COLUMNS = ("server_id", "host", "port")
_OUR_COLUMNS = (("id", "TINYINT UNSIGNED NOT NULL DEFAULT 1 INVISIBLE"),
                ("n", "BIGINT UNSIGNED NOT NULL DEFAULT 0 INVISIBLE"),
                ("chosen_at", "DATETIME(3) NULL INVISIBLE"))


def ensure_state(conn, database=DATABASE):
    """Create the shared state (database, one-row table) if missing, or adopt the book's table in place (Listing
    8-4's `current_slave(server_id, host, port)`: our columns are added, invisible). Idempotent, keeps an existing
    turn; a table that is neither the book's nor ours is left untouched (ReadScaleError: choose another database)."""
    d, t = _q(database), _q(TABLE)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS %s" % d)
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (database, TABLE))
        have = {row[0].lower() for row in cur.fetchall()}
        if not have:
            cols = ["`server_id` INT UNSIGNED NULL", "`host` VARCHAR(255) NULL", "`port` INT UNSIGNED NULL"]
            cols += ["%s %s" % (_q(name), ddl) for name, ddl in _OUR_COLUMNS] + ["PRIMARY KEY (`id`)"]
            cur.execute("CREATE TABLE IF NOT EXISTS %s.%s (%s) ENGINE=InnoDB" % (d, t, ", ".join(cols)))
        elif not set(_BOOK_COLUMNS) <= have:
            raise ReadScaleError("%s.%s exists but is neither the book's table nor ours (columns: %s): left "
                                 "untouched; choose another --database" % (database, TABLE, ", ".join(sorted(have))))
        elif "id" not in have:
            cur.execute("SELECT COUNT(*) FROM %s.%s" % (d, t))
            rows = cur.fetchone()[0]
            if rows > 1:
                raise ReadScaleError("%s.%s (the book's table) has %d rows; it holds one: delete the others, or "
                                     "choose another --database" % (database, TABLE, rows))
            clauses = ["ADD COLUMN %s %s" % (_q(name), ddl) for name, ddl in _OUR_COLUMNS if name not in have]
            clauses += ["MODIFY `host` VARCHAR(255) NULL", "ADD PRIMARY KEY (`id`)"]
            cur.execute("ALTER TABLE %s.%s %s" % (d, t, ", ".join(clauses)))
        cur.execute("INSERT IGNORE INTO %s.%s (id, n) VALUES (1, 0)" % (d, t))
    conn.commit()


class ReadScaler:
    """Chooses the next healthy replica. `primary`: pymysql.connect() keyword arguments for the primary.
    `replicas`: optional explicit [(host, port)] instead of SHOW SLAVE HOSTS. `replica_auth`: (user, password)
    for the health checks (default: the primary's)."""

    def __init__(self, primary, replicas=None, replica_auth=None, max_lag=5, connect_timeout=1.0,
                 database=DATABASE):
        self.primary = dict(primary)
        self.replicas = [tuple(r) for r in replicas] if replicas else None
        self.replica_auth = replica_auth or (self.primary.get("user"), self.primary.get("password", ""))
        self.max_lag = max_lag
        self.connect_timeout = connect_timeout
        self._table = "%s.%s" % (_q(database), _q(TABLE))
        self.skipped = []        # (Replica, reason) for the last call

    def next_replica(self):
        """The next healthy replica in the shared rotation; ReadScaleError when there is none."""
        kw = dict(self.primary, autocommit=True)
        kw.setdefault("connect_timeout", self.connect_timeout)
        try:
            conn = pymysql.connect(**kw)
        except pymysql.MySQLError as exc:
            raise ReadScaleError("cannot reach the primary: %s" % (exc,)) from exc
        try:
            with conn.cursor() as cur:
                candidates = self._candidates(cur)
                if not candidates:
                    raise ReadScaleError("the primary lists no replicas (do they run with --report-host?)")
                # The turn: one atomic statement, committed at once (autocommit); no lock outlives it.
                cur.execute("UPDATE %s SET n = LAST_INSERT_ID(n + 1) WHERE id = 1" % self._table)
                if cur.rowcount != 1:
                    raise ReadScaleError("no state row in %s: run ensure_state() (--setup)" % self._table)
                cur.execute("SELECT LAST_INSERT_ID()")
                turn = int(cur.fetchone()[0])
                self.skipped = []
                for i in range(len(candidates)):
                    r = candidates[(turn - 1 + i) % len(candidates)]
                    reason = self._unhealthy(r)
                    if reason is None:
                        cur.execute("UPDATE %s SET server_id = %%s, host = %%s, port = %%s, "
                                    "chosen_at = UTC_TIMESTAMP(3) WHERE id = 1" % self._table,
                                    (r.server_id, r.host, r.port))
                        return r
                    self.skipped.append((r, reason))
                raise ReadScaleError("no healthy replica: " + "; ".join(
                    "%s:%s %s" % (r.host, r.port, why) for r, why in self.skipped))
        except pymysql.MySQLError as exc:
            raise ReadScaleError("read-scaling state on the primary: %s" % (exc,)) from exc
        finally:
            conn.close()

    def _candidates(self, cur):
        if self.replicas is not None:
            return [Replica(None, h, int(p)) for h, p in self.replicas]
        cur.execute("SHOW SLAVE HOSTS")
        rows = sorted(cur.fetchall(), key=lambda row: row[0])
        return [Replica(int(row[0]), row[1], int(row[2])) for row in rows if row[1]]

    def _unhealthy(self, r):
        """None when `r` can serve reads; else why not (down, threads stopped, lagging)."""
        user, password = self.replica_auth
        try:
            conn = pymysql.connect(host=r.host, port=r.port, user=user, password=password or "",
                                   connect_timeout=self.connect_timeout, read_timeout=2, write_timeout=2)
        except pymysql.MySQLError as exc:
            return "unreachable (%s)" % (exc.args[1] if len(exc.args) > 1 else exc)
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SHOW SLAVE STATUS")
                st = cur.fetchone()
        except pymysql.MySQLError as exc:
            return "cannot read its replica status (%s)" % (exc.args[1] if len(exc.args) > 1 else exc)
        finally:
            conn.close()
        if not st:
            return "is not a replica"
        if st.get("Slave_IO_Running") != "Yes" or st.get("Slave_SQL_Running") != "Yes":
            return "replica threads not running (IO %s, SQL %s)" % (st.get("Slave_IO_Running"),
                                                                   st.get("Slave_SQL_Running"))
        lag = st.get("Seconds_Behind_Master")
        if lag is None or int(lag) > self.max_lag:
            return "lags %s s (max %s)" % (lag, self.max_lag)
        return None


# -- command line ------------------------------------------------------------------------------------------------
def _hostport(text):
    try:
        return parse_server(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _identifier(text):
    if not _IDENT.match(text):
        raise argparse.ArgumentTypeError("not a plain database name (letters, digits, _): %r" % (text,))
    return text


def main(argv=None):
    p = argparse.ArgumentParser(prog="readscale", description="Print the next healthy replica (round robin shared "
                                "through the primary).")
    g = p.add_argument_group("primary")
    g.add_argument("--primary", type=_hostport, required=True, metavar="HOST:PORT")
    g.add_argument("--user", required=True)
    g.add_argument("--password-env", default="READSCALE_PASSWORD", metavar="VAR",
                   help="environment variable holding the password (default: %(default)s)")
    g.add_argument("--setup", action="store_true", help="create the shared state first, or adopt the book's "
                   "read_scaling.current_slave (needs CREATE, ALTER)")
    g.add_argument("--database", type=_identifier, default=DATABASE,
                   help="database of the shared state (default: %(default)s)")
    g = p.add_argument_group("replicas")
    g.add_argument("--replica", type=_hostport, action="append", metavar="HOST:PORT",
                   help="candidate replica (repeatable; default: SHOW SLAVE HOSTS on the primary)")
    g.add_argument("--max-lag", type=int, default=5, metavar="S", help="skip replicas further behind (default 5 s)")
    p.add_argument("--count", type=int, default=1, help="how many choices to print (default 1)")
    args = p.parse_args(argv)
    host, port = args.primary
    primary = {"host": host, "port": port, "user": args.user, "password": os.environ.get(args.password_env, "")}
    try:
        if args.setup:
            conn = pymysql.connect(**primary)
            try:
                ensure_state(conn, args.database)
            finally:
                conn.close()
        sel = ReadScaler(primary, replicas=args.replica, max_lag=args.max_lag, database=args.database)
        for _ in range(args.count):
            r = sel.next_replica()
            for skipped, why in sel.skipped:
                print("readscale: skipped %s:%s: %s" % (skipped.host, skipped.port, why), file=sys.stderr)
            print("%s:%s" % (r.host, r.port))
    except (ReadScaleError, pymysql.MySQLError) as e:
        print("readscale: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
