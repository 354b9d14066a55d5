"""Every SQL statement of the dashboard: the chart's readings and the recent board events.

All statements are parameterized and read only the gateway's own tables with its least-privilege account (SELECT
on plants, hourly, calibrations and board_events). Readings are fetched raw (`plants.moisture_raw`, averaged per
bucket in SQL when there are many) and drawn in percent through the probes' calibrations (gateway/moisture.py Timeline, the
`moisture` view's rule in Python): `value=auto`, the default, draws percent when a probe of the range is
calibrated, else raw; `value=raw` and `value=pct` choose. A series with no calibration has no percent to draw and
says so (`calibrated: false`) instead of being drawn in other units on the same axis.

A range (hour, day, week) is answered with every stored reading when each series has at most MAX_POINTS in it,
else with one averaged point per bucket of seconds (a week of one reading a second is 604,800 rows a board; a
screen is about 1,000 pixels wide). A bucket that holds a replayed reading is marked replayed. Each series carries
`gap_s`: consecutive points further apart than that are drawn with a break, not a line (three times the median
spacing: a board's sample interval, or the bucket).

A range longer than a day (the week) reads the hourly aggregates instead (gateway/hourly.py, docs/AGGREGATES.md): one
point per hour, the hour's exact mean raw_sum / n (in percent through the calibration at the hour's start, which
for a linear calibration is the hour's mean percent), replayed when any of its readings was; 168 rows for a week
instead of a GROUP BY over 604,800 a board. Until the aggregates hold anything for the range (a gateway with
[hourly] enabled = false, or before its first pass) the week is bucketed from plants as before.
"""

import math
import threading
import time

import pymysql

from gateway.dbconn import DatabaseError, DatabaseUnavailable, classify, connect
from gateway.moisture import Timeline
from gateway.primary import find_primary

VALUE_SQL = "moisture_raw"
VALUE_TABLE = "plants"
VALUES = ("auto", "pct", "raw")
RANGES = {"hour": 3600, "day": 86400, "week": 7 * 86400}
MAX_POINTS = 1500                 # per series; more are averaged into buckets
GAP_FACTOR = 3                    # a spacing this many times the usual one is a gap
EVENTS_WINDOW_S = 3600
EVENTS_LIMIT = 200

_COUNT = ("SELECT board, COUNT(*) FROM " + VALUE_TABLE + " WHERE board IS NOT NULL AND date_saved >= %s "
          "AND date_saved <= %s GROUP BY board")
_ROWS = ("SELECT board, UNIX_TIMESTAMP(date_saved), " + VALUE_SQL + ", source = 'replay' FROM " + VALUE_TABLE +
         " WHERE board IS NOT NULL AND date_saved >= %s AND date_saved <= %s ORDER BY board, date_saved, boot, seq")
_BUCKETS = ("SELECT board, FLOOR(UNIX_TIMESTAMP(date_saved) / %s) * %s AS t, AVG(" + VALUE_SQL + "), "
            "MAX(source = 'replay'), COUNT(*) FROM " + VALUE_TABLE +
            " WHERE board IS NOT NULL AND date_saved >= %s AND date_saved <= %s GROUP BY board, t ORDER BY board, t")
AGGREGATE_ABOVE_S = 86400         # ranges longer than this read the hourly aggregates
HOURLY_BUCKET_S = 3600
HOURLY_VALUE_SQL = "raw_sum / n"  # the hour's mean of VALUE_SQL (moisture_raw)
_HOURLY_COUNT = ("SELECT board, SUM(n) FROM hourly WHERE probe = 0 AND hour_start > %s AND hour_start <= %s "
                 "GROUP BY board")
_HOURLY = ("SELECT board, UNIX_TIMESTAMP(hour_start), " + HOURLY_VALUE_SQL + ", replayed > 0 FROM hourly "
           "WHERE probe = 0 AND n > 0 AND hour_start > %s AND hour_start <= %s ORDER BY board, hour_start")
_EVENTS = ("SELECT board, event, detail, board_time, received_at FROM board_events "
           "WHERE received_at >= %s ORDER BY id DESC LIMIT %s")


