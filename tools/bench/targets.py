"""`make bench`: measure the targets of BRIEF.md side by side on one private server and write docs/BENCHMARKS.md.

One run, one private MariaDB/MySQL server (tools.demo.stack.Stack), real processes: virtual boards on pseudo-terminals
and the gateway service, exactly as `make demo` and the integration tests run them.

    python -m tools.bench            # about 3 minutes on 2 cores; writes docs/BENCHMARKS.md
    python -m tools.bench --quick    # about 1 minute, smaller sizes (the report says so)
    python -m tools.bench --no-write # print only

Measurements:
1. Replay into the database, rows/s, on the same server and table (`plants`, truncated between runs):
   a. the gateway's write path, `ReadingStore.insert_batch` in batches the writer takes (2000, also 500);
   a'. end to end: a virtual board with a large cached backlog on an UNPACED pty (`--baudrate 0`), the real
      gateway process, until every row is committed;
   b. `LOAD DATA LOCAL INFILE` of the same rows from a CSV file;
   c. the book's way: one autocommit INSERT per row (fewer rows; rows/s extrapolates).
2. Serial link use while replaying a backlog at 115200 baud: bytes the board put on the line per second
   (PtyLink.bytes_out, via the board's control socket) over the line's 11520 bytes/s.
3. Live reading to committed row latency: the board logs the host time of every sample (`--sample-log`); a poller
   records when each row first becomes visible in the database (an upper bound), and the row's `received_at`
   (UTC_TIMESTAMP(3) taken by the gateway just before its INSERT) gives a lower bound.
4. Gateway CPU while K boards stream one reading per second each (utime+stime from /proc), extrapolated to 100.

Timings are reported, never asserted: the exit status is 0 even when a target is missed (the report says MISSED).
"""

import argparse
import calendar
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

import pymysql

from gateway.config import GatewayConfig
from gateway.db import Reading, ReadingStore
from gateway.dbconn import DbConfig

WRITER_BATCH = GatewayConfig(None).batch_max     # what the gateway's writer takes at most per transaction
from tools.demo.stack import GATEWAY_USER, ROOT, Stack, wait_for

LINE_BYTES_PER_S = 115200 / 10.0      # 8N1: 10 bits per byte
TARGETS = {
    "load_ratio": 0.5,                # gateway replay >= 50% of LOAD DATA LOCAL INFILE
    "per_row_ratio": 20.0,            # gateway replay >= 20x one autocommit INSERT per row
    "link_use": 0.90,                 # >= 90% of the line's byte rate at 115200 baud
    "latency_p99_ms": 100.0,          # live reading to committed row, p99 < 100 ms
    "cpu_100_boards": 0.10,           # 100 boards at 1/s < 10% of one core
}

SIZES = {
    "full": {"n_bulk": 50000, "n_row": 5000, "repeats": 7, "n_e2e": 20000, "n_link": 3000, "link_window_s": 8.0,
             "n_latency": 300, "latency_interval_ms": 100, "latency_settle_s": 2.0, "cpu_boards": 100,
             "cpu_seconds": 20.0, "pair_kills": 20},
    "quick": {"n_bulk": 5000, "n_row": 500, "repeats": 1, "n_e2e": 5000, "n_link": 1000, "link_window_s": 3.0,
              "n_latency": 100, "latency_interval_ms": 100, "latency_settle_s": 1.0, "cpu_boards": 8,
              "cpu_seconds": 8.0, "pair_kills": 3},
}

_INSERT_ONE = ("INSERT INTO plants (board, collector, boot, seq, date_saved, moisture_raw, source, received_at, "
               "time_quality) VALUES (%s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(3), %s)")


def say(text=""):
    print(text, flush=True)


