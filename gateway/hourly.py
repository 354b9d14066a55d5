"""Hourly aggregates per board and probe, kept exact under replay, and the retention of raw readings (issue 14, 5).

What is kept (table `hourly`, schema version 10): per (board, probe, UTC hour) the count, min, max and sum of the raw
readings and how many were replayed. The mean over any number of hours is exact: sum(raw_sum) / sum(n).

How it stays exact when readings arrive hours or days late (a board replaying its card after an outage): an hour's
aggregate is never incremented, it is recomputed from the raw rows of that hour (a GROUP BY over plants) and
written over the old one, so a pass that runs twice over the same hours writes the same numbers. Which hours to
recompute: those with a row received since the watermark (`hourly_state.received_through`), plus any row whose id
is above the highest id of the last pass (a gateway clock set back would otherwise hide its rows behind the
watermark). The watermark advances to the newest received_at seen minus `margin_s`: the writer stamps received_at
just before its INSERT, so a batch may become visible a little after a newer one; the margin covers that (its
statements have a 30 s timeout each) at the price of recomputing the last `margin_s` worth of hours again.

Retention ([retention] raw_days > 0): raw rows of whole hours older than raw_days days are deleted in batches of
`batch_rows`, each batch in one transaction with the hour's aggregate row locked, its rows' count/min/max/sum moved
into the hour's `pruned_*` columns as they are deleted. A recomputed hour is `pruned part + what plants still
holds`, so a reading replayed into an hour whose raw rows are gone is still counted once, and a row that was never
aggregated cannot be lost: the statistics of every deleted row live on in its hour. Only rows received before the
watermark (seen by a finished pass) are deleted.

The percent of an hour (view `hourly_moisture`, and `hour_percent()` here with gateway/moisture.py's arithmetic):
through the calibration in effect at the hour's start. A view because its readers are SQL (the dashboard, an export)
under the gateway's SELECT-only grant, like `moisture`; % is linear in raw, so the mean's % is the % of the mean, and
the min and max % come from raw_min and raw_max (which one is which depends on the probe's direction).

`HourlyJob` is the gateway's thread: one pass every `every_s` on a ReadingStore of its own, so a slow or absent
database delays the aggregates, never the writer; an outage is logged once and the pass is tried again.
"""

import datetime
import logging
import threading

from gateway.dbconn import DatabaseError
from gateway.moisture import percent

log = logging.getLogger("gateway.hourly")

PROBE = 0                  # readings carry one probe today
HOURS_PER_STATEMENT = 6    # hours recomputed per transaction: a range the date_saved index serves (at 48 hours of
                           # 1 Hz rows the optimizer scans the whole table instead: 2.5 s a statement at 1M rows)

HOURLY_MOISTURE_VIEW = """CREATE OR REPLACE SQL SECURITY INVOKER VIEW {db}.`hourly_moisture` AS
SELECT h.`board`, h.`probe`, h.`hour_start`, h.`n`, h.`raw_min`, h.`raw_max`, h.`raw_sum` / h.`n` AS `raw_mean`,
  h.`replayed`,
  ROUND(100 * (h.`raw_sum` - CAST(h.`n` AS SIGNED) * c.`raw_dry`)
        / (CAST(h.`n` AS SIGNED) * (c.`raw_wet` - c.`raw_dry`)), 1) AS `pct_mean`,
  ROUND(100 * (IF(c.`raw_wet` > c.`raw_dry`, h.`raw_min`, h.`raw_max`) - c.`raw_dry`) / (c.`raw_wet` - c.`raw_dry`), 1)
    AS `pct_min`,
  ROUND(100 * (IF(c.`raw_wet` > c.`raw_dry`, h.`raw_max`, h.`raw_min`) - c.`raw_dry`) / (c.`raw_wet` - c.`raw_dry`), 1)
    AS `pct_max`,
  c.`id` AS `calibration`
FROM {db}.`hourly` h
LEFT JOIN {db}.`calibrations` c ON c.`id` = (
  SELECT c2.`id` FROM {db}.`calibrations` c2
  WHERE c2.`board` = h.`board` AND c2.`probe` = h.`probe` AND c2.`raw_dry` IS NOT NULL AND c2.`raw_wet` IS NOT NULL
    AND c2.`raw_wet` <> c2.`raw_dry` AND c2.`effective_from` <= h.`hour_start`
  ORDER BY c2.`effective_from` DESC, c2.`id` DESC LIMIT 1)
WHERE h.`n` > 0"""

