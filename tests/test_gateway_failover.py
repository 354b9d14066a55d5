"""The gateway over a replicated topology: three private MariaDB servers (GTID, semi-sync), the gateway process
configured with all three, virtual boards streaming. The primary is killed (-9) and the most advanced replica
promoted; or a planned switchover moves the primary under load. Afterwards every reading each board generated is
stored exactly once on the new primary: nothing acknowledged was lost, nothing stored twice.

Waits are on events (rows on a server, a board's counters), each bounded; no timing is asserted.
"""

import pymysql
import pytest

from gateway import schema
from gateway.db import ReadingStore
from gateway.dbconn import DatabaseUnavailable, DbConfig
from gateway.primary import find_primary, parse_server
from tests.ha_topology import Topology, sql, wait_for
from tools.demo.stack import GATEWAY_USER, Stack

pytestmark = pytest.mark.integration

FAST = {"interval_ms": 200, "status_interval_ms": 1000, "seed": 1}
BOARDS = ("bed-1", "bed-2", "bed-3")


@pytest.fixture
def topo(server_dir):
    from tests.conftest import require_server
    require_server()
    t = Topology(server_dir, n=3)
    try:
        t.start()
        wait_for(lambda: t.semisync_clients() == 2, 20, "both replicas to connect semi-synchronously")
        conn = pymysql.connect(autocommit=True, **t.primary.admin_kwargs())
        yield t, conn
    finally:
        t.close()


@pytest.fixture
def ha_stack(topo, tmp_path):
    t, conn = topo
    s = Stack(str(tmp_path / "run"))
    try:
        schema.migrate(conn)
        schema.provision_gateway_account(conn, GATEWAY_USER, s.gateway_password)
        conn.close()
        t.wait_caught_up()
        s.db = t.primary
        s.db_servers = ["127.0.0.1:%d" % srv.port for srv in t.servers]
        s.db_options = {"semisync": "require"}
        yield s, t
    finally:
        s.db = None  # the topology ends the servers (by their PIDs)
        s.close()
        if s.gateway is not None:
            print("--- gateway log ---\n" + s.gateway.log_text()[-6000:])


def count(srv, board=None):
    q = "SELECT COUNT(*) FROM plant_moisture.plants WHERE board IS NOT NULL"
    args = ()
    if board:
        q += " AND board = %s"
        args = (board,)
    return sql(srv, q, args)[0][0]


def assert_complete(stack, board_id):
    """Every reading the board sampled is in the database exactly once, identity by identity (test_backbone)."""
    rows = stack.readings(board_id)
    ids = [(r[1], r[2]) for r in rows]
    assert len(ids) == len(set(ids)), "a reading was stored twice"
    by_boot = {}
    for boot, seq in ids:
        by_boot.setdefault(boot, set()).add(seq)
    for boot, seqs in by_boot.items():
        expected = set(range(1, max(seqs) + 1))
        assert expected <= seqs, "%s boot %d is missing seq %s" % (board_id, boot, sorted(expected - seqs)[:10])
    return rows


def drained(board):
    st = board.status()
    return st["pending"] == 0 and st["inflight"] == 0


def _stream_then(s, t, event):
    boards = [s.start_board(b, **FAST) for b in BOARDS]
    s.start_gateway(wait_ms=300)
    wait_for(lambda: all(count(t.primary, b) >= 8 for b in BOARDS), 60, "8 readings per board on the primary")
    before = {b: count(t.primary, b) for b in BOARDS}
    new = event()
    s.db = new
    # The gateway finds the new primary and commits there again.
    wait_for(lambda: all(count(new, b) >= before[b] + 10 for b in BOARDS), 60,
             "10 more readings per board on the new primary")
    # Stop sampling, let every board drain its cache, then check identity by identity.
    for b in boards:
        b.stop()
    for b in boards:
        b.restart()   # a new boot: anything of the old boot still cached is replayed
    wait_for(lambda: all(drained(b) for b in boards), 60, "boards to drain their caches")
    for b in BOARDS:
        assert_complete(s, b)
    return boards


