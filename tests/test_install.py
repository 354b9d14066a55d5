"""Issue 11, sections 2-4: the install and the admin commands as a person meets them.

`stock` is a private MariaDB set up the way Debian's package leaves it: root logs in only over the socket, as the
system's root (unix_socket authentication); no root account for TCP (so TCP gets error 1130, as on servers with
skip-name-resolve; 1698 where names are resolved); and a server time zone
(+01:00, Europe/Berlin in winter) that is not the machine's, so a time-zone slip shows.
"""

import os
import re
import secrets
import shutil
import subprocess
import sys

import pymysql
import pytest

from gateway import schema
from tests.conftest import private_dir, require_server
from tests.test_gateway_cli import assert_clean_error, run_cli
from tools.dbserver import PrivateServer
from tools.demo.stack import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SERVER_TZ = "+01:00"
BOOK_CREATE = ("CREATE TABLE `{db}`.`plants` (`id` int(11) NOT NULL AUTO_INCREMENT, `moisture_raw` int(11) "
               "DEFAULT NULL, `date_saved` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, "
               "PRIMARY KEY (`id`)) ENGINE=InnoDB DEFAULT CHARSET=latin1")
BOOK_INSERT_TIME = "INSERT INTO `{db}`.plants VALUES (NULL, 456, '2015-11-27 15:09:08')"


