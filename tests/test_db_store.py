"""gateway.db against a real server: batches, idempotent replay (F9), parameters (F5), least privilege (F13),
errors a person can act on, and a crash in the middle of a batch.
"""

import logging
import os
import shutil
import subprocess
import threading
import time

import pymysql
import pytest

from gateway import dbconn, schema
from gateway.db import InvalidReading, Reading, ReadingStore
from gateway.dbconn import DatabaseConfigError, DatabaseError, DatabaseUnavailable, DbConfig
from tests.conftest import require_server
from tools.dbserver import PrivateServer, free_port
from tools.demo.stack import admin_query as stack_admin_query

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def readings(board="b1", boot=1, seqs=range(1, 11), t="2026-03-01 12:00:00", raw=None, source="live"):
    return [Reading(board, "master", boot, s, t, s if raw is None else raw, source, "rtc") for s in seqs]


def admin_query(srv, sql, args=None):
    return stack_admin_query(srv.admin_kwargs(), sql, args)


@pytest.fixture
def store(clean_db):
    s = ReadingStore(clean_db.gateway_cfg)
    try:
        yield s
    finally:
        s.close()


def wait_until(predicate, timeout=20.0, what="condition"):
    """Poll with a growing pause: hammering information_schema.INNODB_TRX starves the very insert we watch."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
    raise AssertionError("timed out waiting for " + what)


# -- storing --------------------------------------------------------------------------------------------------
def test_batch_is_stored_with_identity_and_times(store, clean_db):
    batch = [Reading("b1", "master", 3, 1, "2026-03-01 12:00:00", 512, "live", "rtc"),
             Reading("b1", "standby", 3, 2, "2026-03-01 12:00:01", 513, "replay", "suspect")]
    assert store.insert_batch(batch) == 2
    rows = admin_query(clean_db, "SELECT board, collector, boot, seq, date_saved, moisture_raw, source, "
                                 "time_quality, TIMESTAMPDIFF(SECOND, received_at, UTC_TIMESTAMP(3)) "
                                 "FROM plants ORDER BY seq")
    assert [r[:8] for r in rows] == [
        ("b1", "master", 3, 1, rows[0][4], 512, "live", "rtc"),
        ("b1", "standby", 3, 2, rows[1][4], 513, "replay", "suspect")]
    assert [r[4].strftime("%Y-%m-%d %H:%M:%S") for r in rows] == ["2026-03-01 12:00:00", "2026-03-01 12:00:01"]
    assert all(0 <= r[8] <= 60 for r in rows)  # received_at is the server's UTC now
    assert store.insert_batch([]) == 0


def test_f9_replay_stores_each_reading_once(store, clean_db):
    first = readings(seqs=range(1, 101))
    assert store.insert_batch(first) == 100
    assert store.insert_batch(first) == 0  # a full replay (the acknowledgement was lost)
    overlap = readings(seqs=range(51, 151))
    assert store.insert_batch(overlap) == 50  # half old, half new
    twice_in_one = readings(seqs=[200, 200, 201])
    assert store.insert_batch(twice_in_one) == 2
    assert admin_query(clean_db, "SELECT COUNT(*), COUNT(DISTINCT board, boot, seq) FROM plants") == ((152, 152),)
    # Same seq after a reboot is a different reading.
    assert store.insert_batch(readings(boot=2, seqs=range(1, 11))) == 10
    # The database itself refuses a second copy, whoever writes it.
    with pytest.raises(pymysql.err.IntegrityError):
        admin_query(clean_db, "INSERT INTO plants (board, boot, seq, date_saved, moisture_raw) "
                              "VALUES ('b1', 1, 1, '2026-03-01 12:00:00', 1)")


def test_a_conflicting_duplicate_is_not_silently_lost(store, clean_db, caplog):
    assert store.insert_batch(readings(seqs=[1, 2], raw=500)) == 2
    with caplog.at_level(logging.WARNING, logger="gateway.db"):
        assert store.insert_batch(readings(seqs=[2, 3], raw=777)) == 1
    assert any("board 'b1' boot 1 seq 2" in rec.getMessage() for rec in caplog.records)
    assert store.conflicts == [(("b1", 1, 2), (500, "2026-03-01 12:00:00"), (777, "2026-03-01 12:00:00"))]
    # The stored reading is kept and the disagreement is on record in the database, not only in a log.
    assert admin_query(clean_db, "SELECT moisture_raw FROM plants WHERE seq = 2") == ((500,),)
    events = admin_query(clean_db, "SELECT board, event, detail FROM board_events")
    assert len(events) == 1 and events[0][:2] == ("b1", "identity_conflict") and "seq 2" in events[0][2]


def test_large_batch_goes_in_as_few_multi_row_statements(store, clean_db):
    def com_insert():
        return int(admin_query(clean_db, "SHOW GLOBAL STATUS LIKE 'Com_insert'")[0][1])

    before = com_insert()
    assert store.insert_batch(readings(seqs=range(1, 20001))) == 20000
    statements = com_insert() - before
    assert 1 <= statements <= 5, statements  # PyMySQL folds executemany into ~1 MB multi-row INSERTs
    assert admin_query(clean_db, "SELECT COUNT(*) FROM plants") == ((20000,),)


def test_f5_values_are_parameters_not_sql(store, clean_db):
    evil = "x'); DROP TABLE plants; --"
    nasty = "a\\'b\"c`d"
    assert store.insert_batch(readings(board=evil, seqs=[1]) + readings(board=nasty, seqs=[1])) == 2
    assert store.insert_batch(readings(board=evil, seqs=[1])) == 0  # the duplicate path is parameterized too
    got = {r[0] for r in admin_query(clean_db, "SELECT board FROM plants")}
    assert got == {evil, nasty}  # stored verbatim, and the table is still there
    store.upsert_board_status(evil, fw="1'; DROP TABLE boards; --", clock="ok")
    store.add_board_event(evil, "boot", "'); DELETE FROM plants; --", "2026-03-01 12:00:00")
    assert admin_query(clean_db, "SELECT fw FROM boards") == (("1'; DROP TABLE boards; --",),)
    assert admin_query(clean_db, "SELECT COUNT(*) FROM plants") == ((2,),)
    # Column names are never taken from the caller.
    with pytest.raises(ValueError):
        store.upsert_board_status("b1", **{"fw = 'x', role": "y"})


def test_invalid_readings_are_refused_before_the_database(store, clean_db):
    for bad in (Reading("", "master", 1, 1, "2026-03-01 12:00:00", 1, "live", "rtc"),
                Reading("b" * 33, "master", 1, 1, "2026-03-01 12:00:00", 1, "live", "rtc"),
                Reading("b\u00fc", "master", 1, 1, "2026-03-01 12:00:00", 1, "live", "rtc"),
                Reading("b1", "master", -1, 1, "2026-03-01 12:00:00", 1, "live", "rtc"),
                Reading("b1", "master", 1, 1, "2015-11-27 15:9:8", 1, "live", "rtc"),  # F4: not zero-padded
                Reading("b1", "master", 1, 1, "2026-03-01 12:00:00", 1, "bogus", "rtc")):
        with pytest.raises(InvalidReading):
            store.insert_batch(readings(seqs=[1]) + [bad])
    assert admin_query(clean_db, "SELECT COUNT(*) FROM plants") == ((0,),)


def test_board_status_upsert_and_events(store, clean_db):
    store.upsert_board_status("b1", role="master", boot=3, clock="unset", fw="0.1")
    store.upsert_board_status("b1", clock="ok", pending=4, last_board_time="2026-03-01 12:00:00")
    (role, boot, clock, fw, pending, lbt, seen), = admin_query(
        clean_db, "SELECT role, boot, clock, fw, pending, last_board_time, "
                  "TIMESTAMPDIFF(SECOND, last_seen, UTC_TIMESTAMP(3)) FROM boards")
    assert (role, boot, clock, fw, pending) == ("master", 3, "ok", "0.1", 4)
    assert lbt.strftime("%Y-%m-%d %H:%M:%S") == "2026-03-01 12:00:00" and 0 <= seen <= 60
    store.add_board_event("b1", "boot", "boot 3", None)
    store.add_collector_event("b1", "takeover", "master silent for 10 s", "2026-03-01 12:00:00")
    assert admin_query(clean_db, "SELECT event FROM board_events") == (("boot",),)
    assert admin_query(clean_db, "SELECT event FROM collector_events") == (("takeover",),)


def test_an_event_that_arrives_twice_is_stored_once(store, clean_db):
    """A board repeats an event until the gateway acknowledges its COMMIT: the identity (board, boot, event_no)
    keeps one row, and the repeat is success (the gateway acknowledges it again), not an error."""
    assert store.add_collector_event("b1", "standby_missing", "no ACK", "2026-03-01 12:00:00", 7, 1) is True
    assert store.add_collector_event("b1", "standby_missing", "no ACK", "2026-03-01 12:00:00", 7, 1) is False
    assert store.add_collector_event("b1", "standby_back", "again", "2026-03-01 12:00:05", 7, 2) is True
    assert store.add_collector_event("b1", "standby_missing", "no ACK", "2026-03-01 12:00:00", 8, 1) is True
    assert store.add_collector_event("b1", "witness_refused", "gateway's own", None) is True
    assert store.add_collector_event("b1", "witness_refused", "gateway's own", None) is True
    assert admin_query(clean_db, "SELECT boot, event_no, event FROM collector_events ORDER BY id") == (
        (7, 1, "standby_missing"), (7, 2, "standby_back"), (8, 1, "standby_missing"),
        (None, None, "witness_refused"), (None, None, "witness_refused"))


# -- privileges -----------------------------------------------------------------------------------------------
def test_f13_gateway_account_is_least_privilege(clean_db):
    cfg = clean_db.gateway_cfg
    conn = dbconn.connect(cfg)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO plants (board, boot, seq, date_saved, moisture_raw) "
                        "VALUES ('b1', 1, 1, '2026-03-01 12:00:00', 5)")
            cur.execute("SELECT COUNT(*) FROM plants")
            assert cur.fetchone() == (1,)
            conn.commit()
            denied = ["DELETE FROM plants",
                      "UPDATE plants SET moisture_raw = 0",
                      "INSERT INTO plants (board, boot, seq, date_saved, moisture_raw) VALUES "
                      "('b1', 1, 1, '2026-03-01 12:00:00', 5) ON DUPLICATE KEY UPDATE moisture_raw = 0",
                      "TRUNCATE TABLE plants",
                      "DROP TABLE plants",
                      "ALTER TABLE plants ADD COLUMN x INT",
                      "CREATE TABLE sneaky (x INT)",
                      "DELETE FROM boards",
                      "UPDATE board_events SET detail = 'x'",
                      "SELECT * FROM mysql.user",
                      "CREATE USER 'intruder'@'%' IDENTIFIED BY 'x'",
                      "GRANT ALL ON *.* TO 'soil_gateway'@'127.0.0.1'",
                      "SET GLOBAL read_only = 1"]
            for sql in denied:
                with pytest.raises(pymysql.MySQLError) as info:
                    cur.execute(sql)
                err = dbconn.classify(info.value, cfg)
                assert isinstance(err, DatabaseConfigError), (sql, info.value)
                assert info.value.args[0] in (1044, 1045, 1142, 1143, 1227, 1410), (sql, info.value)
        assert admin_query(clean_db, "SELECT moisture_raw FROM plants") == ((5,),)
    finally:
        conn.close()


# -- errors ---------------------------------------------------------------------------------------------------
def _cfg(srv, **changes):
    base = dict(host="127.0.0.1", port=srv.port, user=srv.gateway_user, password=srv.gateway_password,
                connect_timeout=5)
    base.update(changes)
    return DbConfig(**base)


def test_wrong_password_is_a_config_error_naming_the_account(dbserver):
    cfg = _cfg(dbserver, password="wrong-" + dbserver.gateway_password)
    with pytest.raises(DatabaseConfigError) as info:
        dbconn.connect(cfg)
    msg = str(info.value)
    assert "soil_gateway@127.0.0.1:%d" % dbserver.port in msg and "password" in msg and "\n" not in msg
    assert cfg.password not in msg
    store = ReadingStore(cfg)
    with pytest.raises(DatabaseConfigError):
        store.insert_batch(readings(seqs=[1]))
    assert not info.value.retryable


def test_unknown_database_is_a_config_error(dbserver):
    # An account that may see everything is told the database is unknown (1049)...
    root = DbConfig(unix_socket=dbserver.socket, user="root", password="", database="no_such_database")
    with pytest.raises(DatabaseConfigError, match="unknown database") as info:
        dbconn.connect(root)
    assert "root@localhost (socket %s)" % dbserver.socket in str(info.value)
    # ...a least-privilege one cannot tell "unknown" from "not yours" (1044); the message says both.
    with pytest.raises(DatabaseConfigError, match="may not exist") as info:
        dbconn.connect(_cfg(dbserver, database="no_such_database"))
    assert "soil_gateway@127.0.0.1:%d" % dbserver.port in str(info.value)


def test_nothing_listening_is_unavailable(dbserver):
    port = free_port()
    cfg = _cfg(dbserver, port=port)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as info:
        ReadingStore(cfg).insert_batch(readings(seqs=[1]))
    assert "127.0.0.1:%d" % port in str(info.value) and info.value.retryable
    assert time.monotonic() - started < 30


def test_schema_not_migrated_is_a_config_error(dbserver):
    conn = pymysql.connect(**dbserver.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS empty_db")
            cur.execute("GRANT SELECT, INSERT ON empty_db.* TO 'soil_gateway'@'127.0.0.1'")
        store = ReadingStore(_cfg(dbserver, database="empty_db"))
        with pytest.raises(DatabaseConfigError, match="migrate"):
            store.check()
    finally:
        with conn.cursor() as cur:
            cur.execute("REVOKE ALL PRIVILEGES ON empty_db.* FROM 'soil_gateway'@'127.0.0.1'")
            cur.execute("DROP DATABASE empty_db")
        conn.close()


def test_server_killed_mid_batch_commits_nothing_and_store_recovers(clean_db):
    """A lock held by another session stops the batch after its first multi-row statement; then the server dies.

    No sleep decides the timing: we wait (bounded) until InnoDB shows the gateway's transaction in LOCK WAIT with
    rows already inserted, so the kill lands in the middle of the batch.
    """
    srv = clean_db
    n = 20000
    batch = readings(board="crash", seqs=range(1, n + 1))
    blocker = pymysql.connect(database="plant_moisture", **srv.admin_kwargs())
    with blocker.cursor() as cur:  # uncommitted: holds the lock on the batch's last identity
        cur.execute("INSERT INTO plants (board, boot, seq, date_saved, moisture_raw) "
                    "VALUES ('crash', 1, %s, '2026-03-01 12:00:00', 1)", (n,))
    store = ReadingStore(srv.gateway_cfg)
    outcome = {}

    def writer():
        try:
            outcome["result"] = store.insert_batch(batch)
        except Exception as exc:  # asserted below
            outcome["error"] = exc

    t = threading.Thread(target=writer)
    t.start()
    watcher = pymysql.connect(autocommit=True, **srv.admin_kwargs())
    try:
        def waiting_with_rows():
            with watcher.cursor() as cur:
                cur.execute("SELECT trx_rows_modified FROM information_schema.INNODB_TRX "
                            "WHERE trx_state = 'LOCK WAIT'")
                row = cur.fetchone()
            return row is not None and row[0] > 0
        wait_until(lambda: waiting_with_rows() or "error" in outcome, what="the batch to block half way")
        assert "error" not in outcome, outcome
    finally:
        watcher.close()
    srv.kill()
    t.join(30)
    assert not t.is_alive()
    blocker.close()
    assert isinstance(outcome.get("error"), DatabaseUnavailable), outcome
    assert outcome["error"].retryable

    srv.restart()
    assert admin_query(srv, "SELECT COUNT(*) FROM plants WHERE board = 'crash'") == ((0,),)
    # The same store object opens a fresh connection and the replay goes through whole.
    assert store.insert_batch(batch) == n
    store.close()
    assert admin_query(srv, "SELECT COUNT(*) FROM plants WHERE board = 'crash'") == ((n,),)


# -- TLS ------------------------------------------------------------------------------------------------------
def _make_certs(folder):
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=folder, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=soil test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
        "/CN=127.0.0.1")
    with open(os.path.join(folder, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-days",
        "2", "-subj", "/CN=some other CA")


def test_tls_connection_is_verified_and_required(server_dir):
    require_server()
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test CA")
    c = os.path.join(server_dir, "certs")
    os.mkdir(c)
    _make_certs(c)
    srv = PrivateServer(os.path.join(server_dir, "tlsdb"), extra_options=(
        "--ssl-ca=%s/ca.pem" % c, "--ssl-cert=%s/server.pem" % c, "--ssl-key=%s/server.key" % c))
    srv.start()
    try:
        admin = pymysql.connect(**srv.admin_kwargs())
        schema.migrate(admin)
        import secrets
        password = secrets.token_hex(12)
        schema.provision_gateway_account(admin, "soil_gateway", password, hosts=("127.0.0.1",), require_tls=True)
        admin.close()
        good = DbConfig(host="127.0.0.1", port=srv.port, user="soil_gateway", password=password,
                        ssl_ca=c + "/ca.pem")
        store = ReadingStore(good)
        assert store.insert_batch(readings(seqs=[1, 2])) == 2
        conn = dbconn.connect(good)
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1]
        conn.close()
        store.close()
        # The account requires TLS: a plain connection is refused, as a configuration error.
        with pytest.raises(DatabaseConfigError):
            dbconn.connect(DbConfig(host="127.0.0.1", port=srv.port, user="soil_gateway", password=password))
        # A server certificate from another CA is refused too.
        with pytest.raises(DatabaseConfigError, match="TLS"):
            dbconn.connect(DbConfig(host="127.0.0.1", port=srv.port, user="soil_gateway", password=password,
                                ssl_ca=c + "/other.pem"))
    finally:
        srv.stop()


def test_tls_requested_but_not_offered_is_refused(dbserver, tmp_path):
    """PyMySQL quietly falls back to plain text when the server offers no TLS; the gateway must not."""
    if admin_query(dbserver, "SELECT @@have_ssl")[0][0] == "YES":
        pytest.skip("this server offers TLS without configuration")
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test CA")
    _make_certs(str(tmp_path))
    cfg = _cfg(dbserver, ssl_ca=str(tmp_path / "ca.pem"))
    with pytest.raises(DatabaseConfigError, match="does not offer"):
        dbconn.connect(cfg)


@pytest.mark.parametrize("bad_time", ["2026-11-21 10:00:00\n", "\uff12026-11-21 10:00:00", "2026-11-21T10:00:00",
                                      "2026-11-21 10:00:00' OR '1'='1"])
def test_f5_sample_time_must_match_in_full_before_it_is_quoted(bad_time):
    """The write path quotes validated sample times without escaping them, so the check must be exact."""
    from gateway.db import InvalidReading, check_reading
    r = Reading("b1", "single", 1, 1, bad_time, 1, "live", "rtc")
    with pytest.raises(InvalidReading):
        check_reading(r)
