"""A PNG of one board's readings over a range, for a report or a class handout (`soil-gateway plot`).

Why it is built this way:

* **The same picture as the dashboard's chart** (gateway/web/data.py): replayed readings shaded, a gap (no reading
  for more than GAP_FACTOR times the usual spacing, data.gap_threshold) drawn as a break in the line, never as a
  straight line across hours nobody measured. Sample times on the x-axis in UTC, as stored.
* **Percent from the `moisture` view**, raw counts with --raw, and raw counts by itself (said in the title) when no
  reading of the range has a calibration: a chart of NULLs would be empty.
* **A year does not come to the client.** Up to MAX_POINTS readings are drawn as they are; beyond that the server
  averages them per time bucket (ceil(span / MAX_POINTS) seconds, as the dashboard's _BUCKETS does), so 31.5
  million one-second readings arrive as about 5,000 points. A bucket holding a replayed reading counts as replayed.
* **Agg, and no pyplot:** a Figure drawn by matplotlib's Agg canvas needs no screen and keeps no global state, so
  the service machine (no display) and the tests can draw side by side. `chart()` returns the figure and what was
  found (gaps, replayed spans) so tests inspect objects, not pixels.
"""

import dataclasses
import datetime
import math

import matplotlib.dates as mdates
import pymysql
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gateway.dbconn import classify, connect
from gateway.export import iso
from gateway.primary import find_primary
from gateway.web.data import gap_threshold

MAX_POINTS = 5000
READ_TIMEOUT_S = 600.0            # averaging a year of readings is one long query
SIZE_IN = (10, 4.5)
DPI = 120
UTC = datetime.timezone.utc

_COUNT = "SELECT COUNT(*), UNIX_TIMESTAMP(MIN(`sample_time`)), UNIX_TIMESTAMP(MAX(`sample_time`)) FROM `moisture`"
_ROWS = ("SELECT UNIX_TIMESTAMP(`sample_time`), `pct`, `raw`, `source` = 'replay' FROM `moisture`%s "
         "ORDER BY `sample_time`, `id`")
_BUCKETS = ("SELECT FLOOR(UNIX_TIMESTAMP(`sample_time`) / %%s) * %%s AS t, AVG(`pct`), AVG(`raw`), "
            "MAX(`source` = 'replay') FROM `moisture`%s GROUP BY t ORDER BY t")


class PlotError(Exception):
    """Nothing to draw, or a file that cannot be written: one line for the person."""


@dataclasses.dataclass
class Series:
    """What the database gave for one board and probe: times (epoch s), pct and raw (None where NULL), replay."""

    times: list
    pct: list
    raw: list
    replay: list
    rows: int            # readings in the range (more than len(times) when bucketed)
    bucket_s: int        # 0: every reading; else the seconds averaged into one point


@dataclasses.dataclass
class Chart:
    """A drawn figure and what it shows."""

    figure: object
    value: str           # "percent" or "raw"
    title: str
    gaps: list           # [(t0, t1)] epoch seconds: consecutive points further apart than gap_s
    replay_spans: list   # [(t0, t1)] epoch seconds shaded as replayed
    gap_s: float
    series: Series

    def summary(self):
        return ("%d readings%s, %s, %d gap(s), %d replayed span(s)"
                % (self.series.rows, " as %d points of %d s" % (len(self.series.times), self.series.bucket_s)
                   if self.series.bucket_s else "", self.value, len(self.gaps), len(self.replay_spans)))


def fetch(db_cfg, selection, max_points=MAX_POINTS):
    """The Series of `selection` (a gateway.export.Selection), bucketed in SQL beyond `max_points` readings."""
    cfg = dataclasses.replace(db_cfg, read_timeout=max(db_cfg.read_timeout or 0, READ_TIMEOUT_S))
    if cfg.servers:
        cfg = find_primary(cfg)
    where, args = selection.where()
    conn = connect(cfg)
    try:
        with conn.cursor() as cur:
            cur.execute(_COUNT + where, args)
            rows, first, last = cur.fetchone()
            bucket = 0
            if rows > max_points:
                lo = selection.start.replace(tzinfo=UTC).timestamp() if selection.start else float(first)
                hi = selection.end.replace(tzinfo=UTC).timestamp() if selection.end else float(last) + 1
                bucket = max(1, int(math.ceil((hi - lo) / float(max_points))))
                cur.execute(_BUCKETS % where, (bucket, bucket) + args)
            else:
                cur.execute(_ROWS % where, args)
            got = cur.fetchall()
        conn.rollback()
    except pymysql.MySQLError as exc:
        raise classify(exc, cfg) from exc
    finally:
        try:
            conn.close()
        except Exception:  # already broken: closing is best effort
            pass
    return Series(times=[float(r[0]) for r in got], pct=[None if r[1] is None else float(r[1]) for r in got],
                  raw=[None if r[2] is None else float(r[2]) for r in got], replay=[bool(r[3]) for r in got],
                  rows=rows, bucket_s=bucket)