def _sql_time(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def gap_threshold(times, bucket_s=0):
    """GAP_FACTOR times the median spacing of `times` (sorted epoch seconds), at least 3 s and 3 buckets."""
    steps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    usual = steps[len(steps) // 2] if steps else 1.0
    return max(3.0, GAP_FACTOR * usual, GAP_FACTOR * bucket_s)


class UnknownRange(ValueError):
    pass


class ChartData:
    """The dashboard's own database connection (never the writer's: that one belongs to the writer thread), used
    under a lock by the server's request threads, replaced after an error, pointed at the primary when several
    servers are configured."""

    def __init__(self, db_cfg):
        self.cfg = db_cfg
        self._conn = None
        self._lock = threading.Lock()

    def _run(self, work):
        """work(cursor) in a read-only transaction. A connection kept from an earlier request may have died with
        its server (a restart, a failover): then the query is tried once more on a fresh connection."""
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                try:
                    if self._conn is None:
                        self._conn = connect(find_primary(self.cfg) if self.cfg.servers else self.cfg)
                    with self._conn.cursor() as cur:
                        result = work(cur)
                    self._conn.rollback()          # read only: end the snapshot so the next query sees new rows
                    return result
                except pymysql.MySQLError as exc:
                    self.close_locked()
                    err = classify(exc, self.cfg)
                    if reused and attempt == 1 and isinstance(err, DatabaseUnavailable):
                        continue
                    raise err from exc
                except DatabaseError:
                    self.close_locked()
                    raise

    def close_locked(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self):
        with self._lock:
            self.close_locked()

    def readings(self, range_name, now=None, value="auto"):
        """{"range", "from", "to", "value" ("pct" or "raw"), "bucket_s", "series": [{"name", "points": [[t, value,
        replay]], "gap_s", "rows", "calibrated"}]} for the last `range_name` (hour, day or week); t in epoch
        seconds, replay 0 or 1."""
        if range_name not in RANGES:
            raise UnknownRange("unknown range %r (hour, day or week)" % range_name)
        if value not in VALUES:
            raise UnknownRange("unknown value %r (auto, pct or raw)" % value)
        now = time.time() if now is None else now
        span = RANGES[range_name]
        lo, hi = _sql_time(now - span), _sql_time(now + 60)

        def work(cur):
            if span > AGGREGATE_ABOVE_S:
                hours = (_sql_time(now - span - HOURLY_BUCKET_S), hi)     # every hour that overlaps the range
                cur.execute(_HOURLY_COUNT, hours)
                counts = {b: int(n) for b, n in cur.fetchall()}
                if counts:
                    cur.execute(_HOURLY, hours)
                    rows = [(b, float(t), float(v), int(r)) for b, t, v, r in cur.fetchall()]
                    return counts, HOURLY_BUCKET_S, rows, Timeline.load(cur)
            cur.execute(_COUNT, (lo, hi))
            counts = dict(cur.fetchall())
            bucket = 0
            if counts and max(counts.values()) > MAX_POINTS:
                bucket = int(math.ceil(span / float(MAX_POINTS)))
                cur.execute(_BUCKETS, (bucket, bucket, lo, hi))
                rows = [(b, float(t), float(v), int(r)) for b, t, v, r, _ in cur.fetchall()]
            else:
                cur.execute(_ROWS, (lo, hi))
                rows = [(b, float(t), v, int(r)) for b, t, v, r in cur.fetchall()]
            return counts, bucket, rows, Timeline.load(cur)

        counts, bucket, rows, timeline = self._run(work)
        boards = sorted({r[0] for r in rows})
        if value == "auto":
            value = "pct" if any(timeline.calibrated(b) for b in boards) else "raw"
        series = {}
        for board, t, v, replay in rows:
            if v is not None and value == "pct":
                v = timeline.percent_at(board, 0, t, float(v))[0]
            series.setdefault(board, []).append([t, None if v is None else round(float(v), 2), replay])
        out = []
        for name in sorted(series):
            pts = series[name]
            out.append({"name": name, "points": pts, "rows": counts.get(name, 0),
                        "gap_s": gap_threshold([p[0] for p in pts], bucket), "calibrated": timeline.calibrated(name)})
        return {"range": range_name, "from": now - span, "to": now, "value": value, "bucket_s": bucket,
                "series": out}

    def events(self, now=None):
        """The board events of the last hour, newest first (shown below the open alerts)."""
        now = time.time() if now is None else now

        def work(cur):
            cur.execute(_EVENTS, (_sql_time(now - EVENTS_WINDOW_S), EVENTS_LIMIT))
            return cur.fetchall()

        return [{"board": b, "event": e, "detail": d,
                 "board_time": bt.strftime("%Y-%m-%dT%H:%M:%SZ") if bt else None,
                 "received_at": ra.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z" if ra else None}
                for b, e, d, bt, ra in self._run(work)]