# The hour of a sample time, as DATETIME. %% because every statement here travels with parameters.
_HOUR = "CAST(DATE_FORMAT(date_saved, '%%Y-%%m-%%d %%H:00:00') AS DATETIME)"
_TOUCHED = ("SELECT DISTINCT board, " + _HOUR + " FROM plants WHERE board IS NOT NULL AND received_at > %s "
            "UNION SELECT DISTINCT board, " + _HOUR + " FROM plants WHERE board IS NOT NULL AND id > %s")
_ALL_HOURS = "SELECT DISTINCT board, " + _HOUR.replace("%%", "%") + " FROM plants WHERE board IS NOT NULL"
_UPSERT = ("INSERT INTO hourly (board, probe, hour_start, n, raw_min, raw_max, raw_sum, replayed, updated_at) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE n = VALUES(n), "
           "raw_min = VALUES(raw_min), raw_max = VALUES(raw_max), raw_sum = VALUES(raw_sum), "
           "replayed = VALUES(replayed), updated_at = VALUES(updated_at)")
_EMPTY = (0, None, None, 0, 0)
_ONE_HOUR = datetime.timedelta(hours=1)


def merge(a, b):
    """Two parts of one hour as (n, min, max, sum, replayed) -> the whole; an empty part is (0, None, None, 0, 0)."""
    if not a[0]:
        return tuple(b)
    if not b[0]:
        return tuple(a)
    return (a[0] + b[0], min(a[1], b[1]), max(a[2], b[2]), a[3] + b[3], a[4] + b[4])


def summarise(rows):
    """(n, min, max, sum, replayed) of [(raw, replayed 0/1)]: what the GROUP BY over plants computes."""
    part = _EMPTY
    for raw, replayed in rows:
        part = merge(part, (1, raw, raw, raw, 1 if replayed else 0))
    return part


def hour_percent(n, raw_min, raw_max, raw_sum, raw_dry, raw_wet):
    """(pct_mean, pct_min, pct_max) of an hour, as `hourly_moisture` computes them; Nones without a calibration."""
    if not n or percent(0, raw_dry, raw_wet)[0] is None:
        return None, None, None
    lo, hi = (raw_min, raw_max) if raw_wet > raw_dry else (raw_max, raw_min)
    return (percent(raw_sum / float(n), raw_dry, raw_wet)[0], percent(lo, raw_dry, raw_wet)[0],
            percent(hi, raw_dry, raw_wet)[0])


