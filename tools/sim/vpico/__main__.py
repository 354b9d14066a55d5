"""`python -m tools.sim.vpico --image UF2 --flash DIR`: the pty owner of the virtual Pico.

The real MicroPython rp2 firmware (tools/rp2/build.sh) runs on an emulated RP2040 in node (vpico.mjs); its USB
serial port is this process's pseudo-terminal, and `DIR/../tty` points at it while the board runs, as
/dev/ttyACM0 exists while a Pico is plugged in:

    $ python -m tools.sim.vpico --image stock --flash run/vpico/flash
    vpico: MicroPython v1.27.0 on an emulated RP2040 (rp2040js 1.4.1) on /dev/pts/5 (link run/vpico/tty), state run/vpico/flash
    $ mpremote connect run/vpico/tty ls

Python owns the processes and the pty, node owns the CPU (tools/sim/host/ptyrelay.py). SIGTERM, SIGHUP and Ctrl-C
stop the board cleanly (its state written back); the link is removed on every way out. A power cut is SIGKILL of
node (its pid is in DIR/node.pid while it runs): this process then says so, removes the link and exits 1.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tools.rp2 import images
from tools.sim.host.ptylink import publish_link, remove_stale_link, withdraw_link
from tools.sim.host.ptyrelay import open_pty, relay

PROG = "vpico"
HERE = os.path.dirname(os.path.abspath(__file__))
MJS = os.path.join(HERE, "vpico.mjs")
NODE_MODULES = os.path.join(HERE, "node_modules", "rp2040js")
BOOT_TIMEOUT = 60       # wall seconds to USB enumeration (0.6 s on an idle machine)
RESET_EXIT = 75         # vpico.mjs exits with this at a watchdog reset: start the chip again
USAGE_PREFIX = "vpico-usage: "          # vpico.mjs's line about a bad argument (--opt, --device, --uid)


class BoardError(Exception):
    """One line for the user: `vpico: message`, exit 1."""


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="A virtual Raspberry Pi Pico: the real rp2 MicroPython "
                                                       "firmware on an emulated RP2040, its USB serial on a pty.")
    p.add_argument("--image", required=True, metavar="UF2",
                   help="firmware.uf2 to boot, or stock / frozen (the image tools/rp2/build.sh caches)")
    p.add_argument("--flash", required=True, metavar="DIR",
                   help="the board's state folder: flash.bin (its 2 MB flash) and the devices' state persist here")
    p.add_argument("--link", metavar="PATH", help="symlink to the pty (default: DIR/../tty)")
    p.add_argument("--pace", default="wall", choices=("wall", "fast"),
                   help="wall (default): emulated time never runs ahead of real time; fast: sleeps take no time")
    p.add_argument("--device", action="append", default=[], metavar="NAME",
                   help="add a device (sdcard, ...); ds1307, soil and led are always fitted unless --no-device")
    p.add_argument("--no-device", action="append", default=[], metavar="NAME", help="leave a default device out")
    p.add_argument("--opt", action="append", default=[], metavar="DEV.KEY=VALUE",
                   help="a device option (soil.value=2000, ds1307.battery=new, ...); repeatable")
    p.add_argument("--uid", metavar="16HEX", help="machine.unique_id() (default: from a hash of the state folder's "
                                                    "path, so each board keeps its own)")
    p.add_argument("--verbose", action="store_true", help="rp2040js's warnings about peripherals it lacks")
    return p


def node_command(args, image, bootrom, state):
    node = shutil.which("node")
    if node is None:
        raise BoardError("node is not on PATH (apt-get install nodejs)")
    if not os.path.isdir(NODE_MODULES):
        raise BoardError("rp2040js is not installed: make vpico (npm install in tools/sim/vpico)")
    cmd = [node, MJS, "--image", image, "--state", state, "--bootrom", bootrom, "--pace", args.pace]
    for d in args.device:
        cmd += ["--device", d]
    for d in args.no_device:
        cmd += ["--no-device", d]
    for o in args.opt:
        cmd += ["--opt", o]
    if args.uid:
        cmd += ["--uid", args.uid]
    if args.verbose:
        cmd.append("--verbose")
    return cmd


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        image = images.resolve(args.image)
        bootrom = images.path("bootrom")
    except images.ImageError as e:
        raise BoardError(str(e))
    state = os.path.abspath(args.flash)
    os.makedirs(state, exist_ok=True)
    link = args.link or os.path.join(os.path.dirname(state), "tty")
    pidfile = os.path.join(state, "node.pid")
    remove_stale_link(link)
    cmd = node_command(args, image, bootrom, state)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    master, slave, pty_path = open_pty()
    try:
        rc = run_board(cmd, master, pty_path, link, pidfile, state, stop)
    finally:
        withdraw_link(link, pty_path)
        os.close(master)
        os.close(slave)
    return rc


class Chip:
    """One run of the emulator (node vpico.mjs) from power-on to its exit: a reset is a new Chip on the same pty."""

    def __init__(self, cmd, pidfile):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     bufsize=0, start_new_session=True)   # a terminal's Ctrl-C is ours to pass on
        self.pidfile = pidfile
        with open(pidfile, "w") as f:
            f.write("%d\n" % self.proc.pid)
        self.ready = threading.Event()        # USB enumerated
        self.ended = threading.Event()        # node's stderr closed: it exited before (or after) that
        self.usage = None                     # node's one line about a bad argument, said as ours
        self.pump = threading.Thread(target=self._log_pump, daemon=True)
        self.pump.start()

    def _log_pump(self):
        for raw in iter(self.proc.stderr.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n")
            if text == "vpico: ready":
                self.ready.set()
                continue
            if text.startswith(USAGE_PREFIX):
                self.usage = text[len(USAGE_PREFIX):]
                continue
            print(text, file=sys.stderr, flush=True)
        self.ended.set()

    def wait_ready(self, stop):
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not (self.ready.wait(0.2) or self.ended.is_set() or stop.is_set() or time.monotonic() > deadline):
            pass
        if self.ended.is_set() and not self.ready.is_set():
            code = self.proc.wait()
            if self.usage:
                raise BoardError(self.usage)
            raise BoardError("the board did not start (node exit %s)" % code)
        if not self.ready.is_set() and not stop.is_set():
            raise BoardError("no USB device after %d s (the image does not boot?)" % BOOT_TIMEOUT)

    def close(self):
        """EOF to node (it saves the devices' state and exits), then wait; returns its exit status."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.pump.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        try:
            os.remove(self.pidfile)
        except OSError:
            pass
        return code


def run_board(cmd, master, pty_path, link, pidfile, state, stop):
    """Power the chip on, publish the link at the first USB enumeration, relay until a stop, a power cut or the
    board's own end; a watchdog reset powers it on again behind the same pty."""
    published = False
    while True:
        chip = Chip(cmd, pidfile)
        try:
            chip.wait_ready(stop)
            if stop.is_set():
                return 0
            if not published:
                publish_link(link, pty_path)
                published = True
                print("%s: MicroPython on an emulated RP2040 (rp2040js) on %s (link %s), state %s, node pid %d" % (
                    PROG, pty_path, link, state, chip.proc.pid), flush=True)
            relay(master, chip.proc, stop)
        finally:
            code = chip.close()
        if stop.is_set():
            return 0
        if code == RESET_EXIT:
            print("%s: reset (watchdog): the chip starts again on the same flash and pty" % PROG, file=sys.stderr,
                  flush=True)
            continue
        if code < 0:
            print("%s: power cut (node killed by signal %d): flash and devices keep what they had written"
                  % (PROG, -code), file=sys.stderr, flush=True)
        else:
            print("%s: the board stopped (node exit %d)" % (PROG, code), file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BoardError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(1)
