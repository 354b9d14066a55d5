"""A private MariaDB (or MySQL 8) server: its own data directory, socket, port and process.

Why: the tests, the demo and the benchmarks need a real server they can crash, restart and reconfigure (binary
log, GTID, semi-sync) without touching the machine's own service on port 3306. Everything this module starts is
identified by the PID it started; it never looks processes up by name and never kills one it did not start.

Library use::

    srv = PrivateServer("run/db", server_id=1, extra_options=("--log-bin=binlog",))
    srv.start()                      # initialises the data dir once, then starts and waits for readiness
    conn = pymysql.connect(**srv.admin_kwargs())
    srv.kill(); srv.restart()        # crash and recover, same port, same data
    srv.stop()

Command line (state kept in <dir>/dbserver.json so `stop`/`status` work from another process)::

    python -m tools.dbserver start --dir run/db     # prints port=... socket=... pid=... and leaves it running
    python -m tools.dbserver status --dir run/db
    python -m tools.dbserver stop --dir run/db
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pymysql

STATE_FILE = "dbserver.json"
READY_TIMEOUT = 30.0  # seconds to wait for a started server to accept connections
STOP_TIMEOUT = 60.0  # seconds to wait for a clean shutdown (InnoDB flushes its buffer pool)
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class ServerError(Exception):
    """Anything that keeps a private server from starting or stopping; the message is meant for a person."""


def _find_binary(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
        for folder in ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"):
            candidate = os.path.join(folder, name)
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def find_server():
    """Return (flavour, server_binary, install_binary or None); flavour is 'mariadb' or 'mysql'.

    MariaDB is preferred (Raspberry Pi OS ships it). A `mysqld` may be MariaDB under its old name, so the
    flavour is decided by the binary's --version output, not by its file name.
    """
    server = _find_binary("mariadbd", "mysqld")
    if server is None:
        raise ServerError("no MariaDB or MySQL server binary found: run `make dbserver` "
                          "(or `apt-get install mariadb-server`)")
    version = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=30).stdout
    if "mariadb" in version.lower():
        install = _find_binary("mariadb-install-db", "mysql_install_db")
        if install is None:
            raise ServerError("found %s but not mariadb-install-db: install mariadb-server" % server)
        return "mariadb", server, install
    return "mysql", server, None


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel picks it, so never 3306 in use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


class PrivateServer:
    """One private server process over one data directory.

    `base_dir` holds everything: `data/` (the data directory), `mysqld.sock`, `mysqld.pid`, `error.log` and
    `dbserver.json` (the state the CLI reads). Starting a directory that is already initialised skips
    initialisation, so `restart()` after `kill()` exercises real crash recovery.
    """

    def __init__(self, base_dir, *, server_id=None, extra_options=None):
        """server_id / extra_options None: as recorded in the folder's dbserver.json (1 / none for a new one), so
        `stop --dir` from another process never rewrites what `start` recorded."""
        self.base_dir = os.path.abspath(base_dir)
        self.server_id = None if server_id is None else int(server_id)
        self.extra_options = None if extra_options is None else tuple(extra_options)
        self.datadir = os.path.join(self.base_dir, "data")
        self.pid_file = os.path.join(self.base_dir, "mysqld.pid")
        self.error_log = os.path.join(self.base_dir, "error.log")
        self.state_file = os.path.join(self.base_dir, STATE_FILE)
        self._socket = None
        self._port = None
        self._pid = None
        self._proc = None  # the Popen object when this process started the server
        self._flavour = None
        self._load_state()
        if self.server_id is None:
            self.server_id = 1
        if self.extra_options is None:
            self.extra_options = ()

    # -- public properties -------------------------------------------------------------------------------------
    @property
    def port(self):
        return self._port

    @property
    def socket(self):
        return self._socket

    @property
    def pid(self):
        return self._pid

    @property
    def running(self):
        """True when the process we started (or the one recorded in the state file) is alive."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and _pid_alive(self._pid) and self._is_ours(self._pid)

    def admin_kwargs(self):
        """Keyword arguments for pymysql.connect() as root over the Unix socket (no password, private server)."""
        return {"unix_socket": self._socket, "user": "root", "password": "", "charset": "utf8mb4",
                "connect_timeout": 5}

    def tcp_kwargs(self, user, password, database=None):
        """Keyword arguments for pymysql.connect() over TCP on 127.0.0.1 (how the gateway connects)."""
        kw = {"host": "127.0.0.1", "port": self._port, "user": user, "password": password,
              "charset": "utf8mb4", "connect_timeout": 5}
        if database is not None:
            kw["database"] = database
        return kw

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self):
        """Initialise the data directory if needed, start the server and wait until it accepts connections."""
        if self.running:
            raise ServerError("a server is already running from %s (pid %d)" % (self.base_dir, self._pid))
        os.makedirs(self.base_dir, exist_ok=True)
        if self._socket is None:
            self._socket = self._choose_socket_path()
        if not os.path.isdir(os.path.join(self.datadir, "mysql")):
            fresh = not os.path.isdir(self.datadir) or not os.listdir(self.datadir)
            try:
                self._initialise()
            except ServerError:
                if not fresh:
                    raise
                # Seen under heavy CPU load: mariadb-install-db failing once on a fresh folder. A data directory
                # we created a moment ago never held data: throw it away and try once more from scratch.
                shutil.rmtree(self.datadir, ignore_errors=True)
                self._initialise()
        keep_port = self._port is not None
        attempts = 1 if keep_port else 3
        for attempt in range(attempts):
            if not keep_port:
                self._port = free_port()
            try:
                self._launch()
                break
            except ServerError:
                # Another process may have taken the port between free_port() and the server's bind.
                if attempt + 1 == attempts or "bind on tcp/ip port" not in self._log_tail().lower():
                    raise
        self._save_state()
        return self

    def stop(self, timeout=STOP_TIMEOUT):
        """Clean shutdown: SIGTERM to the server's PID, then wait for it to exit."""
        if not self.running:
            self._forget_process()
            return
        self._signal(signal.SIGTERM)
        if not self._wait_exit(timeout):
            self._signal(signal.SIGKILL)
            self._wait_exit(10)
            raise ServerError("server pid %d did not shut down within %.0f s; killed it" % (self._pid, timeout))
        self._forget_process()

    def kill(self):
        """SIGKILL the server, as a power cut or an OOM kill would: no flush, no clean shutdown."""
        if not self.running:
            self._forget_process()
            return
        self._signal(signal.SIGKILL)
        self._wait_exit(10)
        self._forget_process()

    def restart(self):
        """Stop (cleanly, if still running) and start again on the same port over the same data."""
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- internals ---------------------------------------------------------------------------------------------
    def _choose_socket_path(self):
        path = os.path.join(self.base_dir, "mysqld.sock")
        if len(path.encode()) <= _SOCKET_PATH_MAX:
            return path
        # Deep temporary directories overflow sun_path; a short private directory holds the socket instead.
        return os.path.join(tempfile.mkdtemp(prefix="dbs-"), "mysqld.sock")

    def _flavour_info(self):
        if self._flavour is None:
            self._flavour = find_server()
        return self._flavour

    def _as_root(self):
        return ["--user=root"] if os.geteuid() == 0 else []

    def _initialise(self):
        flavour, server, install = self._flavour_info()
        if os.path.isdir(self.datadir) and os.listdir(self.datadir):
            raise ServerError("%s exists but holds no initialised server; remove it or choose another --dir"
                              % self.datadir)
        os.makedirs(self.datadir, exist_ok=True)
        if flavour == "mariadb":
            cmd = [install, "--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db",
                   "--datadir=" + self.datadir] + self._as_root()
        else:
            cmd = [server, "--no-defaults", "--initialize-insecure", "--datadir=" + self.datadir] + self._as_root()
        try:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise ServerError("initialising %s took more than 120 s" % self.datadir) from None
        if done.returncode != 0:
            tail = "\n".join(done.stdout.strip().splitlines()[-15:])
            raise ServerError("initialising %s failed (exit %d):\n%s" % (self.datadir, done.returncode, tail))

    def _command(self):
        flavour, server, _ = self._flavour_info()
        cmd = [server, "--no-defaults",
               "--datadir=" + self.datadir,
               "--socket=" + self._socket,
               "--port=%d" % self._port,
               "--bind-address=127.0.0.1",
               "--pid-file=" + self.pid_file,
               "--log-error=" + self.error_log,
               "--server-id=%d" % self.server_id,
               "--skip-name-resolve",
               "--local-infile=1",
               "--innodb-flush-log-at-trx-commit=1",
               "--innodb-buffer-pool-size=64M",
               "--max-connections=200"]
        if flavour == "mysql":
            cmd.append("--mysqlx=OFF")  # the X plugin would want a second fixed port (33060)
        return cmd + self._as_root() + list(self.extra_options)

    def _launch(self):
        try:
            os.unlink(self._socket)
        except FileNotFoundError:
            pass
        log_start = os.path.getsize(self.error_log) if os.path.exists(self.error_log) else 0
        self._log_start = log_start
        # A new session: a Ctrl-C in the terminal that ran `start` must not take the server down with it.
        self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        self._pid = self._proc.pid
        try:
            self._wait_ready(READY_TIMEOUT)
        except ServerError:
            if self._proc.poll() is None:
                self._signal(signal.SIGKILL)
                self._wait_exit(10)
            self._forget_process()
            raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise ServerError("server exited with code %d while starting; error log %s ends:\n%s"
                                  % (code, self.error_log, self._log_tail()))
            if os.path.exists(self._socket):
                try:
                    conn = pymysql.connect(**dict(self.admin_kwargs(), connect_timeout=2))
                    conn.close()
                    return
                except pymysql.err.MySQLError as exc:
                    last_error = exc
            time.sleep(0.05)
        raise ServerError("server did not accept connections within %.0f s (last error: %s); error log %s ends:\n%s"
                          % (timeout, last_error, self.error_log, self._log_tail()))

    def _log_tail(self, lines=20):
        try:
            with open(self.error_log, "rb") as f:
                f.seek(getattr(self, "_log_start", 0))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no error log)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def _is_ours(self, pid):
        """The PID in a state file may have been reused by an unrelated process; only signal our own server."""
        args = _cmdline(pid)
        return ("--datadir=" + self.datadir).encode() in args

    def _signal(self, sig):
        if self._pid is None:
            return
        if self._proc is None and not self._is_ours(self._pid):
            return
        try:
            os.kill(self._pid, sig)
        except ProcessLookupError:
            pass

    def _wait_exit(self, timeout):
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        # Started by another process (the CLI): we cannot wait(), so watch the PID disappear.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(self._pid):
                return True
            time.sleep(0.05)
        return False

    def _forget_process(self):
        self._proc = None
        self._pid = None
        if os.path.isdir(self.base_dir):
            self._save_state()

    def _save_state(self):
        state = {"port": self._port, "socket": self._socket, "pid": self._pid, "datadir": self.datadir,
                 "server_id": self.server_id, "extra_options": list(self.extra_options),
                 "error_log": self.error_log}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, self.state_file)

    def _load_state(self):
        try:
            with open(self.state_file) as f:
                state = json.load(f)
        except (OSError, ValueError):
            return
        self._port = state.get("port")
        self._socket = state.get("socket")
        self._pid = state.get("pid")
        if self.server_id is None and state.get("server_id") is not None:
            self.server_id = int(state["server_id"])
        if self.extra_options is None and state.get("extra_options") is not None:
            self.extra_options = tuple(state["extra_options"])
        if self._pid is not None and not (_pid_alive(self._pid) and self._is_ours(self._pid)):
            self._pid = None

    def status(self):
        """A dict describing the server, for the CLI's `status`."""
        return {"dir": self.base_dir, "running": self.running, "port": self._port, "socket": self._socket,
                "pid": self._pid if self.running else None, "error_log": self.error_log}


