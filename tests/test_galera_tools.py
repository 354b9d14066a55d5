"""`python -m tools.galera` beyond create/kill/rejoin: isolate and heal a node, and the arbitrator (garbd); and the
cluster as the dashboard and `soil-gateway status` show it.

One cluster of two nodes and a garbd for the module, made by the command line as a user would (`create --garbd`),
driven by the command line, ended by its PIDs. What garbd is for, asserted both ways: kill -9 of one of two nodes
leaves the survivor Primary and writable when garbd votes (2 of 3), and non-Primary, answering 1047, when it does
not (1 of 2; a second, plain two-node cluster). The dashboard's Cluster panel is checked in a real browser against
a gateway on the module's cluster (one node isolated: the gateway moves, the panel says so), and its data and the
status text at unit level from the look-up round's own records (gateway/primary.py ServerRole). Waits are on
states, each bounded; no timing is asserted.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pymysql
import pytest

from gateway import galera as gw_galera
from gateway.dbconn import DbConfig
from gateway.primary import ServerRole
from gateway.web import report
from gateway.web.state import database_view
from tests.conftest import private_dir
from tools.browser import chromium
from tools.demo.stack import ROOT, Stack, install_schema, process_env, wait_for
from tools.dbserver import _pid_alive
from tools.galera.cluster import PROVIDER, Cluster
from tools.galera.garbd import GARBD

SUSPECT_TIMEOUT = 3.0      # a killed node leaves the component after about this
PASSWORD = "pw-galera-tools"
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


# -- the cluster on the dashboard and in `soil-gateway status` ----------------------------------------------------
SERVERS = ("10.0.1.10:3306", "10.0.2.10:3306", "10.0.3.10:3306")


class Writer:
    """gateway.service's DatabaseWriter.database_state() and nothing else; its "cluster" is what the store's
    ClusterView (gateway/galera.py) makes of a look-up round."""

    def __init__(self, cluster, server):
        self.cluster, self.server = cluster, server

    def database_state(self):
        return {"ok": True, "last_error": None, "server": self.server,
                "semisync": {"policy": "off", "degraded": None, "reduced_acks": 0}, "committed_rows": 42,
                "batches": 7, "queued": 0, "cluster": self.cluster}


def a_round():
    """What gateway/primary.py's probe records for three nodes: one synced, one cut off the quorum (it answered
    1047: galera.not_ready_state()), one down; read_state()'s shape for the synced one."""
    cfg = DbConfig(user="soil_gateway", cluster="galera", servers=SERVERS)
    node = [dataclasses.replace(cfg, servers=(), host=h, port=int(p)) for h, p in (s.split(":") for s in SERVERS)]
    synced = {"ready": "ON", "state": "Synced", "status": "Primary", "size": 2}
    roles = [ServerRole(node[0], False, None, None, "(2003, \"Can't connect to MySQL server\")"),
             ServerRole(node[1], True, False, None, None, synced),
             ServerRole(node[2], True, None, None, "(1047, 'WSREP has not yet prepared node')",
                        gw_galera.not_ready_state())]
    view = gw_galera.ClusterView()
    view.record(roles)
    return cfg, view.state(("10.0.2.10", 3306))


def test_database_view_and_status_text_of_a_cluster():
    cfg, cluster = a_round()
    db = database_view(Writer(cluster, ("10.0.2.10", 3306)), cfg)
    c = db["cluster"]
    assert c["kind"] == "galera" and c["nodes_usable"] == 1 and c["checked"].endswith("Z")
    assert [(n["server"], n["in_use"], n["usable"], n["state"], n["status"], n["size"]) for n in c["nodes"]] == [
        ("10.0.1.10:3306", False, False, None, None, None),
        ("10.0.2.10:3306", True, True, "Synced", "Primary", 2),
        ("10.0.3.10:3306", False, False, None, "non-Primary", None)]
    assert not any("replica lag" in u for u in db["unknown"])        # no replicas on Galera
    assert any("how the nodes changed since" in u for u in db["unknown"])
    lines = report.database_lines(db)
    assert lines[0] == ("database: taking writes on 10.0.2.10:3306; Galera: a commit is certified by the cluster; "
                        "42 readings committed in 7 transactions")
    assert lines[1] == "  Galera cluster: 1 of 3 nodes usable (as of %s)" % c["checked"]
    assert lines[2:5] == [
        "  node 10.0.1.10:3306 NOT usable down ((2003, \"Can't connect to MySQL server\"))",
        "  node 10.0.2.10:3306 in use     Synced, Primary, size 2",
        "  node 10.0.3.10:3306 NOT usable not ready, non-Primary, wsrep_ready=OFF"]
    assert lines[5].startswith("  not known: how the nodes changed since")