class HourlyAggregates:
    """The aggregates through a ReadingStore (the gateway's account: SELECT, INSERT, UPDATE on hourly; DELETE on
    plants only for prune()). refresh() and prune() are the mechanism; HourlyJob decides when."""

    def __init__(self, store, margin_s=120.0):
        self._store = store
        self.margin_s = float(margin_s)

    def refresh(self):
        """Recompute every hour that received rows since the last pass; return how many hours were written."""
        def look(cur):
            cur.execute("SELECT received_through, id_through FROM hourly_state WHERE id = 1")
            row = cur.fetchone()
            if row is None:
                raise DatabaseError("hourly_state has no row: run `soil-gateway migrate` (schema version 10)")
            since, id_since = row
            cur.execute("SELECT MAX(received_at), COALESCE(MAX(id), 0) FROM plants")
            newest, top_id = cur.fetchone()
            if since is None:            # the first pass: every hour there is, in one scan
                cur.execute(_ALL_HOURS)
            else:
                cur.execute(_TOUCHED, (since, id_since))
            return since, newest, top_id, sorted(cur.fetchall())
        since, newest, top_id, touched = self._store.run_statement(look)
        by_board = {}
        for board, hour in touched:
            by_board.setdefault(board, []).append(hour)
        written = 0
        for board, hours in sorted(by_board.items()):
            for i in range(0, len(hours), HOURS_PER_STATEMENT):
                chunk = hours[i:i + HOURS_PER_STATEMENT]
                written += self._store.run_statement(lambda cur: self._recompute(cur, board, chunk))

        def advance(cur):
            # Never backwards (a pass that saw less than an earlier one, after a failover to a lagging replica).
            cur.execute("UPDATE hourly_state SET received_through = GREATEST(COALESCE(received_through, %s), %s), "
                        "id_through = GREATEST(id_through, %s), updated_at = UTC_TIMESTAMP(3) WHERE id = 1",
                        (through, through, top_id))
        if newest is not None:
            through = newest - datetime.timedelta(seconds=self.margin_s)
            self._store.run_statement(advance)
        return written

    @staticmethod
    def _recompute(cur, board, hours):
        """Write `hours` of `board` as (pruned part) + (GROUP BY over what plants holds), the hourly rows locked
        first, so a concurrent prune() of these hours waits for us or we for it."""
        marks = ", ".join(["%s"] * len(hours))
        cur.execute("SELECT hour_start, pruned_n, pruned_min, pruned_max, pruned_sum, pruned_replayed FROM hourly "
                    "WHERE board = %s AND probe = %s AND hour_start IN (" + marks + ") FOR UPDATE",
                    [board, PROBE] + list(hours))
        pruned = {r[0]: tuple(r[1:]) for r in cur.fetchall()}
        runs = []                        # consecutive hours as one range of date_saved
        for h in hours:
            if runs and runs[-1][1] == h:
                runs[-1][1] = h + _ONE_HOUR
            else:
                runs.append([h, h + _ONE_HOUR])
        ranges = " OR ".join(["(date_saved >= %s AND date_saved < %s)"] * len(runs))
        args = [board]
        for lo, hi in runs:
            args += [lo, hi]
        cur.execute("SELECT " + _HOUR + " AS h, COUNT(*), MIN(moisture_raw), MAX(moisture_raw), SUM(moisture_raw), "
                    "SUM(source = 'replay') FROM plants WHERE board = %s AND moisture_raw IS NOT NULL AND (" +
                    ranges + ") GROUP BY h", args)
        raw = {r[0]: (int(r[1]), r[2], r[3], int(r[4]), int(r[5])) for r in cur.fetchall()}
        rows = []
        for h in hours:
            n, lo, hi, total, replayed = merge(pruned.get(h, _EMPTY), raw.get(h, _EMPTY))
            if n:
                rows.append((board, PROBE, h, n, lo, hi, total, replayed))
        if rows:
            cur.executemany(_UPSERT, rows)
        return len(rows)

    def prune(self, raw_days, batch_rows=5000, max_batches=1000):
        """Delete raw rows of whole hours older than `raw_days` days, moving them into their hour's pruned part,
        `batch_rows` per transaction; return how many rows were deleted. Only rows received before the watermark.
        raw_days 0 means "keep forever" in the configuration, so it is refused here rather than read as "all"."""
        if int(raw_days) < 1:
            raise ValueError("raw_days must be at least 1 (0 keeps raw readings forever: do not call prune)")
        def candidates(cur):
            cur.execute("SELECT h.board, h.hour_start, s.received_through FROM hourly h JOIN hourly_state s "
                        "ON s.id = 1 WHERE h.probe = %s AND h.n > h.pruned_n AND s.received_through IS NOT NULL "
                        "AND h.hour_start < CAST(DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL %s DAY, "
                        "'%%Y-%%m-%%d %%H:00:00') AS DATETIME) ORDER BY h.hour_start, h.board LIMIT 500",
                        (PROBE, int(raw_days)))
            return cur.fetchall()
        deleted = 0
        batches = 0
        for board, hour, through in self._store.run_statement(candidates):
            while batches < max_batches:
                n = self._store.run_statement(lambda cur: self._prune_batch(cur, board, hour, through, batch_rows))
                batches += 1
                deleted += n
                if n < batch_rows:
                    break
        return deleted

    @staticmethod
    def _prune_batch(cur, board, hour, through, batch_rows):
        cur.execute("SELECT pruned_n, pruned_min, pruned_max, pruned_sum, pruned_replayed FROM hourly "
                    "WHERE board = %s AND probe = %s AND hour_start = %s FOR UPDATE", (board, PROBE, hour))
        row = cur.fetchone()
        if row is None:
            return 0
        cur.execute("SELECT id, moisture_raw, source = 'replay' FROM plants WHERE board = %s AND date_saved >= %s "
                    "AND date_saved < %s + INTERVAL 1 HOUR AND received_at <= %s ORDER BY id LIMIT %s FOR UPDATE",
                    (board, hour, hour, through, batch_rows))
        rows = cur.fetchall()
        if not rows:
            return 0
        part = merge(tuple(row), summarise((raw, rep) for _, raw, rep in rows if raw is not None))
        cur.execute("UPDATE hourly SET pruned_n = %s, pruned_min = %s, pruned_max = %s, pruned_sum = %s, "
                    "pruned_replayed = %s WHERE board = %s AND probe = %s AND hour_start = %s",
                    part + (board, PROBE, hour))
        ids = [r[0] for r in rows]
        cur.execute("DELETE FROM plants WHERE id IN (" + ", ".join(["%s"] * len(ids)) + ")", ids)
        return cur.rowcount


