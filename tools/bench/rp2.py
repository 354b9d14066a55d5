"""Figures measured on the real rp2 firmware (the virtual Pico): `python -m tools.bench.rp2 [--json]`.

- `make flash` against the virtual Pico: a full flash of a fresh board (every .mpy, config.json; the sdcard driver
  copied first, as offline) and an incremental one with nothing changed, each with the soft reset that starts
  main.py; the frozen image's flash (main.py and config.json only).
- Boot to first frame: the board powered on again (a new emulator process on the same flash) to the first reading
  frame on its USB line, wall time (with --pace wall emulated time follows it while the board sleeps).
- Emulated cycles per sample step: busy cycles (stats.json: the core's cycle count, which does not advance while it
  sleeps in WFI) over 20 s of main.py running without a gateway, per reading sampled; at 125 MHz that is the time a
  real RP2040 would spend (rp2040js counts instruction cycles; no flash wait states or XIP cache misses, so a real
  chip is somewhat slower). The step includes the frame on USB and, with no SD card fitted, the reading written to
  the flash fallback (LittleFS).
- Emulated cycles per replayed reading: the board runs 40 s with no gateway (its readings wait on the flash
  fallback), then a gateway with a private MariaDB starts: busy cycles from then until the last replayed row is
  stored, over the rows replayed (live sampling in that time included, so an upper bound), and the replay's wall
  time.
- Heap per role (single, master, standby), stock image + .mpy and frozen image, each role flashed as a user does
  (`make flash ROLE=...`; micropython-lib's sdcard as lib/sdcard.mpy, as `mpremote mip install sdcard` installs it):
  `gc.mem_alloc()` after a collection, before the firmware is imported (the REPL's own), after boardmain.start()
  read the role's config.json (what main.py does), and the largest value over
  30 loop runs of 10 steps (about 30 s of sampling without a gateway: the uplink's window fills). This peak is the
  quiet run's, not BRIEF.md's peak scenario (takeover, hand-back, full card, replay window), which needs the pair
  and the card on the real port.

Nothing is asserted: these are figures for docs/BENCHMARKS.md. Needs the images (tools/rp2/build.sh) and rp2040js
(make vpico).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from tools.rp2 import images
from tools.sim.vpico.proc import REPO, VPico, mpremote

ROLES = ("single", "master", "standby")
CLOCK_HZ = 125_000_000
FRAME = re.compile(rb"\$R,(\d+),")
# The heap as main.py leaves it: config.json as `make flash ROLE=...` wrote it, boardmain.start() reading it. The
# script is compiled on the board before it runs, and every name it uses is interned then, for good (a qstr pool
# that fills is followed by one twice its size: docs/MICROPYTHON.md), so it uses only names the firmware interns
# anyway (hal, c, boardmain, ...) and markers too long to be interned; a harness of its own names would move the
# firmware's names towards the next pool.
HEAP_SCRIPT = """
import gc, micropython
gc.collect()
print('soil-heap-base', gc.mem_alloc())
import boardmain
hal, c = boardmain.start()
gc.collect()
print('soil-heap-start', gc.mem_alloc())
micropython.qstr_info()
for _ in range(30):
    boardmain.loop(hal, c, 10)
    gc.collect()
    print('soil-heap-during', gc.mem_alloc())
