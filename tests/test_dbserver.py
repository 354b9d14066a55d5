"""tools.dbserver: a private server starts on its own port and socket, stops cleanly, survives SIGKILL.

Each test starts its own server in a temporary folder (about a second each); none uses port 3306.
"""

import json
import os
import subprocess
import sys

import pymysql
import pytest

from tests.conftest import require_server
from tools.dbserver import PrivateServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def server(server_dir):
    require_server()
    srv = PrivateServer(os.path.join(server_dir, "db"), server_id=7)
    try:
        yield srv
    finally:
        srv.stop()


def _query(srv, sql, args=None):
    conn = pymysql.connect(autocommit=True, **srv.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def test_start_uses_its_own_port_socket_and_datadir(server):
    server.start()
    assert server.running
    assert server.port != 3306
    (port, sock, datadir, server_id, bind), = _query(server, "SELECT @@port, @@socket, @@datadir, @@server_id, "
                                                             "@@bind_address")
    assert (port, sock, server_id, bind) == (server.port, server.socket, 7, "127.0.0.1")
    assert os.path.realpath(datadir) == os.path.realpath(server.datadir)
    with open(server.pid_file) as f:
        assert int(f.read().strip()) == server.pid


def test_stop_then_restart_keeps_port_and_data(server):
    server.start()
    port = server.port
    _query(server, "CREATE DATABASE keep")
    _query(server, "CREATE TABLE keep.t (v INT) ENGINE=InnoDB")
    _query(server, "INSERT INTO keep.t VALUES (42)")
    pid = server.pid
    server.stop()
    assert not server.running
    assert server.pid is None
    assert not os.path.exists("/proc/%d" % pid) or b"mariadbd" not in open("/proc/%d/cmdline" % pid, "rb").read()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(connect_timeout=2, **{k: v for k, v in server.admin_kwargs().items()
                                              if k != "connect_timeout"})
    server.start()  # an initialised data dir is not initialised again
    assert server.port == port
    assert _query(server, "SELECT v FROM keep.t") == ((42,),)


def test_kill_is_a_crash_and_restart_recovers_committed_rows(server):
    server.start()
    _query(server, "CREATE DATABASE crash")
    _query(server, "CREATE TABLE crash.t (v INT) ENGINE=InnoDB")
    conn = pymysql.connect(**server.admin_kwargs())
    with conn.cursor() as cur:
        cur.execute("INSERT INTO crash.t VALUES (1)")
        conn.commit()
        cur.execute("INSERT INTO crash.t VALUES (2)")  # never committed
    port = server.port
    server.kill()
    assert not server.running
    with pytest.raises(pymysql.err.OperationalError):
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    conn.close()
    server.restart()
    assert server.port == port
    assert _query(server, "SELECT v FROM crash.t") == ((1,),)


def test_extra_options_reach_the_server(server, server_dir):
    srv = PrivateServer(os.path.join(server_dir, "binlog"), server_id=3, extra_options=("--log-bin=binlog",
                                                                               "--binlog-format=ROW"))
    try:
        srv.start()
        assert _query(srv, "SELECT @@log_bin, @@binlog_format, @@server_id") == ((1, "ROW", 3),)
    finally:
        srv.stop()


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "tools.dbserver"] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=90)


def test_cli_start_status_stop(server_dir):
    require_server()
    d = os.path.join(server_dir, "clidb")
    done = _cli("start", "--dir", d)
    assert done.returncode == 0, done.stderr
    fields = dict(item.split("=", 1) for item in done.stdout.split())
    port, pid = int(fields["port"]), int(fields["pid"])
    try:
        assert port != 3306
        status = _cli("status", "--dir", d)
        assert status.returncode == 0
        state = json.loads(status.stdout)
        assert state["running"] and state["port"] == port and state["pid"] == pid
        again = _cli("start", "--dir", d)
        assert again.returncode == 1 and again.stderr.startswith("dbserver: ")
    finally:
        stop = _cli("stop", "--dir", d)
    assert stop.returncode == 0, stop.stderr
    status = _cli("status", "--dir", d)
    assert status.returncode == 3 and json.loads(status.stdout)["running"] is False


def test_cli_error_is_one_line_on_stderr(tmp_path):
    require_server()
    d = tmp_path / "junk"
    (d / "data").mkdir(parents=True)
    (d / "data" / "something").write_text("not a database")
    done = _cli("start", "--dir", str(d))
    assert done.returncode == 1
    assert done.stderr.startswith("dbserver: ") and "data" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_stop_keeps_the_recorded_server_id_and_options(server_dir):
    """`stop --dir` of a replica (server 2) once rewrote its dbserver.json with "server_id": 1."""
    require_server()
    d = os.path.join(server_dir, "replica2")
    done = _cli("start", "--dir", d, "--server-id", "2", "--option=--log-bin=binlog")
    assert done.returncode == 0, done.stderr
    try:
        stop = _cli("stop", "--dir", d)
        assert stop.returncode == 0, stop.stderr
        with open(os.path.join(d, "dbserver.json")) as f:
            state = json.load(f)
        assert state["server_id"] == 2 and state["extra_options"] == ["--log-bin=binlog"], state
        again = _cli("start", "--dir", d)  # no --server-id: the recorded one
        assert again.returncode == 0, again.stderr
        srv = PrivateServer(d)
        assert _query(srv, "SELECT @@server_id, @@log_bin") == ((2, 1),)
    finally:
        _cli("stop", "--dir", d)
