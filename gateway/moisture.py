"""Moisture in percent from raw readings, through calibrations kept beside them (issue 14, part 2).

Raw is what a board stores, always. A calibration says what raw reading a probe gives in dry soil (0 %) and in
saturated soil (100 %), from a time on (`effective_from`); the `moisture` view computes each reading's % at query
time from the calibration in effect at its sample time, so a calibration added or corrected later corrects the past
too. A capacitive probe reads higher when dry (raw_dry > raw_wet); a resistive one the other way: both work.

A reading outside the calibrated range is not clipped: its % is below 0 or above 100 as measured, and its `flag` says
`drier_than_dry` or `wetter_than_wet`, so a probe pulled out of the soil or standing in a puddle shows as such
instead of as a plausible 0 % or 100 %. A reading with no calibration in effect has pct NULL and flag NULL.

The percent is computed in one place per language: `percent()` here (tests, the alert rules' checks) and
MOISTURE_VIEW for SQL; tests/test_moisture.py holds them to the same answer.
"""

from decimal import ROUND_HALF_UP, Decimal

from gateway.dbconn import DatabaseError

POINTS = ("dry", "wet")
_Q4, _Q1 = Decimal("0.0001"), Decimal("0.1")

# One row per reading of plants with a board, the calibration in effect at its sample time (the newest complete
# one of its board and probe with effective_from <= sample time). Readings have one probe today: probe 0.
MOISTURE_VIEW = """CREATE OR REPLACE SQL SECURITY INVOKER VIEW {db}.`moisture` AS
SELECT p.`id`, p.`board`, 0 AS `probe`, p.`date_saved` AS `sample_time`, p.`moisture_raw` AS `raw`,
  ROUND(100 * (p.`moisture_raw` - c.`raw_dry`) / (c.`raw_wet` - c.`raw_dry`), 1) AS `pct`,
  CASE WHEN c.`id` IS NULL THEN NULL
       WHEN (p.`moisture_raw` - c.`raw_dry`) * SIGN(c.`raw_wet` - c.`raw_dry`) < 0 THEN 'drier_than_dry'
       WHEN (p.`moisture_raw` - c.`raw_wet`) * SIGN(c.`raw_wet` - c.`raw_dry`) > 0 THEN 'wetter_than_wet'
       ELSE 'ok' END AS `flag`,
  c.`id` AS `calibration`, p.`source`, p.`time_quality`, p.`boot`, p.`seq`
FROM {db}.`plants` p
LEFT JOIN {db}.`calibrations` c ON c.`id` = (
  SELECT c2.`id` FROM {db}.`calibrations` c2
  WHERE c2.`board` = p.`board` AND c2.`probe` = 0 AND c2.`raw_dry` IS NOT NULL AND c2.`raw_wet` IS NOT NULL
    AND c2.`raw_wet` <> c2.`raw_dry` AND c2.`effective_from` <= p.`date_saved`
  ORDER BY c2.`effective_from` DESC, c2.`id` DESC LIMIT 1)
WHERE p.`board` IS NOT NULL"""


def percent(raw, raw_dry, raw_wet):
    """(pct rounded to 0.1, flag) of one reading, as the `moisture` view computes it; (None, None) without a
    usable calibration (a point missing, or dry == wet)."""
    if raw_dry is None or raw_wet is None or raw_dry == raw_wet:
        return None, None
    # As the server computes it: the quotient as a DECIMAL of 4 places (div_precision_increment), then ROUND to
    # one place, an exact half away from zero (Python's round() would take it to the even neighbour).
    quotient = (Decimal(100 * (raw - raw_dry)) / Decimal(raw_wet - raw_dry)).quantize(_Q4, ROUND_HALF_UP)
    pct = float(quotient.quantize(_Q1, ROUND_HALF_UP))
    direction = 1 if raw_wet > raw_dry else -1
    if (raw - raw_dry) * direction < 0:
        flag = "drier_than_dry"
    elif (raw - raw_wet) * direction > 0:
        flag = "wetter_than_wet"
    else:
        flag = "ok"
    return pct, flag


# The complete calibrations, for Timeline: effective_from as seconds since the epoch (negative for the "from the
# first reading" date, which UNIX_TIMESTAMP would not give).
TIMELINE_SQL = ("SELECT board, probe, raw_dry, raw_wet, TIMESTAMPDIFF(SECOND, '1970-01-01', effective_from), id "
                "FROM calibrations WHERE raw_dry IS NOT NULL AND raw_wet IS NOT NULL AND raw_wet <> raw_dry")


class Timeline:
    """The calibrations of every probe in time order, to give percent() of readings fetched as raw (the dashboard
    averages raw per bucket in SQL, which is fast, and converts here: the mapping is linear, so the percent of a
    mean is the mean of the percents while one calibration is in effect). Which calibration is in effect at a
    time is the `moisture` view's rule: the newest complete one whose effective_from is at or before it."""

    def __init__(self, rows):
        self._by_probe = {}
        for board, probe, dry, wet, since, cal_id in rows:
            self._by_probe.setdefault((board, int(probe)), []).append((int(since), int(cal_id), dry, wet))
        for cals in self._by_probe.values():
            cals.sort()

    @classmethod
    def load(cls, cur):
        cur.execute(TIMELINE_SQL)
        return cls(cur.fetchall())

    def calibrated(self, board, probe=0):
        return (board, probe) in self._by_probe

    def percent_at(self, board, probe, t, raw):
        """(pct, flag) of `raw` read at epoch second `t`, or (None, None) before any calibration of the probe."""
        in_effect = None
        for since, _id, dry, wet in self._by_probe.get((board, probe), ()):
            if since > t:
                break
            in_effect = (dry, wet)
        if in_effect is None:
            return None, None
        return percent(raw, *in_effect)


