"""The reading store: the statements that write readings, board status and events, in explicit transactions.

Where to connect and what an error means live in gateway/dbconn.py; which of several servers to write to, and
whether a commit is durable enough to acknowledge, in gateway/primary.py. This module only uses them.

Why it is built this way:

* **Explicit transactions.** autocommit is off; a batch is one transaction with an explicit COMMIT, and the boards
  are acknowledged only after it returned (docs/PROTOCOL.md).
* **A fresh connection after trouble.** On OperationalError/InterfaceError the connection is closed and the error
  raised as DatabaseUnavailable; the next call connects again (to whatever the configuration points at after a
  failover). No hidden ping(reconnect=True), which would silently drop a half-done transaction.
* **Idempotent replay (F9).** A reading's identity is (board, boot, seq), UNIQUE in `plants`. The batch goes in as
  plain multi-row INSERTs of about 1 MB (what PyMySQL's `executemany` builds, with each distinct value escaped
  once by the driver: see _execute_rows, about twice as fast, which is what reaches the LOAD DATA target); a duplicate key
  (ER_DUP_ENTRY) is the signal that some readings are already stored, which count as committed. We do not use
  `ON DUPLICATE KEY UPDATE id=id`: MariaDB and MySQL demand the UPDATE privilege on `plants` for it, and the
  gateway's account must not be able to change a stored reading (F13). `INSERT IGNORE` would also hide data
  errors. A duplicate whose stored value differs is logged and recorded in `board_events`, never silently lost.
* **Parameters, never string-built SQL (F5).** Values always travel as %s parameters; the only names put into SQL
  come from fixed whitelists in this module.
"""

import collections
import datetime
import logging
import re

import pymysql
from pymysql.constants import ER

from gateway.dbconn import DatabaseError, DatabaseUnavailable, classify, connect
from gateway.galera import ClusterView
from gateway.primary import Durability, find_primary

log = logging.getLogger("gateway.db")


class InvalidReading(DatabaseError, ValueError):
    """A reading that cannot be a row (an empty board id, a malformed time, out-of-range numbers)."""


# -- readings ---------------------------------------------------------------------------------------------------
Reading = collections.namedtuple("Reading", "board collector boot seq sample_time raw source time_quality")
Reading.__doc__ = """One sample. `sample_time` is 'YYYY-MM-DD HH:MM:SS' UTC; (board, boot, seq) is its identity;
source is 'live' or 'replay'; time_quality is 'rtc' or 'suspect'; collector is the role that sampled it."""

_SQL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")   # used with fullmatch
_SOURCES = ("live", "replay", "legacy")
_QUALITIES = ("rtc", "suspect", "server", None)
_UINT_MAX = 2 ** 32 - 1
_INT_MIN, _INT_MAX = -2 ** 31, 2 ** 31 - 1

_INSERT_PLANTS = ("INSERT INTO plants (board, collector, boot, seq, date_saved, moisture_raw, source, received_at, "
                  "time_quality) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")
_BOARD_FIELDS = ("role", "fw", "boot", "clock", "pending", "dropped", "card", "journal_bytes", "last_board_time",
                 "port")


_PRINTABLE = re.compile(r"^[ -~]+$")