def test_failover_kill_primary_promote_replica_nothing_lost(ha_stack):
    s, t = ha_stack
    old = t.primary

    def kill_and_promote():
        old.kill()                       # SIGKILL: commits in flight are lost with the process
        return t.promote_most_advanced()

    _stream_then(s, t, kill_and_promote)
    assert t.primary is not old
    log = s.gateway.log_text()
    assert "the primary is now 127.0.0.1:%d" % t.primary.port in log


def test_switchover_under_load_nothing_lost(ha_stack):
    s, t = ha_stack
    old = t.primary
    _stream_then(s, t, lambda: t.switchover(t.servers[1]))
    assert t.primary is t.servers[1]
    # The old primary is a replica now and has everything too.
    t.wait_caught_up()
    for b in BOARDS:
        assert count(old, b) == count(t.primary, b)


def test_find_primary_skips_replicas_and_dead_servers(topo):
    t, conn = topo
    schema.migrate(conn)
    schema.provision_gateway_account(conn, GATEWAY_USER, "pw-test")
    t.wait_caught_up()
    cfg = DbConfig(user=GATEWAY_USER, password="pw-test",
                   servers=tuple("127.0.0.1:%d" % srv.port for srv in reversed(t.servers)))
    assert find_primary(cfg).port == t.primary.port
    # A replica whose read_only was forgotten is still not a primary: its replica threads run.
    sql(t.servers[1], "SET GLOBAL read_only = OFF")
    assert find_primary(cfg).port == t.primary.port
    # Primary gone: nobody is writable; the error names each server.
    t.primary.kill()
    with pytest.raises(DatabaseUnavailable) as e:
        find_primary(cfg)
    assert "down" in str(e.value) and "replica" in str(e.value)


def test_semisync_require_holds_acks_while_async(topo):
    """F15: when the primary falls back to asynchronous replication, a `require` gateway does not acknowledge
    (the batch raises DatabaseUnavailable although it is committed) and says so; it acknowledges again once a
    replica has caught up and semi-sync is ON."""
    t, conn = topo
    schema.migrate(conn)
    schema.provision_gateway_account(conn, GATEWAY_USER, "pw-test")
    t.wait_caught_up()
    cfg = DbConfig(user=GATEWAY_USER, password="pw-test", semisync="require",
                   servers=tuple("127.0.0.1:%d" % srv.port for srv in t.servers))
    from gateway.db import Reading
    store = ReadingStore(cfg)
    try:
        r = Reading("ss-1", "master", 1, 1, "2024-01-01 00:00:00", 500, "live", "rtc")
        assert store.insert_batch([r]) == 1
        for srv in t.servers[1:]:
            sql(srv, "STOP SLAVE IO_THREAD")
        with pytest.raises(DatabaseUnavailable, match="semi-sync is OFF"):
            store.insert_batch([r._replace(seq=2)])       # waits out the 1 s timeout, then falls back
        assert count(t.primary, "ss-1") == 2                 # committed on the primary, but not acknowledged
        for srv in t.servers[1:]:
            sql(srv, "START SLAVE IO_THREAD")
        # Commits go on (unacknowledged) until a replica acknowledges one and semi-sync is ON again.
        seq = iter(range(3, 1000))
        wait_for(lambda: _try_insert(store, r._replace(seq=next(seq))), 20, "semi-sync to be ON again")
        assert store.insert_batch([r._replace(seq=2)]) == 0  # the resend is a duplicate: committed, now on a replica
    finally:
        store.close()


def _try_insert(store, reading):
    try:
        store.insert_batch([reading])
        return True
    except DatabaseUnavailable:
        return False


def test_parse_server():
    assert parse_server("db2:3307") == ("db2", 3307)
    assert parse_server("db2") == ("db2", 3306)
    assert parse_server("[::1]:3310") == ("::1", 3310)
    for bad in ("", "db:x", "::1", "db:0", "db:70000"):
        with pytest.raises(ValueError):
            parse_server(bad)