def test_a_plain_server_has_no_cluster_panel_data():
    cfg = DbConfig(user="soil_gateway", servers=SERVERS[:2])
    w = Writer(None, ("10.0.1.10", 3306))
    db = database_view(w, cfg)
    assert db["cluster"] is None and db["servers"][0]["role"] == "primary, in use"
    assert report.database_lines(db)[1] == "  server 10.0.1.10:3306: primary, in use"


@integration
def test_the_dashboard_shows_the_cluster(cluster):
    """A gateway writing to node 1 of the module's cluster; the page's Cluster panel lists both nodes, node 1 in
    use. Node 1 cut off: the gateway moves to node 2, the panel and `soil-gateway status` say so."""
    why = chromium.missing()
    if why:
        pytest.skip(why)
    n1, n2 = cluster.node(1), cluster.node(2)
    install_schema(n1.admin_kwargs(), PASSWORD)
    with private_dir("galera-dash") as path:
        s = Stack(os.path.join(path, "run"))
        page = None
        try:
            s.gateway_password = PASSWORD
            s.db = n1
            s.db_servers = ["127.0.0.1:%d" % n.port for n in cluster.nodes]
            s.db_options = {"cluster": "galera"}
            s.start_board("site-1", interval_ms=300, status_interval_ms=1000, seed=5)
            gw = s.start_gateway(dashboard={"port": 0})
            url = gw.dashboard_url()
            page = chromium.Browser()
            page.open(url)
            rows = "[...document.querySelectorAll('#cluster tbody tr.node')]"
            row = "document.querySelector('#cluster tr[data-server=\"127.0.0.1:%d\"]')"
            page.wait("!document.querySelector('#cluster-section').hidden && %s.length === 2" % rows, timeout_s=60)
            page.wait("%s.dataset.inUse === 'true'" % (row % n1.port), timeout_s=60)
            text = page.eval("%s.textContent" % (row % n1.port))
            assert text == "127.0.0.1:%din useSyncedPrimary3yes" % n1.port, text
            assert page.eval("%s.dataset.inUse" % (row % n2.port)) == "false"
            assert page.eval("document.querySelector('#cluster-note').textContent").startswith(
                "(Galera: 2 of 2 nodes usable, as of ")
            assert "Galera: a commit is certified by the cluster" in page.eval(
                "document.querySelector('#database').textContent")

            cluster.isolate(1)         # the gateway's node leaves the primary component: its next commit gets 1047
            try:
                page.wait("%s.dataset.inUse === 'true' && %s.dataset.usable === 'false'" % (
                    row % n2.port, row % n1.port), timeout_s=90)
                text = page.eval("%s.textContent" % (row % n1.port))
                assert "non-Primary" in text and text.endswith("no"), text
                proc = subprocess.run([sys.executable, "-m", "gateway", "status", "--url", url], cwd=ROOT,
                                      env=process_env(), capture_output=True, text=True, timeout=60)
                assert proc.returncode == 0, proc.stderr
                print(proc.stdout)
                out = proc.stdout.splitlines()
                assert "  node 127.0.0.1:%d in use     Synced, Primary, size 2" % n2.port in out, out
                assert [ln for ln in out if ln.startswith("  node 127.0.0.1:%d NOT usable " % n1.port)
                        and "non-Primary" in ln], out
            finally:
                cluster.heal(1)
            errors = page.command("errors")["value"]
            assert not [e for e in errors if "503" not in e and "Failed to load resource" not in e], errors
        finally:
            if page is not None:
                page.close()
            s.db = None          # the module's cluster ends the nodes (by their PIDs)
            s.close()
            if s.gateway is not None:
                print("--- gateway log ---\n" + s.gateway.log_text()[-3000:])


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
