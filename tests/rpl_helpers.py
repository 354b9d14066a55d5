"""Shared helpers for the replication tests (tools.rpl): topologies on short private paths, an application
account, and a writer thread that records which transactions were acknowledged as committed."""

import contextlib
import secrets
import shutil
import tempfile
import threading
import time

import pymysql
import pytest

from tools.dbserver import ServerError, find_server
from tools.rpl.topology import Topology, run
from tools.demo.stack import wait_for

APP_USER = "soil_app"


def require_server():
    try:
        find_server()
    except ServerError as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def topology(servers=3):
    """A fresh topology in a short /tmp folder (Unix socket paths stay far below 108 bytes; outside pytest's
    rotating basetemp, see conftest.private_dir). Every server is SIGKILLed and the folder removed afterwards."""
    require_server()
    path = tempfile.mkdtemp(prefix="rpl-")
    topo = None
    try:
        topo = Topology.create(path, servers=servers)
        yield topo
    finally:
        if topo is not None:
            topo.reload()
            topo.stop(kill=True)
        shutil.rmtree(path, ignore_errors=True)


def wait_until(predicate, timeout, what, interval=0.05):
    """tools.demo.stack.wait_for, failing the test as an assertion rather than an error."""
    try:
        return wait_for(predicate, timeout, what, interval)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


def make_schema(topo):
    """t.readings on the primary and an application account without SUPER/READ_ONLY ADMIN, so read_only stops
    it the way it stops the gateway. Returns the account's password."""
    password = secrets.token_hex(12)
    run(topo.primary(), [
        ("CREATE DATABASE t", None),
        ("CREATE TABLE t.readings (id INT PRIMARY KEY, writer VARCHAR(16) NOT NULL) ENGINE=InnoDB", None),
        ("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (APP_USER, password)),
        ("GRANT SELECT, INSERT ON t.* TO %s@'127.0.0.1'", (APP_USER,)),
    ])
    sync_all(topo)
    return password


def sync_all(topo, timeout=20):
    position = topo.gtid_state(topo.primary())["position"]
    for s in topo.replicas():
        if s.running:
            assert topo.wait_applied(s, position, timeout), "server %d did not apply %s" % (s.server_id, position)


def ids_on(server):
    return {r["id"] for r in run(server, [("SELECT id FROM t.readings", None)])}


class Writer(threading.Thread):
    """Inserts rows one transaction each into whatever `target()` says is the primary; `committed` holds the ids
    whose COMMIT returned OK (the only ones the product promises to keep)."""

    def __init__(self, target, password, start_id=1):
        super().__init__(daemon=True)
        self.target, self.password = target, password
        self.next_id = start_id
        self.committed, self.failed = [], 0
        self.stop_event = threading.Event()

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = pymysql.connect(**self.target().tcp_kwargs(APP_USER, self.password, timeout=1),
                                           read_timeout=5, write_timeout=5)
                i = self.next_id
                self.next_id += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO t.readings (id, writer) VALUES (%s, %s)", (i, "w"))
                conn.commit()
                self.committed.append(i)
            except pymysql.err.MySQLError:
                self.failed += 1
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                time.sleep(0.02)
        if conn is not None:
            conn.close()

    def wait_for(self, count, timeout=20):
        target = len(self.committed) + count
        wait_until(lambda: len(self.committed) >= target, timeout, "%d more commits" % count, 0.01)

    def stop(self):
        self.stop_event.set()
        self.join(10)