# --- helpers ----------------------------------------------------------------------------------------------------
def make_readings(n, board, boot=1, start=datetime.datetime(2026, 1, 1)):
    rows = []
    for i in range(n):
        t = (start + datetime.timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(Reading(board, "single", boot, i + 1, t, 20000 + (i * 37) % 20000, "replay", "rtc"))
    return rows


def db_config(stack):
    return DbConfig(host="127.0.0.1", port=stack.db.port, user=GATEWAY_USER, password=stack.gateway_password,
                    database="plant_moisture")


def gateway_conn(stack, **kw):
    """A TCP connection as the gateway's account, like the gateway's own (UTC session)."""
    return pymysql.connect(init_command="SET SESSION time_zone = '+00:00'",
                           **dict(stack.db.tcp_kwargs(GATEWAY_USER, stack.gateway_password, "plant_moisture"), **kw))


def truncate(stack):
    stack.query("TRUNCATE TABLE plants")


def count_rows(stack, board, boot=None):
    if boot is None:
        return stack.query("SELECT COUNT(*) FROM plants WHERE board = %s", (board,))[0][0]
    return stack.query("SELECT COUNT(*) FROM plants WHERE board = %s AND boot = %s", (board, boot))[0][0]


def epoch_utc(dt):
    return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def prefill_journal(state_dir, n, boot=1, start_epoch=None):
    """Put n cached readings on a new board's simulated SD card, as an outage would, in a fraction of the time.

    The readings belong to boot `boot`, and that boot number is persisted on the card, so the virtual board
    started on this folder boots as `boot + 1` and its live readings can never collide with the cached ones.
    """
    from gateway import frames
    from soil import bootcount, utc
    from soil.journal import Journal
    from tools.sim.host.sdcard import SimCard
    os.makedirs(state_dir, exist_ok=True)
    card = SimCard(os.path.join(state_dir, "sd"), 8 << 20)
    got, _ = bootcount.next_boot(card=card)
    assert got == boot, got
    journal = Journal(card, max_bytes=4 << 20)
    journal.open()
    start_epoch = int(time.time()) - n if start_epoch is None else start_epoch
    for i in range(n):
        tm = utc.from_epoch(start_epoch + i)
        journal.append(frames.reading_record(boot, i + 1, utc.iso(tm), 20000 + (i * 37) % 20000, ""))
    return journal.pending


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_gateway(stack):
    if stack.gateway is not None:
        stack.gateway.stop()


def stop_boards(boards):
    for b in boards:
        try:
            b.stop()
        except Exception:
            if b.alive:
                b.kill()


# --- 1. replay into the database ---------------------------------------------------------------------------------
def bench_insert_batch(stack, n, batch, repeats):
    rows = make_readings(n, "bench-batch")
    store = ReadingStore(db_config(stack))
    store.check()
    rates = []
    try:
        store.insert_batch(make_readings(200, "warm-up"))
        for _ in range(repeats):
            truncate(stack)
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                store.insert_batch(rows[i:i + batch])
            rates.append(n / (time.perf_counter() - t0))
        assert count_rows(stack, "bench-batch") == n
    finally:
        store.close()
    return statistics.median(rates), rates


def bench_load_data(stack, n, repeats):
    path = os.path.join(stack.run_dir, "replay.csv")
    with open(path, "w") as f:
        for r in make_readings(n, "bench-load"):
            f.write("%s,%s,%d,%d,%s,%d,%s,%s\n" % (r.board, r.collector, r.boot, r.seq, r.sample_time, r.raw,
                                                   r.source, r.time_quality))
    conn = gateway_conn(stack, local_infile=True, autocommit=False)
    rates = []
    try:
        with conn.cursor() as cur:
            for _ in range(repeats):
                truncate(stack)
                t0 = time.perf_counter()
                cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE plants FIELDS TERMINATED BY ',' "
                            "LINES TERMINATED BY '\\n' (board, collector, boot, seq, date_saved, moisture_raw, "
                            "source, time_quality) SET received_at = UTC_TIMESTAMP(3)", (path,))
                conn.commit()
                rates.append(n / (time.perf_counter() - t0))
        assert count_rows(stack, "bench-load") == n
    finally:
        conn.close()
    return statistics.median(rates), rates


def bench_replay_side_by_side(stack, n, batch, repeats):
    """LOAD DATA and the write path, one after the other in alternating order, `repeats` times: the ratio is taken
    per pair and its median reported, so a slow minute of a shared machine lands on both sides of a ratio."""
    loads, batches, ratios = [], [], []
    for i in range(repeats):
        got = {}
        for which in (("load", "batch") if i % 2 == 0 else ("batch", "load")):
            if which == "load":
                got[which] = bench_load_data(stack, n, 1)[0]
            else:
                got[which] = bench_insert_batch(stack, n, batch, 1)[0]
        loads.append(got["load"])
        batches.append(got["batch"])
        ratios.append(got["batch"] / got["load"])
    return {"load": (statistics.median(loads), loads), "batch": (statistics.median(batches), batches),
            "ratio": statistics.median(ratios), "ratios": ratios}


def bench_per_row(stack, n):
    rows = make_readings(n, "bench-row")
    truncate(stack)
    conn = gateway_conn(stack, autocommit=True)
    try:
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            for r in rows:
                cur.execute(_INSERT_ONE, (r.board, r.collector, r.boot, r.seq, r.sample_time, r.raw, r.source,
                                          r.time_quality))
            rate = n / (time.perf_counter() - t0)
        assert count_rows(stack, "bench-row") == n
    finally:
        conn.close()
    return rate


def bench_replay_e2e(stack, n, window=None):
    """A board whose card holds n cached readings, on an unpaced pty; the real gateway drains it."""
    board_id = "replay-fast" if window is None else "replay-w%d" % window
    state = os.path.join(stack.run_dir, "boards", board_id)
    prefill_journal(state, n)
    # "0", not 0: tools/demo/stack.py's BoardProc drops option values equal to False, and 0 == False.
    board = stack.start_board(board_id, baudrate="0", interval_ms=3600000, rtc_set=True, status_interval_ms=10000,
                              window=window)
    try:
        t0 = time.time()
        stack.start_gateway(boards=[board])
        wait_for(lambda: count_rows(stack, board_id, boot=1) >= n, 30 + n / 200.0, "the replay of %d rows" % n,
                 interval=0.02)
        wall = time.time() - t0
        (first, last), = stack.query("SELECT MIN(received_at), MAX(received_at) FROM plants "
                                     "WHERE board = %s AND boot = 1", (board_id,))
        after_first = stack.query("SELECT COUNT(*) FROM plants WHERE board = %s AND boot = 1 AND received_at > %s",
                                  (board_id, first))[0][0]
        span = epoch_utc(last) - epoch_utc(first)
        # One batch is one INSERT with one received_at (milliseconds): distinct values count the transactions.
        batches = stack.query("SELECT COUNT(DISTINCT received_at) FROM plants WHERE board = %s AND boot = 1",
                              (board_id,))[0][0]
        dupes = stack.query("SELECT COUNT(*) - COUNT(DISTINCT seq) FROM plants WHERE board = %s AND boot = 1",
                            (board_id,))[0][0]
        return {"rate": after_first / span if span > 0 else float("nan"), "wall_rate": n / wall, "wall_s": wall,
                "span_s": span, "rows": n, "batches": batches, "duplicates": dupes}
    finally:
        stop_gateway(stack)
        stop_boards([board])


