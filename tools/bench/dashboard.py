"""What the dashboard costs the gateway: CPU of the gateway process with the page open in a browser and polling,
against the same gateway with the page closed, K virtual boards at one reading per second each.

    python -m tools.bench.dashboard [--boards 100] [--seconds 20] [--pairs 3]

Pairs of back-to-back windows (page closed, page open: headless Debian Chromium showing the dashboard, polling
/api/status every 2 s and the chart's /api/readings and /api/events every 10 s); the figures are utime+stime of the
gateway process (all threads, /proc/<pid>/stat) over wall time, and the median of the pairs' differences is the
dashboard's cost. The boards, the database server, the browser and this script share the same cores, so single
windows move by 10-20%: judge the median (docs/BENCHMARKS.md, "Targets").
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT]

from tools.bench.targets import proc_cpu_seconds  # noqa: E402
from tools.demo.stack import Stack, wait_for  # noqa: E402


def window(pid, seconds):
    c0, t0 = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (proc_cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--boards", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--pairs", type=int, default=3)
    args = p.parse_args(argv)
    from tools.browser import chromium    # the same driver as the browser test
    why = chromium.missing()
    if why:
        print("bench dashboard: %s" % why, file=sys.stderr)
        return 1
    base = tempfile.mkdtemp(prefix="soil-bench-dash-")
    page = None
    try:
        with Stack(os.path.join(base, "run")) as stack:
            stack.start_db()
            stack.start_boards(("dash-%03d" % i, {"baudrate": 115200, "interval_ms": 1000, "rtc_set": True,
                                                  "seed": i}) for i in range(args.boards))
            gw = stack.start_gateway(dashboard={"port": 0})
            url = gw.dashboard_url()
            wait_for(lambda: stack.query("SELECT COUNT(DISTINCT board) FROM plants WHERE board LIKE 'dash-%%'")[0][0]
                     >= args.boards, 120, "rows from all %d boards" % args.boards)
            page = chromium.Browser()
            closed, opened = [], []
            for i in range(args.pairs):
                page.command("goto", 30, url="about:blank")
                closed.append(window(gw.proc.pid, args.seconds))
                page.open(url, timeout_s=60)
                opened.append(window(gw.proc.pid, args.seconds))
                polls = page.eval("document.body.dataset.polls")
                print("pair %d: page closed %.2f%% of a core, page open %.2f%% (%s status polls)"
                      % (i + 1, closed[-1] * 100, opened[-1] * 100, polls), flush=True)
            rows = stack.query("SELECT COUNT(*) FROM plants WHERE board LIKE 'dash-%%'")[0][0]
            diffs = [o - c for c, o in zip(closed, opened)]
            print("dashboard cost, %d boards at 1 reading/s, %d pairs of %.0f s: page closed median %.2f%% of one "
                  "core, page open median %.2f%%, difference median %.2f%% (pairs: %s); %d rows stored"
                  % (args.boards, args.pairs, args.seconds, statistics.median(closed) * 100,
                     statistics.median(opened) * 100, statistics.median(diffs) * 100,
                     ", ".join("%+.2f" % (d * 100) for d in diffs), rows))
    finally:
        if page is not None:
            page.close()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
