"""The replication tooling's edges (issue 11, section 5), each on its own real topology of private servers:
`show` exits 1 when replication is stopped, `semisync check` alerts with no acknowledging replica, `skip-errant`
with a server down, `start` after `stop`, and `rejoin` of a repaired old primary."""

import json

import pytest

from tests.rpl_helpers import ids_on, make_schema, sync_all, topology, wait_until
from tools.rpl import cli, ha
from tools.rpl.topology import Topology, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _events(topo):
    with open(topo.state_file) as f:
        return [e["event"] for e in json.load(f)["events"]]


def test_show_exits_1_when_every_replica_io_thread_is_stopped(capsys):
    with topology(3) as topo:
        assert cli.main(["show", "--dir", topo.dir]) == 0
        for s in topo.replicas():
            run(s, [topo.flavour.stop_io_thread()])
        capsys.readouterr()
        assert cli.main(["show", "--dir", topo.dir]) == 1
        captured = capsys.readouterr()
        assert captured.out.count("io=NO sql=Yes") == 2, captured.out
        assert "replica threads stopped" in captured.err and captured.err.startswith("rpl: ")
        assert cli.main(["show", "--dir", topo.dir, "--json"]) == 1
        assert [h["io_running"] for h in json.loads(capsys.readouterr().out)] == [None, False, False]
        for s in topo.replicas():
            run(s, [topo.flavour.start_io_thread()])
        wait_until(lambda: cli.main(["show", "--dir", topo.dir]) == 0, 20, "show to be clean again", 0.2)


def test_semisync_check_alerts_with_no_acknowledging_replica(capsys):
    with topology(2) as topo:
        make_schema(topo)
        ha.semisync_enable(topo, timeout_ms=500)
        wait_until(lambda: ha.semisync_status(topo)["clients"] == 1, 10, "one semi-sync replica")
        assert ha.semisync_check(topo)[0]
        # The only replica stops its IO thread: no commit has timed out yet, the primary still says ON.
        run(topo.server(2), [topo.flavour.stop_io_thread()])
        wait_until(lambda: ha.semisync_status(topo)["clients"] == 0, 10, "no semi-sync client")
        assert ha.semisync_status(topo)["status"] is True
        ok, message = ha.semisync_check(topo)
        assert not ok and "ALERT" in message and "no replica acknowledges" in message, message
        assert cli.main(["semisync", "check", "--dir", topo.dir]) == 1
        assert "ALERT" in capsys.readouterr().out
        run(topo.server(2), [topo.flavour.start_io_thread()])
        wait_until(lambda: ha.semisync_check(topo)[0], 10, "semi-sync OK again")


def test_semisync_check_alerts_on_a_just_promoted_primary_with_no_replica():
    """docs/REPLICATION-GATEWAY.md: a freshly promoted MariaDB primary reports ON with 0 clients."""
    with topology(2) as topo:
        make_schema(topo)
        ha.semisync_enable(topo, timeout_ms=500)
        wait_until(lambda: ha.semisync_status(topo)["clients"] == 1, 10, "one semi-sync replica")
        topo.primary().process.kill()
        new = ha.failover(topo)
        assert new.server_id == 2
        st = ha.semisync_status(topo)
        assert st["enabled"] and st["status"] is True and st["clients"] == 0, st  # ON, yet nobody acknowledges
        ok, message = ha.semisync_check(topo)
        assert not ok and "no replica acknowledges" in message, (st, message)


def test_skip_errant_with_a_dead_server_succeeds_and_records_the_event(capsys):
    with topology(3) as topo:
        make_schema(topo)
        run(topo.server(3), [("INSERT INTO t.readings VALUES (1000, 'oops')", None)])
        gtid = ha.errant_transactions(topo)[3][0]
        topo.server(2).process.kill()
        assert cli.main(["skip-errant", "--dir", topo.dir, gtid, "--timeout", "10"]) == 0
        err = capsys.readouterr().err
        assert "server 2 does not answer" in err and "Traceback" not in err, err
        assert any(gtid in e and "skipped errant" in e for e in _events(topo)), _events(topo)
        assert ha.errant_transactions(topo)[3] == []
        # Server 2 comes back and gets the empty transaction from the binary log like any other.
        topo.server(2).process.start()
        sync_all(topo)
        assert ha.errant_transactions(topo) == {2: [], 3: []}


def test_rpl_start_after_stop_restarts_the_topology(capsys):
    with topology(3) as topo:
        make_schema(topo)
        run(topo.primary(), [("INSERT INTO t.readings VALUES (1, 'before')", None)])
        sync_all(topo)
        ports = {s.server_id: s.port for s in topo.servers}
        assert cli.main(["stop", "--dir", topo.dir]) == 0
        assert not any(s.running for s in Topology.load(topo.dir).servers)
        assert cli.main(["start", "--dir", topo.dir]) == 0
        out = capsys.readouterr().out
        assert "server 1 port=%d" % ports[1] in out and "(primary)" in out, out
        topo.reload()
        assert {s.server_id: s.port for s in topo.servers} == ports and all(s.running for s in topo.servers)
        assert cli.main(["show", "--dir", topo.dir]) == 0, capsys.readouterr()
        health = {h["server_id"]: h for h in topo.health()}
        assert health[1]["read_only"] is False and health[2]["read_only"] and health[3]["read_only"]
        run(topo.primary(), [("INSERT INTO t.readings VALUES (2, 'after')", None)])
        sync_all(topo)
        assert ids_on(topo.server(3)) == {1, 2}
        # A second start is harmless.
        assert cli.main(["start", "--dir", topo.dir]) == 0


def test_repaired_old_primary_rejoins_as_a_replica(capsys):
    with topology(3) as topo:
        make_schema(topo)
        run(topo.primary(), [("INSERT INTO t.readings VALUES (1, 'p')", None)])
        sync_all(topo)
        topo.primary().process.kill()
        new = ha.failover(topo)
        run(new, [("INSERT INTO t.readings VALUES (2, 'new primary')", None)])
        # The old primary is repaired: its process is started again (fenced: it must not take writes).
        old = topo.server(1)
        old.process.start()
        assert run(old, [topo.flavour.read_only_sql()])[0]["@@read_only"] == 1
        assert cli.main(["show", "--dir", topo.dir]) == 1
        assert "server 1 does not replicate" in capsys.readouterr().err
        assert cli.main(["rejoin", "--dir", topo.dir, "--server", "1"]) == 0
        assert "server 1 port=%d replicates from the primary" % old.port in capsys.readouterr().out
        topo.reload()
        assert ids_on(topo.server(1)) == {1, 2}
        run(topo.primary(), [("INSERT INTO t.readings VALUES (3, 'after rejoin')", None)])
        sync_all(topo)
        assert 3 in ids_on(topo.server(1))
        assert cli.main(["show", "--dir", topo.dir]) == 0, capsys.readouterr()
        assert any("server 1 rejoined" in e for e in _events(topo))


def test_rejoin_refuses_an_old_primary_with_transactions_nobody_received(capsys):
    with topology(2) as topo:
        make_schema(topo)
        run(topo.server(2), [topo.flavour.stop_io_thread()])
        run(topo.primary(), [("INSERT INTO t.readings VALUES (9, 'never replicated')", None)])
        topo.primary().process.kill()
        ha.failover(topo)
        topo.server(1).process.start()
        assert cli.main(["rejoin", "--dir", topo.dir, "--server", "1"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("rpl: server 1 holds transactions the primary (server 2) does not have"), err
        assert 9 in ids_on(topo.server(1))  # nothing was thrown away
        assert topo.replica_status(topo.server(1)) is None
