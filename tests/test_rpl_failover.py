"""Switchover, failover after kill -9, errant transactions, the automatic monitor and the semi-sync fallback
alert (F15), each on its own real 3-server topology. Writers use an account without SUPER, as the gateway does."""

import threading
import time

import pytest

from tests.rpl_helpers import Writer, ids_on, make_schema, sync_all, topology, wait_until
from tools.rpl import Monitor, cli, ha
from tools.rpl.topology import RplError, Topology, run


def test_switchover_under_load_loses_nothing():
    with topology(3) as topo:
        password = make_schema(topo)
        writer = Writer(lambda: topo.primary(), password)
        writer.start()
        try:
            writer.wait_for(50)
            new = ha.switchover(topo, 2)
            assert new.server_id == 2 and Topology.load(topo.dir).primary().server_id == 2
            writer.wait_for(50)  # the writer found the new primary and commits there
        finally:
            writer.stop()
        committed = set(writer.committed)
        assert ids_on(new) >= committed
        sync_all(topo)
        health = {h["server_id"]: h for h in topo.health()}
        for sid in (1, 3):  # the old primary follows the new one, read-only
            assert health[sid]["io_running"] and health[sid]["sql_running"] and health[sid]["read_only"], health[sid]
            assert health[sid]["source"] == "127.0.0.1:%d" % new.port
            assert ids_on(topo.server(sid)) >= committed
        assert health[2]["read_only"] is False


def test_kill9_failover_promotes_most_advanced_and_keeps_every_commit():
    with topology(3) as topo:
        password = make_schema(topo)
        ha.semisync_enable(topo, timeout_ms=30000)  # a commit is acknowledged only once a replica has it
        wait_until(lambda: ha.semisync_status(topo)["clients"] == 2, 10, "two semi-sync replicas")
        current = {"server": topo.primary()}
        writer = Writer(lambda: current["server"], password)
        writer.start()
        try:
            writer.wait_for(100)
            topo.primary().process.kill()
            states, said = {}, []
            new = ha.failover(topo, log=said.append)
            current["server"] = new
            # The surviving replica acknowledges the new primary: else each commit waits out the 30 s timeout.
            assert "semi-sync: 1 replica(s) acknowledge server %d" % new.server_id in said, said
            for s in topo.replicas():
                if s.running:
                    states[s.server_id] = topo.gtid_state(s)["executed"]
            assert all(topo.gtid_state(new)["executed"].covers(ex) for ex in states.values())
            before = set(writer.committed)
            assert ids_on(new) >= before, "committed transactions missing on the new primary"
            writer.wait_for(20)
        finally:
            writer.stop()
        assert new.server_id in (2, 3) and topo.state["primary"] == new.server_id
        other = topo.server(5 - new.server_id)
        sync_all(topo)
        assert ids_on(other) >= set(writer.committed) and ids_on(new) >= set(writer.committed)
        st = topo.replica_status(other)
        assert st["io_running"] and st["source_port"] == new.port


def test_errant_transaction_detected_refused_and_skipped(capsys):
    with topology(3) as topo:
        make_schema(topo)
        run(topo.primary(), [("INSERT INTO t.readings VALUES (1, 'p')", None)])
        sync_all(topo)
        # Someone with SUPER writes on replica 3 (read_only does not stop root on MariaDB).
        run(topo.server(3), [("INSERT INTO t.readings VALUES (1000, 'oops')", None)])
        errant = ha.errant_transactions(topo)
        assert errant[2] == [] and len(errant[3]) == 1
        gtid = errant[3][0]
        assert cli.main(["errant", "--dir", topo.dir]) == 1
        assert "server 3: %s" % gtid in capsys.readouterr().out
        with pytest.raises(RplError, match="errant"):
            ha.switchover(topo, 3)
        # The empty-transaction skip: everyone now agrees the GTID exists; no data moved.
        assert cli.main(["skip-errant", "--dir", topo.dir, gtid]) == 0
        assert ha.errant_transactions(topo) == {2: [], 3: []}
        assert 1000 not in ids_on(topo.primary())
        run(topo.primary(), [("INSERT INTO t.readings VALUES (2, 'p')", None)])
        sync_all(topo)  # replica 3 did not stop on the next primary transaction
        assert all(h["error"] is None for h in topo.health())
        # A second errant transaction, on replica 2 this time; then the primary dies.
        run(topo.server(2), [("INSERT INTO t.readings VALUES (2000, 'oops')", None)])
        topo.primary().process.kill()
        with pytest.raises(RplError, match="errant"):
            ha.failover(topo, candidate=2)
        assert Topology.load(topo.dir).primary().server_id == 1  # nothing promoted
        messages = []
        new = ha.failover(topo, log=messages.append)
        assert new.server_id == 3
        assert any("refusing server 2" in m for m in messages), messages
        assert {1, 2} <= ids_on(new)