class Calibrations:
    """The `calibrations` table through a ReadingStore (the gateway's account: SELECT, INSERT, UPDATE, DELETE)."""

    def __init__(self, store):
        self._store = store

    def record(self, board, probe, point, raw, effective_from=None):
        """Store one point ("dry" or "wet") of `board`'s `probe`; returns the calibration's id. While the probe's
        newest calibration lacks a point, a point taken goes into it (the first one taken again replaces it: a
        re-measurement); else it starts a new calibration, in effect from `effective_from` ('YYYY-MM-DD HH:MM:SS'
        UTC), by default from now, or from the first reading for the probe's first calibration, so the readings
        taken before it was calibrated show in percent too. A given `effective_from` always starts a new one."""
        if point not in POINTS:
            raise ValueError("point must be dry or wet")
        column = "raw_dry" if point == "dry" else "raw_wet"

        def work(cur):
            cur.execute("SELECT id, raw_dry IS NULL OR raw_wet IS NULL FROM calibrations WHERE board = %s AND "
                        "probe = %s ORDER BY effective_from DESC, id DESC LIMIT 1", (board, probe))
            newest = cur.fetchone()
            if newest is not None and newest[1] and effective_from is None:
                cur.execute("UPDATE calibrations SET `{0}` = %s WHERE id = %s".format(column), (raw, newest[0]))
                return newest[0]
            when = effective_from or ("1000-01-01 00:00:00" if newest is None else None)
            cur.execute("INSERT INTO calibrations (board, probe, `{0}`, effective_from, created_at) VALUES "
                        "(%s, %s, %s, COALESCE(%s, UTC_TIMESTAMP()), UTC_TIMESTAMP(3))".format(column),
                        (board, probe, raw, when))
            return cur.lastrowid
        return self._store.run_statement(work)

    def list(self, board=None):
        def work(cur):
            sql = ("SELECT id, board, probe, raw_dry, raw_wet, effective_from, created_at FROM calibrations")
            args = ()
            if board:
                sql += " WHERE board = %s"
                args = (board,)
            cur.execute(sql + " ORDER BY board, probe, effective_from, id", args)
            return cur.fetchall()
        return self._store.run_statement(work)

    def get(self, cal_id):
        """One calibration as list() gives it, or None."""
        def work(cur):
            cur.execute("SELECT id, board, probe, raw_dry, raw_wet, effective_from, created_at FROM calibrations "
                        "WHERE id = %s", (cal_id,))
            return cur.fetchone()
        return self._store.run_statement(work)

    def latest_reading(self, board, probe=0):
        """(sample time, raw, pct, flag) of the probe's newest reading through the `moisture` view, or None."""
        def work(cur):
            cur.execute("SELECT sample_time, raw, pct, flag FROM moisture WHERE board = %s AND probe = %s "
                        "ORDER BY sample_time DESC LIMIT 1", (board, probe))
            return cur.fetchone()
        return self._store.run_statement(work)

    def remove(self, cal_id):
        def work(cur):
            cur.execute("DELETE FROM calibrations WHERE id = %s", (cal_id,))
            return cur.rowcount
        if not self._store.run_statement(work):
            raise DatabaseError("no calibration %d (soil-gateway calibrate --list shows them)" % cal_id)

    def reading_marker(self):
        """The newest reading's id: newest_raw(board, marker) gives what was stored after it. Reading by id walks
        the primary key from there, so a window costs the rows it holds, not a scan of years of readings."""
        def work(cur):
            cur.execute("SELECT COALESCE(MAX(id), 0) FROM plants")
            return cur.fetchone()[0]
        return self._store.run_statement(work)

    def newest_raw(self, board, after_id, probe=0):
        """The raw values of `board`'s live readings stored after reading `after_id`, in the order they came."""
        def work(cur):
            cur.execute("SELECT moisture_raw FROM plants WHERE id > %s AND board = %s AND source = 'live' "
                        "ORDER BY id", (after_id, board))
            return [r[0] for r in cur.fetchall()]
        return self._store.run_statement(work)


def latest_moisture(cur):
    """[(board, probe, pct)] of each calibrated probe's newest reading (the alert rules' `dry`). The newest is read
    by the readings' identity index (board, boot, seq), backwards from the newest boot's highest sequence number,
    so a round costs one index probe per calibrated board however many years of readings the table holds."""
    timeline = Timeline.load(cur)
    cur.execute("SELECT board FROM boards ORDER BY board")
    out = []
    for (board,) in cur.fetchall():
        if not timeline.calibrated(board):
            continue
        cur.execute("SELECT TIMESTAMPDIFF(SECOND, '1970-01-01', date_saved), moisture_raw FROM plants "
                    "WHERE board = %s ORDER BY boot DESC, seq DESC LIMIT 1", (board,))
        row = cur.fetchone()
        if row is None or row[1] is None:
            continue
        pct = timeline.percent_at(board, 0, row[0], row[1])[0]
        if pct is not None:
            out.append((board, 0, pct))
    return out
