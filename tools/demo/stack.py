"""A whole installation on one machine: a private database server, virtual boards and the gateway, each its own
process. The demo, the benchmarks and the integration tests all drive this one class, so what the tests prove is
what the demo shows.

Every process is started here and ended here by its own process id; nothing touches the system's database
service or port 3306.
"""

import datetime
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
import time

import pymysql

from gateway import schema
from tools.dbserver import PrivateServer
from tools.sim.host.ptylink import withdraw_link

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GATEWAY_USER = "soil_gateway"


def admin_query(admin_kwargs, sql, args=None, database="plant_moisture"):
    """One query as the server's admin (root over its socket), in UTC; returns all rows."""
    conn = pymysql.connect(autocommit=True, database=database, **admin_kwargs)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def install_schema(admin_kwargs, password):
    """Every migration and the gateway's least-privilege account (GATEWAY_USER with `password`) on one server, as
    its admin: what a new installation needs. On a replicated topology or a Galera cluster, one server is enough
    (DDL and grants replicate)."""
    conn = pymysql.connect(**dict(admin_kwargs, autocommit=True))
    try:
        schema.migrate(conn)
        schema.provision_gateway_account(conn, GATEWAY_USER, password)
    finally:
        conn.close()


def wait_for(predicate, timeout, what, interval=0.05):
    """Poll `predicate` until it returns something true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def process_env():
    """The environment of a process the stack starts: the checkout and the portable core on its Python path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "firmware", "lib")] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class BoardProc:
    """A virtual board process (tools/sim/vboard/board.py)."""

    def __init__(self, stack, board_id, state_dir, options):
        self.stack = stack
        self.board_id = board_id
        self.state_dir = state_dir
        self.options = options
        self.proc = None
        self.tty = os.path.join(state_dir, "tty")
        self.log_path = os.path.join(state_dir, "vboard.log")

    def start(self, timeout=20):
        os.makedirs(self.state_dir, exist_ok=True)
        argv = [sys.executable, "-m", "tools.sim.vboard", "--board", self.board_id, "--state", self.state_dir]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value is not None and value is not False:       # 0 is a value (unpaced link), not "off"
                argv += [flag, str(value)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=process_env(), stdout=subprocess.PIPE, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError("virtual board %s did not start: %s" % (self.board_id, self.log_tail()))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    continue
                line += ch
        self.banner = line.decode().strip()
        return self

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def control(self, command):
        from tools.sim.vboard.board import control
        return control(self.state_dir, command)

    def status(self):
        return self.control("status")

    def pending(self):
        """Readings the board holds that the gateway has not acknowledged (on its card, in flight or not)."""
        return (self.status() or {}).get("pending") or 0

    def stop_sampling(self):
        """No more samples from now on; the board still sends what it holds (a summary can then be final)."""
        reply = self.control("sampling off")
        if reply != "ok":
            raise RuntimeError("board %s refused to stop sampling: %s" % (self.board_id, reply))

    def kill(self):
        """Pull the power: SIGKILL, no clean-up by the board; its USB device (the tty link) vanishes with it."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()
        withdraw_link(self.tty, self.pty)

    @property
    def pty(self):
        """The board's /dev/pts/N, from its banner (`vboard: b1 boot 3 on /dev/pts/7 (link ...)`)."""
        banner = getattr(self, "banner", "")
        return banner.split(" on ", 1)[1].split(" ", 1)[0] if " on " in banner else None

    def wait(self, timeout=10):
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            finally:
                if self.proc.stdout:
                    self.proc.stdout.close()

    def stop(self):
        if self.alive:
            try:
                self.control("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
        self.wait()

    def restart(self, **changes):
        self.stop() if self.alive else None
        self.options.update(changes)
        return self.start()

    def set_card_faults(self, **faults):
        """Flip SD-card faults inside the running board (tools/sim/host/sdcard.py reads faults.json)."""
        self._set_faults("sd", faults)

    def set_flash_faults(self, **faults):
        """Flip faults of the board's own flash, where the fallback journal lives (the same card model)."""
        self._set_faults("flash", faults)

    def _set_faults(self, store, faults):
        path = os.path.join(self.state_dir, store, "faults.json")
        current = {}
        if os.path.exists(path):
            with open(path) as f:
                try:
                    current = json.load(f)
                except ValueError:
                    current = {}
        current.update(faults)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(current, f)
        os.replace(tmp, path)


class GatewayProc:
    """The gateway service as its own process (`python -m gateway run`)."""

    def __init__(self, stack, boards, extra=None, name="gateway", dashboard=None, sections=None, env=None):
        self.stack = stack
        self.dashboard = dashboard     # the [dashboard] keys; None: the dashboard is off (tests share machines)
        self.boards = boards
        self.dir = os.path.join(stack.run_dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "gateway.toml")
        self.status_path = os.path.join(self.dir, "status.json")
        self.log_path = os.path.join(self.dir, "gateway.log")
        self.extra = extra or {}
        self.sections = sections or {}    # further [section]s of the configuration: {"alerts": {"every_s": 1}}
        self.env = dict(env or {})       # more environment for the process: {"NOTIFY_SOCKET": ...} (systemd's)
        self.proc = None

    def write_config(self):
        db = self.stack.db
        if self.stack.db_servers:   # a replicated topology: the gateway finds the primary (gateway/primary.py)
            where = ["servers = %s" % json.dumps(list(self.stack.db_servers))]
        else:
            where = ['host = "127.0.0.1"', "port = %d" % db.port]
        where += ["%s = %s" % (k, json.dumps(v)) for k, v in sorted(self.stack.db_options.items())]
        lines = ["[database]"] + where + ['user = "%s"' % GATEWAY_USER,
                 'password_env = "SOIL_DB_PASSWORD"', 'database = "plant_moisture"', "", "[gateway]"]
        for key, value in sorted(self.extra.items()):
            lines.append("%s = %s" % (key, json.dumps(value)))
        lines += ["", "[dashboard]"]
        for key, value in sorted((self.dashboard or {"enabled": False}).items()):
            lines.append("%s = %s" % (key, json.dumps(value)))
        for section, table in sorted(self.sections.items()):
            lines += ["", "[%s]" % section] + ["%s = %s" % (k, json.dumps(v)) for k, v in sorted(table.items())]
        for b in self.boards:
            lines += ["", "[[board]]", 'url = "%s"' % b.tty, "baudrate = 115200"]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def command_env(self):
        """The environment a `soil-gateway` command needs beside this gateway: its database password."""
        env = process_env()
        env["SOIL_DB_PASSWORD"] = self.stack.gateway_password
        return env

    def start(self):
        self.write_config()
        env = self.command_env()
        env.update(self.env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "-v", "run", "-c", self.config_path,
                                      "--status", self.status_path, "--status-every", "0.5"],
                                     cwd=ROOT, env=env, stdout=log, stderr=log)
        log.close()
        return self

    def status(self):
        try:
            with open(self.status_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def dashboard_url(self, timeout=30):
        """The dashboard's URL, from the status snapshot once the service has bound it (port 0: its free port)."""
        return wait_for(lambda: (self.status() or {}).get("dashboard"), timeout, "the gateway's dashboard URL")

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Stack:
    def __init__(self, run_dir):
        self.run_dir = os.path.abspath(run_dir)
        os.makedirs(self.run_dir, exist_ok=True)
        self.db = None
        self.db_servers = []     # ["127.0.0.1:port", ...]: the gateway is given these instead of self.db's port
        self.db_options = {}     # more [database] keys for the gateway, e.g. {"semisync": "require"}
        self.gateway_password = secrets.token_hex(12)
        self.boards = []
        self.gateway = None

    # --- database -----------------------------------------------------------------------------------------
    def start_db(self, extra_options=(), before_migrate=None):
        """Start a private server, run the migrations (after `before_migrate(admin_conn)`, which the demo uses to
        create the book's original table first) and create the gateway's least-privilege account."""
        self.db = PrivateServer(os.path.join(self.run_dir, "db"), extra_options=extra_options)
        self.db.start()
        conn = self.admin()
        try:
            if before_migrate is not None:
                before_migrate(conn)
            schema.migrate(conn)
            schema.provision_gateway_account(conn, GATEWAY_USER, self.gateway_password)
        finally:
            conn.close()
        return self.db

    def admin(self, database=None):
        kw = self.db.admin_kwargs()
        if database:
            kw["database"] = database
        return pymysql.connect(autocommit=True, **kw)

    def query(self, sql, args=None):
        return admin_query(self.db.admin_kwargs(), sql, args)

    def slot_audit(self, prefix="pair-"):
        """(slots checked, missing, doubled) over the trusted rows of the boards whose id starts with `prefix`, one
        slot per second from the first row to the second-last (the last second may still be arriving)."""
        rows = self.query("SELECT date_saved, COUNT(*) FROM plants WHERE board LIKE %s AND time_quality='rtc' "
                          "GROUP BY date_saved ORDER BY date_saved", (prefix + "%",))
        if not rows:
            return 0, 0, 0
        have = {t: n for t, n in rows}
        first, last = rows[0][0], rows[-1][0] - datetime.timedelta(seconds=1)
        t, checked, missing = first, 0, 0
        while t <= last:
            checked += 1
            if t not in have:
                missing += 1
            t += datetime.timedelta(seconds=1)
        doubled = sum(1 for t, n in have.items() if n > 1 and t <= last)
        return checked, missing, doubled

    def readings(self, board=None):
        sql = ("SELECT board, boot, seq, date_saved, moisture_raw, source, time_quality, received_at, collector "
               "FROM plants WHERE board IS NOT NULL")
        args = ()
        if board:
            sql += " AND board = %s"
            args = (board,)
        return self.query(sql + " ORDER BY board, boot, seq", args)

    # --- boards and gateway -----------------------------------------------------------------------------------
    def start_board(self, board_id, **options):
        b = BoardProc(self, board_id, os.path.join(self.run_dir, "boards", board_id), options)
        self.boards.append(b)
        return b.start()

    def start_boards(self, specs):
        """Start many boards at once, each in its own thread (a board takes a second or two to boot; 100 in a row
        would take minutes). `specs`: (board_id, options) pairs; returns the BoardProcs in that order, or raises
        the first failure once every start has returned."""
        specs = list(specs)
        started, errors = [None] * len(specs), []

        def start(i, board_id, options):
            try:
                started[i] = self.start_board(board_id, **options)
            except Exception as e:       # raised below, after the other threads are done
                errors.append(e)

        threads = [threading.Thread(target=start, args=(i,) + spec) for i, spec in enumerate(specs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return started

    def start_gateway(self, boards=None, dashboard=None, sections=None, env=None, **extra):
        self.gateway = GatewayProc(self, boards if boards is not None else self.boards, extra,
                                   dashboard=dashboard, sections=sections, env=env)
        return self.gateway.start()

    def close(self):
        if self.gateway is not None:
            self.gateway.stop()
        for b in self.boards:
            try:
                b.stop()
            except Exception:
                if b.alive:
                    b.proc.kill()
        if self.db is not None and self.db.running:
            self.db.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
