"""A real 3-server GTID topology (private MariaDB/MySQL servers, never port 3306): replication, adding a replica
to a running topology, health, SHOW SLAVE HOSTS, the CLI's show."""

import pytest

from tests.rpl_helpers import ids_on, make_schema, sync_all, topology, wait_until
from tools.rpl import cli
from tools.rpl.topology import RplError, Topology, run


@pytest.fixture(scope="module")
def topo():
    with topology(3) as t:
        t.app_password = make_schema(t)
        yield t


def test_writes_on_primary_reach_every_replica(topo):
    run(topo.primary(), [("INSERT INTO t.readings (id, writer) VALUES (%s, %s)", (i, "p")) for i in range(1, 21)])
    sync_all(topo)
    for s in topo.replicas():
        assert ids_on(s) == set(range(1, 21)), s


def test_state_file_and_library_api(topo):
    loaded = Topology.load(topo.dir)
    assert [s.server_id for s in loaded.servers] == [1, 2, 3]
    assert loaded.primary().server_id == 1
    for s in loaded.servers:
        assert s.host == "127.0.0.1" and s.port and len(s.socket.encode()) < 108
    with pytest.raises(RplError, match="already holds a topology"):
        Topology.create(topo.dir, servers=1)


def test_replicas_are_registered_and_read_only(topo):
    hosts = [topo.flavour.normalize_replica_host(r) for r in run(topo.primary(), [topo.flavour.list_replicas()])]
    assert sorted((h["server_id"], h["port"]) for h in hosts) == sorted((s.server_id, s.port) for s in topo.replicas())
    health = {h["server_id"]: h for h in topo.health()}
    assert health[1]["role"] == "primary" and health[1]["read_only"] is False and health[1]["io_running"] is None
    for sid in (2, 3):
        h = health[sid]
        assert h["reachable"] and h["read_only"] and h["io_running"] and h["sql_running"], h
        assert h["source"] == "127.0.0.1:%d" % topo.primary().port and h["errant"] == [] and h["error"] is None
        assert h["gtid_position"] == health[1]["gtid_position"]


def test_add_replica_to_running_topology(topo):
    run(topo.primary(), [("INSERT INTO t.readings (id, writer) VALUES (%s, %s)", (i, "p")) for i in range(100, 110)])
    new = topo.add_replica()
    assert new.server_id == 4
    # It replayed the whole binary log: schema, account, every row, and it goes on replicating.
    assert ids_on(new) == ids_on(topo.primary())
    run(topo.primary(), [("INSERT INTO t.readings (id, writer) VALUES (500, 'p')", None)])
    sync_all(topo)
    assert 500 in ids_on(new)
    assert Topology.load(topo.dir).server(4).port == new.port
    wait_until(lambda: len(run(topo.primary(), [topo.flavour.list_replicas()])) == 3, 10, "4 registered replicas")


def test_add_replica_refused_after_binlogs_were_purged(topo):
    primary = topo.primary()
    run(primary, [("FLUSH BINARY LOGS", None)])
    last = run(primary, [("SHOW BINARY LOGS", None)])[-1]["Log_name"]

    def purged():  # MariaDB keeps a log until InnoDB has checkpointed past it (binlog checkpoint); retry
        run(primary, [("PURGE BINARY LOGS TO %s", (last,))])
        return run(primary, [("SHOW BINARY LOGS", None)])[0]["Log_name"] == last
    wait_until(purged, 20, "the old binary logs to be purged", 0.2)
    with pytest.raises(RplError, match="purged"):
        topo.add_replica()
    assert len(Topology.load(topo.dir).servers) == 4  # nothing was started


def test_cli_show(topo, capsys):
    assert cli.main(["show", "--dir", topo.dir]) == 0
    out = capsys.readouterr().out
    assert "(server 1) PRIMARY" in out and out.count("io=Yes sql=Yes") == 3  # 3 replicas
    assert cli.main(["show", "--dir", "/nonexistent/rpl"]) == 1
    assert capsys.readouterr().err.startswith("rpl: no topology in /nonexistent/rpl")
