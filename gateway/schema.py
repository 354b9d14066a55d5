"""The database layout of `plant_moisture` and the migrations that reach it.

Why it looks like this:

* **Old databases are adopted, not dropped.** The book creates `plants(id INT, moisture_raw INT, date_saved
  TIMESTAMP ... ON UPDATE CURRENT_TIMESTAMP)` and its clients write `INSERT INTO plants VALUES (NULL,456,NULL)`.
  If that table exists its rows are kept and it is altered in place; a fresh database gets the same final shape.
* **The book's statements keep working.** Every new column is INVISIBLE (MariaDB 10.3+, MySQL 8.0.23+), so
  `SELECT *` still shows three columns and a three-value `INSERT` without a column list still fits.
* **Sample time is data, not bookkeeping (F7).** `date_saved` becomes DATETIME: no `ON UPDATE` to rewrite it, no
  2038 limit, no session-time-zone conversion. Existing TIMESTAMP values are converted with the session time zone
  at '+00:00', so they become UTC wall-clock times. A book client that sends NULL still gets the current UTC time,
  from a BEFORE INSERT trigger (DATETIME has no implicit NULL-means-now), and the row says so: time_quality='server'.
  A book client that sends a time sends its session's local time (what TIMESTAMP meant): the same trigger converts
  it to UTC, so old and new rows of one client agree. `SELECT *` then shows UTC in every session (DATETIME is not
  converted on the way out); `CONVERT_TZ(date_saved, '+00:00', @@session.time_zone)` gives the local time back.
* **A reading has an identity (F9):** UNIQUE (board, boot, seq). Legacy rows have NULLs there, which never collide.
* **Migrations are idempotent step by step.** DDL is not transactional, so a migrator that died half way must be
  able to run again: every step inspects information_schema and does only what is missing; versions are recorded
  in `schema_migrations`; concurrent migrators are serialised with GET_LOCK (which needs no privilege).
"""

import re

from gateway.hourly import HOURLY_MOISTURE_VIEW
from gateway.moisture import MOISTURE_VIEW

DATABASE = "plant_moisture"
LOCK_NAME = "plant_moisture.schema_migrate"
LOCK_TIMEOUT = 60  # seconds another migrator may hold the lock before we give up

# The columns added to the book's three. INVISIBLE keeps `SELECT *` and `INSERT ... VALUES (a,b,c)` as they were.
# Board and collector ids are ASCII by protocol; ascii_bin makes the identity byte-exact on adopted latin1 tables
# and fresh utf8mb4 ones alike.
NEW_PLANT_COLUMNS = (
    ("board", "VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL INVISIBLE"),
    ("collector", "VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NULL INVISIBLE"),
    ("boot", "INT UNSIGNED NULL INVISIBLE"),
    ("seq", "INT UNSIGNED NULL INVISIBLE"),
    ("source", "ENUM('live','replay','legacy') NOT NULL DEFAULT 'legacy' INVISIBLE"),
    ("received_at", "DATETIME(3) NULL INVISIBLE"),
    ("time_quality", "ENUM('rtc','suspect','server') NULL INVISIBLE"),
)
PLANT_INDEXES = (
    ("reading_identity", "UNIQUE KEY `reading_identity` (`board`, `boot`, `seq`)"),
    ("date_saved", "KEY `date_saved` (`date_saved`)"),
)
PLANTS_TRIGGER = "plants_sample_time_default"   # version 2's trigger, replaced by version 4's
LEGACY_TIME_TRIGGER = "plants_legacy_sample_time"

GATEWAY_GRANTS = (
    ("SELECT, INSERT", "plants"),
    ("SELECT, INSERT, UPDATE", "boards"),
    ("SELECT, INSERT", "board_events"),
    ("SELECT, INSERT", "collector_events"),
    ("SELECT, INSERT, UPDATE", "alerts"),
    ("SELECT, INSERT, UPDATE, DELETE", "calibrations"),
    ("SELECT", "moisture"),
    ("SELECT, INSERT, UPDATE", "hourly"),        # gateway/hourly.py keeps the aggregates; never DELETE
    ("SELECT, UPDATE", "hourly_state"),          # its watermark (one row, created by migration 10)
    ("SELECT", "hourly_moisture"),
    ("SELECT, INSERT, UPDATE", "mqtt_watermark"),   # gateway/mqttpub.py's watermark (migration 11)
)

