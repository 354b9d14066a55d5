"""A virtual board: the firmware's portable core on CPython, on simulated chips, behind a real pseudo-terminal.

    python -m tools.sim.vboard --board b1 --state run/boards/b1
    vboard: b1 boot 3 on /dev/pts/7 (link run/boards/b1/tty)

The gateway opens `run/boards/b1/tty` (a symlink to the pty, stable across board resets) exactly as it would
open /dev/ttyACM0. Like a USB device node the link exists only while the board runs: a stale link from a previous
board is removed at start, and the link is withdrawn on every way out (quit, SIGTERM, SIGINT, SIGHUP, an error, a
simulated power cut); after a SIGKILL the next start on the folder replaces it. Everything the board keeps across a
reset lives in the state folder: the SD card, the board's flash (`flash/`: the fallback journal while the card is
away), the DS1307's registers, the chip's uid (`<state>/uid`, made once;
without `--board` the id is `b-` and its last 8 hex digits). Killing the process is pulling the power; starting it
again on the same folder is the next boot.

This file is the simulation's entry point, the counterpart of a port's `main.py`: it reads the board's settings
from its flags (soil.board's settings, spelled `--interval-ms` ...), builds the hardware (hal.py, and the pair's
wire for a master or a standby) and calls soil.board.build, as every port does. A control socket (`<state>/control.sock`, one command per line) lets tests and the demo look
inside and inject faults:

    status                  JSON counters (pending, dropped, card, clock, link bytes ...)
    rxlog                   hex of the last 64 KiB the board received (to audit what the gateway sends)
    noise <hex>             send these bytes ahead of the next frame (line noise, garbage, forged frames)
    rtc halt | rtc run      set or clear the DS1307's clock-halt bit (a failing battery)
    wire cut | wire mend    cut or mend the pair's heartbeat wire (both boards stay alive)
    sampling off | on       stop (or resume) sampling; the link is still served, so what is cached drains
    quit                    stop the board
"""

import argparse
import json
import os
import select
import signal
import socket
import sys
import time

from soil import board
from soil.codec import MAX_N
from tools.sim.vboard.hal import SimHAL
from tools.sim.host.ptylink import publish_link, remove_stale_link, withdraw_link
from tools.sim.host.sdcard import PowerCut


def build_parser():
    p = argparse.ArgumentParser(prog="vboard", description="Run a virtual soil-moisture board on a pty.")
    p.add_argument("--state", required=True, help="state folder: SD card, RTC registers, tty link")
    p.add_argument("--baudrate", type=int, default=115200, help="link pacing; 0 for unpaced")
    g = p.add_argument_group("the board's settings (soil.board: the same as config.json / settings.toml on a real "
                             "board)")
    for name, default, meaning in board.SETTINGS:
        flag = "--" + name.replace("_", "-")
        if name == "board":
            g.add_argument(flag, help=meaning)
        elif default is None:
            g.add_argument(flag, required=True, help=meaning)
        elif isinstance(default, int):
            g.add_argument(flag, type=lambda v: int(v, 0), default=default, help=meaning + " (default: %(default)s)")
        else:
            g.add_argument(flag, default=default, choices=board.CHOICES.get(name),
                           help=meaning + " (default: %(default)s)")
    g = p.add_argument_group("simulated hardware")
    g.add_argument("--uid", type=_uid, help="the chip's unique id, hex (default: made once, kept in <state>/uid)")
    g.add_argument("--card-capacity", type=int, default=8 << 20, help="SD card bytes")
    g.add_argument("--moisture", type=int, help="constant raw ADC value (default: a drying curve)")
    g.add_argument("--noise", type=float, default=40.0, help="ADC noise, raw counts")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-rtc-battery", action="store_true", help="RTC without battery: cold at every start")
    g.add_argument("--rtc-set", action="store_true",
                   help="a new RTC leaves the factory set to the host's UTC time (default: halted, as shipped)")
    g.add_argument("--ticks-offset-ms", type=int, default=0, help="start the tick counter here (wrap tests)")
    g.add_argument("--first-n", type=int, default=1,
                   help="number the first reading frame of this boot n (frame-number wrap tests: 2147483640)")
    g.add_argument("--max-samples", type=int, default=0, help="stop sampling after this many (0: no limit)")
    p.add_argument("--sample-log", metavar="PATH",
                   help="append 'boot seq host_time' (time.time() just before each sample) to PATH, for the "
                        "latency benchmark (tools/bench/targets.py)")
    g = p.add_argument_group("redundant pair (master / standby over an I2C heartbeat wire)")
    g.add_argument("--hb-wire", help="the heartbeat wire: a socket path both boards of a pair are given; the "
                                     "standby hosts it, the master connects")
    return p