# -- command line ---------------------------------------------------------------------------------------------
def _cmd_start(args):
    srv = PrivateServer(args.dir, server_id=args.server_id, extra_options=args.option)
    srv.start()
    print("port=%d socket=%s pid=%d" % (srv.port, srv.socket, srv.pid))


def _cmd_stop(args):
    srv = PrivateServer(args.dir)
    if not srv.running:
        print("dbserver: not running (%s)" % srv.base_dir, file=sys.stderr)
        return
    srv.stop()
    print("dbserver: stopped", file=sys.stderr)


def _cmd_status(args):
    srv = PrivateServer(args.dir)
    print(json.dumps(srv.status()))
    return 0 if srv.running else 3


COMMANDS = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="dbserver", description="A private MariaDB/MySQL server for tests and demos.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("start", "initialise if needed, start, print port/socket/pid"),
                            ("stop", "clean shutdown"), ("status", "print the state as JSON (exit 3 if stopped)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dir", required=True, help="folder for the data directory, socket, logs and state")
        if name == "start":
            opts = p.add_argument_group("server options")
            opts.add_argument("--server-id", type=int, default=None,
                              help="default: the id recorded in the folder, 1 for a new one")
            opts.add_argument("--option", action="append", default=None,
                              help="extra server option, e.g. --option=--log-bin=binlog (repeatable; default: the "
                                   "options recorded in the folder)")
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except ServerError as exc:
        print("dbserver: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