# Only for a gateway configured with [retention] raw_days > 0 (docs/AGGREGATES.md): deleting raw readings is the one
# thing the gateway's account is otherwise never allowed to do, so it is granted on its own, on request.
RETENTION_GRANTS = (
    ("DELETE", "plants"),
)

# The client hosts the gateway's account is created for by default: the same machine, by socket or TCP.
GATEWAY_HOSTS = ("localhost", "127.0.0.1")

_IDENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class MigrationError(Exception):
    """The schema cannot be brought to the expected shape; the message says why and what to check."""


def _q(name):
    """Quote an identifier we generated ourselves; refuse anything that is not a plain name (F5)."""
    if not _IDENT.match(name):
        raise ValueError("not a plain SQL identifier: %r" % (name,))
    return "`%s`" % name


# -- inspection helpers ----------------------------------------------------------------------------------------
def _table_exists(cur, db, table):
    cur.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (db, table))
    return cur.fetchone() is not None


def _columns(cur, db, table):
    cur.execute("SELECT COLUMN_NAME, DATA_TYPE, EXTRA FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (db, table))
    return {name.lower(): (dtype.lower(), (extra or "").lower()) for name, dtype, extra in cur.fetchall()}


def _indexes(cur, db, table):
    cur.execute("SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s", (db, table))
    return {row[0].lower() for row in cur.fetchall()}


def _trigger_exists(cur, db, name):
    cur.execute("SELECT 1 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s AND TRIGGER_NAME=%s", (db, name))
    return cur.fetchone() is not None


def _check_server_supports_invisible(cur):
    cur.execute("SELECT VERSION()")
    version = cur.fetchone()[0]
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return
    v = tuple(int(x) for x in m.groups())
    if "mariadb" in version.lower():
        ok = v >= (10, 3, 3)
        need = "MariaDB 10.3.3"
    else:
        ok = v >= (8, 0, 23)
        need = "MySQL 8.0.23"
    if not ok:
        raise MigrationError("server %s is too old: invisible columns (which keep the book's INSERT and SELECT * "
                             "working) need %s or newer" % (version, need))


# -- the migrations --------------------------------------------------------------------------------------------
def _m1_plants(cur, db):
    """Adopt the book's `plants` in place, or create it in the final shape."""
    _check_server_supports_invisible(cur)
    table = "%s.`plants`" % _q(db)
    if not _table_exists(cur, db, "plants"):
        cols = ["`id` BIGINT NOT NULL AUTO_INCREMENT", "`moisture_raw` INT NULL DEFAULT NULL",
                "`date_saved` DATETIME NOT NULL"]
        cols += ["%s %s" % (_q(name), ddl) for name, ddl in NEW_PLANT_COLUMNS]
        cols += ["PRIMARY KEY (`id`)"] + [ddl for _, ddl in PLANT_INDEXES]
        # IF NOT EXISTS: a concurrent migrator on another server of the topology may have won the race.
        cur.execute("CREATE TABLE IF NOT EXISTS %s (\n  %s\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                    % (table, ",\n  ".join(cols)))
        return
    have = _columns(cur, db, "plants")
    for needed in ("id", "moisture_raw", "date_saved"):
        if needed not in have:
            raise MigrationError("%s.plants exists but has no column %r: it is not the book's table, so it is "
                                 "left untouched; rename it or migrate it by hand" % (db, needed))
    clauses = []
    if have["id"][0] != "bigint":
        clauses.append("MODIFY `id` BIGINT NOT NULL AUTO_INCREMENT")
    dtype, extra = have["date_saved"]
    if dtype != "datetime" or "on update" in extra:
        # The session time zone is '+00:00' (set by migrate()), so TIMESTAMP values become UTC wall-clock times.
        clauses.append("MODIFY `date_saved` DATETIME NOT NULL")
    for name, ddl in NEW_PLANT_COLUMNS:
        if name not in have:
            clauses.append("ADD COLUMN %s %s" % (_q(name), ddl))
    indexes = _indexes(cur, db, "plants")
    for name, ddl in PLANT_INDEXES:
        if name not in indexes:
            clauses.append("ADD " + ddl)
    if clauses:
        # One ALTER: one table copy, and atomic on MariaDB 10.6+ (atomic DDL).
        cur.execute("ALTER TABLE %s\n  %s" % (table, ",\n  ".join(clauses)))


def _m2_sample_time_trigger(cur, db):
    """NULL (or no value) for date_saved means "now, by the server's UTC clock", flagged as such."""
    if _trigger_exists(cur, db, PLANTS_TRIGGER):
        return
    cur.execute(
        "CREATE TRIGGER %s.%s BEFORE INSERT ON %s.`plants` FOR EACH ROW\n"
        "BEGIN\n"
        "  IF NEW.`date_saved` IS NULL THEN\n"
        "    SET NEW.`date_saved` = UTC_TIMESTAMP(), NEW.`time_quality` = 'server';\n"
        "  END IF;\n"
        "END" % (_q(db), _q(PLANTS_TRIGGER), _q(db)))


def _m3_board_tables(cur, db):
    """Board status, board events and collector (takeover/handback) events, for the gateway and later tooling."""
    d = _q(db)
    board = "VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL"
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`boards` (\n"
        "  `board` %s,\n"
        "  `role` VARCHAR(16) NULL,\n"
        "  `fw` VARCHAR(32) NULL,\n"
        "  `boot` INT UNSIGNED NULL,\n"
        "  `clock` VARCHAR(16) NULL,\n"
        "  `pending` INT UNSIGNED NULL,\n"
        "  `dropped` INT UNSIGNED NULL,\n"
        "  `card` VARCHAR(16) NULL,\n"
        "  `journal_bytes` BIGINT UNSIGNED NULL,\n"
        "  `last_seen` DATETIME(3) NULL,\n"
        "  `last_board_time` DATETIME NULL,\n"
        "  PRIMARY KEY (`board`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % (d, board))
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`board_events` (\n"
        "  `id` BIGINT NOT NULL AUTO_INCREMENT,\n"
        "  `board` %s,\n"
        "  `event` VARCHAR(32) NOT NULL,\n"
        "  `detail` VARCHAR(255) NULL,\n"
        "  `board_time` DATETIME NULL,\n"
        "  `received_at` DATETIME(3) NOT NULL,\n"
        "  PRIMARY KEY (`id`),\n"
        "  KEY `board_received` (`board`, `received_at`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % (d, board))
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`collector_events` (\n"
        "  `id` BIGINT NOT NULL AUTO_INCREMENT,\n"
        "  `board` %s,\n"
        "  `event` ENUM('takeover','handback','standby_missing','witness_refused','standby_back') NOT NULL,\n"
        "  `detail` VARCHAR(255) NULL,\n"
        "  `board_time` DATETIME NULL,\n"
        "  `received_at` DATETIME(3) NOT NULL,\n"
        "  PRIMARY KEY (`id`),\n"
        "  KEY `board_received` (`board`, `received_at`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % (d, board))


def _trigger_body_v4():
    return ("BEGIN\n"
            "  IF NEW.`date_saved` IS NULL THEN\n"
            "    SET NEW.`date_saved` = UTC_TIMESTAMP(), NEW.`time_quality` = 'server';\n"
            "  ELSEIF NEW.`source` = 'legacy' THEN\n"
            "    SET NEW.`date_saved` = COALESCE(CONVERT_TZ(NEW.`date_saved`, @@session.time_zone, '+00:00'),\n"
            "                                    NEW.`date_saved`);\n"
            "  END IF;\n"
            "END")


def _m4_legacy_sample_time(cur, db):
    """A book client's time is its session's local time: store it as UTC, like the adopted rows.

    The book's column was a TIMESTAMP, so `INSERT ... VALUES (NULL, 456, '2015-11-27 15:09:08')` meant 15:09:08 in
    the session's time zone (the server's, unless the client set one). Version 1 converted the old rows to UTC;
    without this step the same statement after the migration would store the literal as UTC, an offset away from
    the old rows. Only rows without an identity (source 'legacy') are converted: the gateway writes UTC with
    source 'live'/'replay' in a '+00:00' session. NULL still means the server's UTC now.

    The new trigger is created to run before version 2's and that one is dropped afterwards, so no insert ever
    finds neither (MySQL has no CREATE OR REPLACE TRIGGER).
    """
    if not _trigger_exists(cur, db, LEGACY_TIME_TRIGGER):
        order = " PRECEDES %s" % _q(PLANTS_TRIGGER) if _trigger_exists(cur, db, PLANTS_TRIGGER) else ""
        cur.execute("CREATE TRIGGER %s.%s BEFORE INSERT ON %s.`plants` FOR EACH ROW%s\n%s"
                    % (_q(db), _q(LEGACY_TIME_TRIGGER), _q(db), order, _trigger_body_v4()))
    if _trigger_exists(cur, db, PLANTS_TRIGGER):
        cur.execute("DROP TRIGGER %s.%s" % (_q(db), _q(PLANTS_TRIGGER)))


def _add_missing_columns(cur, db, table, columns):
    """Add each (name, ddl) of `columns` that `table` lacks, in one ALTER (one table copy): a migrator that died half
    way runs again and adds only the rest."""
    have = _columns(cur, db, table)
    clauses = ["ADD COLUMN %s %s" % (_q(name), ddl) for name, ddl in columns if name not in have]
    if clauses:
        cur.execute("ALTER TABLE %s.%s\n  %s" % (_q(db), _q(table), ",\n  ".join(clauses)))


def _m5_event_identity(cur, db):
    """A board's event is sent until the gateway acknowledges its COMMIT, so it can arrive twice: its identity
    (board, boot, event_no) is unique. Rows from before (and the gateway's own witness_refused) have NULLs, which
    a unique key lets repeat. Each part is added only when missing, so a migrator that died half way can rerun."""
    _add_missing_columns(cur, db, "collector_events", (("boot", "INT UNSIGNED NULL AFTER `board`"),
                                                       ("event_no", "INT UNSIGNED NULL AFTER `boot`")))
    if "event_identity" not in _indexes(cur, db, "collector_events"):
        cur.execute("ALTER TABLE %s.`collector_events` ADD UNIQUE KEY `event_identity` (`board`, `boot`, `event_no`)"
                    % _q(db))


def _m6_board_identity(cur, db):
    """boards.uid: the hardware unique id that owns a board id (the first board to say hello with it), and
    boards.port: where it was last served. Two boards given one id are told apart by it (gateway/identity.py)."""
    _add_missing_columns(cur, db, "boards", (
        ("uid", "VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER `board`"),
        ("port", "VARCHAR(255) NULL AFTER `uid`")))


def _m7_loss_ledger(cur, db):
    """boards.gaps_checked_boot and boards.dropped_at_gap_check: the gateway's ledger of lost readings (the boots
    whose missing readings it has counted, and the part of the board's `dropped` count already matched to gaps),
    so each loss becomes one board_events row, across port sessions, gateway restarts and board reboots.

    Boards already known start their ledger at their last boot: the boots before the upgrade are not audited
    afterwards (that would say, in one burst at the first status, what no one asked of the old version)."""
    _add_missing_columns(cur, db, "boards", (("gaps_checked_boot", "INT UNSIGNED NULL"),
                                             ("dropped_at_gap_check", "INT UNSIGNED NULL")))
    cur.execute("UPDATE %s.`boards` SET `gaps_checked_boot` = GREATEST(COALESCE(`boot`, 1), 1) - 1,\n"
                "  `dropped_at_gap_check` = COALESCE(`dropped`, 0) WHERE `gaps_checked_boot` IS NULL" % _q(db))


def _m8_alerts(cur, db):
    """alerts: one row per alert (gateway/alerts.py), opened once and cleared once, so an alert open when the
    gateway stopped is still open when it starts again, and the history says when each began and ended.
    `board` is the board id, or the port for a board not yet heard; `probe` is NULL for a board's alerts."""
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`alerts` (\n"
        "  `id` BIGINT NOT NULL AUTO_INCREMENT,\n"
        "  `kind` VARCHAR(16) CHARACTER SET ascii NOT NULL,\n"
        "  `board` VARCHAR(255) NOT NULL,\n"
        "  `probe` TINYINT UNSIGNED NULL,\n"
        "  `detail` VARCHAR(255) NULL,\n"
        "  `opened_at` DATETIME NOT NULL,\n"
        "  `cleared_at` DATETIME NULL,\n"
        "  PRIMARY KEY (`id`),\n"
        "  KEY `open_alerts` (`cleared_at`, `opened_at`),\n"
        "  KEY `board_opened` (`board`, `opened_at`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % _q(db))


def _m9_calibrations(cur, db):
    """calibrations and the `moisture` view (gateway/moisture.py): per board and probe the raw reading of dry and of
    saturated soil from a time on; the view gives every reading's % from the calibration in effect at its sample
    time, so a calibration corrects the past too. Raw readings are never changed."""
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`calibrations` (\n"
        "  `id` BIGINT NOT NULL AUTO_INCREMENT,\n"
        "  `board` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,\n"
        "  `probe` TINYINT UNSIGNED NOT NULL DEFAULT 0,\n"
        "  `raw_dry` INT NULL,\n"
        "  `raw_wet` INT NULL,\n"
        "  `effective_from` DATETIME NOT NULL,\n"
        "  `created_at` DATETIME(3) NOT NULL,\n"
        "  PRIMARY KEY (`id`),\n"
        "  KEY `in_effect` (`board`, `probe`, `effective_from`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % _q(db))
    cur.execute(MOISTURE_VIEW.format(db=_q(db)))


def _m10_hourly(cur, db):
    """hourly: per board, probe and UTC hour the count, min, max and sum of the raw readings (and how many were
    replayed), kept by the gateway (gateway/hourly.py) for long ranges; the `pruned_*` part is what retention
    deleted from plants, so an hour stays exact when its raw rows are gone. hourly_state: the watermark of the
    maintenance. plants gets an index on received_at (how the maintenance finds what arrived since its last pass):
    on a big table that is a real cost (an online index build: ALGORITHM=INPLACE, LOCK=NONE, writes go on; about
    a second for 1M rows on the development machine, tools/bench/hourly.py; more on a Pi's SD card), and the index
    costs every insert a little. hourly_moisture: % per hour (gateway/hourly.py)."""
    d = _q(db)
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`hourly` (\n"
        "  `board` VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,\n"
        "  `probe` TINYINT UNSIGNED NOT NULL DEFAULT 0,\n"
        "  `hour_start` DATETIME NOT NULL,\n"
        "  `n` INT UNSIGNED NOT NULL,\n"
        "  `raw_min` INT NULL,\n"
        "  `raw_max` INT NULL,\n"
        "  `raw_sum` BIGINT NOT NULL,\n"
        "  `replayed` INT UNSIGNED NOT NULL DEFAULT 0,\n"
        "  `pruned_n` INT UNSIGNED NOT NULL DEFAULT 0,\n"
        "  `pruned_min` INT NULL,\n"
        "  `pruned_max` INT NULL,\n"
        "  `pruned_sum` BIGINT NOT NULL DEFAULT 0,\n"
        "  `pruned_replayed` INT UNSIGNED NOT NULL DEFAULT 0,\n"
        "  `updated_at` DATETIME(3) NOT NULL,\n"
        "  PRIMARY KEY (`board`, `probe`, `hour_start`),\n"
        "  KEY `hour_start` (`hour_start`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % d)
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`hourly_state` (\n"
        "  `id` TINYINT UNSIGNED NOT NULL,\n"
        "  `received_through` DATETIME(3) NULL,\n"
        "  `id_through` BIGINT NOT NULL DEFAULT 0,\n"
        "  `updated_at` DATETIME(3) NULL,\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % d)
    cur.execute("INSERT IGNORE INTO %s.`hourly_state` (`id`) VALUES (1)" % d)
    if "received_at" not in _indexes(cur, db, "plants"):
        cur.execute("ALTER TABLE %s.`plants` ADD KEY `received_at` (`received_at`), ALGORITHM=INPLACE, LOCK=NONE" % d)
    cur.execute(HOURLY_MOISTURE_VIEW.format(db=d))


def _m11_mqtt_watermark(cur, db):
    """mqtt_watermark: one row, the id of the newest reading of `plants` the MQTT broker acknowledged
    (gateway/mqttpub.py), so a restarted gateway goes on from there instead of publishing every reading again."""
    cur.execute(
        "CREATE TABLE IF NOT EXISTS %s.`mqtt_watermark` (\n"
        "  `id` TINYINT UNSIGNED NOT NULL,\n"
        "  `last_id` BIGINT NOT NULL,\n"
        "  `updated_at` DATETIME(3) NOT NULL,\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % _q(db))


# (version, name, function). Append only: a released version is never edited, a fix is a new version.
MIGRATIONS = (
    (1, "plants: adopt the book's table or create it (BIGINT id, DATETIME UTC sample time, identity)", _m1_plants),
    (2, "plants: NULL sample time means the server's UTC now, flagged time_quality=server", _m2_sample_time_trigger),
    (3, "boards, board_events, collector_events", _m3_board_tables),
    (4, "plants: a legacy insert's sample time is in the session time zone, stored as UTC", _m4_legacy_sample_time),
    (5, "collector_events: unique event identity (board, boot, event_no)", _m5_event_identity),
    (6, "boards: uid (the hardware id that owns a board id) and port", _m6_board_identity),
    (7, "boards: the ledger of lost readings (gaps_checked_boot, dropped_at_gap_check)", _m7_loss_ledger),
    (8, "alerts: opened and cleared once, stored (gateway/alerts.py)", _m8_alerts),
    (9, "calibrations, and the moisture view: % at query time (gateway/moisture.py)", _m9_calibrations),
    (10, "hourly aggregates, their watermark, plants.received_at index, hourly_moisture (gateway/hourly.py)",
     _m10_hourly),
    (11, "mqtt_watermark: the newest reading the MQTT broker acknowledged (gateway/mqttpub.py)", _m11_mqtt_watermark),
)


def migrate(conn, database=DATABASE):
    """Bring `database` to the latest version; return the versions this call applied (empty when up to date).

    Runs as an administrative account (CREATE, ALTER, TRIGGER). Safe to run twice and from two processes at
    once: the second waits for the first's lock, then finds nothing to do.
    """
    db = database
    _q(db)
    cur = conn.cursor()
    cur.execute("SELECT @@session.time_zone")
    old_tz = cur.fetchone()[0]
    cur.execute("SET SESSION time_zone = '+00:00'")
    cur.execute("SELECT GET_LOCK(%s, %s)", (LOCK_NAME + "." + db, LOCK_TIMEOUT))
    if cur.fetchone()[0] != 1:
        raise MigrationError("another migration of %s has held the lock %r for over %d s; is one stuck?"
                             % (db, LOCK_NAME, LOCK_TIMEOUT))
    applied = []
    try:
        cur.execute("CREATE DATABASE IF NOT EXISTS %s DEFAULT CHARACTER SET utf8mb4" % _q(db))
        cur.execute("CREATE TABLE IF NOT EXISTS %s.`schema_migrations` (\n"
                    "  `version` INT NOT NULL PRIMARY KEY,\n"
                    "  `name` VARCHAR(255) NOT NULL,\n"
                    "  `applied_at` DATETIME(3) NOT NULL\n"
                    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % _q(db))
        conn.commit()
        cur.execute("SELECT version FROM %s.`schema_migrations`" % _q(db))
        done = {row[0] for row in cur.fetchall()}
        for version, name, step in MIGRATIONS:
            if version in done:
                continue
            step(cur, db)
            cur.execute("INSERT INTO %s.`schema_migrations` (version, name, applied_at) "
                        "VALUES (%%s, %%s, UTC_TIMESTAMP(3))" % _q(db), (version, name))
            conn.commit()
            applied.append(version)
    except Exception:
        conn.rollback()
        raise
    finally:
        cur.execute("SELECT RELEASE_LOCK(%s)", (LOCK_NAME + "." + db,))
        cur.fetchall()
        cur.execute("SET SESSION time_zone = %s", (old_tz,))
        cur.close()
    return applied


def current_version(conn, database=DATABASE):
    """The highest applied migration version, 0 for a database that was never migrated."""
    cur = conn.cursor()
    try:
        if not _table_exists(cur, database, "schema_migrations"):
            return 0
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM %s.`schema_migrations`" % _q(database))
        return cur.fetchone()[0]
    finally:
        cur.close()


def provision_gateway_account(admin_conn, user, password, hosts=GATEWAY_HOSTS, *,
                              database=DATABASE, require_tls=False, retention=False):
    """Create (or reset) the gateway's account with the least privilege it needs (F13).

    SELECT, INSERT on plants (no UPDATE, no DELETE: a stored reading is never changed by the gateway);
    SELECT, INSERT, UPDATE on boards; SELECT, INSERT on board_events and collector_events; nothing global.
    Existing privileges of the account are revoked first, so re-provisioning converges to exactly this set.
    `hosts`: 'localhost' matches Unix-socket logins (the servers run with --skip-name-resolve), '127.0.0.1'
    TCP on loopback; pass ('%',) for a gateway on another machine. Credentials are parameters only.
    `retention=True` adds RETENTION_GRANTS (DELETE on plants) for a gateway with [retention] raw_days > 0.
    """
    if isinstance(hosts, str):
        hosts = (hosts,)
    d = _q(database)
    cur = admin_conn.cursor()
    try:
        for host in hosts:
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
            cur.execute("ALTER USER %%s@%%s REQUIRE %s" % ("SSL" if require_tls else "NONE"), (user, host))
            cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, host))
            for privileges, table in GATEWAY_GRANTS + (RETENTION_GRANTS if retention else ()):
                cur.execute("GRANT %s ON %s.%s TO %%s@%%s" % (privileges, d, _q(table)), (user, host))
        admin_conn.commit()
    finally:
        cur.close()
