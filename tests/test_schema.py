"""gateway.schema: a fresh database gets the final shape; the book's table is adopted in place with every row.

These tests run on their own private server (the shared `dbserver` is already migrated), and drop
plant_moisture before each test so each starts from nothing or from the book's table.
"""

import threading

import pymysql
import pytest

from gateway import schema
from tests.conftest import private_dir, require_server
from tools.dbserver import PrivateServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Chapter 8's table, verbatim.
BOOK_CREATE = ("CREATE TABLE `plant_moisture`.`plants` (`id` int(11) NOT NULL AUTO_INCREMENT, `moisture_raw` int(11) "
               "DEFAULT NULL, `date_saved` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, "
               "PRIMARY KEY (`id`)) ENGINE=InnoDB AUTO_INCREMENT=257 DEFAULT CHARSET=latin1")
ALL_VERSIONS = [version for version, _, _ in schema.MIGRATIONS]
BOOK_INSERT_NOW = "INSERT INTO plant_moisture.plants VALUES (NULL,456,NULL)"
BOOK_INSERT_TIME = "INSERT INTO plant_moisture.plants VALUES (NULL,456,'2015-11-27 15:9:8')"


@pytest.fixture(scope="module")
def server():
    require_server()
    with private_dir("schemadb") as path:
        srv = PrivateServer(path)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture
def admin(server):
    conn = pymysql.connect(**server.admin_kwargs())
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS plant_moisture")
    try:
        yield conn
    finally:
        conn.close()


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    conn.commit()
    return rows


def columns(conn):
    return {name: (ctype, extra.upper()) for name, ctype, extra in q(
        conn, "SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS "
              "WHERE TABLE_SCHEMA='plant_moisture' AND TABLE_NAME='plants'")}