def _printable_ascii(value, limit, what, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not _PRINTABLE.match(value):
        raise InvalidReading("%s must be 1-%d printable ASCII characters, got %r" % (what, limit, value))


def _check_reading(r, names_ok=None):
    """Refuse values the table would reject or truncate, before they can fail a whole batch on the server.

    `names_ok` is an optional set of (board, collector) pairs already checked: a batch repeats a few of them
    thousands of times, and the checks of the varying fields are what is left per row."""
    if names_ok is None or (r.board, r.collector) not in names_ok:
        _printable_ascii(r.board, 32, "board id")
        _printable_ascii(r.collector, 16, "collector", allow_none=True)
        if names_ok is not None:
            names_ok.add((r.board, r.collector))
    for name in ("boot", "seq"):
        v = getattr(r, name)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _UINT_MAX:
            raise InvalidReading("%s must be an integer 0..%d, got %r (board %s)" % (name, _UINT_MAX, v, r.board))
    if not isinstance(r.raw, int) or isinstance(r.raw, bool) or not _INT_MIN <= r.raw <= _INT_MAX:
        raise InvalidReading("raw must be an integer, got %r (board %s)" % (r.raw, r.board))
    if not isinstance(r.sample_time, str) or not _SQL_TIME.fullmatch(r.sample_time):
        raise InvalidReading("sample_time must be 'YYYY-MM-DD HH:MM:SS' UTC, got %r (board %s)"
                             % (r.sample_time, r.board))
    if r.source not in _SOURCES or r.time_quality not in _QUALITIES:
        raise InvalidReading("bad source/time_quality %r/%r (board %s)" % (r.source, r.time_quality, r.board))


check_reading = _check_reading    # public name: the writer uses it to single out a reading that can never be a row


def _as_reading(r, names_ok=None):
    if isinstance(r.sample_time, datetime.datetime):
        r = r._replace(sample_time=r.sample_time.strftime("%Y-%m-%d %H:%M:%S"))
    _check_reading(r, names_ok)
    return r


_INSERT_PREFIX = _INSERT_PLANTS[:_INSERT_PLANTS.index(" VALUES ") + 8]
_STATEMENT_BYTES = 1024 * 1024  # well under the default max_allowed_packet (16 MB MariaDB, 64 MB MySQL 8)


def _execute_rows(conn, cur, rows):
    """Multi-row INSERT of rows checked by check_reading, in statements of about 1 MB.

    This is what PyMySQL's executemany() does, made about five times cheaper on the client, which is what reaches
    the LOAD DATA target: a batch repeats the same board, collector, source, received_at and quality thousands of
    times, so each distinct string is escaped once by the driver's own conn.escape before the loop, and the loop
    only formats. Integers were checked to be int, so %d is their exact literal. The sample time matched
    _SQL_TIME in full (ASCII digits, '-', ' ', ':' only), so quoting it needs no escaping. Every value still
    travels as a literal the driver made or a pattern allows, never as SQL text from outside.
    """
    escape = conn.escape
    lit = {}
    for column in (0, 1, 6, 7, 8):
        for v in {row[column] for row in rows}:
            if v not in lit:
                lit[v] = escape(v)
    fmt = "(%s,%s,%d,%d,'%s',%d,%s,%s,%s)"
    parts = []
    size = len(_INSERT_PREFIX)
    for board, collector, boot, seq, t, raw, source, received, quality in rows:
        text = fmt % (lit[board], lit[collector], boot, seq, t, raw, lit[source], lit[received], lit[quality])
        if parts and size + len(text) + 1 > _STATEMENT_BYTES:
            cur.execute(_INSERT_PREFIX + ",".join(parts))
            parts, size = [], len(_INSERT_PREFIX)
        parts.append(text)
        size += len(text) + 1
    if parts:
        cur.execute(_INSERT_PREFIX + ",".join(parts))


def _board_status_statement(board, fields):
    """(sql, params) recording a board's status: INSERT, or UPDATE of the board's row when it exists."""
    _printable_ascii(board, 32, "board id")
    unknown = sorted(set(fields) - set(_BOARD_FIELDS))
    if unknown:
        raise ValueError("unknown board status field(s): %s" % ", ".join(unknown))
    names = [n for n in _BOARD_FIELDS if n in fields]  # whitelisted, so safe to put into SQL
    cols = ", ".join(["board"] + names + ["last_seen"])
    marks = ", ".join(["%s"] * (1 + len(names)) + ["UTC_TIMESTAMP(3)"])
    updates = ", ".join("%s = VALUES(%s)" % (n, n) for n in names + ["last_seen"])
    sql = "INSERT INTO boards (%s) VALUES (%s) ON DUPLICATE KEY UPDATE %s" % (cols, marks, updates)
    return sql, [board] + [fields[n] for n in names]


def _missing_ranges(cur, board, boot, stored_high, top, limit=5):
    """The seq ranges of `board`'s boot `boot` from 1 to `top` that are not in plants, as text ('61-100, 130');
    at most `limit` ranges, then how many more."""
    cur.execute("SELECT prev + 1, seq - 1 FROM (SELECT seq, COALESCE(LAG(seq) OVER (ORDER BY seq), 0) AS prev "
                "FROM plants WHERE board = %s AND boot = %s) AS runs WHERE seq > prev + 1 ORDER BY seq", (board, boot))
    ranges = [(int(a), int(b)) for a, b in cur.fetchall()]
    if top > stored_high:
        ranges.append((stored_high + 1, top))
    text = ", ".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in ranges[:limit])
    if len(ranges) > limit:
        text += " and %d more ranges" % (len(ranges) - limit)
    return text