class HourlySettings:
    """[hourly] and [retention] of the gateway's configuration (gateway/config.py)."""

    def __init__(self, enabled=True, every_s=60.0, margin_s=120.0, raw_days=0, batch_rows=5000):
        if every_s <= 0:
            raise ValueError("every_s must be above 0, got %s" % every_s)
        if margin_s < 0 or raw_days < 0:
            raise ValueError("margin_s and raw_days must not be negative")
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1, got %s" % batch_rows)
        self.enabled = enabled
        self.every_s = float(every_s)
        self.margin_s = float(margin_s)
        self.raw_days = raw_days           # 0: keep raw readings forever
        self.batch_rows = int(batch_rows)


class HourlyJob:
    """The thread: a refresh (and, with raw_days, a prune) every `settings.every_s` on `store`, a ReadingStore of
    its own. A failed pass is logged once per kind of failure and tried again at the next round."""

    def __init__(self, settings, store):
        self.settings = settings
        self._store = store
        self.aggregates = HourlyAggregates(store, settings.margin_s)
        self._stop = threading.Event()
        self._thread = None
        self.rounds = 0
        self.last_error = None
        self.round_done = threading.Event()      # set after every round, failed or not (tests wait on it)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="hourly", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._store.close()

    def _run(self):
        while not self._stop.is_set():
            self.round()
            self._stop.wait(self.settings.every_s)

    def round(self):
        """One pass; returns (hours written, raw rows deleted), or None when it failed."""
        try:
            hours = self.aggregates.refresh()
            deleted = 0
            if self.settings.raw_days:
                deleted = self.aggregates.prune(self.settings.raw_days, self.settings.batch_rows)
                if deleted:
                    log.info("retention: deleted %d raw readings older than %d days (kept in their hours' "
                             "aggregates)", deleted, self.settings.raw_days)
            if self.last_error is not None:
                log.info("hourly: aggregates up to date again")
                self.last_error = None
            return hours, deleted
        except DatabaseError as e:
            if self.last_error is None:       # one line per outage, however its messages change
                log.warning("hourly: pass failed, tried again every %g s: %s", self.settings.every_s, e)
            self.last_error = str(e)
            return None
        except Exception:                 # a bug must not end the aggregates for good
            log.exception("hourly: a pass failed")
            return None
        finally:
            self.rounds += 1
            self.round_done.set()
