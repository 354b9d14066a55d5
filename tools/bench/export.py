"""What `soil-gateway export` costs: N one-second readings of one board exported as CSV, the real command in its
own process, its rows/s and its peak RSS, and the time a year (31,536,000 rows) would take at that rate.

    python -m tools.bench.export [--rows 1000000] [--format csv|jsonl]

One private server (tools.demo.stack.Stack, migrated, with the gateway's least-privilege account), filled with
LOAD DATA LOCAL INFILE as the admin; then `python -m gateway export -c gateway.toml --format csv`, stdout to
/dev/null, as the gateway's account. The time is the command's whole run (start-up, connection, the server's sort
and every row through the unbuffered cursor and the CSV writer); the peak RSS is the command's own process, from
wait4(). The server shares the cores with the exporter and with whatever else the machine runs: the figures are
reported, never asserted.
"""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT]

from tools.demo.stack import GATEWAY_USER, Stack, process_env  # noqa: E402

YEAR_ROWS = 365 * 86400
BOARD = "bench-export"
START = datetime.datetime(2026, 1, 1)


def fill(stack, rows, base):
    """`rows` one-second readings of BOARD from START, through a CSV file and LOAD DATA LOCAL INFILE."""
    path = os.path.join(base, "readings.csv")
    with open(path, "w") as f:
        t = START
        one = datetime.timedelta(seconds=1)
        for i in range(rows):
            f.write("%s,single,1,%d,%s,%d,live,rtc\n" % (BOARD, i, t.strftime("%Y-%m-%d %H:%M:%S"), 500 + i % 97))
            t += one
    kw = stack.db.admin_kwargs()
    import pymysql
    conn = pymysql.connect(autocommit=True, database="plant_moisture", local_infile=True, **kw)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE plants FIELDS TERMINATED BY ',' "
                        "(board, collector, boot, seq, date_saved, moisture_raw, source, time_quality) "
                        "SET received_at = UTC_TIMESTAMP(3)", (path,))
            cur.execute("SELECT COUNT(*) FROM plants WHERE board = %s", (BOARD,))
            stored = cur.fetchone()[0]
    finally:
        conn.close()
    os.unlink(path)
    return stored


def run_export(stack, base, fmt):
    """(seconds, peak RSS in KiB, exit code, stderr) of one `soil-gateway export` run to /dev/null."""
    cfg = os.path.join(base, "gateway.toml")
    with open(cfg, "w") as f:
        f.write('[database]\nhost = "127.0.0.1"\nport = %d\nuser = "%s"\ndatabase = "plant_moisture"\n'
                % (stack.db.port, GATEWAY_USER))
    env = process_env()
    env["SOIL_DB_PASSWORD"] = stack.gateway_password
    err_path = os.path.join(base, "export.err")
    with open(os.devnull, "wb") as null, open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "export", "-c", cfg, "--format", fmt],
                                cwd=ROOT, env=env, stdout=null, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)          # reaped here: Popen must not wait again
    with open(err_path) as f:
        return seconds, usage.ru_maxrss, proc.returncode, f.read().strip()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1000000)
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = p.parse_args(argv)
    base = tempfile.mkdtemp(prefix="soil-bench-export-")
    try:
        with Stack(os.path.join(base, "run")) as stack:
            stack.start_db()
            t0 = time.monotonic()
            stored = fill(stack, args.rows, base)
            print("filled %d one-second readings of %s in %.1f s (LOAD DATA)" % (stored, BOARD,
                                                                                   time.monotonic() - t0), flush=True)
            seconds, rss_kib, code, err = run_export(stack, base, args.format)
            if code != 0:
                print("bench export: soil-gateway export failed (exit %d): %s" % (code, err), file=sys.stderr)
                return 1
            rate = stored / seconds
            print("soil-gateway export --format %s of %d rows to /dev/null: %.1f s, %.0f rows/s, peak RSS %.1f MiB "
                  "(%s); a year of one-second readings (%d rows) at this rate: %.1f min"
                  % (args.format, stored, seconds, rate, rss_kib / 1024.0, err, YEAR_ROWS, YEAR_ROWS / rate / 60))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
