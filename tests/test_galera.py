"""The gateway on a MariaDB Galera cluster: three private nodes on loopback (tools/galera), real processes.

* a node cut off from the quorum (gmcast.isolate) answers 1047: the gateway's look-up skips it, a store that was
  connected there gets DatabaseUnavailable (and reconnects to a synced node), nothing is written there;
* the same readings sent through two nodes at once are stored once: a certification conflict (1213 at COMMIT)
  is a retry, and the retry counts the other writer's identical rows as committed;
* kill -9 of the node the gateway writes to while two virtual boards stream: the gateway moves to a synced node;
  afterwards every reading each board sampled is stored exactly once.

One cluster for the module (its start is the slow part); the kill runs last. Waits are on events, each bounded;
no timing is asserted (the kill -> first commit time is printed, for docs/GALERA.md).
"""

import dataclasses
import os
import threading
import time

import pymysql
import pytest

from gateway.db import Reading, ReadingStore
from gateway.dbconn import DatabaseUnavailable, DbConfig, classify
from gateway.primary import find_primary
from tests.conftest import private_dir
from tools.demo.stack import GATEWAY_USER, Stack, install_schema, wait_for
from tools.galera.cluster import PROVIDER, Cluster

pytestmark = pytest.mark.integration

PASSWORD = "pw-galera-test"
SUSPECT_TIMEOUT = 3.0      # evs.suspect_timeout: a killed node is dropped from the component after about this
FAST = {"interval_ms": 200, "status_interval_ms": 1000, "seed": 1}
BOARDS = ("site-a-1", "site-a-2")


@pytest.fixture(scope="module")
def cluster():
    from tests.conftest import require_server
    require_server()
    if not os.path.exists(PROVIDER):
        pytest.fail("galera-4 is not installed (make deps runs tools/ensure-galera.sh)")
    with private_dir("galera") as path:
        c = None
        try:
            c = Cluster.create(path, nodes=3, suspect_timeout=SUSPECT_TIMEOUT, progress=print)
            install_schema(c.nodes[0].admin_kwargs(), PASSWORD)
            yield c
        finally:
            if c is not None:
                c.close()


def node_cfg(cluster, *order, **kw):
    return DbConfig(user=GATEWAY_USER, password=PASSWORD, cluster="galera",
                    servers=tuple("127.0.0.1:%d" % cluster.node(i).port for i in order), **kw)


def sql(node, statement, args=()):
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **node.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()
    finally:
        conn.close()


def count(node, board):
    return sql(node, "SELECT COUNT(*) FROM plants WHERE board = %s", (board,))[0][0]