def test_monitor_promotes_after_kill9(record_property):
    with topology(3) as topo:
        password = make_schema(topo)
        promoted, lines = [], []
        stop = threading.Event()
        monitor = Monitor(Topology.load(topo.dir), on_promote=promoted.append, interval=1.0, log=lines.append)
        thread = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: lines, 5, "the monitor to start")
            time.sleep(0.3)
            killed_at = time.time()
            topo.primary().process.kill()
            wait_until(lambda: promoted, 30, "the monitor to promote a replica", 0.05)
            elapsed = monitor.promotions[0]["promoted_at"] - killed_at
        finally:
            stop.set()
            thread.join(10)
        record_property("promotion_after_kill9_s", round(elapsed, 2))
        print("promotion %.2f s after kill -9" % elapsed)
        new = promoted[0]
        assert new.server_id in (2, 3) and Topology.load(topo.dir).primary().server_id == new.server_id
        assert any("confirmed dead" in line for line in lines), lines
        # The new primary takes the application's writes and the other replica follows it.
        import pymysql
        conn = pymysql.connect(**new.tcp_kwargs("soil_app", password))
        with conn.cursor() as cur:
            cur.execute("INSERT INTO t.readings VALUES (7, 'after')")
        conn.commit()
        conn.close()
        topo.reload()
        sync_all(topo)
        assert 7 in ids_on(topo.server(5 - new.server_id))


def test_monitor_does_not_fail_over_while_replicas_still_see_the_primary():
    with topology(2) as topo:
        lines = []
        monitor = Monitor(topo, log=lines.append, confirm_window=1.0)
        monitor.ping = lambda server: False  # only the monitor is cut off from the primary
        assert monitor.step() is None
        assert topo.primary().server_id == 1 and any("still reach it" in line for line in lines), lines


def test_f15_semisync_fallback_is_detected(capsys):
    with topology(3) as topo:
        make_schema(topo)
        ha.semisync_enable(topo, timeout_ms=300)
        wait_until(lambda: ha.semisync_status(topo)["clients"] == 2, 10, "two semi-sync replicas")
        run(topo.primary(), [("INSERT INTO t.readings VALUES (1, 'acked')", None)])
        ok, message = ha.semisync_check(topo)
        assert ok, message
        assert ha.semisync_status(topo)["yes_tx"] >= 1
        for s in topo.replicas():
            run(s, [topo.flavour.stop_io_thread()])
        run(topo.primary(), [("INSERT INTO t.readings VALUES (2, 'not acked')", None)])  # waits 300 ms, commits
        wait_until(lambda: not ha.semisync_check(topo)[0], 10, "the fallback to be reported")
        ok, message = ha.semisync_check(topo)
        assert "ASYNCHRONOUS" in message and "ALERT" in message
        assert ha.semisync_status(topo)["no_tx"] >= 1
        assert cli.main(["semisync", "check", "--dir", topo.dir]) == 1
        assert "ALERT" in capsys.readouterr().out
        lines = []
        Monitor(topo, log=lines.append).step()
        assert any("ASYNCHRONOUS" in line for line in lines), lines
