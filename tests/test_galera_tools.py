"""`python -m tools.galera` beyond create/kill/rejoin: isolate and heal a node, and the arbitrator (garbd).

One cluster of two nodes and a garbd for the module, made by the command line as a user would (`create --garbd`),
driven by the command line, ended by its PIDs. What garbd is for, asserted both ways: kill -9 of one of two nodes
leaves the survivor Primary and writable when garbd votes (2 of 3), and non-Primary, answering 1047, when it does
not (1 of 2; a second, plain two-node cluster). Waits are on states, each bounded; no timing is asserted.
"""

import json
import os
import subprocess
import sys

import pymysql
import pytest

from tests.conftest import private_dir
from tools.demo.stack import ROOT, process_env, wait_for
from tools.dbserver import _pid_alive
from tools.galera.cluster import PROVIDER, Cluster
from tools.galera.garbd import GARBD

SUSPECT_TIMEOUT = 3.0      # a killed node leaves the component after about this
integration = pytest.mark.integration


def galera(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tools.galera"] + list(args), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=process_env())


def assert_clean_error(proc, *words):
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("galera: "), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


def wsrep(node):
    return node.wsrep() or {}


def sql(node, statement):
    conn = pymysql.connect(autocommit=True, **dict(node.admin_kwargs(), read_timeout=30))
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall()
    finally:
        conn.close()


def require_galera(garbd=False):
    from tests.conftest import require_server
    require_server()
    if not os.path.exists(PROVIDER):
        pytest.fail("galera-4 is not installed (make deps runs tools/ensure-galera.sh)")
    if garbd and not os.access(GARBD, os.X_OK):
        pytest.fail("galera-arbitrator-4 is not installed (make deps runs tools/ensure-galera.sh)")


@pytest.fixture(scope="module")
def cluster():
    """Two nodes and garbd, created by `python -m tools.galera create --garbd` (processes outlive the CLI)."""
    require_galera(garbd=True)
    with private_dir("galera-tools") as path:
        try:
            proc = galera("create", "--dir", path, "--nodes", "2", "--garbd", "--suspect-timeout",
                          str(SUSPECT_TIMEOUT))
            print(proc.stderr + proc.stdout)
            assert proc.returncode == 0, proc.stderr
            assert "garbd joined, cluster size 3" in proc.stderr
            yield Cluster.load(path)
        finally:
            if os.path.exists(os.path.join(path, "galera.json")):
                Cluster.load(path).close()       # by the PIDs in galera.json / each node's dbserver.json


def test_errors_are_one_line_without_a_traceback(tmp_path):
    for cmd in (["isolate", "--node", "1"], ["heal", "--node", "1"], ["show"], ["start"]):
        assert_clean_error(galera(cmd[0], "--dir", str(tmp_path), *cmd[1:], timeout=60), "no cluster in")


@integration
def test_show_lists_garbd_and_the_cluster_counts_it(cluster):
    proc = galera("show", "--dir", cluster.dir, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pid = cluster.garbd.pid
    assert pid is not None and _pid_alive(pid)
    with open(os.path.join(cluster.dir, "galera.json")) as f:
        assert json.load(f)["garbd"]["pid"] == pid
    lines = proc.stdout.splitlines()
    assert "garbd pid=%d gmcast=%d log=%s" % (pid, cluster.garbd.gmcast_port, cluster.garbd.log) in lines
    assert [ln for ln in lines if ln.startswith("node ")] and all(
        "state=Synced cluster=Primary size=3" in ln for ln in lines if ln.startswith("node "))
    shown = json.loads(galera("show", "--dir", cluster.dir, "--json", timeout=60).stdout)
    assert shown["garbd"] == {"pid": pid, "gmcast": cluster.garbd.gmcast_port, "running": True,
                              "log": cluster.garbd.log}
    assert [n["size"] for n in shown["nodes"]] == ["3", "3"]


@integration
def test_isolate_and_heal_a_node(cluster):
    n1, n2 = cluster.node(1), cluster.node(2)
    proc = galera("isolate", "--dir", cluster.dir, "--node", "2", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("node 2 isolated (gmcast.isolate=1): out of the primary component after ")
    assert wsrep(n2).get("wsrep_cluster_status") == "non-Primary"
    # Node 1 and garbd are 2 votes of 3: still Primary. `show` says not every node is Synced.
    wait_for(lambda: wsrep(n1).get("wsrep_cluster_size") == "2", 60, "node 1 to see a cluster of 2")
    assert wsrep(n1).get("wsrep_cluster_status") == "Primary"
    assert galera("show", "--dir", cluster.dir, timeout=60).returncode == 1
    with pytest.raises(pymysql.MySQLError) as e:
        sql(n2, "SELECT COUNT(*) FROM mysql.user")
    assert e.value.args[0] == 1047
    proc = galera("heal", "--dir", cluster.dir, "--node", "2", timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("node 2 healed (gmcast.isolate=0): Synced in the primary component after ")
    assert n2.synced() and "node 2 port=%d" % n2.port in proc.stdout
    wait_for(lambda: wsrep(n1).get("wsrep_cluster_size") == "3", 60, "node 1 to see a cluster of 3 again")


@integration
def test_stop_and_start_bring_garbd_back(cluster):
    old = cluster.garbd.pid
    proc = galera("stop", "--dir", cluster.dir, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert not _pid_alive(old) and not any(n.running for n in Cluster.load(cluster.dir).nodes)
    proc = galera("start", "--dir", cluster.dir, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "garbd joined, cluster size 3" in proc.stderr
    fresh = Cluster.load(cluster.dir)
    assert fresh.garbd.running and fresh.garbd.pid != old
    assert all(wsrep(n).get("wsrep_cluster_size") == "3" for n in fresh.nodes)
    cluster.__init__(cluster.dir, fresh.state)       # the module's object follows the new PIDs


def kill_one_of_two(cluster):
    """kill -9 node 1 after making a table; node 2's state once the view without node 1 is in place (or it left
    the primary component)."""
    n1, n2 = cluster.node(1), cluster.node(2)
    sql(n1, "CREATE DATABASE IF NOT EXISTS quorum")
    sql(n1, "CREATE TABLE IF NOT EXISTS quorum.w (id INT PRIMARY KEY) ENGINE=InnoDB")
    wait_for(lambda: sql(n2, "SHOW TABLES FROM quorum"), 30, "the table on node 2")
    before = wsrep(n2).get("wsrep_cluster_size")
    n1.kill()

    def view_changed():
        st = wsrep(n2)
        return st if st.get("wsrep_cluster_status") != "Primary" or st.get("wsrep_cluster_size") != before else None
    return wait_for(view_changed, 60, "node 2 to see node 1 gone")


@integration
def test_with_garbd_the_survivor_of_two_stays_primary_and_writable(cluster):
    st = kill_one_of_two(cluster)
    assert (st["wsrep_cluster_status"], st["wsrep_cluster_size"]) == ("Primary", "2")     # node 2 + garbd
    n2 = cluster.node(2)
    sql(n2, "INSERT INTO quorum.w VALUES (1)")
    assert sql(n2, "SELECT COUNT(*) FROM quorum.w")[0][0] == 1
    assert_clean_error(galera("isolate", "--dir", cluster.dir, "--node", "1", timeout=60), "node1 is not running")


@integration
def test_without_garbd_the_survivor_of_two_loses_quorum():
    require_galera()
    with private_dir("galera-nogarbd") as path:
        c = None
        try:
            c = Cluster.create(path, nodes=2, suspect_timeout=SUSPECT_TIMEOUT, progress=print)
            assert c.garbd is None and c.garbd_state() is None
            kill_one_of_two(c)
            n2 = c.node(2)
            wait_for(lambda: wsrep(n2).get("wsrep_cluster_status") == "non-Primary", 60, "node 2 non-Primary")
            with pytest.raises(pymysql.MySQLError) as e:
                sql(n2, "INSERT INTO quorum.w VALUES (1)")
            assert e.value.args[0] == 1047         # WSREP has not yet prepared node for application use
        finally:
            if c is not None:
                c.close()
