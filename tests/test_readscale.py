"""Read scaling (F14) against a real primary and two replicas: shared round robin, no lock left after an error,
parameters only, stopped / unreachable / lagging replicas skipped. Waits are on events, each bounded."""

import pymysql
import pytest

from gateway import readscale
from gateway.readscale import ReadScaleError, ReadScaler, ensure_state
from tests.ha_topology import Topology, replica_status, sql, wait_for

pytestmark = pytest.mark.integration

READER, READER_PW = "reader", "reader-test-only"


@pytest.fixture
def topo(server_dir):
    from tests.conftest import require_server
    require_server()
    t = Topology(server_dir, n=3, semisync=False)
    try:
        t.start()
        p = t.primary
        sql(p, "CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (READER, READER_PW))
        sql(p, "GRANT SELECT, UPDATE ON read_scaling.* TO %s@'127.0.0.1'", (READER,))
        sql(p, "GRANT REPLICATION MASTER ADMIN, SLAVE MONITOR ON *.* TO %s@'127.0.0.1'", (READER,))
        conn = pymysql.connect(**p.admin_kwargs())
        try:
            ensure_state(conn)
            ensure_state(conn)        # idempotent
        finally:
            conn.close()
        t.wait_caught_up()
        yield t
    finally:
        t.close()


def scaler(t, **kw):
    return ReadScaler({"host": "127.0.0.1", "port": t.primary.port, "user": READER, "password": READER_PW}, **kw)


def _choose(sel, n):
    chosen, reasons = set(), []
    for _ in range(n):
        chosen.add(sel.next_replica().server_id)
        reasons += [why for _, why in sel.skipped]
    return chosen, reasons


def test_f14_selector_is_parameterized_and_releases_locks(topo, monkeypatch):
    t = topo
    seen = []
    real_execute = pymysql.cursors.Cursor.execute

    def recording_execute(self, query, args=None):
        seen.append((query, args))
        return real_execute(self, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", recording_execute)
    broken = scaler(t)
    monkeypatch.setattr(broken, "_unhealthy", lambda r: 1 / 0)   # fails after the turn was taken
    with pytest.raises(ZeroDivisionError):
        broken.next_replica()
    # Nothing is left held: another session updates the row at once (1 s lock waits would fail, not hang).
    conn = pymysql.connect(autocommit=True, **t.primary.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1, lock_wait_timeout = 1")
            cur.execute("UPDATE read_scaling.current_slave SET n = n WHERE id = 1")
            cur.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
    r = scaler(t).next_replica()
    assert r.port in (t.servers[1].port, t.servers[2].port)
    queries = [q for q, _ in seen]
    assert not any("LOCK TABLES" in q.upper() for q in queries)
    # Values travel as parameters: no replica's host or port ever appears inside the SQL text we wrote.
    record = [(q, a) for q, a in seen if "SET server_id" in q]
    assert record and all(a == (r.server_id, r.host, r.port) for q, a in record)
    for q, a in seen:
        if a is None:
            for srv in t.servers:
                assert str(srv.port) not in q


def test_round_robin_across_replicas_by_several_clients(topo):
    t = topo
    clients = [scaler(t) for _ in range(3)]
    chosen = [clients[i % 3].next_replica().server_id for i in range(8)]
    assert set(chosen) == {2, 3}
    assert all(a != b for a, b in zip(chosen, chosen[1:])), chosen   # strictly alternating, across clients
    row = sql(t.primary, "SELECT n, server_id, host, port FROM read_scaling.current_slave WHERE id = 1")[0]
    assert row[0] >= 8 and row[1] == chosen[-1]


def test_stopped_and_dead_replicas_are_skipped(topo):
    t = topo
    sel = scaler(t)
    sql(t.servers[1], "STOP SLAVE")
    chosen, reasons = _choose(sel, 4)
    assert chosen == {3}
    assert any("threads not running" in why for why in reasons), reasons
    sql(t.servers[1], "START SLAVE")
    wait_for(lambda: (replica_status(t.servers[1]) or {}).get("Slave_SQL_Running") == "Yes", 20, "replica 2")
    t.servers[2].kill()
    # SHOW SLAVE HOSTS may still list the dead one until the primary notices; it is unreachable either way.
    chosen, reasons = _choose(sel, 4)
    assert chosen == {2}
    t.servers[1].kill()
    with pytest.raises(ReadScaleError, match="no healthy replica|lists no replicas"):
        sel.next_replica()


def test_lagging_replica_is_skipped(topo):
    t = topo
    lagging = t.servers[1]
    sql(lagging, "STOP SLAVE")
    sql(lagging, "CHANGE MASTER TO MASTER_DELAY = 120")
    sql(lagging, "START SLAVE")
    sql(t.primary, "CREATE DATABASE IF NOT EXISTS lagtest")
    sql(t.primary, "CREATE TABLE lagtest.t (a INT)")
    sql(t.primary, "INSERT INTO lagtest.t VALUES (1)")
    wait_for(lambda: ((replica_status(lagging) or {}).get("Seconds_Behind_Master") or 0) >= 2, 30,
             "replica 2 to fall 2 s behind", interval=0.2)
    sel = scaler(t, max_lag=1)
    chosen, reasons = _choose(sel, 4)
    assert chosen == {3}
    assert any("lags" in why for why in reasons), reasons


def test_cli_prints_replicas(topo, capsys, monkeypatch):
    t = topo
    monkeypatch.setenv("READSCALE_PASSWORD", READER_PW)
    assert readscale.main(["--primary", "127.0.0.1:%d" % t.primary.port, "--user", READER, "--count", "2"]) == 0
    out = capsys.readouterr().out.split()
    assert sorted(out) == sorted("127.0.0.1:%d" % s.port for s in t.servers[1:])


# -- the book's own table (Listing 8-4) --------------------------------------------------------------------------
def _book_module(primary_kwargs):
    """The book's Listing 8-4 (tests/book/read_scaling_demo.py) with its `master` pointed at our primary."""
    import importlib.util
    import os
    import sys
    book_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "book")
    if book_dir not in sys.path:
        sys.path.insert(0, book_dir)   # its `import mysql.connector` (tests/book/mysql: PyMySQL's connect)
    spec = importlib.util.spec_from_file_location("read_scaling_demo", os.path.join(book_dir, "read_scaling_demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.master = dict(primary_kwargs)
    return module


def test_readscale_setup_adopts_the_books_table_and_the_book_keeps_cycling(capsys, monkeypatch):
    """After the book's CREATE TABLE and INSERT, `--setup` once failed with (1054, "Unknown column 'id'")."""
    from tests.rpl_helpers import topology
    from tools.rpl.topology import run
    with topology(3) as topo:
        primary = topo.primary()
        run(primary, [("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (READER, READER_PW)),
                      ("GRANT ALL ON *.* TO %s@'127.0.0.1'", (READER,)),
                      # The book's set-up, as printed (Listing 8-4's header and the text before it).
                      ("CREATE DATABASE read_scaling", None),
                      ("CREATE TABLE read_scaling.current_slave(server_id INT, host CHAR(30), port INT)", None),
                      ("INSERT INTO `read_scaling`.`current_slave` VALUES (0,NULL,0)", None)])
        monkeypatch.setenv("READSCALE_PASSWORD", READER_PW)
        args = ["--primary", "127.0.0.1:%d" % primary.port, "--user", READER, "--count", "4"]
        assert readscale.main(args + ["--setup"]) == 0, capsys.readouterr().err
        ports = sorted(s.port for s in topo.replicas())
        out = capsys.readouterr().out.split()
        assert sorted(set(out)) == ["127.0.0.1:%d" % p for p in ports] and len(out) == 4, out
        assert readscale.main(args + ["--setup"]) == 0      # idempotent on the adopted table
        capsys.readouterr()
        # The book's table still looks like the book's: three columns, one row.
        rows = run(primary, [("SELECT * FROM read_scaling.current_slave", None)])
        assert len(rows) == 1 and sorted(rows[0]) == ["host", "port", "server_id"], rows
        # The book's Listing 8-4, unchanged, cycles both replicas on the adopted table, beside ours.
        book = _book_module({"host": "127.0.0.1", "port": primary.port, "user": READER, "password": READER_PW})
        selector = book.select_read_server()
        chosen = [selector.get_next_server()["id"] for _ in range(4)]
        assert chosen == [2, 3, 2, 3], chosen
        assert capsys.readouterr().out.count("> UPDATE read_scaling.current_slave SET server_id=") == 4
        assert readscale.main(args) == 0
        assert len(capsys.readouterr().out.split()) == 4


def test_readscale_cli_database_option(capsys, monkeypatch):
    from tests.rpl_helpers import topology
    from tools.rpl.topology import run
    with topology(3) as topo:
        primary = topo.primary()
        run(primary, [("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (READER, READER_PW)),
                      ("GRANT ALL ON *.* TO %s@'127.0.0.1'", (READER,)),
                      ("CREATE DATABASE read_scaling", None),   # someone else's table of that name
                      ("CREATE TABLE read_scaling.current_slave (a INT)", None)])
        monkeypatch.setenv("READSCALE_PASSWORD", READER_PW)
        args = ["--primary", "127.0.0.1:%d" % primary.port, "--user", READER, "--setup", "--count", "2"]
        assert readscale.main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("readscale: read_scaling.current_slave exists but is neither") and "--database" in err
        assert readscale.main(args + ["--database", "rs_garden"]) == 0, capsys.readouterr().err
        assert len(capsys.readouterr().out.split()) == 2
        row = run(primary, [("SELECT n, server_id FROM rs_garden.current_slave WHERE id = 1", None)])[0]
        assert row["n"] == 2 and row["server_id"] in (2, 3)
        with pytest.raises(SystemExit):
            readscale.main(args + ["--database", "bad-name;"])
        assert "not a plain database name" in capsys.readouterr().err