def reading(board, seq, raw=500):
    return Reading(board, "master", 1, seq, "2024-05-01 12:%02d:%02d" % (seq // 60 % 60, seq % 60), raw, "live",
                   "rtc")


def test_isolated_node_answers_1047_and_is_not_written(cluster):
    n3 = cluster.node(3)
    own = ReadingStore(node_cfg(cluster, 3, 1, 2))     # site 3's gateway: its own node first
    try:
        assert own.insert_batch([reading("iso", 1)]) == 1
        assert own.server_in_use()[1] == n3.port
        n3.isolate(True)
        wait_for(lambda: (n3.wsrep() or {}).get("wsrep_cluster_status") == "non-Primary", 60,
                 "node 3 to leave the primary component")
        # The node answers 1047; the gateway counts that as unavailable (drop the connection, look again).
        with pytest.raises(DatabaseUnavailable) as e:
            own.insert_batch([reading("iso", 2)])
        assert e.value.errno == 1047 or "1047" in str(e.value) or "primary component" in str(e.value)
        # The next round skips node 3 and writes to node 1, the next in the configured order.
        assert own.insert_batch([reading("iso", 2)]) == 1
        assert own.server_in_use()[1] == cluster.node(1).port
        state = own.cluster_state()
        by_port = {n["server"]: n for n in state["nodes"]}
        assert by_port["127.0.0.1:%d" % n3.port]["usable"] is False
        assert by_port["127.0.0.1:%d" % cluster.node(1).port]["in_use"] is True
        # A gateway that lists only the isolated node finds nothing to write to (its boards cache).
        with pytest.raises(DatabaseUnavailable, match="no synced Galera node"):
            find_primary(node_cfg(cluster, 3))
    finally:
        own.close()
        n3.isolate(False)
    n3.wait_synced()
    # Node 3 never stored seq 2 on its own: after healing it has exactly the cluster's one copy.
    wait_for(lambda: count(n3, "iso") == 2, 60, "node 3 to catch up")
    assert count(cluster.node(1), "iso") == 2


def test_same_reading_through_two_nodes_is_stored_once(cluster):
    cfg1, cfg2 = node_cfg(cluster, 1), node_cfg(cluster, 2)
    # A certification conflict, made deterministic: both nodes hold the same identity uncommitted; the second
    # COMMIT loses with 1213, which the gateway treats as a retry.
    c1, c2 = (pymysql.connect(**dataclasses.replace(cfg, servers=(), port=cluster.node(i).port).connect_kwargs())
              for i, cfg in ((1, cfg1), (2, cfg2)))
    insert = ("INSERT INTO plants (board, collector, boot, seq, date_saved, moisture_raw, source, received_at, "
              "time_quality) VALUES ('dup', 'master', 1, 1, '2024-05-01 12:00:01', 500, 'live', UTC_TIMESTAMP(3), "
              "'rtc')")
    try:
        c1.cursor().execute(insert)
        c2.cursor().execute(insert)
        c1.commit()
        with pytest.raises(pymysql.MySQLError) as e:
            c2.commit()
        err = classify(e.value)
        assert err.errno == 1213 and err.retryable
    finally:
        c1.close()
        c2.close()
    # The gateway's retry of that batch on node 2 finds the identical row: committed, nothing new.
    s2 = ReadingStore(cfg2)
    try:
        assert s2.insert_batch([reading("dup", 1)]) == 0
    finally:
        s2.close()

    # Two gateways racing through two nodes with overlapping batches, each retrying on 1213 as the writer does.
    stores = [ReadingStore(cfg1), ReadingStore(cfg2)]
    new = [0, 0]
    retries = [0, 0]
    failures = []

    def gateway(i, seqs):
        try:
            for start in range(seqs[0], seqs[1], 10):
                batch = [reading("race", q) for q in range(start, start + 10)]
                for _ in range(50):
                    try:
                        new[i] += stores[i].insert_batch(batch)
                        break
                    except DatabaseUnavailable:
                        retries[i] += 1
                        time.sleep(0.05)
                else:
                    failures.append("gateway %d: batch at %d never committed" % (i, start))
        except Exception as exc:          # reported below: a thread must not die silently
            failures.append(repr(exc))

    threads = [threading.Thread(target=gateway, args=(0, (1, 201))), threading.Thread(target=gateway,
                                                                                      args=(1, (1, 201)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a racing gateway did not finish"
    finally:
        for s in stores:
            s.close()
    assert not failures, failures
    print("race: new rows %s, retries %s" % (new, retries))
    assert sum(new) == 200
    for node in cluster.nodes:
        wait_for(lambda: count(node, "race") == 200, 60, "node %d to hold 200 race rows" % node.index)
        assert sql(node, "SELECT COUNT(*) FROM (SELECT seq FROM plants WHERE board = 'race' GROUP BY boot, seq "
                         "HAVING COUNT(*) > 1) d")[0][0] == 0


def drained(board):
    st = board.status()
    return st["pending"] == 0 and st["inflight"] == 0


def test_kill_the_gateways_node_nothing_lost_nothing_doubled(cluster, tmp_path):
    n1, n2 = cluster.node(1), cluster.node(2)
    s = Stack(str(tmp_path / "run"))
    try:
        s.gateway_password = PASSWORD
        s.db = n1
        s.db_servers = ["127.0.0.1:%d" % n.port for n in cluster.nodes]
        s.db_options = {"cluster": "galera"}
        boards = [s.start_board(b, **FAST) for b in BOARDS]
        s.start_gateway(wait_ms=300)
        wait_for(lambda: all(count(n1, b) >= 8 for b in BOARDS), 90, "8 readings per board on node 1")
        before = {b: count(n2, b) for b in BOARDS}
        n1.kill()                                   # SIGKILL the gateway's node: its commits in flight are lost
        killed_at = time.monotonic()
        s.db = n2
        wait_for(lambda: any(count(n2, b) > before[b] + 1 for b in BOARDS), 90, "a commit on node 2")
        print("kill -9 of the gateway's node -> commits on a survivor after %.1f s (evs.suspect_timeout %g s)"
              % (time.monotonic() - killed_at, SUSPECT_TIMEOUT))
        wait_for(lambda: all(count(n2, b) >= before[b] + 10 for b in BOARDS), 90, "10 more readings per board")
        for b in boards:
            b.stop()
        for b in boards:
            b.restart()        # a new boot: whatever the old one still cached is replayed
        wait_for(lambda: all(drained(b) for b in boards), 90, "boards to drain their caches")
        for b in BOARDS:
            rows = s.readings(b)
            ids = [(r[1], r[2]) for r in rows]
            assert len(ids) == len(set(ids)), "a reading was stored twice"
            by_boot = {}
            for boot, seq in ids:
                by_boot.setdefault(boot, set()).add(seq)
            for boot, seqs in by_boot.items():
                missing = set(range(1, max(seqs) + 1)) - seqs
                assert not missing, "%s boot %d is missing seq %s" % (b, boot, sorted(missing)[:10])
        # The status snapshot shows the cluster: node 2 in use, node 1 down.
        def cluster_in_status():
            c = (s.gateway.status() or {}).get("database_cluster") or {}
            nodes = {n["server"]: n for n in c.get("nodes", [])}
            me = nodes.get("127.0.0.1:%d" % n2.port) or {}
            return me.get("in_use") and me.get("usable") and nodes["127.0.0.1:%d" % n1.port]["usable"] is False
        wait_for(cluster_in_status, 60, "the status snapshot to show node 2 in use and node 1 down")
        log = s.gateway.log_text()
        assert "now writing to Galera node 127.0.0.1:%d" % n2.port in log
    finally:
        s.db = None            # the cluster fixture ends the nodes (by their PIDs)
        s.close()
        if s.gateway is not None:
            print("--- gateway log ---\n" + s.gateway.log_text()[-4000:])


def test_config_cluster_setting(tmp_path):
    from gateway.config import ConfigError, load
    good = tmp_path / "g.toml"
    good.write_text('[database]\nservers = ["10.0.0.1:3306", "10.0.0.2:3306"]\ncluster = "galera"\n')
    assert load(str(good), environ={}).database.cluster == "galera"
    bad = tmp_path / "b.toml"
    bad.write_text('[database]\nservers = ["10.0.0.1:3306"]\ncluster = "galaxy"\n')
    with pytest.raises(ConfigError, match="cluster must be"):
        load(str(bad), environ={})