class ReadingStore:
    """Writes readings and board status for the gateway. One connection, opened on demand, replaced after errors.

    Not thread-safe: the gateway has one writer thread that owns the store.
    """

    MAX_DUPLICATE_ROUNDS = 3  # another writer may insert the same identities between our lookup and our insert

    def __init__(self, cfg, announce_moves=True):
        self.cfg = cfg
        # Whether a move to another server is a warning in the log: the writer's store says it; the service's
        # other stores (identities, alerts, the witness, hourly aggregates, MQTT) follow the same move and only
        # note it at debug level, so the log says it once.
        self.announce_moves = announce_moves
        self._conn = None
        self._target = None  # the server of the open connection (with several servers: the primary found)
        self._durability_policy = None  # made on first use: a bad semisync policy fails there, not here
        self.conflicts = []  # (identity, stored (raw, time), offered (raw, time)) seen by the last insert_batch
        self._cluster = ClusterView()  # the last look-up round over several servers (a Galera cluster's nodes)

    # -- connection management -------------------------------------------------------------------------------
    def _connection(self):
        if self._conn is None:
            target = self.cfg
            if self.cfg.servers:
                target = find_primary(self.cfg, view=self._cluster)
                if self._target is not None and (target.host, target.port) != (self._target.host, self._target.port):
                    text = ("now writing to Galera node %s:%s (was %s:%s)" if self._cluster.is_galera() else
                            "the primary is now %s:%s (was %s:%s)")
                    log.log(logging.WARNING if self.announce_moves else logging.DEBUG, text, target.host,
                            target.port, self._target.host, self._target.port)
            self._conn = connect(target)
            self._target = target
        return self._conn

    def where(self):
        """The server in use (with several servers: the primary last found), for messages."""
        return (self._target or self.cfg).where()

    def server_in_use(self):
        """(host, port) of the server the store last connected to (with several servers: the primary it found), or
        None before the first connection; a unix socket gives ("localhost", socket path). For people watching."""
        target = self._target
        if target is None:
            return None
        if target.unix_socket:
            return ("localhost", target.unix_socket)
        return (target.host, int(target.port))

    def cluster_state(self):
        """A Galera cluster's nodes as the last look-up found them (gateway/galera.py ClusterView.state), or None
        when the servers are not a Galera cluster."""
        return self._cluster.state(self.server_in_use())

    def semisync_state(self):
        """The semi-sync policy and what the last commits showed: {"policy", "degraded" (seen OFF, not yet ON
        again), "reduced_acks"}; degraded is None while nothing was checked yet (policy off, or no commit)."""
        d = self._durability_policy
        if d is None:
            return {"policy": self.cfg.semisync, "degraded": None, "reduced_acks": 0}
        return {"policy": d.policy, "degraded": d.degraded if d.policy != "off" else None,
                "reduced_acks": d.reduced_acks}

    def run_statement(self, work):
        """work(cursor) on the store's connection in its own transaction (status look-ups)."""
        return self._run(lambda conn, cur: work(cur))

    def _durability(self):
        if self._durability_policy is None:
            self._durability_policy = Durability(self.cfg.semisync)
        return self._durability_policy

    def close(self):
        """Close the connection (the next call opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: closing is best effort
                pass

    def _fail(self, exc):
        """Turn a PyMySQL exception into ours; drop the connection unless it is certainly still usable."""
        err = classify(exc, self._target or self.cfg)
        if isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError)) or err.retryable:
            self.close()
        elif self._conn is not None:
            try:
                self._conn.rollback()
            except pymysql.MySQLError:
                self.close()
        return err

    def _run(self, work, commit=True):
        """Run work(conn, cursor) in one transaction and COMMIT (or roll it back: the write probe of check());
        classify and clean up on failure."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                result = work(conn, cur)
            if commit:
                conn.commit()
            else:
                conn.rollback()
            return result
        except pymysql.MySQLError as exc:
            raise self._fail(exc) from exc
        except BaseException:
            self.close()  # unknown state (KeyboardInterrupt mid-statement): never reuse this session
            raise

    # -- public API ------------------------------------------------------------------------------------------
    CHECK_BOARD = "soil-gateway-check"   # the write probe's board id; its rows are rolled back, never stored

    def check(self):
        """Connect, verify the schema, and write the way the gateway does in a transaction that is rolled back:
        a reading into plants, a board status twice (its INSERT and its UPDATE), a board and a collector event.
        A missing privilege, table or column fails here as it would at the first reading. Return one line."""
        def work(conn, cur):
            cur.execute("SELECT VERSION(), @@read_only")
            version, read_only = cur.fetchone()
            cur.execute("SELECT board, collector, boot, seq, source, received_at, time_quality FROM plants LIMIT 0")
            cur.fetchall()
            cur.execute("SELECT board, uid, port FROM boards LIMIT 0")     # the identities (migration 6)
            cur.fetchall()
            cur.execute("SELECT gaps_checked_boot, dropped_at_gap_check FROM boards LIMIT 0")   # migration 7
            cur.fetchall()
            if read_only:
                raise DatabaseUnavailable("database %s is read-only (a replica or a demoted primary?)"
                                          % self.where())
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            _execute_rows(conn, cur, [(self.CHECK_BOARD, None, 0, 0, now, 0, "live", now, "rtc")])
            for _ in range(2):  # the first inserts the status row, the second updates it
                cur.execute(*_board_status_statement(self.CHECK_BOARD, {"boot": 0}))
            cur.execute("INSERT INTO board_events (board, event, detail, board_time, received_at) "
                        "VALUES (%s, 'check', NULL, NULL, UTC_TIMESTAMP(3))", (self.CHECK_BOARD,))
            cur.execute("INSERT INTO collector_events (board, event, detail, board_time, received_at) "
                        "VALUES (%s, 'takeover', 'soil-gateway check', NULL, UTC_TIMESTAMP(3))",
                        (self.CHECK_BOARD,))
            return ("%s at %s, database %s; writes ok (INSERT, UPDATE; rolled back)"
                    % (version, self.where(), self.cfg.database))
        try:
            info = self._run(work, commit=False)
            self._durability().check_probe(self)
            return info
        except DatabaseUnavailable:
            self.close()
            raise

    def insert_batch(self, readings):
        """Store readings in one transaction; return how many were new. Already stored identities count as done.

        Raises DatabaseUnavailable (retry later; nothing of this batch is committed), DatabaseConfigError, or
        InvalidReading before touching the database.
        """
        batch = []
        seen = {}
        names_ok = set()
        self.conflicts = []
        for r in readings:
            r = _as_reading(r, names_ok)
            key = (r.board, r.boot, r.seq)
            first = seen.get(key)
            if first is None:
                seen[key] = r
                batch.append(r)
            elif (first.raw, first.sample_time) != (r.raw, r.sample_time):
                self._conflict(key, (first.raw, first.sample_time), (r.raw, r.sample_time), None)
        if not batch:
            return 0
        new = self._run(lambda conn, cur: self._insert(conn, cur, batch))
        # Committed; with semisync = "require" it must be on a replica too before anyone is told (F15).
        self._durability().check_commit(self, {r.board for r in batch})
        return new

    def _insert(self, conn, cur, batch):
        # When the gateway received the batch, by the gateway's clock (UTC). Taken here rather than with a
        # SELECT UTC_TIMESTAMP(3) to save a round trip per batch; a string is cheaper to escape 10^4 times.
        received_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
        rows = [(r.board, r.collector, r.boot, r.seq, r.sample_time, r.raw, r.source, received_at, r.time_quality)
                for r in batch]
        try:
            _execute_rows(conn, cur, rows)
            return len(rows)
        except pymysql.err.IntegrityError as exc:
            if exc.args[0] != ER.DUP_ENTRY:
                raise
        # Some identities are already stored (a replay after a lost acknowledgement). Start the transaction
        # again, so no row of the failed statements lingers, and insert only what is missing.
        for _ in range(self.MAX_DUPLICATE_ROUNDS):
            conn.rollback()
            stored = self._stored(cur, batch)
            missing = set()
            conflicts = []
            for r in batch:
                key = (r.board, r.boot, r.seq)
                have = stored.get(key)
                if have is None:
                    missing.add(key)
                elif have != (r.raw, r.sample_time):
                    conflicts.append((key, have, (r.raw, r.sample_time)))
            try:
                if missing:
                    _execute_rows(conn, cur, [row for row in rows if (row[0], row[2], row[3]) in missing])
            except pymysql.err.IntegrityError as exc:
                if exc.args[0] != ER.DUP_ENTRY:
                    raise
                continue
            for key, have, offered in conflicts:
                self._conflict(key, have, offered, cur)
            return len(missing)
        raise DatabaseUnavailable("database %s: identities kept colliding with another writer; retry"
                                  % self.cfg.where())

    @staticmethod
    def _stored(cur, batch):
        """{identity: (raw, 'YYYY-MM-DD HH:MM:SS')} for the rows of this batch already in plants."""
        ranges = {}
        for r in batch:
            lo, hi = ranges.get((r.board, r.boot), (r.seq, r.seq))
            ranges[(r.board, r.boot)] = (min(lo, r.seq), max(hi, r.seq))
        stored = {}
        for (board, boot), (lo, hi) in ranges.items():
            cur.execute("SELECT seq, moisture_raw, date_saved FROM plants "
                        "WHERE board = %s AND boot = %s AND seq BETWEEN %s AND %s", (board, boot, lo, hi))
            for seq, raw, when in cur.fetchall():
                stored[(board, boot, seq)] = (raw, when.strftime("%Y-%m-%d %H:%M:%S") if when else None)
        return stored

    def _conflict(self, identity, stored, offered, cur):
        """Same identity, different value: keep the stored row, but say so loudly and durably."""
        board, boot, seq = identity
        self.conflicts.append((identity, stored, offered))
        log.warning("reading identity conflict: board %r boot %d seq %d is stored as raw=%s at %s but was offered "
                    "again as raw=%s at %s; the stored row is kept", board, boot, seq, stored[0], stored[1],
                    offered[0], offered[1])
        if cur is not None:
            detail = ("boot %d seq %d: stored raw=%s at %s, offered raw=%s at %s"
                      % (boot, seq, stored[0], stored[1], offered[0], offered[1]))[:255]
            cur.execute("INSERT INTO board_events (board, event, detail, board_time, received_at) "
                        "VALUES (%s, 'identity_conflict', %s, %s, UTC_TIMESTAMP(3))", (board, detail, offered[1]))

    def claim_identity(self, board, uid, port):
        """Give board id `board` to hardware uid `uid` unless another uid has it; return the owner's (uid, port).

        One statement decides, so two gateways (or two ports) racing for an id agree: the first uid recorded in
        `boards` keeps it for good (its readings are stored under it: another board's would collide with them).
        A row from before uids were recorded (uid NULL) goes to the first uid that claims it."""
        _printable_ascii(board, 32, "board id")
        _printable_ascii(uid, 32, "uid")

        def work(conn, cur):
            cur.execute("INSERT INTO boards (board, uid, port, last_seen) VALUES (%s, %s, %s, UTC_TIMESTAMP(3)) "
                        "ON DUPLICATE KEY UPDATE port = IF(uid IS NULL OR uid = VALUES(uid), VALUES(port), port), "
                        "uid = COALESCE(uid, VALUES(uid))", (board, uid, str(port)[:255]))
            cur.execute("SELECT uid, port FROM boards WHERE board = %s", (board,))
            return tuple(cur.fetchone())
        return self._run(work)

    def upsert_board_status(self, board, **fields):
        """Record a board's latest status (fields from _BOARD_FIELDS); last_seen is the server's UTC now."""
        sql, params = _board_status_statement(board, fields)
        self._run(lambda conn, cur: cur.execute(sql, params))

    def add_board_event(self, board, event, detail=None, board_time=None):
        """Append to board_events (boot, dropped, identity_conflict, ...); detail is cut to 255 characters."""
        _printable_ascii(board, 32, "board id")
        self._run(lambda conn, cur: cur.execute(
            "INSERT INTO board_events (board, event, detail, board_time, received_at) "
            "VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(3))",
            (board, str(event)[:32], None if detail is None else str(detail)[:255], board_time)))

    def record_dropped(self, board, dropped, board_time=None, card_readable=True):
        """The board's S frame says it lost `dropped` readings in its lifetime (docs/PROTOCOL.md: never reset).
        Compared with what the database holds for it (boards.dropped), not with anything this process remembers,
        in one transaction that locks the board's row: every increase becomes one `dropped` event with the number
        lost, across port sessions, gateway restarts and board reboots; a count that went backwards (a new card and
        a dead RTC battery together) becomes one `dropped_reset` event, never a negative loss; but only when the
        board can read its card (`card_readable`): a board without its NVRAM record whose card is out reports a
        low count until the card's copy is back, which is no reset. Returns the event recorded ('dropped',
        'dropped_reset') or None."""
        _printable_ascii(board, 32, "board id")

        def work(conn, cur):
            cur.execute("SELECT dropped FROM boards WHERE board = %s FOR UPDATE", (board,))
            row = cur.fetchone()
            before = row[0] if row is not None else None
            if before == dropped or (before is not None and dropped < before and not card_readable):
                return None
            event = None
            if dropped > (before or 0):
                event = "dropped"
                detail = ("%d readings lost by the board (a full or failed card, RAM that overflowed): %d in its "
                          "lifetime, was %d" % (dropped - (before or 0), dropped, before or 0))
            elif before is not None:
                event = "dropped_reset"
                detail = ("the board's dropped count went back from %d to %d (its NVRAM and its card both new or "
                          "lost): earlier losses are in earlier events, later ones count from %d"
                          % (before, dropped, dropped))
            if event is not None:
                cur.execute("INSERT INTO board_events (board, event, detail, board_time, received_at) "
                            "VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(3))", (board, event, detail, board_time))
            cur.execute("INSERT INTO boards (board, dropped, last_seen) VALUES (%s, %s, UTC_TIMESTAMP(3)) "
                        "ON DUPLICATE KEY UPDATE dropped = VALUES(dropped), "
                        "dropped_at_gap_check = LEAST(COALESCE(dropped_at_gap_check, 0), VALUES(dropped))",
                        (board, dropped))
            return event
        return self._run(work)

    def close_boots(self, board, boot, seq_seen=None):
        """Record the readings of `board`'s earlier boots that can no longer arrive and were never counted.

        Call it only when a status frame of boot `boot` says pending 0 with the card readable ('ok' or 'full'):
        the board has delivered everything it kept, so no reading of a boot before `boot` can still come (the
        hello alone does not say that: a card replay after a reboot delivers old boots' readings later). For each
        boot after boards.gaps_checked_boot and before `boot`, the readings missing are its seq numbers up to the
        highest known (the highest stored, or seen on the line: `seq_seen`, boot -> seq, from R frames this gateway
        received while the database was away) that are not in plants. The board's `dropped` count since the last
        check (boards.dropped - dropped_at_gap_check) pays for them, oldest boot first (the board's count does not
        say which boot lost a reading); what is left of a boot is one `gap` event naming the boot, the count and
        the seq ranges. The ledger moves in the same transaction, under the board row's lock: each boot is checked
        once. Returns [(boot, missing, not counted, ranges text)] for the boots with missing readings."""
        _printable_ascii(board, 32, "board id")
        seen = dict(seq_seen or {})

        def work(conn, cur):
            cur.execute("SELECT gaps_checked_boot, dropped_at_gap_check, dropped FROM boards WHERE board = %s "
                        "FOR UPDATE", (board,))
            row = cur.fetchone()
            if row is None:
                return []
            checked, at_check, dropped = row[0] or 0, row[1] or 0, row[2] or 0
            if boot - 1 <= checked:
                return []          # nothing earlier is open (or the board's boot count went back: left alone)
            cur.execute("SELECT boot, MAX(seq), COUNT(*) FROM plants WHERE board = %s AND boot > %s AND boot < %s "
                        "GROUP BY boot", (board, checked, boot))
            stored = {int(b): (int(hi), int(n)) for b, hi, n in cur.fetchall()}
            boots = sorted(set(stored) | {b for b in seen if checked < b < boot})
            budget = max(0, dropped - at_check)
            out = []
            for b in boots:
                hi, n = stored.get(b, (0, 0))
                top = max(hi, seen.get(b, 0))
                missing = top - n
                if missing <= 0:
                    continue
                counted = min(missing, budget)
                budget -= counted
                lost = missing - counted
                ranges = _missing_ranges(cur, board, b, hi, top)
                out.append((b, missing, lost, ranges))
                if lost:
                    cur.execute("INSERT INTO board_events (board, event, detail, board_time, received_at) "
                                "VALUES (%s, 'gap', %s, NULL, UTC_TIMESTAMP(3))",
                                (board, ("boot %d: %d readings never arrived and were not counted as dropped "
                                         "(seq %s; %d missing, %d of them counted as dropped)"
                                         % (b, lost, ranges, missing, counted))[:255]))
            cur.execute("UPDATE boards SET gaps_checked_boot = %s, dropped_at_gap_check = %s WHERE board = %s",
                        (boot - 1, dropped - budget, board))
            return out
        return self._run(work)

    def last_sample_time(self, board):
        """The newest stored sample time of `board` ('YYYY-MM-DD HH:MM:SS' UTC) or None: what a standby that takes
        over must continue after (the witness answer)."""
        _printable_ascii(board, 32, "board id")

        def work(conn, cur):
            cur.execute("SELECT MAX(date_saved) FROM plants WHERE board = %s", (board,))
            value = cur.fetchone()[0]
            return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
        return self._run(work)

    def add_collector_event(self, board, event, detail=None, board_time=None, boot=None, event_no=None):
        """Append to collector_events (takeover, handback, standby_missing, witness_refused, standby_back).

        A board's event comes with its identity (boot, event_no) and is sent until acknowledged, so it may arrive
        more than once: the table's unique key keeps one row, and a duplicate is success (already stored). Returns
        True when this call stored it. The gateway's own events (witness_refused) have no identity."""
        _printable_ascii(board, 32, "board id")

        def work(conn, cur):
            try:
                cur.execute(
                    "INSERT INTO collector_events (board, boot, event_no, event, detail, board_time, received_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(3))",
                    (board, boot, event_no, event, None if detail is None else str(detail)[:255], board_time))
            except pymysql.err.IntegrityError as exc:
                if exc.args[0] != ER.DUP_ENTRY:
                    raise
                return False
            return True
        return self._run(work)
