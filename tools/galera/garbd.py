"""The Galera arbitrator (garbd, Debian's galera-arbitrator-4): a member of the group that votes and stores nothing.

Why: a component is Primary only with more than half of the votes of the last primary view. Two nodes (two sites)
cannot lose either one: the survivor holds 1 vote of 2 and goes non-Primary (every query answers 1047) until the
other comes back. A third member that only votes makes the survivor's side 2 of 3; garbd is that member, cheap
enough for the gateway's Pi at a third place (or, here, on loopback beside the nodes).

Here it runs in the foreground (no --daemon) as a child process in a new session, in <dir> (where it keeps its
gvwstate.dat), its log at <dir>/garbd.log, its PID kept in the cluster's galera.json, and is ended by that PID,
after checking that the PID is still this garbd (its command line names this log file), never by name.
"""

import os
import signal
import subprocess
import time

from tools.dbserver import _pid_alive, _cmdline

GARBD = "/usr/bin/garbd"
STOP_TIMEOUT = 30.0


class GarbdError(Exception):
    pass


class Garbd:
    def __init__(self, directory, *, cluster_name, gcomm_ports, gmcast_port, suspect_timeout, pid=None):
        self.dir = os.path.abspath(directory)
        self.log = os.path.join(self.dir, "garbd.log")
        self.cluster_name = cluster_name
        self.gcomm_ports = list(gcomm_ports)       # the nodes' group-communication ports
        self.gmcast_port = int(gmcast_port)
        self.suspect_timeout = float(suspect_timeout)
        self._proc = None                           # the Popen object when this process started it
        self._pid = pid if pid is not None and _pid_alive(pid) and self._is_ours(pid) else None

    @property
    def pid(self):
        return self._pid if self.running else None

    @property
    def running(self):
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and _pid_alive(self._pid) and self._is_ours(self._pid)

    def _command(self):
        suspect = self.suspect_timeout
        options = ";".join([
            "gmcast.listen_addr=tcp://127.0.0.1:%d" % self.gmcast_port,
            "evs.suspect_timeout=PT%gS" % suspect,
            "evs.inactive_timeout=PT%gS" % max(suspect * 2, suspect + 1),
        ])
        return [GARBD, "--name", "garbd", "--group", self.cluster_name,
                "--address", "gcomm://" + ",".join("127.0.0.1:%d" % p for p in self.gcomm_ports),
                "--options", options, "--log", self.log]

    def _is_ours(self, pid):
        args = _cmdline(pid)
        return bool(args) and args[0].endswith(b"garbd") and self.log.encode() in args

    def start(self, wait_joined, timeout=60.0):
        """Start garbd and return once wait_joined() says the cluster counts it (bounded by timeout)."""
        if not os.access(GARBD, os.X_OK):
            raise GarbdError("%s is missing: install galera-arbitrator-4 (tools/ensure-galera.sh)" % GARBD)
        if self.running:
            raise GarbdError("garbd is running already (pid %d)" % self._pid)
        os.makedirs(self.dir, exist_ok=True)
        start_at = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        with open(self.log, "ab") as out:      # what it says before it opens its --log (a bad option) lands here
            # cwd: garbd keeps its view of the group (gvwstate.dat) in its working directory
            self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                          cwd=self.dir, start_new_session=True, close_fds=True)
        self._pid = self._proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._forget()
                raise GarbdError("garbd exited with code %d while joining; %s ends:\n%s"
                                 % (code, self.log, self._log_tail(start_at)))
            if wait_joined():
                return
            time.sleep(0.2)
        self.kill()
        raise GarbdError("garbd not counted in the cluster within %.0f s; %s ends:\n%s"
                         % (timeout, self.log, self._log_tail(start_at)))

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM (it leaves the group cleanly), SIGKILL if it is still there after timeout."""
        if not self.running:
            self._forget()
            return
        self._signal(signal.SIGTERM)
        if not self._wait_exit(timeout):
            self._signal(signal.SIGKILL)
            self._wait_exit(10)
        self._forget()

    def kill(self):
        if self.running:
            self._signal(signal.SIGKILL)
            self._wait_exit(10)
        self._forget()

    def _signal(self, sig):
        if self._pid is None or (self._proc is None and not self._is_ours(self._pid)):
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
        deadline = time.monotonic() + timeout     # started by another process: watch the PID go
        while time.monotonic() < deadline:
            if not _pid_alive(self._pid):
                return True
            time.sleep(0.05)
        return False

    def _forget(self):
        self._proc = None
        self._pid = None

    def _log_tail(self, start=0, lines=15):
        try:
            with open(self.log, "rb") as f:
                f.seek(start)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])
