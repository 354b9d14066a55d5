"""The gateway on a Galera cluster, measured (not a test): what three nodes cost per commit against one server, how
long the gateway writes nothing after its node is killed, and how long a cut-off site takes to drain its boards'
caches once it heals. Writes docs/BENCHMARKS-GALERA.md and prints the same text.

    python -m tools.bench.galera [--quick] [--out docs/BENCHMARKS-GALERA.md]

Everything runs on this machine, on the product's own parts: one private MariaDB server and a private 3-node Galera
cluster (tools/galera) side by side, virtual boards on pseudo-terminals and the gateway process (tools/demo/stack.py).

a. Load: 100 boards at one reading per second, one gateway process at a time, alternately on the single server and
   on the cluster (its node 1 first), in back-to-back pairs. Per window, from the gateway's own /metrics scraped at
   its start and end: transactions and rows committed per second, and the commit time histogram
   (soil_gateway_commit_duration_seconds: INSERT + COMMIT of one batch).
b. Failover: two boards at 5 readings/s, the gateway on the cluster with all three nodes; SIGKILL the node it
   writes to; a poller on the next node in the gateway's order records when the first row stamped after the kill
   becomes visible there. The killed node rejoins (IST) before the next trial.
c. A site cut off: a gateway configured with node 3 only (a site whose link is down reaches nothing else), two
   boards at one reading per second; node 3 is isolated (gmcast.isolate=1) for a while, so the boards cache; after
   gmcast.isolate=0, time until both boards report nothing pending and nothing in flight, then an audit of every
   (board, boot, seq) on node 3 and node 1.
"""

import argparse
import datetime
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

import pymysql
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import PREFIX
from tools.bench.targets import machine_facts, proc_cpu_seconds, stop_boards
from tools.demo.stack import ROOT, Stack, admin_query, install_schema, wait_for
from tools.galera.cluster import Cluster

SIZES = {
    "full": {"boards": 100, "pairs": 5, "window_s": 20.0, "isolate_s": 30.0, "kills": {3.0: 5, 5.0: 5}},
    "quick": {"boards": 100, "pairs": 2, "window_s": 10.0, "isolate_s": 15.0, "kills": {3.0: 2}},
}
SETTLE_S = 3.0            # after every board is heard again: the few readings cached while no gateway ran, replayed
FAILOVER = {"interval_ms": 200, "status_interval_ms": 1000}      # tests/test_galera.py's boards
TARGET_FAILOVER_S = 7.0


def say(text):
    print(text, file=sys.stderr, flush=True)


def new_cluster(base, suspect_timeout, password):
    """A fresh 3-node cluster with the schema and the gateway's account (DDL and grants replicate)."""
    c = Cluster.create(os.path.join(base, "galera-%g" % suspect_timeout), nodes=3, suspect_timeout=suspect_timeout,
                       progress=say)
    install_schema(c.nodes[0].admin_kwargs(), password)
    return c


def use(stack, nodes):
    """Point the next gateway at these Galera nodes, in this order; no nodes: at the stack's single server."""
    stack.db_servers = ["127.0.0.1:%d" % n.port for n in nodes]
    stack.db_options = {"cluster": "galera"} if nodes else {}


def start_gateway(stack, boards, **extra):
    """The gateway process with [metrics] on a free localhost port; returns the /metrics URL once it listens."""
    if os.path.exists(os.path.join(stack.run_dir, "gateway", "status.json")):
        os.remove(os.path.join(stack.run_dir, "gateway", "status.json"))      # the last gateway's URL
    stack.start_gateway(boards=boards, sections={"metrics": {"port": 0}}, **extra)
    return wait_for(lambda: (stack.gateway.status() or {}).get("metrics"), 60, "the gateway's metrics URL")


