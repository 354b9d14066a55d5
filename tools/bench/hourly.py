"""What the hourly aggregates buy and cost (gateway/hourly.py, docs/AGGREGATES.md). Not part of `make bench`.

    python -m tools.bench.hourly [--rows 1000000] [--pairs 5]

On a private MariaDB/MySQL server (tools/dbserver.py) in a temporary folder, with the gateway's least-privilege
account over TCP as the gateway connects: `--rows` one-second readings of one board ending now (1,000,000 is about
11.6 days; every 97th minute replayed), written by the admin in one INSERT ... SELECT. Then:

* migration 10 on that table (its received_at index is dropped first and the migration re-run): the one-off cost;
* the first full aggregation (HourlyAggregates.refresh() with no watermark);
* a typical incremental pass: 60 new live rows, then refresh() (the median of 5);
* the dashboard's week (ChartData.readings("week"), the whole call: count, query, JSON-ready points) from `hourly`
  against bucketing `plants` (the path ranges took before), `--pairs` back-to-back pairs, medians;
* what the received_at index costs the writer: ReadingStore.insert_batch of 5000 a batch, `--write-rows` rows
  without and with the index, `--pairs` pairs;
* retention of `--raw-days` days: every older raw row deleted in batches of 5000, the aggregates unchanged.

The server, this script and whatever else runs on the machine share its cores: judge the medians.
"""

import argparse
import datetime
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT]

import pymysql  # noqa: E402

from gateway import schema  # noqa: E402
from gateway.db import Reading, ReadingStore  # noqa: E402
from gateway.dbconn import DbConfig  # noqa: E402
from gateway.hourly import HourlyAggregates  # noqa: E402
from gateway.web import data  # noqa: E402
from tools.dbserver import PrivateServer  # noqa: E402

BOARD = "bench-1"