def star_width(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM plant_moisture.plants LIMIT 1")
        return len(cur.description)


def assert_final_shape(conn):
    cols = columns(conn)
    assert cols["id"][0].startswith("bigint")
    assert cols["date_saved"][0] == "datetime" and "ON UPDATE" not in cols["date_saved"][1]
    for name in ("board", "collector", "boot", "seq", "source", "received_at", "time_quality"):
        assert "INVISIBLE" in cols[name][1], name
    assert cols["received_at"][0] == "datetime(3)"
    assert cols["source"][0] == "enum('live','replay','legacy')"
    assert cols["time_quality"][0] == "enum('rtc','suspect','server')"
    idx = q(conn, "SELECT INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
                  "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA='plant_moisture' AND TABLE_NAME='plants' "
                  "GROUP BY INDEX_NAME, NON_UNIQUE")
    idx = {name: (non_unique, cols_) for name, non_unique, cols_ in idx}
    assert idx["reading_identity"] == (0, "board,boot,seq")
    assert idx["date_saved"][1] == "date_saved"
    assert star_width(conn) == 3
    tables = {r[0] for r in q(conn, "SELECT TABLE_NAME FROM information_schema.TABLES "
                                    "WHERE TABLE_SCHEMA='plant_moisture'")}
    assert tables == {"plants", "boards", "board_events", "collector_events", "alerts", "calibrations", "moisture",
                      "hourly", "hourly_state", "hourly_moisture", "mqtt_watermark",
                      "schema_migrations"}


def test_fresh_database_is_created_in_the_final_shape(admin):
    assert schema.migrate(admin) == ALL_VERSIONS
    assert_final_shape(admin)
    assert schema.current_version(admin) == ALL_VERSIONS[-1]
    assert [r[0] for r in q(admin, "SELECT version FROM plant_moisture.schema_migrations ORDER BY version")] \
        == ALL_VERSIONS


def test_book_table_is_adopted_in_place_with_every_row(admin):
    q(admin, "CREATE DATABASE plant_moisture")
    q(admin, BOOK_CREATE)
    # The book's clients ran in local time; +02:00 makes a wrong conversion visible.
    q(admin, "SET SESSION time_zone = '+02:00'")
    for _ in range(5):
        q(admin, BOOK_INSERT_NOW)
        q(admin, BOOK_INSERT_TIME)
    before = q(admin, "SELECT id, moisture_raw, UNIX_TIMESTAMP(date_saved) FROM plant_moisture.plants ORDER BY id")
    assert len(before) == 10 and before[0][0] == 257

    assert schema.migrate(admin) == ALL_VERSIONS
    assert_final_shape(admin)

    q(admin, "SET SESSION time_zone = '+00:00'")
    after = q(admin, "SELECT id, moisture_raw, UNIX_TIMESTAMP(date_saved) FROM plant_moisture.plants ORDER BY id")
    assert after == before  # every row, same id, same value, same instant
    # ...and the instant is now written as UTC wall-clock time: 15:09:08 at +02:00 is 13:09:08 UTC.
    times = {r[0].strftime("%Y-%m-%d %H:%M:%S") for r in q(
        admin, "SELECT date_saved FROM plant_moisture.plants WHERE id % 2 = 0")}
    assert times == {"2015-11-27 13:09:08"}
    legacy = q(admin, "SELECT DISTINCT source, board, boot, seq FROM plant_moisture.plants")
    assert legacy == (("legacy", None, None, None),)

    # The book's statements still work, in any session time zone, and NULL still means "now" (in UTC).
    q(admin, "SET SESSION time_zone = '+02:00'")
    q(admin, BOOK_INSERT_NOW)
    q(admin, BOOK_INSERT_TIME)
    rows = q(admin, "SELECT id, moisture_raw, date_saved, time_quality, source, "
                    "TIMESTAMPDIFF(SECOND, date_saved, UTC_TIMESTAMP()) FROM plant_moisture.plants "
                    "WHERE id > %s ORDER BY id", (after[-1][0],))
    assert len(rows) == 2
    now_row, time_row = rows
    assert now_row[1] == 456 and now_row[3] == "server" and now_row[4] == "legacy"
    assert 0 <= now_row[5] <= 60  # server time, in UTC (not +02:00, which would be 7200 s off)
    # The book's literal is its session's local time (+02:00), as before the migration: stored as UTC.
    assert time_row[2].strftime("%Y-%m-%d %H:%M:%S") == "2015-11-27 13:09:08" and time_row[3] is None
    assert star_width(admin) == 3


def test_migrate_twice_is_a_noop(admin):
    q(admin, "CREATE DATABASE plant_moisture")
    q(admin, BOOK_CREATE)
    q(admin, BOOK_INSERT_TIME)
    assert schema.migrate(admin) == ALL_VERSIONS
    shape = q(admin, "SHOW CREATE TABLE plant_moisture.plants")
    rows = q(admin, "SELECT * FROM plant_moisture.plants")
    assert schema.migrate(admin) == []
    assert q(admin, "SHOW CREATE TABLE plant_moisture.plants") == shape
    assert q(admin, "SELECT * FROM plant_moisture.plants") == rows


def test_concurrent_migrations_apply_each_version_once(admin, server):
    conns = [pymysql.connect(**server.admin_kwargs()) for _ in range(3)]
    barrier = threading.Barrier(len(conns))
    results, errors = [], []

    def run(conn):
        try:
            barrier.wait(10)
            results.append(schema.migrate(conn))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in conns:
        c.close()
    assert not errors
    assert sorted(v for r in results for v in r) == ALL_VERSIONS
    assert_final_shape(admin)


def test_a_half_done_migration_is_finished_on_the_next_run(admin):
    """DDL is not transactional: a migrator that died after some ALTERs must be able to run again."""
    q(admin, "CREATE DATABASE plant_moisture")
    q(admin, BOOK_CREATE)
    q(admin, BOOK_INSERT_TIME)
    q(admin, "ALTER TABLE plant_moisture.plants ADD COLUMN board VARCHAR(32) CHARACTER SET ascii "
             "COLLATE ascii_bin NULL INVISIBLE")  # as if v1 had been interrupted half way
    assert schema.migrate(admin) == ALL_VERSIONS
    assert_final_shape(admin)
    assert q(admin, "SELECT COUNT(*) FROM plant_moisture.plants") == ((1,),)


def test_a_table_that_is_not_the_books_is_left_alone(admin):
    q(admin, "CREATE DATABASE plant_moisture")
    q(admin, "CREATE TABLE plant_moisture.plants (name VARCHAR(10))")
    q(admin, "INSERT INTO plant_moisture.plants VALUES ('fern')")
    with pytest.raises(schema.MigrationError, match="not the book's table"):
        schema.migrate(admin)
    assert q(admin, "SELECT * FROM plant_moisture.plants") == (("fern",),)


def test_f7_sample_time_is_not_rewritten_on_update(admin):
    # The flaw, on the book's table: an UPDATE of the reading rewrites its sample time, and 2040 does not fit.
    q(admin, "CREATE DATABASE plant_moisture")
    q(admin, BOOK_CREATE)
    q(admin, "SET SESSION time_zone = '+00:00'")
    q(admin, BOOK_INSERT_TIME)
    q(admin, "UPDATE plant_moisture.plants SET moisture_raw = 457")
    (rewritten,), = q(admin, "SELECT date_saved FROM plant_moisture.plants")
    assert rewritten.year != 2015
    with pytest.raises(pymysql.err.MySQLError):
        q(admin, "INSERT INTO plant_moisture.plants VALUES (NULL, 1, '2040-01-01 00:00:00')")
    admin.rollback()

    # The fix, after adoption: DATETIME without ON UPDATE.
    schema.migrate(admin)
    cols = columns(admin)
    assert cols["date_saved"][0] == "datetime" and "ON UPDATE" not in cols["date_saved"][1]
    q(admin, "INSERT INTO plant_moisture.plants VALUES (NULL, 100, '2040-01-01 00:00:00')")
    q(admin, "INSERT INTO plant_moisture.plants VALUES (NULL, 200, '2015-11-27 15:09:08')")
    q(admin, "UPDATE plant_moisture.plants SET moisture_raw = moisture_raw + 1 WHERE moisture_raw IN (100, 200)")
    got = q(admin, "SELECT moisture_raw, date_saved FROM plant_moisture.plants WHERE moisture_raw IN (101, 201) "
                   "ORDER BY moisture_raw")
    assert [(raw, t.strftime("%Y-%m-%d %H:%M:%S")) for raw, t in got] == [
        (101, "2040-01-01 00:00:00"), (201, "2015-11-27 15:09:08")]


def test_gateway_account_gets_exactly_the_listed_grants(admin):
    schema.migrate(admin)
    schema.provision_gateway_account(admin, "gw_test", "pw-" + "x" * 8, hosts=("127.0.0.1",))
    grants = {r[0] for r in q(admin, "SHOW GRANTS FOR 'gw_test'@'127.0.0.1'")}
    table_grants = {g for g in grants if not g.startswith("GRANT USAGE ON *.*")}
    assert table_grants == {
        "GRANT SELECT, INSERT ON `plant_moisture`.`plants` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, INSERT, UPDATE ON `plant_moisture`.`boards` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, INSERT ON `plant_moisture`.`board_events` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, INSERT ON `plant_moisture`.`collector_events` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, INSERT, UPDATE ON `plant_moisture`.`alerts` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON `plant_moisture`.`calibrations` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT ON `plant_moisture`.`moisture` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, INSERT, UPDATE ON `plant_moisture`.`hourly` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, UPDATE ON `plant_moisture`.`hourly_state` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT ON `plant_moisture`.`hourly_moisture` TO `gw_test`@`127.0.0.1`",
        "GRANT SELECT, INSERT, UPDATE ON `plant_moisture`.`mqtt_watermark` TO `gw_test`@`127.0.0.1`",
    }
    # Re-provisioning converges: an extra privilege granted by hand is taken away again.
    q(admin, "GRANT DELETE ON plant_moisture.plants TO 'gw_test'@'127.0.0.1'")
    schema.provision_gateway_account(admin, "gw_test", "pw-" + "y" * 8, hosts=("127.0.0.1",))
    again = {r[0] for r in q(admin, "SHOW GRANTS FOR 'gw_test'@'127.0.0.1'")}
    assert {g for g in again if not g.startswith("GRANT USAGE ON *.*")} == table_grants


def test_an_upgraded_board_starts_its_loss_ledger_at_its_last_boot(admin, monkeypatch):
    """Migration 7 adds the ledger of lost readings: a board already known starts it at its last boot, so the
    boots before the upgrade are not audited in one burst of old `gap` events at its first status afterwards."""
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:6])
    schema.migrate(admin)
    q(admin, "INSERT INTO plant_moisture.boards (board, boot, dropped) VALUES ('old-1', 5, 3), ('old-2', NULL, NULL)")
    monkeypatch.undo()
    assert schema.migrate(admin) == [v for v, _, _ in schema.MIGRATIONS[6:]]     # 7 and what came after it
    assert q(admin, "SELECT board, gaps_checked_boot, dropped_at_gap_check FROM plant_moisture.boards "
                    "ORDER BY board") == (("old-1", 4, 3), ("old-2", 0, 0))
    q(admin, "INSERT INTO plant_moisture.boards (board, boot, dropped) VALUES ('new-1', 2, 0)")
    assert q(admin, "SELECT gaps_checked_boot FROM plant_moisture.boards WHERE board = 'new-1'") == ((None,),)


