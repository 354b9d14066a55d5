"""Standby takeover, measured: repeated master kills on a redundant pair of virtual boards (part of `make bench`).

Each cycle kills the master's process (its power), waits for the standby's takeover, starts the master again and
waits for the hand-back. Takeover latency is from the kill (host clock) to the gateway receiving the standby's
`takeover` event (`collector_events.received_at`, same host clock). Missing and doubled one-second slots are counted
over the whole run from what the database holds. Beat, timeout and hand-back periods are shortened (the logic does
not depend on them), so twenty cycles take a few minutes; the target scales with them: timeout + one interval.

The same cycles run on a deliberately slowed machine (tests/test_pair.py, and `python -m tools.bench.pair --hogs
N`): `CpuHogs` starts busy-loop processes beside the pair, `Throttle` stops and continues the boards' processes in
short bursts (SIGSTOP / SIGCONT), and a `stop` cycle freezes the master until the standby has taken over, so the
master's loop wakes up late, still believing it is the active collector. Every process is started here and ended
here by its own id; a stopped board is always continued.

    python -m tools.bench.pair [--kills 4] [--stops 4] [--hogs 2] [--throttle]
"""

import argparse
import contextlib
import datetime
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tools.demo.stack import wait_for

PAIR = {"interval_ms": 1000, "status_interval_ms": 1000, "hb_interval_ms": 500, "hb_timeout_ms": 2000,
        "witness_timeout_ms": 2500, "handback_after_ms": 2000, "handback_margin_s": 2,
        "witness_recheck_ms": 3000}
KILL = "kill"      # the master's power goes (SIGKILL), then it boots again
STOP = "stop"      # the master's process is frozen (SIGSTOP) until the standby took over, then continued: a late loop


class CpuHogs:
    """`n` busy-loop processes (one per core by default) for as long as the `with` block runs."""

    def __init__(self, n=None):
        self.n = (os.cpu_count() or 1) if n is None else n
        self.procs = []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        self.procs = []


class Throttle:
    """Stops one of `boards` (BoardProc) for `burst_s` at random every `every_s` (SIGSTOP, then SIGCONT), from a
    thread, for as long as the `with` block runs: loops that run late by up to `burst_s` at any point. `pause()`
    holds the bursts off (a board must not be stopped while the caller freezes or restarts it)."""

    def __init__(self, boards, burst_s=0.3, every_s=1.0, seed=7):
        self.boards = boards
        self.burst_s = burst_s
        self.every_s = every_s
        self.rng = random.Random(seed)
        self.bursts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def pause(self):
        return self._lock

    def _run(self):
        while not self._stop.wait(self.rng.uniform(0.2, self.every_s)):
            with self._lock:
                b = self.rng.choice(self.boards)
                if not b.alive:
                    continue
                pid = b.proc.pid
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    continue
                try:
                    self._stop.wait(self.rng.uniform(0.05, self.burst_s))
                    self.bursts += 1
                finally:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass


class _NoThrottle:
    def pause(self):
        return threading.Lock()


def _events(stack, board, event):
    return stack.query("SELECT received_at FROM collector_events WHERE board=%s AND event=%s ORDER BY id",
                       (board, event))


def start_pair(stack, prefix="pair-"):
    wire = os.path.join(stack.run_dir, "hb.sock")
    master = stack.start_board(prefix + "a", role="master", hb_wire=wire, seed=11, **PAIR)
    standby = stack.start_board(prefix + "b", role="standby", hb_wire=wire, seed=12, **PAIR)
    stack.start_gateway(boards=[master, standby])
    wait_for(lambda: master.status()["clock"] == "ok" and standby.status()["clock"] == "ok", 60, "clocks")
    wait_for(lambda: standby.status()["role_state"] == "watching" and standby.status()["ring"] >= 2, 60,
             "the standby watching")
    return master, standby