def _uid(text):
    from soil.codec import valid_uid
    if not valid_uid(text):
        raise argparse.ArgumentTypeError("a uid is 4-32 lower-case hex digits, got %r" % text)
    return text


def _given(value, default):
    return default if value is None else value


class VirtualBoard:
    def __init__(self, args):
        self.args = args
        self.hal = SimHAL(args.state, baudrate=args.baudrate, card_capacity=args.card_capacity,
                          moisture=args.moisture, noise=args.noise, seed=args.seed,
                          rtc_battery=not args.no_rtc_battery, ticks_offset_ms=args.ticks_offset_ms, uid=args.uid)
        self.settings = board.settings(lambda name, default: _given(getattr(args, name, None), default),
                                       lambda name: "--" + name.replace("_", "-"), self.hal.uid)
        if args.rtc_set and self.hal.rtc_chip.halted:
            self.hal.rtc_chip.set_time(time.gmtime()[:6])
        self.hb_server = None
        self.hb_target = None
        role = self.settings["role"]
        if role != "single":
            self._build_pair_wire(role, args.hb_wire)
        self.collector = board.build(self.settings, self.hal,
                                     log=lambda msg: print("vboard: " + msg, file=sys.stderr, flush=True))
        if not 1 <= args.first_n <= MAX_N:
            raise ValueError("--first-n must be 1..%d" % MAX_N)
        self.collector.uplink.number_from(args.first_n)
        if args.sample_log:
            self._log_samples(args.sample_log)
        self.tty_link = os.path.join(args.state, "tty")
        self.control_path = os.path.join(args.state, "control.sock")
        self.control = None
        self.running = True

    def _log_samples(self, path):
        """Wrap the collector's sample() to record the host time of every sample (benchmarks only)."""
        c = self.collector
        sample = c.sample
        out = open(path, "a", buffering=1)

        def logged_sample():
            t = time.time()
            record = sample()
            out.write("%d %d %.6f\n" % (c.boot, c.seq, t))
            return record
        c.sample = logged_sample

    def _build_pair_wire(self, role, path):
        """The heartbeat wire, a socket at `path` shared by the pair: the standby is an I2C target on it (and
        hosts the socket), the master the controller."""
        from soil.heartbeat import MEM_SIZE
        from tools.sim.host.i2c import I2CBus
        from tools.sim.host.i2cnet import BusServer, RemoteI2C
        from tools.sim.host.i2ctarget import MemTarget
        if not path:
            raise ValueError("--role %s needs --hb-wire PATH (the heartbeat wire shared by the pair)" % role)
        if role == "standby":
            mem = bytearray(MEM_SIZE)
            self.hb_target = MemTarget(mem)
            bus = I2CBus()
            bus.attach(self.settings["hb_address"], self.hb_target)
            self.hb_server = BusServer(bus, path)
            self.hb_server.start()
            self.hal.hb_target, self.hal.hb_mem, self.hal.hb_end_write = self.hb_target, mem, MemTarget.IRQ_END_WRITE
        else:
            self.hal.hb_i2c = RemoteI2C(path)

    def publish(self):
        publish_link(self.tty_link, self.hal.link.path)
        if os.path.exists(self.control_path):
            os.remove(self.control_path)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(self.control_path)
        self.control.listen(4)
        self.control.setblocking(False)

    def withdraw(self):
        """The board is going away: its tty link (if still ours) and its control socket go with it."""
        withdraw_link(self.tty_link, self.hal.link.path)
        if self.control is not None:
            self.control.close()
            self.control = None
            try:
                os.remove(self.control_path)
            except OSError:
                pass

    def status(self):
        c = self.collector
        pair = c.pair
        tm, clock = c.read_clock()
        return {"board": c.board_id, "uid": c.uid,
                "boot": c.boot, "seq": c.seq, "pending": c.pending(), "dropped": c.dropped(),
                "card": c.card_state, "clock": clock, "inflight": len(c.uplink.inflight),
                "next_n": c.uplink.next_n, "resends": c.uplink.resends, "rx_errors": c.uplink.rx_errors,
                "ignored_acks": c.uplink.ignored_acks, "acks_beyond_sent": c.uplink.acks_beyond_sent,
                "events_pending": len(c.uplink.events), "events_dropped": c.uplink.events_dropped,
                "bytes_out": self.hal.link.bytes_out, "bytes_in": self.hal.link.bytes_in,
                "journal_corrupt": c.journal.corrupt,
                "fallback": "flash" if c.fallback is not None else ("failing" if c.fallback_failing else "idle"),
                "fallback_pending": c.fallback.pending if c.fallback is not None else 0, "ram": len(c.ram),
                "publishing": c.publishing, "ring": len(c.ring),
                "role_state": pair.state if pair is not None else None,
                "last_published_epoch": c.last_published_epoch,
                "standby_present": pair.standby_present if c.role == "master" else None,
                "beats_failed": pair.beats_failed if c.role == "master" else None,
                "takeovers": pair.takeovers if c.role == "standby" else None,
                "hb_handler_max_s": self.hb_target.handler_max_s if self.hb_target is not None else None}

    def handle_control(self, conn):
        try:
            conn.settimeout(1.0)
            line = conn.recv(4096).decode(errors="replace").strip()
            words = line.split(None, 1)
            cmd = words[0] if words else ""
            if cmd == "status":
                reply = json.dumps(self.status())
            elif cmd == "rxlog":
                reply = bytes(self.hal.link.rx_log).hex()
            elif cmd == "noise" and len(words) == 2:
                self.hal.link.inject_noise(bytes.fromhex(words[1]))
                reply = "ok"
            elif cmd == "rtc" and len(words) == 2 and words[1] in ("halt", "run"):
                sec = self.hal.rtc_chip.peek(0)
                self.hal.rtc_chip.poke(0, sec | 0x80 if words[1] == "halt" else sec & 0x7F)
                reply = "ok"
            elif cmd == "wire" and len(words) == 2 and words[1] in ("cut", "mend") and self.args.hb_wire:
                from tools.sim.host.i2cnet import set_cut
                set_cut(self.args.hb_wire, words[1] == "cut")
                reply = "ok"
            elif cmd == "sampling" and len(words) == 2 and words[1] in ("off", "on"):
                self.collector.sampling = words[1] == "on"    # off: no more samples; the link is still served
                reply = "ok"
            elif cmd == "quit":
                self.running = False
                reply = "ok"
            else:
                reply = "error: unknown command %r" % line
            conn.sendall(reply.encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def run(self):
        c = self.collector
        c.start()
        self.publish()
        print("vboard: %s boot %d on %s (link %s)" % (c.board_id, c.boot, self.hal.link.path, self.tty_link),
              flush=True)
        link = self.hal.link
        while self.running:
            if self.args.max_samples and c.seq >= self.args.max_samples:
                c.sampling = False                           # stop sampling, keep serving the link
            c.step()
            wait = 0.02
            if c.uplink.has_output():
                wait = min(wait, max(0.0005, link.seconds_until_credit(16)))
            wait = max(0.0, min(wait, c.ms_until_sample() / 1000.0))
            r, _, _ = select.select([link, self.control], [], [], wait)
            if self.control in r:
                try:
                    conn, _ = self.control.accept()
                    self.handle_control(conn)
                except BlockingIOError:
                    pass


def control(state_dir, command, timeout=5.0):
    """Send one command to a running virtual board; returns its reply (parsed JSON for `status`)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.path.join(state_dir, "control.sock"))
        s.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    text = data.decode().strip()
    return json.loads(text) if command == "status" else text


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv=None):
    args = build_parser().parse_args(argv)
    remove_stale_link(os.path.join(args.state, "tty"))
    holder = {}

    def on_signal(signum, frame):
        vb = holder.get("board")
        if vb is None:
            raise SystemExit(128 + signum)       # still starting: nothing published yet
        vb.running = False                       # the loop ends within one pass; main() withdraws the link
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    try:
        board = VirtualBoard(args)
    except (OSError, ValueError, RuntimeError) as e:
        print("vboard: %s" % e, file=sys.stderr)
        return 1
    holder["board"] = board
    try:
        board.run()
    except PowerCut:
        board.withdraw()     # the USB device vanishes with the power ...
        os._exit(3)          # ... and nothing else is cleaned up or flushed, exactly like pulling the plug
    except KeyboardInterrupt:
        pass
    finally:
        board.withdraw()
    return 0


if __name__ == "__main__":
    sys.exit(main())