def _stock_root_only_by_socket(srv):
    conn = pymysql.connect(**srv.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT user, host FROM mysql.user WHERE user = 'root' AND host <> 'localhost'")
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            cur.execute("ALTER USER root@localhost IDENTIFIED VIA unix_socket")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stock():
    require_server()
    if os.geteuid() != 0:
        pytest.skip("root over unix_socket (a stock MariaDB's root) needs these tests to run as the system's root")
    with private_dir("stockdb") as path:
        srv = PrivateServer(path, extra_options=("--default-time-zone=" + SERVER_TZ,))
        srv.start()
        try:
            _stock_root_only_by_socket(srv)
            yield srv
        finally:
            srv.stop()


def admin(srv):
    return pymysql.connect(**srv.admin_kwargs())


def sql(srv, *statements):
    conn = admin(srv)
    try:
        with conn.cursor() as cur:
            out = None
            for s in statements:
                cur.execute(s)
                out = cur.fetchall()
        conn.commit()
        return out
    finally:
        conn.close()


def databases(srv):
    return {r[0] for r in sql(srv, "SHOW DATABASES")}


def config(tmp_path, port, database, user="soil_gateway", extra=""):
    path = tmp_path / "gateway.toml"
    path.write_text('[database]\nhost = "127.0.0.1"\nport = %d\nuser = "%s"\ndatabase = "%s"\n%s'
                    % (port, user, database, extra))
    return str(path)


# -- section 2: one line, exit 1, never a traceback ----------------------------------------------------------------
def test_config_path_that_is_a_folder_is_one_line(tmp_path):
    proc = run_cli("check", "-c", str(tmp_path))
    assert_clean_error(proc, str(tmp_path), "is a folder")


def test_config_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[database]\nuser = "jardinière"\n'.encode("latin-1"))
    proc = run_cli("check", "-c", str(path))
    assert_clean_error(proc, str(path), "not UTF-8")


def test_migrate_with_an_admin_that_lacks_privileges_is_one_line(stock, tmp_path):
    password = secrets.token_hex(8)
    sql(stock, "DROP USER IF EXISTS weak@localhost", "CREATE USER weak@localhost IDENTIFIED BY '%s'" % password)
    cfg = config(tmp_path, stock.port, "weak_garden")
    proc = run_cli("migrate", "-c", cfg, "--admin-user", "weak", "--admin-socket", stock.socket,
                   env_extra={"SOIL_DB_ADMIN_PASSWORD": password})
    assert_clean_error(proc, "error 1044", "administrative account", "--admin-socket")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_migrate_over_an_unrelated_plants_table_is_one_line(stock, tmp_path):
    sql(stock, "DROP DATABASE IF EXISTS plant_moisture", "CREATE DATABASE plant_moisture",
        "CREATE TABLE plant_moisture.plants (name VARCHAR(10))", "INSERT INTO plant_moisture.plants VALUES ('fern')")
    cfg = config(tmp_path, stock.port, "plant_moisture")
    proc = run_cli("migrate", "-c", cfg, "--admin-socket", stock.socket)
    assert_clean_error(proc, "not the book's table", "left untouched")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sql(stock, "SELECT * FROM plant_moisture.plants") == (("fern",),)


def test_provision_without_the_gateway_password_changes_nothing(stock, tmp_path):
    sql(stock, "DROP DATABASE IF EXISTS nopw_garden")
    cfg = config(tmp_path, stock.port, "nopw_garden")
    proc = run_cli("migrate", "-c", cfg, "--admin-socket", stock.socket, "--provision")
    assert_clean_error(proc, "SOIL_DB_PASSWORD", "nothing was changed")
    assert "nopw_garden" not in databases(stock)


def _provisioned(stock, tmp_path, database, extra=""):
    """Migrate and provision `database` through the CLI; return (config path, gateway password)."""
    sql(stock, "DROP DATABASE IF EXISTS `%s`" % database)
    password = secrets.token_hex(12)
    cfg = config(tmp_path, stock.port, database, extra=extra)
    proc = run_cli("migrate", "-c", cfg, "--admin-socket", stock.socket, "--provision",
                   env_extra={"SOIL_DB_PASSWORD": password})
    assert proc.returncode == 0, proc.stderr
    return cfg, password


def test_provision_for_the_host_the_operator_chooses(stock, tmp_path):
    sql(stock, "DROP DATABASE IF EXISTS remote_garden", "DROP USER IF EXISTS remote_gw@'192.0.2.%'")
    cfg = config(tmp_path, stock.port, "remote_garden", user="remote_gw")
    proc = run_cli("migrate", "-c", cfg, "--admin-socket", stock.socket, "--provision", "--gateway-host",
                   "192.0.2.%", env_extra={"SOIL_DB_PASSWORD": secrets.token_hex(8)})
    assert proc.returncode == 0, proc.stderr
    assert sql(stock, "SELECT host FROM mysql.user WHERE user = 'remote_gw'") == (("192.0.2.%",),)
    grants = {r[0] for r in sql(stock, "SHOW GRANTS FOR remote_gw@'192.0.2.%'")}
    assert "GRANT SELECT, INSERT ON `remote_garden`.`plants` TO `remote_gw`@`192.0.2.%`" in grants, grants


def test_check_tries_the_writes_the_gateway_makes(stock, tmp_path):
    cfg, password = _provisioned(stock, tmp_path, "plant_moisture")
    # An account that can read but not write passed `check` before; the gateway then failed at the first reading.
    for host in ("localhost", "127.0.0.1"):  # the hosts migrate --provision creates it for
        sql(stock, "REVOKE INSERT ON plant_moisture.plants FROM 'soil_gateway'@'%s'" % host)
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": password})
    assert_clean_error(proc, "INSERT command denied", "plants", "re-provision")
    assert "database ok" not in proc.stdout

    # Board status is INSERT ... ON DUPLICATE KEY UPDATE: without UPDATE only the second status write fails.
    for host in ("localhost", "127.0.0.1"):  # the hosts migrate --provision creates it for
        sql(stock, "GRANT INSERT ON plant_moisture.plants TO 'soil_gateway'@'%s'" % host,
            "REVOKE UPDATE ON plant_moisture.boards FROM 'soil_gateway'@'%s'" % host)
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": password})
    assert_clean_error(proc, "UPDATE command denied", "boards")

    # With the provisioned privileges: ok, and the probe is rolled back, nothing of it stored.
    for host in ("localhost", "127.0.0.1"):  # the hosts migrate --provision creates it for
        sql(stock, "GRANT UPDATE ON plant_moisture.boards TO 'soil_gateway'@'%s'" % host)
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": password})
    assert proc.returncode == 0, proc.stderr
    assert "writes ok (INSERT, UPDATE; rolled back)" in proc.stdout
    for table in ("plants", "boards", "board_events", "collector_events"):
        assert sql(stock, "SELECT COUNT(*) FROM plant_moisture.`%s`" % table) == ((0,),), table


def test_check_opens_each_configured_port(stock, tmp_path):
    cfg, password = _provisioned(stock, tmp_path, "plant_moisture")
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        missing = str(tmp_path / "ttyACM9")
        with open(cfg, "a") as f:
            f.write('\n[[board]]\nurl = "%s"\n\n[[board]]\nurl = "%s"\n' % (tty, missing))
        proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": password})
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith("database ok")
    assert "port %s ok: opens at 115200 baud" % tty in proc.stdout
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("soil-gateway: port %s: cannot open" % missing), proc.stderr


# -- section 3: configuration a person can rely on ------------------------------------------------------------------
def test_migrate_uses_the_configured_database_name(stock, tmp_path):
    sql(stock, "DROP DATABASE IF EXISTS plant_moisture")
    cfg, password = _provisioned(stock, tmp_path, "garden")
    assert "garden" in databases(stock) and "plant_moisture" not in databases(stock)
    assert sql(stock, "SELECT MAX(version) FROM garden.schema_migrations") == ((schema.MIGRATIONS[-1][0],),)
    proc = run_cli("check", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": password})
    assert proc.returncode == 0, proc.stderr
    assert "database garden" in proc.stdout


def test_migrate_with_servers_works_on_the_primary(stock, tmp_path):
    """servers = [a read-only replica-to-be, the primary]: migrate finds the primary, as the gateway does."""
    password = secrets.token_hex(8)
    grant = ("CREATE USER IF NOT EXISTS mig@'%%' IDENTIFIED BY '%s'" % password,
             "GRANT ALL PRIVILEGES ON *.* TO mig@'%' WITH GRANT OPTION")
    sql(stock, "DROP DATABASE IF EXISTS rpl_garden", *grant)
    with private_dir("readonly") as path:
        other = PrivateServer(path)
        other.start()
        try:
            sql(other, *grant)
            sql(other, "SET GLOBAL read_only = ON")
            servers = '["127.0.0.1:%d", "127.0.0.1:%d"]' % (other.port, stock.port)
            cfg = tmp_path / "gateway.toml"
            cfg.write_text('[database]\nuser = "soil_gateway"\ndatabase = "rpl_garden"\nservers = %s\n' % servers)
            proc = run_cli("migrate", "-c", str(cfg), "--admin-user", "mig",
                           env_extra={"SOIL_DB_ADMIN_PASSWORD": password})
            assert proc.returncode == 0, proc.stderr
            assert "127.0.0.1:%d" % stock.port in proc.stdout
            assert "rpl_garden" in databases(stock)
            assert "rpl_garden" not in databases(other)
        finally:
            other.stop()


def test_legacy_insert_time_is_the_session_time_zone(stock):
    """The book's client inserts the same literal before and after the migration: both rows mean one instant."""
    db = "tz_garden"
    sql(stock, "DROP DATABASE IF EXISTS %s" % db, "CREATE DATABASE %s" % db, BOOK_CREATE.format(db=db))
    conn = admin(stock)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@session.time_zone")
            assert cur.fetchone()[0] == SERVER_TZ  # the server's zone, not the machine's
            cur.execute(BOOK_INSERT_TIME.format(db=db))
            conn.commit()
            cur.execute("SELECT date_saved FROM %s.plants" % db)
            before_star = cur.fetchone()[0]
            schema.migrate(conn, db)
            cur.execute(BOOK_INSERT_TIME.format(db=db))
            conn.commit()
            cur.execute("SELECT id, date_saved FROM %s.plants ORDER BY id" % db)
            rows = cur.fetchall()
            # The gateway's own session is UTC and its rows are not legacy: their time is stored as sent.
            cur.execute("SET SESSION time_zone = '+05:00'")
            cur.execute("INSERT INTO %s.plants (moisture_raw, date_saved, board, boot, seq, source) "
                        "VALUES (1, '2015-11-27 15:09:08', 'b', 1, 1, 'live')" % db)
            conn.commit()
            cur.execute("SELECT date_saved FROM %s.plants WHERE source = 'live'" % db)
            live = cur.fetchone()[0]
    finally:
        conn.close()
    # What the README says SELECT * shows: 15:09:08 (local) before, 14:09:08 (UTC) after, for every row.
    assert before_star.strftime("%H:%M:%S") == "15:09:08"
    assert [t.strftime("%Y-%m-%d %H:%M:%S") for _, t in rows] == ["2015-11-27 14:09:08"] * 2
    assert live.strftime("%H:%M:%S") == "15:09:08"


def test_legacy_insert_time_in_a_server_in_europe_berlin(monkeypatch):
    """The case seen: the server's zone is SYSTEM, the machine's Europe/Berlin (winter and summer time)."""
    require_server()
    monkeypatch.setenv("TZ", "Europe/Berlin")   # the server process inherits it
    times = ("2015-11-27 15:09:08", "2015-07-01 12:00:00")
    with private_dir("berlin") as path:
        srv = PrivateServer(path)
        srv.start()
        try:
            conn = admin(srv)
            with conn.cursor() as cur:
                cur.execute("SELECT @@system_time_zone, @@session.time_zone")
                assert cur.fetchone() == ("CET", "SYSTEM")
                cur.execute("CREATE DATABASE plant_moisture")
                cur.execute(BOOK_CREATE.format(db="plant_moisture"))
                for t in times:
                    cur.execute("INSERT INTO plant_moisture.plants VALUES (NULL, 456, %s)", (t,))
                conn.commit()
                schema.migrate(conn)
                for t in times:
                    cur.execute("INSERT INTO plant_moisture.plants VALUES (NULL, 456, %s)", (t,))
                conn.commit()
                cur.execute("SELECT date_saved FROM plant_moisture.plants ORDER BY id")
                got = [r[0].strftime("%Y-%m-%d %H:%M:%S") for r in cur.fetchall()]
            conn.close()
        finally:
            srv.stop()
    assert got == ["2015-11-27 14:09:08", "2015-07-01 10:00:00"] * 2


# -- section 4: the Raspberry Pi install, as written -----------------------------------------------------------------
README = os.path.join(ROOT, "README.md")
UNIT = os.path.join(ROOT, "gateway", "soil-gateway.service")
OPT = "/opt/soil-gateway"


def readme_pi_steps():
    text = open(README, encoding="utf-8").read()
    section = text[text.index("## Running the gateway on a Raspberry Pi"):]
    section = section[:section.index("\n## ", 1)]
    return [re.sub(r"\s+# .*$", "", line[4:]) for line in section.splitlines()
            if line.startswith("    sudo ") or line.startswith("    echo ")]


def unit_value(key):
    values = [line.split("=", 1)[1] for line in open(UNIT).read().splitlines() if line.startswith(key + "=")]
    assert len(values) == 1, key
    return values[0]


def test_unit_runs_as_a_created_system_user_with_the_serial_group():
    steps = readme_pi_steps()
    user = unit_value("User")
    assert any(re.search(r"\buseradd --system\b.*\b%s$" % user, s) for s in steps), steps
    assert unit_value("SupplementaryGroups") == "dialout"
    assert unit_value("ExecStart").startswith(OPT + "/bin/soil-gateway ")
    assert not any("pip install" in s and OPT not in s for s in steps), "pip must be the venv's (PEP 668)"


def _require_systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        msg = "systemd-analyze not installed (make deps runs tools/ensure-systemd-analyze.sh)"
        if os.environ.get("CI") or os.environ.get("SOIL_REQUIRE_SERVER"):
            pytest.fail(msg)
        pytest.skip(msg)


def unit_values(key):
    return [line.split("=", 1)[1] for line in open(UNIT).read().splitlines() if line.startswith(key + "=")]


def test_unit_is_a_hardened_notify_service_that_systemd_accepts(tmp_path):
    """Issue 15: Type=notify with a watchdog above the database's read timeout (a slow server is not a stuck
    writer, gateway/supervisor.py), the serial devices and the address families the gateway uses and nothing else,
    and `systemd-analyze verify` without a word about the unit (the ExecStart program is this venv's)."""
    from gateway.dbconn import DbConfig
    _require_systemd_analyze()
    assert unit_value("Type") == "notify" and unit_value("NotifyAccess") == "main"
    assert int(unit_value("WatchdogSec")) > DbConfig(host="x", user="u", password="").read_timeout
    assert unit_value("Restart") == "always"
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("DevicePolicy", "closed"), ("RuntimeDirectory", "soil-gateway"),
                       ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6")):
        assert unit_value(key) == value, key
    assert sorted(unit_values("DeviceAllow")) == ["char-ttyACM rw", "char-ttyUSB rw"]
    assert "PrivateDevices" not in open(UNIT).read()       # it would hide /dev/ttyACM*
    program = os.path.join(os.path.dirname(sys.executable), "soil-gateway")
    assert os.access(program, os.X_OK), program
    local_unit = tmp_path / "soil-gateway.service"
    local_unit.write_text(open(UNIT).read().replace(OPT + "/bin/soil-gateway", program))
    proc = subprocess.run(["systemd-analyze", "verify", str(local_unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "soil-gateway.service" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_pi_install_as_documented(stock, tmp_path):
    """The README's steps into a fresh venv (for /opt/soil-gateway), the unit's ExecStart, systemd-analyze verify,
    and the provisioning and check lines as printed, against a server whose root logs in only by socket."""
    _require_systemd_analyze()
    venv = str(tmp_path / "opt-soil-gateway")
    etc = tmp_path / "etc"
    etc.mkdir()
    sql(stock, "DROP DATABASE IF EXISTS pi_garden")
    cfg = config(etc, stock.port, "pi_garden")

    def local(step):
        return (step.replace("sudo ", "").replace(OPT, venv).replace("/etc/soil/", str(etc) + "/")
                .replace("/run/mysqld/mysqld.sock", stock.socket))
    wanted = ("python3 -m venv", "bin/pip install .", "gateway.env", "soil-gateway migrate", "soil-gateway check")
    steps = [local(s) for s in readme_pi_steps() if any(w in s for w in wanted)]
    assert len(steps) == 6, steps
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    for var in ("PYTHONPATH", "SOIL_DB_PASSWORD", "VIRTUAL_ENV"):
        env.pop(var, None)
    # A checkout of its own: pip builds in the source tree (build/), which must not be this repository's.
    checkout = tmp_path / "checkout"
    for name in subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               text=True).stdout.split("\0"):
        if name and os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.dirname(checkout / name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), checkout / name)
    outputs = []
    for step in steps:
        step = step.replace("python3 -m venv", "%s -m venv" % sys.executable, 1)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", step], cwd=checkout, env=env, capture_output=True,
                              text=True, timeout=240)
        assert proc.returncode == 0, "%s\n%s%s" % (step, proc.stdout, proc.stderr)
        outputs.append(proc.stdout)
    assert oct(os.stat(etc / "gateway.env").st_mode & 0o777) == "0o600"
    assert "account soil_gateway provisioned" in outputs[4]
    assert outputs[5].startswith("database ok: ") and "database pi_garden; writes ok" in outputs[5]

    # The unit's ExecStart, with the venv where the docs put /opt/soil-gateway.
    exec_start = unit_value("ExecStart").replace(OPT, venv)
    program = exec_start.split()[0]
    proc = subprocess.run([program, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "migrate" in proc.stdout, proc.stderr
    local_unit = tmp_path / "soil-gateway.service"
    local_unit.write_text(open(UNIT).read().replace(OPT, venv))
    proc = subprocess.run(["systemd-analyze", "verify", str(local_unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "soil-gateway.service" not in proc.stderr, proc.stderr   # no warning about our unit


def test_migrate_over_tcp_as_stock_root_says_use_the_socket(stock, tmp_path):
    cfg = config(tmp_path, stock.port, "tcp_garden")
    proc = run_cli("migrate", "-c", cfg, "--provision", env_extra={"SOIL_DB_PASSWORD": "x" * 16})
    # 1130 while no account at all is for 127.0.0.1 (a stock server with skip-name-resolve), 1698 where names are
    # resolved (127.0.0.1 is localhost, whose root is unix_socket), 1045 once other accounts match (mig@'%' above).
    assert_clean_error(proc, "--admin-socket /run/mysqld/mysqld.sock")
    assert re.search(r"error (1130|1698|1045)", proc.stderr), proc.stderr