def cycles(stack, master, standby, kinds, throttle=None):
    """Run one cycle per entry of `kinds` (KILL, STOP); returns the takeover latencies in ms, from the kill or the
    stop to the gateway receiving the standby's takeover event (to the standby saying it took over, when that event
    did not reach the database: events are best effort)."""
    throttle = throttle or _NoThrottle()
    latencies = []
    for kind in kinds:
        takeovers = standby.status()["takeovers"]
        events = len(_events(stack, standby.board_id, "takeover"))
        with throttle.pause() if kind == STOP else contextlib.nullcontext():   # a burst must not continue it
            at = time.time()
            if kind == KILL:
                master.kill()
            else:
                os.kill(master.proc.pid, signal.SIGSTOP)
            try:
                wait_for(lambda: standby.status()["takeovers"] > takeovers, 60, "takeover")
                seen = time.time()
            finally:
                if kind == STOP:
                    os.kill(master.proc.pid, signal.SIGCONT)
            if kind == KILL:
                time.sleep(1)                    # the master is off for a moment before it boots again
                master.start()
        try:
            wait_for(lambda: len(_events(stack, standby.board_id, "takeover")) > events, 5, "the takeover event")
            got = _events(stack, standby.board_id, "takeover")[-1][0]
            seen = got.replace(tzinfo=datetime.timezone.utc).timestamp()
        except TimeoutError:
            pass
        latencies.append((seen - at) * 1000.0)
        wait_for(lambda: standby.status()["role_state"] == "watching", 60, "hand-back")
        wait_for(lambda: master.status()["role_state"] == "active" and master.status()["publishing"], 60,
                 "the master publishing")
        time.sleep(2)                            # the master publishes a while before the next cycle
    return latencies


def audit(stack, master, standby, prefix="pair-"):
    """(checked, missing, doubled) slots once both boards have nothing left to send."""
    wait_for(lambda: master.status()["pending"] == 0 and standby.status()["pending"] == 0, 60, "drained")
    return stack.slot_audit(prefix)


def bench_pair(stack, kills):
    master, standby = start_pair(stack)
    try:
        time.sleep(3)
        latencies = sorted(cycles(stack, master, standby, [KILL] * kills))
        checked, missing, doubled = audit(stack, master, standby)
        return {"kills": kills, "p50_ms": latencies[len(latencies) // 2], "max_ms": latencies[-1],
                "min_ms": latencies[0], "target_ms": PAIR["hb_timeout_ms"] + PAIR["interval_ms"],
                "slots": checked, "missing": missing, "doubled": doubled}
    finally:
        stack.gateway.stop()
        for b in (master, standby):
            b.stop()


def main(argv=None):
    from tools.demo.stack import Stack
    p = argparse.ArgumentParser(prog="bench_pair", description="The pair's kill / stop cycles, optionally under "
                                                                "load; prints takeover times and the slot audit.")
    p.add_argument("--kills", type=int, default=4)
    p.add_argument("--stops", type=int, default=4)
    p.add_argument("--hogs", type=int, default=0, help="busy-loop processes beside the pair")
    p.add_argument("--throttle", action="store_true", help="SIGSTOP/SIGCONT bursts of the boards")
    args = p.parse_args(argv)
    kinds = [KILL, STOP] * min(args.kills, args.stops) + [KILL] * max(0, args.kills - args.stops) + \
        [STOP] * max(0, args.stops - args.kills)
    with tempfile.TemporaryDirectory(prefix="soil-bench-pair-") as base, Stack(os.path.join(base, "run")) as stack:
        stack.start_db()
        master, standby = start_pair(stack)
        with CpuHogs(args.hogs):
            if args.throttle:
                with Throttle([master, standby]) as throttle:
                    latencies = cycles(stack, master, standby, kinds, throttle)
            else:
                latencies = cycles(stack, master, standby, kinds)
        checked, missing, doubled = audit(stack, master, standby)
    print("cycles %s: takeover min %.0f / max %.0f ms; %d slots, %d missing, %d doubled"
          % (",".join(kinds), min(latencies), max(latencies), checked, missing, doubled))
    return 1 if doubled else 0


if __name__ == "__main__":
    sys.exit(main())
