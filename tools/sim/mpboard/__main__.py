"""`python -m tools.sim.mpboard --flash DIR`: the pty owner of the virtual MicroPython board.

Opens a pseudo-terminal pair (node has no openpty), starts `node tools/sim/mpboard/mpboard.mjs` (the interpreter and
its REPL) with pipes, and relays bytes between the pty master and the node process. Prints the slave's path and
points `DIR/../tty` at it, like tools/sim/vboard/board.py:

    $ python -m tools.sim.mpboard --flash run/mpboard/flash
    mpboard: MicroPython 1.27 (webassembly) on /dev/pts/5 (link run/mpboard/tty), flash run/mpboard/flash
    $ mpremote connect run/mpboard/tty ls

Killing this process (SIGTERM, SIGHUP, Ctrl-C) writes the flash back and stops the board. The link exists only while
the board runs, like a USB device node: a stale one is removed at start, and it is withdrawn on every way out (a
signal, the board stopping, an error); after a SIGKILL the next start replaces it.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tools.sim.host.ptylink import publish_link, remove_stale_link, withdraw_link
from tools.sim.host.ptyrelay import open_pty, relay

PROG = "mpboard"
HERE = os.path.dirname(os.path.abspath(__file__))
MJS = os.path.join(HERE, "mpboard.mjs")


class BoardError(Exception):
    pass


def _package(text):
    name, eq, folder = text.partition("=")
    if not eq or not name.isidentifier() or not folder:
        raise argparse.ArgumentTypeError("NAME=DIR expected, got %r" % text)
    return name, folder


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="A virtual MicroPython board (the real interpreter) on a pty.")
    p.add_argument("--flash", required=True, metavar="DIR", help="host folder that is the board's flash")
    p.add_argument("--link", metavar="PATH", help="symlink to the pty (default: DIR/../tty)")
    g = p.add_argument_group("board")
    g.add_argument("--path", action="append", default=[], metavar="DIR",
                   help="host folder of modules put on the board's sys.path after /lib, not written back "
                        "(e.g. tools/sim/micropython/board for a simulated machine); repeatable")
    g.add_argument("--package", action="append", default=[], metavar="NAME=DIR", type=_package,
                   help="host folder put on the board's sys.path as the package NAME, not written back "
                        "(e.g. chips=tools/sim/chips, the simulated chips the simulated machine uses); repeatable")
    g.add_argument("--heap", type=int, default=256 * 1024, help="MicroPython heap at start-up (default %(default)s)")
    g.add_argument("--main", default="auto", choices=("auto", "step", "script", "off"),
                   help="how main.py runs at boot (default %(default)s: step mode when it defines "
                        "start/loop)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    node = shutil.which("node")
    if node is None:
        raise BoardError("node is not on PATH")
    flash = os.path.abspath(args.flash)
    os.makedirs(flash, exist_ok=True)
    link = args.link or os.path.join(os.path.dirname(flash), "tty")
    remove_stale_link(link)
    stop = threading.Event()

    def on_signal(*_):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    master, slave, pty_path = open_pty()
    cmd = [node, MJS, "--flash", flash, "--heap", str(args.heap), "--main", args.main]
    for p in args.path:
        cmd += ["--path", os.path.abspath(p)]
    for name, folder in args.package:
        cmd += ["--package", "%s=%s" % (name, os.path.abspath(folder))]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    ready = threading.Event()

    def log_pump():
        for line in iter(proc.stderr.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\n")
            if text == "mpboard: ready":
                ready.set()
                continue
            print(text, file=sys.stderr, flush=True)
        ready.set()

    threading.Thread(target=log_pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.2) and not stop.is_set() and time.monotonic() < deadline:
            pass
        if proc.poll() is not None:
            raise BoardError("the board did not start (exit %s)" % proc.returncode)
        if not stop.is_set():
            publish_link(link, pty_path)
            print("%s: MicroPython 1.27 (webassembly) on %s (link %s), flash %s" % (PROG, pty_path, link, flash),
                  flush=True)
            relay(master, proc, stop)
    finally:
        withdraw_link(link, pty_path)
        try:
            proc.stdin.close()           # EOF: the board writes its flash back and exits
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BoardError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(1)