def _runs(flags):
    """[(first index, last index)] of consecutive True values."""
    runs, start = [], None
    for i, flag in enumerate(flags):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(flags) - 1))
    return runs


def _dates(times):
    return [datetime.datetime.fromtimestamp(t, UTC) for t in times]


def chart(series, selection, raw=False):
    """Draw `series` into a new Agg Figure; returns a Chart. Raises PlotError when there is nothing to draw."""
    if not series.times:
        raise PlotError("no readings of %s: nothing to plot" % selection.describe())
    calibrated = any(v is not None for v in series.pct)
    use_raw = raw or not calibrated
    values = series.raw if use_raw else series.pct
    value = "raw" if use_raw else "percent"
    gap_s = gap_threshold(series.times, series.bucket_s)

    # A gap is a NaN between its two points: matplotlib breaks the line there. NULL values are NaN too.
    xs, ys, gaps = [], [], []
    for i, (t, v) in enumerate(zip(series.times, values)):
        if i and t - series.times[i - 1] > gap_s:
            gaps.append((series.times[i - 1], t))
            xs.append(series.times[i - 1] + (t - series.times[i - 1]) / 2.0)
            ys.append(float("nan"))
        xs.append(t)
        ys.append(float("nan") if v is None else v)

    fig = Figure(figsize=SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    line, = ax.plot(_dates(xs), ys, color="#2b6cb0", linewidth=1.2, label="readings")
    line.set_gid("readings")
    half = max(series.bucket_s, 1) / 2.0
    spans = []
    for a, b in _runs(series.replay):
        t0, t1 = series.times[a] - half, series.times[b] + half
        patch = ax.axvspan(*_dates((t0, t1)), color="#dd6b20", alpha=0.25, linewidth=0,
                           label="arrived by replay" if not spans else None)
        patch.set_gid("replay")
        spans.append((t0, t1))
    replay_x = [t for t, r in zip(series.times, series.replay) if r]
    if replay_x and len(series.times) <= 500:           # few points: also mark each replayed one
        ax.plot(_dates(replay_x), [v for v, r in zip(values, series.replay) if r], linestyle="none", marker="o",
                markersize=3, color="#dd6b20", gid="replay-points")
    for t0, t1 in gaps:
        ax.axvspan(*_dates((t0, t1)), color="#a0aec0", alpha=0.15, linewidth=0, gid="gap",
                   label="gap (no readings)" if (t0, t1) == gaps[0] else None)

    lo = selection.start.replace(tzinfo=UTC).timestamp() if selection.start else series.times[0]
    hi = selection.end.replace(tzinfo=UTC).timestamp() if selection.end else series.times[-1]
    probe = selection.probe if selection.probe is not None else 0
    title = "%s probe %d, %s to %s UTC" % (selection.board, probe, iso(_naive(lo)), iso(_naive(hi)))
    if series.bucket_s:
        title += " (mean of %d s)" % series.bucket_s
    if not calibrated and not raw:
        title += "\nno calibration: raw counts"
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("moisture, %" if value == "percent" else "raw reading (ADC counts)")
    ax.set_xlabel("sample time (UTC)")
    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.grid(True, alpha=0.3)
    if spans or gaps:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return Chart(fig, value, title, gaps, spans, gap_s, series)


def _naive(epoch):
    return datetime.datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def save(chart_, path):
    try:
        chart_.figure.savefig(path, format="png")
    except OSError as e:
        raise PlotError("cannot write %s: %s" % (path, e.strerror or e))


def plot(db_cfg, selection, path, raw=False, max_points=MAX_POINTS):
    """Fetch, draw and write `selection` as a PNG at `path`; returns the Chart."""
    if selection.board is None:
        raise PlotError("plot draws one board: give --board")
    drawn = chart(fetch(db_cfg, selection, max_points), selection, raw=raw)
    save(drawn, path)
    return drawn