# --- 2. serial link use at 115200 baud ---------------------------------------------------------------------------
def bench_link(stack, n, window_s):
    board_id = "replay-115k"
    state = os.path.join(stack.run_dir, "boards", board_id)
    prefill_journal(state, n)
    board = stack.start_board(board_id, baudrate=115200, interval_ms=3600000, rtc_set=True)
    try:
        stack.start_gateway(boards=[board])
        wait_for(lambda: count_rows(stack, board_id, boot=1) >= 50, 30, "the 115200-baud replay to start")
        time.sleep(0.5)
        s0, c0, t0 = board.status(), count_rows(stack, board_id, boot=1), time.monotonic()
        time.sleep(window_s)
        s1, c1, t1 = board.status(), count_rows(stack, board_id, boot=1), time.monotonic()
        if s1["pending"] == 0:
            raise RuntimeError("the backlog ran out during the measuring window: use a larger --link-rows")
        dt = t1 - t0
        byte_rate = (s1["bytes_out"] - s0["bytes_out"]) / dt
        rows = c1 - c0
        wait_for(lambda: count_rows(stack, board_id, boot=1) >= n, 30 + n / 150.0, "the rest of the replay")
        return {"use": byte_rate / LINE_BYTES_PER_S, "byte_rate": byte_rate, "rows_per_s": rows / dt,
                "bytes_per_row": (s1["bytes_out"] - s0["bytes_out"]) / rows if rows else float("nan"),
                "window_s": dt, "resends": s1["resends"]}
    finally:
        stop_gateway(stack)
        stop_boards([board])


# --- 3. live latency -------------------------------------------------------------------------------------------------
def _read_sample_log(path):
    sampled = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    sampled[int(parts[1])] = float(parts[2])
    except OSError:
        pass
    return sampled


def bench_latency(stack, n, interval_ms, settle_s):
    board_id = "live"
    state = os.path.join(stack.run_dir, "boards", board_id)
    os.makedirs(state, exist_ok=True)
    log_path = os.path.join(state, "samples.log")
    board = stack.start_board(board_id, baudrate=115200, interval_ms=interval_ms, rtc_set=True, sample_log=log_path)
    seen = {}
    stop = threading.Event()
    conn = gateway_conn(stack, autocommit=True)

    def poll():
        last = 0
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT seq, received_at FROM plants WHERE board = %s AND seq > %s", (board_id, last))
                now = time.time()
                for seq, received in cur.fetchall():
                    seen[seq] = (now, received)
                    last = max(last, seq)
                stop.wait(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    chosen = []
    try:
        stack.start_gateway(boards=[board])
        poller.start()
        wait_for(lambda: seen, 30, "the first live row")
        cut = time.time() + settle_s      # readings sampled before the gateway settled are not live latency

        def enough():
            sampled = _read_sample_log(log_path)
            later = sorted(seq for seq, t in sampled.items() if t >= cut)[:n]
            if len(later) == n and all(seq in seen for seq in later):
                chosen[:] = [(seq, sampled[seq]) for seq in later]
                return True
            return False
        wait_for(enough, 30 + n * interval_ms / 1000.0 * 2, "%d live rows" % n, interval=0.1)
    finally:
        stop.set()
        poller.join(5)
        conn.close()
        stop_gateway(stack)
        stop_boards([board])
    upper, lower = [], []
    for seq, t in chosen:
        observed, received = seen[seq]
        upper.append((observed - t) * 1000.0)
        lower.append((epoch_utc(received) - t) * 1000.0)
    return {"n": len(upper), "p50": percentile(upper, 50), "p99": percentile(upper, 99), "max": max(upper),
            "p50_lower": percentile(lower, 50), "p99_lower": percentile(lower, 99), "interval_ms": interval_ms}


# --- 4. gateway CPU ----------------------------------------------------------------------------------------------------
def bench_cpu(stack, k, seconds):
    boards = []
    try:
        boards = stack.start_boards(("cpu-%02d" % i, {"baudrate": 115200, "interval_ms": 1000, "rtc_set": True,
                                                      "seed": i}) for i in range(k))
        stack.start_gateway(boards=boards)
        pid = stack.gateway.proc.pid
        wait_for(lambda: stack.query("SELECT COUNT(DISTINCT board) FROM plants WHERE board LIKE 'cpu-%%'")[0][0]
                 >= k, 60, "rows from all %d boards" % k)
        time.sleep(2.0)
        r0 = stack.query("SELECT COUNT(*) FROM plants WHERE board LIKE 'cpu-%%'")[0][0]
        c0, t0 = proc_cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = proc_cpu_seconds(pid), time.monotonic()
        r1 = stack.query("SELECT COUNT(*) FROM plants WHERE board LIKE 'cpu-%%'")[0][0]
        share = (c1 - c0) / (t1 - t0)
        return {"boards": k, "share": share, "share_100": share * 100.0 / k, "rows_per_s": (r1 - r0) / (t1 - t0),
                "seconds": t1 - t0}
    finally:
        stop_gateway(stack)
        stop_boards(boards)


# --- facts and the report ---------------------------------------------------------------------------------------------
def machine_facts(stack):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    try:
        dirty = [line[3:] for line in subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                                     cwd=ROOT, capture_output=True, text=True,
                                                     timeout=10).stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        dirty = []
    flush = stack.query("SELECT @@innodb_flush_log_at_trx_commit, @@innodb_buffer_pool_size")[0]
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "cpu": cpu, "server": stack.query("SELECT VERSION()")[0][0],
            "python": platform.python_version(), "pymysql": pymysql.__version__,
            "kernel": platform.release(), "commit": commit, "dirty": dirty,
            "flush": "innodb_flush_log_at_trx_commit=%s, buffer pool %d MiB" % (flush[0], int(flush[1]) >> 20)}


class Report:
    def __init__(self):
        self.rows = []          # (what, measured, target, ratio, verdict)
        self.notes = []

    def add(self, what, measured, target, ratio, ok):
        verdict = "n/a" if ok is None else ("pass" if ok else "MISSED")
        self.rows.append((what, measured, target, "%.2f" % ratio if ratio is not None else "-", verdict))
        say("  %-58s %-22s target %-18s %s" % (what, measured, target, verdict))