def scrape(url):
    """{(name, labels as a sorted tuple): value} of one /metrics answer."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def bucket_quantile(before, after, q):
    """Quantile q of the commits between two scrapes, from the bucket deltas: (the upper bound of the bucket that
    holds it, Prometheus's histogram_quantile estimate: linear between that bucket's bounds), in seconds."""
    name = PREFIX + "commit_duration_seconds_bucket"
    cum = sorted((float(dict(labels)["le"]), after[(n, labels)] - before.get((n, labels), 0.0))
                 for (n, labels) in after if n == name)
    rank = q * cum[-1][1]
    low, below = 0.0, 0.0
    for le, count in cum:
        if count >= rank:
            return le, low + (le - low) * (rank - below) / (count - below) if count > below else le
        low, below = le, count


def load_window(stack, boards, seconds):
    """One window of the running gateway: commits/s, rows/s, commit time (bucket p50/p99, exact mean), CPU."""
    url = start_gateway(stack, boards)
    pid = stack.gateway.proc.pid

    def heard_all():
        m = scrape(url)
        got = [v for (n, labels), v in m.items() if n == PREFIX + "readings_total" and dict(labels)["board"]]
        return len(got) >= len(boards) and min(got) >= 2
    wait_for(heard_all, 120, "readings from all %d boards" % len(boards), interval=0.5)
    time.sleep(SETTLE_S)
    m0, c0, t0 = scrape(url), proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    m1, c1, t1 = scrape(url), proc_cpu_seconds(pid), time.monotonic()
    stack.gateway.stop()

    def delta(name):
        return m1[(PREFIX + name, ())] - m0[(PREFIX + name, ())]
    n = delta("commit_duration_seconds_count")
    return {"tx_s": delta("batches_committed_total") / (t1 - t0), "rows_s": delta("rows_committed_total") / (t1 - t0),
            "p50": bucket_quantile(m0, m1, 0.50)[0], "p99": bucket_quantile(m0, m1, 0.99)[0],
            "p99_est": bucket_quantile(m0, m1, 0.99)[1], "commits": n,
            "mean": delta("commit_duration_seconds_sum") / n, "cpu": (c1 - c0) / (t1 - t0),
            "per_commit": delta("rows_committed_total") / delta("batches_committed_total")}


def bench_load(stack, cluster, z):
    boards = stack.start_boards(("load-%03d" % i, {"interval_ms": 1000, "rtc_set": True, "seed": i})
                                for i in range(z["boards"]))
    say("%d boards started" % len(boards))
    pairs = []
    try:
        for i in range(z["pairs"]):
            pair = {}
            for label, nodes in (("single", []), ("cluster", cluster.nodes)):
                use(stack, nodes)
                pair[label] = load_window(stack, boards, z["window_s"])
                say("pair %d %-7s %.1f commits/s, %.1f rows/s, p99 <= %g ms (~%.1f), mean %.2f ms, CPU %.1f%%"
                    % (i + 1, label, pair[label]["tx_s"], pair[label]["rows_s"], pair[label]["p99"] * 1000,
                       pair[label]["p99_est"] * 1000,
                       pair[label]["mean"] * 1000, pair[label]["cpu"] * 100))
            pairs.append(pair)
    finally:
        stop_boards(boards)
    return pairs


def in_use(stack, cluster):
    """The node the gateway writes to now, from its status snapshot (database_cluster), or None."""
    nodes = ((stack.gateway.status() or {}).get("database_cluster") or {}).get("nodes", [])
    ports = [int(n["server"].rsplit(":", 1)[1]) for n in nodes if n.get("in_use")]
    return next((n for n in cluster.nodes if ports and n.port == ports[0]), None)


def bench_kills(stack, cluster, boards, trials):
    """SIGKILL the gateway's node `trials` times: (kill -> first row visible on a survivor, kill -> that row's
    received_at) in seconds."""
    use(stack, cluster.nodes)
    start_gateway(stack, boards, wait_ms=300)
    out = []
    try:
        for _ in range(trials):
            victim = wait_for(lambda: in_use(stack, cluster), 60, "the gateway's node")
            survivor = next(n for n in cluster.nodes if n is not victim)     # the next in the gateway's order
            since = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            wait_for(lambda: admin_query(victim.admin_kwargs(), "SELECT COUNT(*) FROM plants WHERE received_at > %s",
                                         (since,))[0][0] >= 10, 60, "10 fresh rows on %s" % victim.name)
            conn = pymysql.connect(autocommit=True, database="plant_moisture", **survivor.admin_kwargs())
            try:
                with conn.cursor() as cur:
                    cur.execute("SET time_zone = '+00:00'")
                    time.sleep(random.random())        # a random phase against the boards' samples
                    killed_at = time.time()
                    victim.kill()
                    stamp = datetime.datetime.fromtimestamp(killed_at, datetime.timezone.utc).replace(tzinfo=None)

                    def first():
                        cur.execute("SELECT MIN(received_at) FROM plants WHERE received_at > %s", (stamp,))
                        return cur.fetchone()[0]
                    got = wait_for(first, 60, "a commit on %s" % survivor.name, interval=0.02)
                    seen_at = time.time()
            finally:
                conn.close()
            stamped = got.replace(tzinfo=datetime.timezone.utc).timestamp()
            out.append((seen_at - killed_at, stamped - killed_at))
            say("kill -9 %s (evs.suspect_timeout %g s): first row on %s visible after %.2f s, stamped %.2f s"
                % (victim.name, cluster.state["suspect_timeout"], survivor.name, out[-1][0], out[-1][1]))
            cluster.rejoin(victim.index)
    finally:
        stack.gateway.stop()
    return out


def audit(node, boards, sampled):
    """(readings sampled, lost, doubled) over (board, boot, seq) on one node; sampled: {board: (boot, last seq)}."""
    lost = doubled = total = 0
    for b in boards:
        rows = admin_query(node.admin_kwargs(), "SELECT boot, seq, COUNT(*) FROM plants WHERE board = %s "
                           "GROUP BY boot, seq", (b.board_id,))
        have = {(boot, seq): n for boot, seq, n in rows}
        boot, last = sampled[b.board_id]
        total += last
        lost += sum(1 for seq in range(1, last + 1) if (boot, seq) not in have)
        doubled += sum(1 for n in have.values() if n > 1)
    return total, lost, doubled


def bench_isolation(stack, cluster, seconds):
    site = cluster.node(3)
    boards = [stack.start_board("site-3-%d" % i, interval_ms=1000, status_interval_ms=1000, rtc_set=True, seed=i)
              for i in (1, 2)]
    use(stack, [site])
    start_gateway(stack, boards, wait_ms=300)

    def drained():
        return all(st["pending"] == 0 and st["inflight"] == 0 for st in (b.status() for b in boards))
    try:
        wait_for(lambda: admin_query(site.admin_kwargs(), "SELECT COUNT(DISTINCT board) FROM plants WHERE board "
                                     "LIKE 'site-3-%%'")[0][0] == 2, 60, "rows from both site boards")
        site.isolate(True)
        wait_for(lambda: (site.wsrep() or {}).get("wsrep_cluster_status") == "non-Primary", 60,
                 "node 3 to leave the primary component")
        time.sleep(seconds)
        cached = [b.status()["pending"] for b in boards]
        healed = time.monotonic()
        site.isolate(False)
        synced_s = None
        while not drained():
            if synced_s is None and site.synced():
                synced_s = time.monotonic() - healed
            if time.monotonic() - healed > 120:
                raise TimeoutError("the site boards did not drain within 120 s of the heal")
            time.sleep(0.05)
        drained_s = time.monotonic() - healed
        if synced_s is None:
            site.wait_synced()
            synced_s = time.monotonic() - healed
        for b in boards:
            b.stop_sampling()
        wait_for(drained, 60, "the last readings acknowledged")
        sampled = {}
        for b in boards:
            st = b.status()
            sampled[b.board_id] = (st["boot"], st["seq"])
        other = cluster.node(1)
        wait_for(lambda: audit(other, boards, sampled)[1] == 0, 30, "node 1 to hold every reading")
        return {"cached": cached, "synced_s": synced_s, "drained_s": drained_s,
                "audit": {n.name: audit(n, boards, sampled) for n in (site, other)}}
    finally:
        stack.gateway.stop()
        stop_boards(boards)


def median_ratio(pairs, key):
    return statistics.median(p["cluster"][key] / p["single"][key] for p in pairs)


def render(facts, z, mode, pairs, iso, kills, elapsed):
    lines = ["# The gateway on a Galera cluster", "",
             "Generated by `python -m tools.bench.galera%s` on %s in %.0f min (%s, %d cores: %s; Linux %s; %s; "
             "commit %s). One private MariaDB server and a private 3-node Galera cluster on loopback, side by side "
             "on this one machine, which is shared with other work: read ratios, not absolute figures."
             % (" --quick" if mode == "quick" else "", facts["date"], elapsed / 60, platform.machine(), facts["nproc"],
                facts["cpu"], facts["kernel"], facts["server"], facts["commit"]), ""]
    if mode == "quick":
        lines += ["**A --quick run**: %d pairs of %g s windows, kills with evs.suspect_timeout 3 s only."
                  % (z["pairs"], z["window_s"]), ""]
    lines += ["## a. %d boards at one reading per second: one server vs a 3-node cluster" % z["boards"], "",
              "| pair | setup | commits/s | rows/s | commit p50 (ms, bucket) | commit p99 (ms, bucket) | "
              "p99 estimate (ms) | commit mean (ms) | gateway CPU |", "|---|---|---|---|---|---|---|---|---|"]
    for i, p in enumerate(pairs):
        for label in ("single", "cluster"):
            r = p[label]
            lines.append("| %d | %s | %.1f | %.1f | <= %g | <= %g | %.1f | %.2f | %.1f%% |"
                         % (i + 1, "one server" if label == "single" else "Galera, 3 nodes", r["tx_s"], r["rows_s"],
                            r["p50"] * 1000, r["p99"] * 1000, r["p99_est"] * 1000, r["mean"] * 1000,
                            100 * r["cpu"]))
    keys = ("tx_s", "rows_s", "per_commit", "p99", "p99_est", "mean", "cpu")
    med = {label: {k: statistics.median(p[label][k] for p in pairs) for k in keys} for label in ("single", "cluster")}
    lines += ["", "Medians over the %d pairs, and the median of the per-pair ratios cluster / single:" % len(pairs), "",
              "| | one server | Galera, 3 nodes | cluster / single |", "|---|---|---|---|"]
    for key, what, fmt, scale in (("tx_s", "commits/s", "%.1f", 1), ("rows_s", "rows/s", "%.1f", 1),
                                  ("per_commit", "rows per commit", "%.1f", 1),
                                  ("p99", "commit p99 (ms, bucket bound)", "<= %g", 1000),
                                  ("p99_est", "commit p99 estimate (ms)", "%.1f", 1000),
                                  ("mean", "commit mean (ms)", "%.2f", 1000),
                                  ("cpu", "gateway CPU (% of a core)", "%.1f", 100)):
        lines.append("| %s | %s | %s | %.2f |" % (what, fmt % (med["single"][key] * scale),
                                                   fmt % (med["cluster"][key] * scale), median_ratio(pairs, key)))
    lines += ["", "## b. kill -9 of the gateway's node -> its first commit on a survivor", "",
              "Target (BRIEF): the gateway commits on a surviving node within %g s of a node's death."
              % TARGET_FAILOVER_S, "",
              "| evs.suspect_timeout | trials | first row visible on the survivor (s): min / median / max | "
              "that row's received_at - kill (s): min / median / max | within %g s |" % TARGET_FAILOVER_S,
              "|---|---|---|---|---|"]
    for suspect, rows in kills.items():
        seen, stamped = [r[0] for r in rows], [r[1] for r in rows]
        lines.append("| %g s | %d | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %d of %d |"
                     % (suspect, len(rows), min(seen), statistics.median(seen), max(seen), min(stamped),
                        statistics.median(stamped), max(stamped), sum(1 for s in seen if s < TARGET_FAILOVER_S),
                        len(rows)))
    lines += ["", "## c. a site cut off (its node isolated %g s) -> the boards' caches drained after it heals"
              % z["isolate_s"], "",
              "| cached at the heal (readings per board) | heal -> node 3 Synced (s) | heal -> both boards drained (s) "
              "| readings audited (node 3) | lost | doubled | node 1: lost / doubled |",
              "|---|---|---|---|---|---|---|"]
    n3, n1 = iso["audit"]["node3"], iso["audit"]["node1"]
    lines.append("| %s | %.2f | %.2f | %d | %d | %d | %d / %d |"
                 % (", ".join(str(c) for c in iso["cached"]), iso["synced_s"], iso["drained_s"], n3[0], n3[1], n3[2],
                    n1[1], n1[2]))
    lines += ["", "## How each number is measured", "",
              "- **Setups (a).** The same gateway process type (`python -m gateway run`, tools/demo/stack.py), the "
              "same %d virtual boards (one reading per second each, 115200 baud ptys, status every 10 s: the CPU "
              "benchmark's boards), kept running throughout; only the gateway is replaced. *One server*: a private "
              "MariaDB (`host`/`port`). *Cluster*: `servers` = the three nodes, node 1 first, `cluster = \"galera\"`; "
              "every node on this machine (loopback, rsync SST, `innodb_flush_log_at_trx_commit=1` like the single "
              "server). Each pair is one window on the single server then one on the cluster, back to back; %d pairs "
              "of %g s." % (z["boards"], z["pairs"], z["window_s"]),
              "- **Window.** After the gateway starts, wait until every board's `soil_gateway_readings_total` is at "
              "least 2, then %g s more (the few readings each board cached while no gateway ran are replayed by "
              "then); scrape `/metrics` (the gateway's `[metrics]` on 127.0.0.1, port 0), wait the window, scrape "
              "again, stop the gateway." % SETTLE_S,
              "- **Commits/s** = the delta of `soil_gateway_batches_committed_total` (reading transactions the writer "
              "committed; board status upserts are not in it) over the window's host time; **rows/s** the delta of "
              "`soil_gateway_rows_committed_total`. With %d boards at 1/s, rows/s near %d means no replay was in the "
              "window; commits/s below rows/s is the writer's group commit (it takes what arrives within `linger_ms` "
              "= 10 ms). The rows/s are set by the boards, so a ratio of 1.00 says the cluster keeps up with this "
              "load; it is not the cluster's capacity. A slower COMMIT leaves more readings waiting for the next "
              "one, so the same rows/s take fewer, larger commits (*rows per commit* = the window's rows / its "
              "commits)." % (z["boards"], z["boards"]),
              "- **Commit latency** = `soil_gateway_commit_duration_seconds` (the writer's monotonic time around "
              "`insert_batch`: INSERT and COMMIT of one batch, over TCP to the node in use). p50/p99 are "
              "bucket-resolution: the upper bound of the bucket (1, 2.5, 5, 10, 25, 50, 100, 250 ms ...) holding "
              "that quantile of the window's commits, from the bucket deltas between the two scrapes; the mean is "
              "exact (delta of `_sum` / delta of `_count`). The ratio of p99 bounds is a ratio of bucket bounds; the "
              "*p99 estimate* is what Prometheus's `histogram_quantile(0.99, ...)` would say over the same deltas "
              "(linear between the bounds of that bucket: an assumption about where in the bucket the commits lie, "
              "not a measurement). The histogram times reading batches only; board status upserts are not in it.",
              "- **Gateway CPU** = the gateway process's utime+stime (/proc) over the window, per core.",
              "- **Ratios** = the median of the per-pair ratios cluster / single (not a ratio of medians).",
              "- **Failover (b).** A fresh cluster per `evs.suspect_timeout` (`evs.inactive_timeout` = twice it), two "
              "boards at 5 readings/s (`interval_ms` 200), the gateway with all three nodes (`wait_ms` 300). Each "
              "trial: wait for 10 fresh rows on the node the gateway uses (its status snapshot, "
              "`database_cluster`), sleep a random 0-1 s, note the host time and SIGKILL that node; a poller on the "
              "next node in the gateway's order (one connection, every 20 ms) looks for the first row with "
              "`received_at` after the kill. *Visible* = host time the poller saw it (an upper bound of the commit, "
              "by at most the poll interval); *received_at* = the gateway's UTC_TIMESTAMP(3), taken just before the "
              "INSERT, as tools/bench/ha.py takes it: on Galera it can come before the commit by the whole stall, "
              "since a survivor runs the INSERT at once and holds the COMMIT until the dead node is evicted, so "
              "*visible* is the figure judged against the target. The killed node rejoins by IST and is Synced "
              "before the next trial (the gateway stays where it went; the next trial kills that node).",
              "- **A site cut off (c).** A gateway configured with node 3 only (`servers` = [node 3]; a site whose "
              "link is down reaches no other node either), two boards at one reading per second with status every "
              "second, `wait_ms` 300 (with `servers` the writer looks for a usable node every 0.25 s). Node 3 is cut "
              "off with `gmcast.isolate=1` (it leaves the primary component and answers 1047) for %g s while the "
              "boards cache; then `gmcast.isolate=0`. *Drained* = host time from the heal until both boards' control "
              "sockets report `pending == 0` and `inflight == 0` (polled every 50 ms); *Synced* = until node 3 is "
              "Synced in the primary component again. Then the boards stop sampling, the last readings are "
              "acknowledged, and every (board, boot, seq) from 1 to each board's last seq is counted on node 3 and on "
              "node 1: *lost* = absent, *doubled* = more than one row."
              % z["isolate_s"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench_galera")
    p.add_argument("--quick", action="store_true", help="2 pairs of 10 s, kills at suspect_timeout 3 s only")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS-GALERA.md"))
    args = p.parse_args(argv)
    mode = "quick" if args.quick else "full"
    z = SIZES[mode]
    t0 = time.monotonic()
    base = tempfile.mkdtemp(prefix="soil-bench-galera-")
    stack = Stack(os.path.join(base, "run"))
    cluster = None
    kills = {}
    try:
        stack.start_db()
        facts = machine_facts(stack)
        cluster = new_cluster(base, 3.0, stack.gateway_password)
        pairs = bench_load(stack, cluster, z)
        iso = bench_isolation(stack, cluster, z["isolate_s"])
        say("isolation: drained %.2f s after the heal, audit %s" % (iso["drained_s"], iso["audit"]))
        boards = [stack.start_board("kill-%d" % i, seed=i, **FAILOVER) for i in (1, 2)]
        for suspect, trials in z["kills"].items():
            if cluster.state["suspect_timeout"] != suspect:
                cluster.close()
                cluster = new_cluster(base, suspect, stack.gateway_password)
            kills[suspect] = bench_kills(stack, cluster, boards, trials)
        stop_boards(boards)
    finally:
        stack.close()
        if cluster is not None:
            cluster.close()
        shutil.rmtree(base, ignore_errors=True)
    text = render(facts, z, mode, pairs, iso, kills, time.monotonic() - t0)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
