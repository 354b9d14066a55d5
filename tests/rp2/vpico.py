"""The virtual Pico as the rp2 tests drive it: one process per board (python -m tools.sim.vpico), started and ended
here by its own pid; a power cut is SIGKILL of its node (the pid in DIR/node.pid)."""

import json
import os
import select
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
BOOT_S = 90          # wall seconds to the pty, generous for a loaded 2-core machine (0.6 s idle)


class VPico:
    """A board with its state folder at ROOT/flash and its pty link at ROOT/tty."""

    def __init__(self, root, image, devices=(), opts=(), pace="wall", no_devices=()):
        self.root = root
        self.flash = os.path.join(root, "flash")
        self.tty = os.path.join(root, "tty")
        self.image = image
        self.args = ["--pace", pace]
        for d in devices:
            self.args += ["--device", d]
        for d in no_devices:
            self.args += ["--no-device", d]
        for o in opts:
            self.args += ["--opt", o]
        self.proc = None
        self.log_path = os.path.join(root, "vpico.log")
        self.banner = None

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "firmware", "lib")]))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PY, "-m", "tools.sim.vpico", "--image", self.image, "--flash", self.flash]
                                     + self.args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log)
        log.close()
        r, _, _ = select.select([self.proc.stdout], [], [], BOOT_S)
        line = self.proc.stdout.readline().decode() if r else ""
        assert "vpico: MicroPython" in line and os.path.islink(self.tty), (line, self.log())
        self.banner = line
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def node_pid(self):
        with open(os.path.join(self.flash, "node.pid")) as f:
            return int(f.read())

    def stats(self):
        with open(os.path.join(self.flash, "stats.json")) as f:
            return json.load(f)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """A clean stop (SIGTERM): the devices write their state, the link goes."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()

    def power_cut(self):
        """SIGKILL of the emulator: nothing is written back but what was written through."""
        os.kill(self.node_pid(), signal.SIGKILL)
        self.proc.wait(30)
        self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def mpremote(board, *args, check=True, timeout=180):
    """The real mpremote against the board's pty."""
    proc = subprocess.run([PY, "-m", "mpremote", "connect", board.tty] + list(args), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr, board.log()[-3000:])
    return proc


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out after %.0f s waiting for %s" % (timeout, what)
        time.sleep(interval)