def admin(srv, sql, args=None):
    conn = pymysql.connect(database="plant_moisture", **srv.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(sql, args)
            rows = cur.fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def load(srv, n):
    """n one-second readings of BOARD ending a minute ago, received when sampled (live), as one INSERT ... SELECT."""
    admin(srv, "INSERT INTO plants (board, collector, boot, seq, date_saved, "
               "moisture_raw, source, received_at, time_quality) SELECT %s, 'single', 1, s.seq, "
               "t0 + INTERVAL s.seq SECOND, 1000 + (s.seq * 7919) %% 1000, "
               "IF(FLOOR(s.seq / 60) %% 97 = 0, 'replay', 'live'), t0 + INTERVAL s.seq SECOND, 'rtc' "
               "FROM (SELECT seq FROM seq_1_to_" + str(int(n)) + ") s "
               "JOIN (SELECT UTC_TIMESTAMP() - INTERVAL %s SECOND AS t0) z", (BOARD, int(n) + 60))


def write_rows_per_s(srv, cfg, n, boot):
    """Readings per second through the writer's ReadingStore.insert_batch, 5000 a batch, into the loaded table."""
    store = ReadingStore(cfg)
    t0 = datetime.datetime(2030, 1, 1)
    try:
        batches = [[Reading(BOARD, "single", boot, seq, (t0 + datetime.timedelta(seconds=seq)).strftime(
            "%Y-%m-%d %H:%M:%S"), 1000 + seq % 500, "live", "rtc") for seq in range(i, i + 5000)]
            for i in range(1, n + 1, 5000)]
        s, _ = timed(lambda: [store.insert_batch(b) for b in batches])
        return n / s
    finally:
        store.close()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench-hourly", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1000000)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--raw-days", type=int, default=5, help="the retention measured last")
    p.add_argument("--write-rows", type=int, default=100000, help="rows per writer window (index cost)")
    args = p.parse_args(argv)
    base = tempfile.mkdtemp(prefix="soil-bench-hourly-")
    srv = PrivateServer(os.path.join(base, "db"))
    srv.start()
    try:
        conn = pymysql.connect(**srv.admin_kwargs())
        password = secrets.token_hex(16)
        try:
            schema.migrate(conn)
            schema.provision_gateway_account(conn, "soil_gateway", password, hosts=("127.0.0.1",))
        finally:
            conn.close()
        cfg = DbConfig(host="127.0.0.1", port=srv.port, user="soil_gateway", password=password, read_timeout=600)
        admin(srv, "ALTER TABLE plants DROP KEY received_at")
        load_s, _ = timed(lambda: load(srv, args.rows))
        (rows,), = admin(srv, "SELECT COUNT(*) FROM plants")
        print("loaded %d rows of one board in %.1f s" % (rows, load_s), flush=True)

        admin(srv, "DELETE FROM schema_migrations WHERE version = 10")
        conn = pymysql.connect(**srv.admin_kwargs())
        try:
            migrate_s, applied = timed(lambda: schema.migrate(conn))
        finally:
            conn.close()
        assert applied == [10], applied
        print("migration 10 on %d rows (the received_at index built online): %.2f s" % (rows, migrate_s), flush=True)

        store = ReadingStore(cfg)
        agg = HourlyAggregates(store)
        full_s, hours = timed(agg.refresh)
        (n_sum,), = admin(srv, "SELECT SUM(n) FROM hourly")
        assert int(n_sum) == rows, (n_sum, rows)
        print("first full aggregation: %d hours in %.2f s" % (hours, full_s), flush=True)

        incremental = []
        seq = args.rows + 1000
        for _ in range(5):
            now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
            admin(srv, "INSERT INTO plants (board, collector, boot, seq, date_saved, moisture_raw, source, "
                       "received_at, time_quality) SELECT %s, 'single', 2, %s + seq, %s - INTERVAL seq SECOND, 1234, "
                       "'live', UTC_TIMESTAMP(3), 'rtc' FROM seq_1_to_60", (BOARD, seq, now))
            seq += 100
            s, hours = timed(agg.refresh)
            incremental.append((s, hours))
        print("incremental pass (60 new rows): median %.1f ms (%s hours rewritten each)"
              % (statistics.median(s for s, _ in incremental) * 1000, sorted({h for _, h in incremental})),
              flush=True)
        store.close()

        chart = data.ChartData(cfg)
        from_hourly, from_plants = [], []
        now = time.time()
        try:
            for i in range(args.pairs):
                data.AGGREGATE_ABOVE_S = 86400
                t_h, r_h = timed(lambda: chart.readings("week", now))
                data.AGGREGATE_ABOVE_S = float("inf")
                t_p, r_p = timed(lambda: chart.readings("week", now))
                from_hourly.append(t_h)
                from_plants.append(t_p)
                print("pair %d: week from hourly %.1f ms (%d points, bucket %d s), bucketing plants %.1f ms "
                      "(%d points, bucket %d s)" % (i + 1, t_h * 1000, len(r_h["series"][0]["points"]),
                                                    r_h["bucket_s"], t_p * 1000, len(r_p["series"][0]["points"]),
                                                    r_p["bucket_s"]), flush=True)
        finally:
            data.AGGREGATE_ABOVE_S = 86400
            chart.close()
        print("week view: median %.1f ms from hourly, %.1f ms bucketing plants (%.0fx); rows %d (whole hours) vs %d"
              % (statistics.median(from_hourly) * 1000, statistics.median(from_plants) * 1000,
                 statistics.median(from_plants) / statistics.median(from_hourly), r_h["series"][0]["rows"],
                 r_p["series"][0]["rows"]))

        # What the received_at index costs the writer: pairs without and with it, on the loaded table.
        without, with_index = [], []
        have_index = True
        for i in range(args.pairs):
            for indexed in ((False, True) if i % 2 == 0 else (True, False)):    # alternate, so drift cancels
                if indexed != have_index:
                    admin(srv, "ALTER TABLE plants %s" % ("ADD KEY received_at (received_at)" if indexed
                                                          else "DROP KEY received_at"))
                    have_index = indexed
                (with_index if indexed else without).append(write_rows_per_s(srv, cfg, args.write_rows, 100 + i))
                admin(srv, "DELETE FROM plants WHERE date_saved >= '2030-01-01'")     # back to the loaded table
            print("pair %d: the writer without the received_at index %.0f rows/s, with it %.0f rows/s"
                  % (i + 1, without[-1], with_index[-1]), flush=True)
        if not have_index:
            admin(srv, "ALTER TABLE plants ADD KEY received_at (received_at)")
        ratios = sorted(w / o for w, o in zip(with_index, without))
        print("writer (insert_batch of 5000): median %.0f rows/s without the index, %.0f with it; with/without per "
              "pair %.2f-%.2f, median %.2f" % (statistics.median(without), statistics.median(with_index), ratios[0],
                                                ratios[-1], statistics.median(ratios)), flush=True)

        conn = pymysql.connect(**srv.admin_kwargs())
        try:
            schema.provision_gateway_account(conn, "soil_gateway", password, hosts=("127.0.0.1",), retention=True)
        finally:
            conn.close()
        admin(srv, "UPDATE hourly_state SET received_through = UTC_TIMESTAMP(3)")   # all rows aggregated (above)
        before = admin(srv, "SELECT SUM(n), SUM(raw_sum), MIN(raw_min), MAX(raw_max) FROM hourly")
        store = ReadingStore(cfg)
        try:
            agg = HourlyAggregates(store)
            prune_s, deleted = timed(lambda: agg.prune(raw_days=args.raw_days, max_batches=10 ** 6))
        finally:
            store.close()
        assert admin(srv, "SELECT SUM(n), SUM(raw_sum), MIN(raw_min), MAX(raw_max) FROM hourly") == before
        batches = int(admin(srv, "SELECT SUM(CEIL(pruned_n / 5000)) FROM hourly")[0][0] or 0)
        print("retention, raw_days = %d: %d raw rows deleted in %.1f s, %d transactions of at most 5000 rows "
              "(%.0f ms each on average); the aggregates unchanged" % (args.raw_days, deleted, prune_s, batches,
                                                                      prune_s * 1000 / max(batches, 1)))
        return 0
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