def test_the_retention_grant_is_given_only_on_request(admin):
    """DELETE on plants (retention, docs/AGGREGATES.md) is not in the gateway's set; provisioning with
    retention=True adds exactly it, and provisioning without takes it away again."""
    schema.migrate(admin)
    delete = "GRANT SELECT, INSERT, DELETE ON `plant_moisture`.`plants` TO `gw_test`@`127.0.0.1`"
    for retention, present in ((True, True), (False, False)):
        schema.provision_gateway_account(admin, "gw_test", "pw-" + "z" * 8, hosts=("127.0.0.1",),
                                         retention=retention)
        grants = {r[0] for r in q(admin, "SHOW GRANTS FOR 'gw_test'@'127.0.0.1'")}
        assert (delete in grants) is present, grants


def test_migration_10_run_again_keeps_the_aggregates_and_adds_nothing(admin):
    """A migrator that died after migration 10's DDL but before recording it runs it again: no error, the same
    tables and index, the aggregates and the watermark kept."""
    schema.migrate(admin)
    q(admin, "INSERT INTO plant_moisture.hourly (board, hour_start, n, raw_min, raw_max, raw_sum, updated_at) "
             "VALUES ('bed-1', '2026-01-01 10:00:00', 2, 5, 7, 12, UTC_TIMESTAMP(3))")
    q(admin, "UPDATE plant_moisture.hourly_state SET received_through = '2026-01-01 10:30:00', id_through = 7")
    shape = [q(admin, "SHOW CREATE TABLE plant_moisture.%s" % t) for t in ("plants", "hourly", "hourly_state")]
    q(admin, "DELETE FROM plant_moisture.schema_migrations WHERE version = 10")
    assert schema.migrate(admin) == [10]
    assert [q(admin, "SHOW CREATE TABLE plant_moisture.%s" % t) for t in ("plants", "hourly", "hourly_state")] \
        == shape
    assert q(admin, "SELECT board, n, raw_sum FROM plant_moisture.hourly") == (("bed-1", 2, 12),)
    assert q(admin, "SELECT id, id_through FROM plant_moisture.hourly_state") == ((1, 7),)
    assert "received_at" in {r[0] for r in q(admin, "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE "
                                                    "TABLE_SCHEMA='plant_moisture' AND TABLE_NAME='plants'")}