def fmt_rate(x):
    return "{:,.0f} rows/s".format(x)


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench", description="Measure the targets in BRIEF.md; write docs/BENCHMARKS.md.")
    p.add_argument("--quick", action="store_true", help="smaller sizes, about one minute")
    p.add_argument("--run-dir", default=os.path.join(ROOT, "run", "bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    p.add_argument("--no-write", action="store_true", help="print only, do not write the report")
    args = p.parse_args(argv)
    mode = "quick" if args.quick else "full"
    z = SIZES[mode]
    shutil.rmtree(args.run_dir, ignore_errors=True)
    started = time.monotonic()
    stack = Stack(args.run_dir)
    res = {}
    errors = {}

    def phase(name, title, fn, *a):
        say("== %s" % title)
        t = time.monotonic()
        try:
            res[name] = fn(*a)
            say("   %s (%.1f s)" % (res[name], time.monotonic() - t))
        except Exception as e:
            errors[name] = "%s: %s" % (e.__class__.__name__, e)
            say("   ERROR %s" % errors[name])

    try:
        say("bench: %s run, private server in %s" % (mode, os.path.relpath(args.run_dir, ROOT)))
        stack.start_db()
        facts = machine_facts(stack)
        say("   %s, %d CPU (%s), Python %s" % (facts["server"], facts["nproc"], facts["cpu"], facts["python"]))
        phase("replay", "1a/1b. ReadingStore.insert_batch (batches of %d, the writer's batch_max) and LOAD DATA "
              "LOCAL INFILE, %d rows each, %d alternating pairs" % (WRITER_BATCH, z["n_bulk"], z["repeats"]),
              bench_replay_side_by_side, stack, z["n_bulk"], WRITER_BATCH, z["repeats"])
        if "replay" in res:
            res["batch"], res["load"] = res["replay"]["batch"], res["replay"]["load"]
        phase("batch500", "1a. ReadingStore.insert_batch, %d rows in batches of 500" % z["n_bulk"],
              bench_insert_batch, stack, z["n_bulk"], 500, 1)
        phase("row", "1c. one autocommit INSERT per row, %d rows" % z["n_row"], bench_per_row, stack, z["n_row"])
        truncate(stack)
        phase("e2e", "1a'. board backlog of %d on an unpaced pty -> gateway process -> COMMIT" % z["n_e2e"],
              bench_replay_e2e, stack, z["n_e2e"])
        phase("e2e_w240", "1a'. the same with --window 240 (for comparison; the firmware's default is 24)",
              bench_replay_e2e, stack, z["n_e2e"], 240)
        phase("link", "2. replay of %d cached readings at 115200 baud" % z["n_link"], bench_link, stack,
              z["n_link"], z["link_window_s"])
        phase("latency", "3. live latency, %d readings every %d ms at 115200 baud"
              % (z["n_latency"], z["latency_interval_ms"]), bench_latency, stack, z["n_latency"],
              z["latency_interval_ms"], z["latency_settle_s"])
        phase("cpu", "4. gateway CPU, %d boards at 1 reading/s" % z["cpu_boards"], bench_cpu, stack,
              z["cpu_boards"], z["cpu_seconds"])
        truncate(stack)
        phase("pair", "5. standby takeover over %d master kills" % z["pair_kills"], bench_pair, stack,
              z["pair_kills"])
        phase("heap", "6. MicroPython heap after start-up and at the peak, per role (.mpy, real interpreter)",
              bench_heap)
        phase("flash", "7. make flash BOARD=sim against the virtual MicroPython board: full, then incremental",
              bench_flash)
        phase("fallback", "8. readings the fallback journal on a board's flash holds at 1 Hz (default size)",
              bench_fallback)
        phase("full_card", "9. a card that stays full: the cache lost, and samples kept elsewhere before a loss",
              bench_full_card, stack)
        phase("rp2", "10. the real rp2 firmware on the virtual Pico: heap per role, cycles, boot, make flash",
              bench_rp2)
    except Exception as e:
        errors["setup"] = "%s: %s" % (e.__class__.__name__, e)
        say("bench: ERROR %s" % errors["setup"])
        facts = None
    finally:
        stack.close()
    elapsed = time.monotonic() - started

    say("\n== results (%s run, %.0f s)" % (mode, elapsed))
    rep = build_report(res, errors)
    if facts is None:
        return 1
    text = render(rep, res, errors, facts, z, mode, elapsed)
    if not args.no_write:
        with open(args.out, "w") as f:
            f.write(text)
        say("bench: wrote %s" % os.path.relpath(args.out, ROOT))
    return 0


from tools.bench.pair import PAIR, bench_pair  # noqa: E402  (phase 5 lives in its own module)
from tools.bench.board import bench_flash, bench_heap  # noqa: E402  (phases 6 and 7)
from tools.bench.fallback import bench_fallback  # noqa: E402  (phase 8)
from tools.bench.card import SEGMENT_BYTES, bench_full_card  # noqa: E402  (phase 9)
from tools.bench.rp2 import CLOCK_HZ, bench_rp2, report as rp2_report  # noqa: E402  (phase 10)
from tools.sim.micropython.heap import AFTER_START_BUDGET, PEAK_BUDGET  # noqa: E402

FROZEN_BUDGET = 16 * 1024        # BRIEF.md: with the core frozen into the firmware image, at most 16 KB


def build_report(res, errors):
    rep = Report()
    load = res.get("load", (None,))[0]
    row = res.get("row")
    batch = res.get("batch", (None,))[0]
    e2e = res.get("e2e")
    t = TARGETS
    for name, label, rate in (("e2e", "(context) one board's replay end to end, unpaced pty, vs LOAD DATA",
                               e2e["rate"] if e2e else None),
                              ("batch", "Replay into the database: gateway write path vs LOAD DATA", batch)):
        if rate is not None and load:
            r = rate / load
            if name == "batch" and res.get("replay"):
                r = res["replay"]["ratio"]          # the median of the per-pair ratios, not a ratio of medians
            rep.add(label, "%s = %.1f%%" % (fmt_rate(rate), 100 * r), ">= 50%% of LOAD DATA (%s)" % fmt_rate(load),
                    r / t["load_ratio"], (r >= t["load_ratio"]) if name == "batch" else None)
        else:
            rep.add(label, "not measured", ">= 50% of LOAD DATA", None, None)
    for name, label, rate in (("e2e", "(context) one board's replay end to end vs one INSERT per row",
                               e2e["rate"] if e2e else None),
                              ("batch", "Replay into the database: gateway write path vs one INSERT per row", batch)):
        if rate is not None and row:
            r = rate / row
            rep.add(label, "%.1fx (%s)" % (r, fmt_rate(rate)), ">= 20x of %s" % fmt_rate(row),
                    r / t["per_row_ratio"], (r >= t["per_row_ratio"]) if name == "batch" else None)
        else:
            rep.add(label, "not measured", ">= 20x per-row", None, None)
    link = res.get("link")
    if link:
        rep.add("Serial link use during replay at 115200 baud", "%.1f%% (%.0f rows/s)"
                % (100 * link["use"], link["rows_per_s"]), ">= 90% of 11520 B/s", link["use"] / t["link_use"],
                link["use"] >= t["link_use"])
    else:
        rep.add("Serial link use during replay at 115200 baud", "not measured", ">= 90%", None, None)
    lat = res.get("latency")
    if lat:
        rep.add("Live reading to committed row, p99 (p50)", "%.1f ms (%.1f ms)" % (lat["p99"], lat["p50"]),
                "p99 < 100 ms", lat["p99"] / t["latency_p99_ms"], lat["p99"] < t["latency_p99_ms"])
    else:
        rep.add("Live reading to committed row, p99", "not measured", "p99 < 100 ms", None, None)
    cpu = res.get("cpu")
    if cpu:
        rep.add("Gateway CPU, 100 boards at 1/s (%s)" % ("measured with 100" if cpu["boards"] >= 100 else
                                                     "extrapolated from %d" % cpu["boards"]),
                "%.1f%% of a core" % (100 * cpu["share_100"]), "< 10% of one core",
                cpu["share_100"] / t["cpu_100_boards"], cpu["share_100"] < t["cpu_100_boards"])
    else:
        rep.add("Gateway CPU, 100 boards at 1/s", "not measured", "< 10% of one core", None, None)
    pair = res.get("pair")
    if pair:
        rep.add("Standby takeover after a master kill, max (p50) over %d kills" % pair["kills"],
                "%.0f ms (%.0f ms)" % (pair["max_ms"], pair["p50_ms"]),
                "<= timeout + interval = %d ms" % pair["target_ms"], pair["max_ms"] / pair["target_ms"],
                pair["max_ms"] <= pair["target_ms"])
        rep.add("Missing (doubled) one-second slots across all %d failovers and hand-backs" % pair["kills"],
                "%d (%d) of %d" % (pair["missing"], pair["doubled"], pair["slots"]), "0 (0)", None,
                pair["missing"] == 0 and pair["doubled"] == 0)
    else:
        rep.add("Standby takeover after a master kill", "not measured", "<= timeout + interval", None, None)
    heap = res.get("heap")
    if heap:
        worst = max(start for start, _ in heap.values())
        rep.add("MicroPython heap after start-up (WebAssembly port), core + adapter as .mpy (single / master / "
                "standby)",
                " / ".join("%.1f KB" % (heap[r][0] / 1024.0) for r in ("single", "master", "standby")),
                "<= %d KB" % (AFTER_START_BUDGET // 1024), worst / float(AFTER_START_BUDGET),
                worst <= AFTER_START_BUDGET)
        worst = max(peak for _, peak in heap.values())
        rep.add("MicroPython heap at the peak: takeover, hand-back, full card, replay window (single / master / "
                "standby)", " / ".join("%.1f KB" % (heap[r][1] / 1024.0) for r in ("single", "master", "standby")),
                "<= %d KB" % (PEAK_BUDGET // 1024), worst / float(PEAK_BUDGET), worst <= PEAK_BUDGET)
    else:
        rep.add("MicroPython heap after start-up and at the peak", "not measured",
                "<= %d KB / <= %d KB" % (AFTER_START_BUDGET // 1024, PEAK_BUDGET // 1024), None, None)
    fc = res.get("full_card")
    if fc:
        rep.add("A card that stays full, at 1 Hz: tolerated before a reading sampled while full is lost (cache lost "
                "when it went full)", "%d s (%d cached readings)" % (fc["tolerated_s_at_1hz"], fc["cache_lost"]),
                "(no target; cache lost <= one %d-byte segment)" % SEGMENT_BYTES, None, None)
    else:
        rep.add("A card that stays full, at 1 Hz", "not measured", "(no target)", None, None)
    flash = res.get("flash")
    if flash:
        rep.add("make flash against the virtual board: full / incremental", "%.1f s / %.1f s"
                % (flash["full_s"], flash["incremental_s"]), "(no target)", None, None)
    rp2 = res.get("rp2")
    if rp2:
        for image, label, budget in (
                ("stock", "core + adapter + sdcard as .mpy on the stock image", AFTER_START_BUDGET),
                ("frozen", "core + adapter frozen into the image", FROZEN_BUDGET)):
            heap = rp2[image]["heap"]
            used = [heap[r]["start"] - heap[r]["base"] for r in ("single", "master", "standby")]
            rep.add("Real rp2 firmware (virtual Pico): heap after start-up, %s (single / master / standby)" % label,
                    " / ".join("%.1f KB" % (u / 1024.0) for u in used), "<= %d KB" % (budget // 1024),
                    max(used) / float(budget), max(used) <= budget)
        st = rp2["stock"]
        replay_ms = st["cycles_per_replayed"] / CLOCK_HZ * 1000
        rep.add("Real rp2 firmware: board-side replay rate a 125 MHz RP2040 would reach (live sampling included)",
                "%.0f readings/s (%.2f ms each)" % (1000 / replay_ms, replay_ms),
                "(context: 115200 baud carries %.0f rows/s)" % (res["link"]["rows_per_s"] if res.get("link")
                                                                else 221), None, None)
        rep.add("Real rp2 firmware: one sample step at 125 MHz; power-on to first frame", "%.0f ms; %.1f s"
                % (st["sample_ms_at_125mhz"], st["boot_to_first_frame_s"]), "(no target)", None, None)
        rep.add("make flash against the virtual Pico: full / incremental / frozen image", "%.1f s / %.1f s / %.1f s"
                % (st["flash_full_s"], st["flash_incremental_s"], rp2["frozen"]["flash_frozen_s"]), "(no target)",
                None, None)
    else:
        rep.add("Real rp2 firmware on the virtual Pico", "not measured", "<= 48 KB / <= 16 KB frozen", None, None)
    fb = res.get("fallback")
    if fb:
        rep.add("Card away: readings the flash fallback holds per board at 1 Hz (%d KiB, %.0f B per reading)"
                % (fb["max_bytes"] // 1024, fb["bytes_per_reading"]),
                "%d = %.1f h" % (fb["readings"], fb["hours_at_1hz"]), "(no target)", None, None)
    return rep


def render(rep, res, errors, facts, z, mode, elapsed):
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("Generated by `make bench` (`python -m tools.bench%s`): do not edit by hand, run it again. Targets come from"
      % (" --quick" if mode == "quick" else ""))
    w("BRIEF.md (\"Targets\"). Timings are measured and reported here, never asserted; a missed target reads MISSED.")
    w("")
    w("- Date: %s; %s run, %.0f s in all; commit %s%s"
      % (facts["date"], mode, elapsed, facts["commit"],
         ", with uncommitted changes to " + ", ".join("`%s`" % d for d in facts["dirty"]) if facts["dirty"]
         else ", clean tree"))
    w("- Machine: %d CPU (`nproc`), %s; Linux %s" % (facts["nproc"], facts["cpu"], facts["kernel"]))
    w("- Database: %s, a private server started by tools/demo/stack.py (%s), loopback TCP as the gateway's "
      "least-privilege account" % (facts["server"], facts["flush"]))
    w("- Python %s, PyMySQL %s" % (facts["python"], facts["pymysql"]))
    w("")
    w("## Results")
    w("")
    w("| What | Measured | Target | Measured / target | Result |")
    w("| --- | --- | --- | --- | --- |")
    for what, measured, target, ratio, verdict in rep.rows:
        w("| %s | %s | %s | %s | %s |" % (what, measured, target, ratio, "**MISSED**" if verdict == "MISSED"
                                          else verdict))
    w("")
    w("\"Measured / target\" is the measured ratio (or value) divided by the target's; for the `>=` targets 1.00 or "
      "more passes, for the `<` targets less than 1.00 passes.")
    w("")
    w("## Raw figures")
    w("")
    load = res.get("load")
    batch = res.get("batch")
    b500 = res.get("batch500")
    row = res.get("row")
    e2e = res.get("e2e")
    w("| Measurement | rows/s | Rows | Notes |")
    w("| --- | --- | --- | --- |")
    if load:
        w("| 1b. `LOAD DATA LOCAL INFILE` | %s | %d | median of %d: %s |" % (
            "{:,.0f}".format(load[0]), z["n_bulk"], len(load[1]), ", ".join("{:,.0f}".format(x) for x in load[1])))
    if batch:
        w("| 1a. `ReadingStore.insert_batch`, batches of %d | %s | %d | median of %d: %s |" % (WRITER_BATCH,
            "{:,.0f}".format(batch[0]), z["n_bulk"], len(batch[1]), ", ".join("{:,.0f}".format(x) for x in batch[1])))
    rp = res.get("replay")
    if rp:
        w("| 1a / 1b per pair (the write path's rate over LOAD DATA's, measured back to back) | - | - | median "
          "%.1f%%; pairs: %s |" % (100 * rp["ratio"], ", ".join("%.0f%%" % (100 * x) for x in rp["ratios"])))
    if b500:
        w("| 1a. `ReadingStore.insert_batch`, batches of 500 | %s | %d | one run |" % ("{:,.0f}".format(b500[0]),
                                                                                    z["n_bulk"]))
    if e2e:
        w("| 1a'. board backlog -> unpaced pty -> gateway process -> COMMIT | %s | %d | steady state from the rows' "
          "`received_at`; %s rows/s over %.1f s counting the gateway's start-up; ~%s transactions; %d stored twice |" % (
              "{:,.0f}".format(e2e["rate"]), e2e["rows"], "{:,.0f}".format(e2e["wall_rate"]), e2e["wall_s"],
              e2e["batches"], e2e["duplicates"]))
    e2w = res.get("e2e_w240")
    if e2w:
        w("| 1a'. the same, board `--window 240` instead of the default 24 (not a target, shows what bounds 1a') "
          "| %s | %d | %s rows/s counting start-up; ~%s transactions; %d stored twice |" % (
              "{:,.0f}".format(e2w["rate"]), e2w["rows"], "{:,.0f}".format(e2w["wall_rate"]), e2w["batches"],
              e2w["duplicates"]))
    if row:
        w("| 1c. one autocommit `INSERT` per row (the book's way) | %s | %d | one run |" % ("{:,.0f}".format(row),
                                                                                          z["n_row"]))
    link = res.get("link")
    if link:
        w("| 2. replay at 115200 baud | %s | %d cached | %.0f B/s on the line = %.1f%% of 11520 B/s; %.1f bytes "
          "per row incl. hello/status frames, so the line allows at most %.0f rows/s; %d resends |" % (
              "{:,.0f}".format(link["rows_per_s"]), z["n_link"], link["byte_rate"], 100 * link["use"],
              link["bytes_per_row"], LINE_BYTES_PER_S / link["bytes_per_row"], link["resends"]))
    w("")
    lat = res.get("latency")
    if lat:
        w("Live latency (%d readings, one every %d ms, 115200 baud, those sampled in the first %.0f s after the first row discarded): observed committed p50 %.1f ms,"
          " p99 %.1f ms, max %.1f ms; lower bound from `received_at` p50 %.1f ms, p99 %.1f ms."
          % (lat["n"], lat["interval_ms"], z["latency_settle_s"], lat["p50"], lat["p99"], lat["max"], lat["p50_lower"],
             lat["p99_lower"]))
        w("")
    cpu = res.get("cpu")
    if cpu:
        w("Gateway CPU: %d boards at one reading per second, %.0f rows/s committed over %.1f s: the gateway process "
          "used %.2f%% of one core (%.3f%% per board)%s."
          % (cpu["boards"], cpu["rows_per_s"], cpu["seconds"], 100 * cpu["share"], 100 * cpu["share"] / cpu["boards"],
             "" if cpu["boards"] >= 100 else ", so **extrapolated** linearly to 100 boards: %.1f%%"
             % (100 * cpu["share_100"])))
        w("")
    pair = res.get("pair")
    if pair:
        w("Standby takeover (%d master kills, beat every %d ms, timeout %d ms, sample interval %d ms): latency from "
          "the kill to the gateway receiving the standby's takeover event min %.0f / p50 %.0f / max %.0f ms; %d "
          "one-second slots audited, %d missing, %d stored by both boards." % (
              pair["kills"], PAIR["hb_interval_ms"], PAIR["hb_timeout_ms"], PAIR["interval_ms"], pair["min_ms"],
              pair["p50_ms"], pair["max_ms"], pair["slots"], pair["missing"], pair["doubled"]))
        w("")
    heap = res.get("heap")
    if heap:
        w("MicroPython heap (bytes of live heap taken by the firmware; after start-up / at the peak): %s."
          % "; ".join("%s %d / %d" % (r, heap[r][0], heap[r][1]) for r in ("single", "master", "standby")))
        w("")
    fc = res.get("full_card")
    if fc:
        w("Full card (a board with %d readings cached and no gateway, every %d ms; its card then reports itself full "
          "whatever is deleted): the journal gave up %d cached readings when the episode began (its bound: one "
          "segment); then %d samples were kept elsewhere (the collector's store for what the card refuses) before "
          "the first of them was lost: %d s at one reading per second." % (
              fc["cached"], fc["interval_ms"], fc["cache_lost"], fc["tolerated_samples"], fc["tolerated_s_at_1hz"]))
        w("")
    rp2 = res.get("rp2")
    if rp2:
        w("The real rp2 firmware (MicroPython v1.27.0 RPI_PICO built from source, tools/rp2/build.sh) on the "
          "virtual Pico (rp2040js, tools/sim/vpico); tools/bench/rp2.py says how each figure is taken. Emulated "
          "cycles count instructions without flash wait states or XIP cache misses, so a real RP2040 is somewhat "
          "slower. The heap's peak here is a quiet 30 s run's, not BRIEF.md's peak scenario:")
        w("")
        w("```")
        w(rp2_report(rp2))
        w("```")
        w("")
    if errors:
        w("Errors (these measurements are missing above):")
        w("")
        for k, v in sorted(errors.items()):
            w("- %s: %s" % (k, v))
        w("")
    w("## How each number is measured")
    w("")
    w("Everything runs in one `make bench` on one private server (`tools/demo/stack.py`); the database client is PyMySQL "
      "over loopback TCP as the gateway's account (`%s`), the same table (`plant_moisture.plants`, its final shape "
      "with the `reading_identity` UNIQUE key and the BEFORE INSERT trigger), truncated before each of 1a, 1b and "
      "1c. Sizes: %s." % (GATEWAY_USER, ", ".join("%s=%s" % kv for kv in sorted(z.items()))))
    w("")
    w("1. **Replay into the database.**")
    w("   - 1a, the gateway's write path: `gateway.db.ReadingStore.insert_batch` (validation, multi-row INSERT "
      "statements of about 1 MB, COMMIT) called with consecutive slices of %d rows, the writer's `batch_max` (and "
      "once with 500). Rows/s = rows / wall time of all calls." % WRITER_BATCH)
    w("   - 1a', end to end: the board's simulated SD card is filled with the cached readings first "
      "(`soil.journal.Journal` on `tools.sim.host.sdcard.SimCard`, as an outage would leave it, but in a fraction of "
      "the time). Then the virtual board starts with `--baudrate 0` (pty unpaced) and the gateway process starts; "
      "the board replays through its window of frames in flight, the gateway commits and acknowledges. Rows/s is "
      "steady state: rows committed after the first batch divided by the time between the first and the last "
      "batch's `received_at` (the gateway's UTC_TIMESTAMP(3) at each insert). The rate including process start-up is "
      "given too. It is shown for context, not judged: the target compares ways of replaying rows *into the "
      "database* (the book's INSERT per row, LOAD DATA, the gateway's batches), which is 1a; one board's replay "
      "end to end is bounded by its link (221 rows/s at 115200 baud, measurement 2), far below any of them. The "
      "same run with the board's `--window 240` (not the firmware's default 24) is shown for comparison: the "
      "end-to-end replay is bounded by frames in flight per commit-and-acknowledge round trip, not by the "
      "database.")
    w("   - 1b: the same rows written to a CSV file beforehand, then one `LOAD DATA LOCAL INFILE ... SET received_at "
      "= UTC_TIMESTAMP(3)` and COMMIT (PyMySQL `local_infile=True`; the server runs with `--local-infile=1`).")
    w("   - 1c, the book's way: a new single-row INSERT statement per reading on an autocommit connection "
      "(a commit, and so a redo-log flush, per row); fewer rows, rows/s scales.")
    w("2. **Serial link at 115200 baud.** A board with a card full of cached readings, paced at 115200 baud by "
      "`tools/sim/host/ptylink.py` (10 bits per byte, a 64-byte FIFO burst), replays to the gateway. After the first "
      "50 rows and half a second, the board's `bytes_out` (control socket `status`) and the committed row count are "
      "read twice, %.0f s apart; use = bytes/s / 11520 B/s." % z["link_window_s"])
    w("3. **Live latency.** The virtual board runs with `--sample-log` (tools/sim/vboard/board.py wraps the collector's "
      "`sample()` and writes the host's `time.time()` just before each sample: the RTC carries whole seconds "
      "only). A poller in the benchmark queries the new rows every 2 ms on its own connection and notes the host "
      "time each row is first visible: that is an upper bound of sample-to-commit (it adds up to one poll "
      "interval plus a query), and it is the figure judged against the target. The row's `received_at` is taken "
      "by the gateway just before its INSERT, so `received_at - sample time` is a lower bound (it leaves out the "
      "insert and the COMMIT). Same host clock for all three.")
    w("4. **Gateway CPU.** K virtual boards (K = 100 in a full run; the quick run extrapolates linearly) at one "
      "reading per second, 115200 baud; after every board has rows and 2 s more, utime+stime of the gateway "
      "process (all its threads, `/proc/<pid>/stat`) over the wall time. The K board processes, the server and "
      "the benchmark run on the same cores.")
    w("5. **Standby takeover.** A master and a standby virtual board joined by the simulated heartbeat wire "
      "(`tools/sim/host/i2cnet.py`), both on the gateway (`tools/bench/pair.py`). Each cycle SIGKILLs the master's "
      "process, waits for the standby's `takeover` event in `collector_events`, restarts the master and waits for "
      "the hand-back. Latency = the event's `received_at` - the host time of the kill. Slots: every second from "
      "the first trusted row to the last, counted from `plants`. Beat, timeout and hand-back periods are shortened "
      "(the target, timeout + one interval, is scaled with them).")
    w("6. **MicroPython heap.** The firmware as deployed (soil/*.py, hal.py, boards.py precompiled by mpy-cross "
      "1.27; main.py as source) runs `main.start()` and its loop per role on the real MicroPython interpreter "
      "(WebAssembly) with the simulated `machine` (tools/sim/micropython/board); live bytes after a collection at "
      "the interpreter's top level, the simulation's own modules subtracted (tools/sim/micropython/heap.py, the "
      "harness of the budget test). The peak is the largest figure after 200 loop steps without a gateway and after "
      "each 10 s chunk of a 640 s run (board/simpeak.py) in which a standby takes over and hands back, a gateway "
      "outage fills a 16 KB journal and its backlog is replayed in windows of 24. Loaded .mpy bytecode lives in "
      "the heap; modules frozen into a firmware image (firmware/micropython/manifest.py) would not, which this "
      "machine cannot build yet.")
    w("7. **make flash.** tools/flash.py (what `make flash BOARD=sim` runs) with the real mpremote against the "
      "virtual MicroPython board (tools/sim/mpboard): a first flash of an empty board, then the same again, which "
      "compares hashes and copies nothing.")
    w("8. **Flash fallback at 1 Hz.** tools/bench/fallback.py: the firmware's journal with the collector's fallback "
      "size on the flash model of the virtual boards (1.4 MB in 4096-byte blocks, a Pico's LittleFS), filled with "
      "the records a board makes at one reading per second until the journal first drops by its policy; the "
      "readings it held then, over 3600, are the hours a card may stay away per board. `python -m "
      "tools.bench.fallback` runs this phase alone.")
    w("9. **A card that stays full.** tools/bench/card.py: a virtual board without a gateway caches readings, then "
      "its simulated card's `full` fault is set (free space 0 whatever is deleted). From the board's `status`: the "
      "rise of `dropped` when the card went full (the journal's one segment per full episode, docs/JOURNAL.md), then "
      "the samples taken until `dropped` rises again (a reading sampled while full is lost). The count of samples "
      "does not depend on the interval, so at 1 Hz it is seconds.")
    w("")
    w("## Caveats")
    w("")
    w("- Loopback, a private server with a 64 MiB buffer pool and `innodb_flush_log_at_trx_commit=1` on this "
      "machine's disk: commit latency (an fsync) dominates 1c and bounds small batches. A Raspberry Pi's SD card "
      "makes fsync much slower, which hurts 1c far more than the batched paths.")
    w("- The boards, the gateway, the server and the benchmark share %d CPUs; figures move by some 10-20%% from run "
      "to run." % facts["nproc"])
    w("- MySQL 8 was not measured in this run.")
    w("")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
