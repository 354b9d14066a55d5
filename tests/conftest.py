"""Shared fixtures. Database tests run against a real private server (tools.dbserver), never port 3306.

`dbserver` (session): one migrated MariaDB/MySQL with a least-privilege gateway account whose password is
generated at run time. It has `.gateway_cfg` (a gateway.dbconn.DbConfig over TCP), `.admin_kwargs()` (root over the
socket) and everything of tools.dbserver.PrivateServer (port, socket, kill(), restart()...).
`clean_db` (function): the same server with every table of plant_moisture emptied first.
"""

import contextlib
import os
import secrets
import shutil
import tempfile

import pymysql
import pytest

from gateway import schema
from gateway.dbconn import DbConfig
from tools.dbserver import PrivateServer, ServerError, find_server

GATEWAY_USER = "soil_gateway"
PLANT_TABLES = ("plants", "boards", "board_events", "collector_events", "alerts", "calibrations", "hourly",
                "mqtt_watermark")


def require_server():
    """Skip where no server binary is installed and pytest runs by hand; `make test` installs one first, so under
    `make test` or CI (CI=true) a missing server fails instead of silently skipping the database tests."""
    try:
        find_server()
    except ServerError as exc:
        if os.environ.get("CI") or os.environ.get("SOIL_REQUIRE_SERVER"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@contextlib.contextmanager
def private_dir(name):
    """A folder for a server's data outside pytest's basetemp.

    pytest keeps only the newest three /tmp/pytest-of-<user>/pytest-N folders and deletes older ones when a run
    starts, so another engineer's (or CI job's) pytest run would delete a live server's data directory under us.
    """
    path = tempfile.mkdtemp(prefix="soil-%s-" % name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server_dir(request):
    with private_dir(request.node.name[:40]) as path:
        yield path


@pytest.fixture(scope="session")
def dbserver():
    require_server()
    with private_dir("dbserver") as path:
        srv = PrivateServer(path)
        srv.start()
        try:
            conn = pymysql.connect(**srv.admin_kwargs())
            try:
                schema.migrate(conn)
                srv.gateway_user = GATEWAY_USER
                srv.gateway_password = secrets.token_hex(16)
                schema.provision_gateway_account(conn, srv.gateway_user, srv.gateway_password)
            finally:
                conn.close()
            srv.gateway_cfg = DbConfig(host="127.0.0.1", port=srv.port, user=srv.gateway_user,
                                       password=srv.gateway_password, connect_timeout=5, read_timeout=30,
                                       write_timeout=30)
            yield srv
        finally:
            srv.stop()


@pytest.fixture
def clean_db(dbserver):
    # A test that crashed the shared server on purpose and failed before restarting it must not take the rest
    # of the session down with it.
    if not dbserver.running:
        dbserver.start()
    conn = pymysql.connect(**dbserver.admin_kwargs())
    try:
        with conn.cursor() as cur:
            for table in PLANT_TABLES:
                cur.execute("TRUNCATE TABLE plant_moisture.`%s`" % table)
            # The aggregates' watermark is one row (migration 10): back to "nothing aggregated yet".
            cur.execute("UPDATE plant_moisture.hourly_state SET received_through = NULL, id_through = 0, "
                        "updated_at = NULL")
        conn.commit()
    finally:
        conn.close()
    return dbserver


@pytest.fixture
def stack():
    """A whole installation for one test (tools.demo.stack): a private database server, migrated, with the gateway's
    account; the test starts boards and the gateway. Everything is stopped afterwards, and the logs are printed
    so a failure shows what the processes said."""
    from tools.demo.stack import Stack
    require_server()
    with private_dir("stack") as path:
        s = Stack(os.path.join(path, "run"))
        s.start_db()
        try:
            yield s
        finally:
            s.close()
            if s.gateway is not None:
                print("--- gateway log ---\n" + s.gateway.log_text()[-6000:])
            for b in s.boards:
                print("--- %s log ---\n%s" % (b.board_id, b.log_tail(30)))