hal.wdt.feed()
"""


def flash(board, *args):
    """`tools/flash.py --board pico --port <the board's pty> --id bench-1 ARGS`, as `make flash` runs it; returns its
    seconds."""
    t = time.monotonic()
    done = subprocess.run([sys.executable, "tools/flash.py", "--board", "pico", "--port", board.tty,
                           "--id", "bench-1"] + list(args), cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError("flash failed: %s" % done.stderr.strip()[-500:])
    return time.monotonic() - t


def _read_frames(tty, seconds, want=None):
    """(distinct reading seqs seen, seconds until the first) reading the board's line for `seconds` (or until
    `want` readings)."""
    import serial
    seqs, first = set(), None
    t0 = time.monotonic()
    buf = b""
    with serial.Serial(tty, 115200, timeout=0.1) as s:
        while time.monotonic() - t0 < seconds and (want is None or len(seqs) < want):
            buf = (buf + s.read(4096))[-8192:]
            for m in FRAME.finditer(buf):
                if first is None:
                    first = time.monotonic() - t0
                seqs.add(int(m.group(1)))
    return seqs, first


def heap(board, roles=ROLES, *flash_args):
    """{role: {"base", "start", "peak", "qstr_pools", "qstrs", "qstr_bytes"}} in bytes of gc.mem_alloc(): each
    role flashed as a user does (`make flash ROLE=...`, `flash_args` added), then HEAP_SCRIPT from a fresh REPL."""
    out = {}
    for role in roles:
        flash(board, "--role", role, "--reset", "none", *flash_args)
        text = mpremote(board, "exec", HEAP_SCRIPT, timeout=600).stdout
        figures = {k: [int(v) for v in re.findall(r"soil-heap-%s (\d+)" % k, text)]
                   for k in ("base", "start", "during")}
        if not (figures["base"] and figures["start"] and figures["during"]):
            raise RuntimeError("no heap figures for %s: %s" % (role, text[-500:]))
        out[role] = {"base": figures["base"][0], "start": figures["start"][0],
                     "peak": max(figures["start"] + figures["during"])}
        q = re.search(r"qstr pool: n_pool=(\d+), n_qstr=(\d+), n_str_data_bytes=\d+, n_total_bytes=(\d+)", text)
        if q:          # the interned names after start-up: a new pool is a step of several KB (docs/MICROPYTHON.md)
            out[role].update(zip(("qstr_pools", "qstrs", "qstr_bytes"), map(int, q.groups())))
    return out


def stock_run(root, image):
    board = VPico(os.path.join(root, "stock"), image).start()
    try:
        sdcard = ("--sdcard", images.sdcard_driver())   # offline, as mip would install it: lib/sdcard.mpy
        full = flash(board, *sdcard)
        incremental = flash(board, *sdcard)
        board.stop()
        t = time.monotonic()
        board.start()                          # power on: a new emulator on the same flash, to the USB device
        up = time.monotonic() - t
        _, first = _read_frames(board.tty, 60, want=1)
        boot_s = up + first if first is not None else float("nan")
        c0 = board.stats()["cycles"]
        seqs, _ = _read_frames(board.tty, 20)
        c1 = board.stats()["cycles"]
        cycles = (c1 - c0) / max(1, len(seqs))
        figures = {"flash_full_s": full, "flash_incremental_s": incremental, "boot_to_first_frame_s": boot_s,
                   "cycles_per_sample": cycles, "samples": len(seqs),
                   "sample_ms_at_125mhz": cycles / CLOCK_HZ * 1000}
        figures["heap"] = heap(board, ROLES, *sdcard)
        figures.update(replay(board, root))
        return figures
    finally:
        board.stop()


def replay(board, root, outage_s=40):
    """Cycles per replayed reading and the replay's rows and seconds (module docstring)."""
    from tools.demo.stack import Stack, wait_for
    stack = Stack(os.path.join(root, "replay"))
    try:
        stack.start_db()
        _read_frames(board.tty, outage_s)            # the outage: nobody acknowledges, readings pile up
        c0, t0 = board.stats()["cycles"], time.monotonic()
        stack.start_gateway(boards=[board])
        count = lambda: stack.query("SELECT COUNT(*) FROM plants WHERE board = 'bench-1' AND source = 'replay'")[0][0]
        last, since, cycles, t_last = -1, time.monotonic(), c0, t0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            n = count()
            if n != last:
                last, since, cycles, t_last = n, time.monotonic(), board.stats()["cycles"], time.monotonic()
            elif n > 0 and time.monotonic() - since > 5:
                break
            time.sleep(0.5)
        if last <= 0:
            raise RuntimeError("nothing was replayed: %s" % stack.gateway.log_text()[-500:])
        return {"replayed": last, "replay_s": t_last - t0, "cycles_per_replayed": (cycles - c0) / last}
    finally:
        stack.close()


def frozen_run(root, image):
    board = VPico(os.path.join(root, "frozen"), image).start()
    try:
        flash_s = flash(board, "--frozen", "--reset", "none")
        return {"flash_frozen_s": flash_s, "heap": heap(board, ROLES, "--frozen")}
    finally:
        board.stop()


def bench_rp2():
    stock = images.path("stock")
    frozen = images.path("frozen")
    images.path("bootrom")
    root = tempfile.mkdtemp(prefix="soil-bench-rp2-")
    try:
        return {"stock": stock_run(root, stock), "frozen": frozen_run(root, frozen)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(fig):
    s, f = fig["stock"], fig["frozen"]
    lines = ["make flash full (stock + .mpy): %.1f s; incremental: %.1f s; frozen: %.1f s"
             % (s["flash_full_s"], s["flash_incremental_s"], f["flash_frozen_s"]),
             "boot to first frame: %.1f s wall" % s["boot_to_first_frame_s"],
             "per sample step: %.0f emulated cycles = %.2f ms at 125 MHz (%d samples)"
             % (s["cycles_per_sample"], s["sample_ms_at_125mhz"], s["samples"]),
             "replay: %d readings in %.1f s, %.0f emulated cycles each = %.2f ms at 125 MHz (live sampling included)"
             % (s["replayed"], s["replay_s"], s["cycles_per_replayed"], s["cycles_per_replayed"] / CLOCK_HZ * 1000),
             "heap gc.mem_alloc() (REPL base / after start-up / peak of a quiet 30 s run), bytes; qstr pools after "
             "start-up:"]
    for role in ROLES:
        for name, h in (("stock+.mpy", s["heap"][role]), ("frozen", f["heap"][role])):
            lines.append("  %-8s %-10s %6d / %6d / %6d   (firmware: %.1f KB after start-up, %.1f KB peak; %s)" % (
                role, name, h["base"], h["start"], h["peak"], (h["start"] - h["base"]) / 1024,
                (h["peak"] - h["base"]) / 1024,
                "%d pools, %d names, %d B" % (h["qstr_pools"], h["qstrs"], h["qstr_bytes"]) if "qstrs" in h else "-"))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench-rp2", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="the figures as JSON")
    args = p.parse_args(argv)
    fig = bench_rp2()
    print(json.dumps(fig, indent=2) if args.json else report(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
