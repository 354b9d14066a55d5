"""`soil-gateway plot` against a real private server: a real PNG on disk, percent from a calibration or raw counts
(said in the title) without one, replayed readings shaded, a gap drawn as a break, a long range averaged per bucket
in SQL; errors as one line."""

import datetime
import math

import matplotlib.image
import pytest

from gateway import export, plot
from tests.test_export import T0, calibrate, insert_readings, one_second_readings
from tests.test_gateway_cli import assert_clean_error, run_cli, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def epoch(when):
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


@pytest.fixture
def morning(clean_db):
    """bed-1: 60 live readings 10 s apart, 10 replayed after them, then nothing for 20 minutes, then 30 live."""
    rows = []
    for i in range(100):
        t = T0 + datetime.timedelta(seconds=10 * i + (1200 if i >= 70 else 0))
        rows.append(("bed-1", 1, i, t, 600 + i, "replay" if 60 <= i < 70 else "live"))
    insert_readings(clean_db, rows)
    return clean_db


def test_plot_through_the_cli_writes_a_png(morning, tmp_path):
    out = tmp_path / "bed-1.png"
    cfg = write_config(tmp_path, morning.port)
    proc = run_cli("plot", "-c", cfg, "--board", "bed-1", "--from", "2026-12-01", "--to", "2026-12-01T07:00",
                   "-o", str(out), env_extra={"SOIL_DB_PASSWORD": morning.gateway_password})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "soil-gateway: %s: 100 readings, raw, 1 gap(s), 1 replayed span(s)\n" % out
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(str(out))
    assert image.shape[:2] == (plot.SIZE_IN[1] * plot.DPI, plot.SIZE_IN[0] * plot.DPI)
    assert image.std() > 0.01                                    # not a blank canvas


def test_the_figure_shows_the_replay_and_the_gap_and_says_raw_without_calibration(morning):
    sel = export.selection(board="bed-1", start="2026-12-01", end="2026-12-01T07:00")
    drawn = plot.chart(plot.fetch(morning.gateway_cfg, sel), sel)
    assert drawn.value == "raw" and "no calibration: raw counts" in drawn.title
    assert drawn.title.startswith("bed-1 probe 0, 2026-12-01T00:00:00Z to 2026-12-01T07:00:00Z UTC")
    ax = drawn.figure.axes[0]
    assert ax.get_xlabel() == "sample time (UTC)"
    # the gap: between the 70th reading (T0 + 690 s) and the 71st (T0 + 1900 s), a NaN in the line
    assert drawn.gaps == [(epoch(T0) + 690, epoch(T0) + 1900)]
    line = [x for x in ax.get_lines() if x.get_gid() == "readings"][0]
    ys = list(line.get_ydata())
    assert sum(1 for y in ys if math.isnan(y)) == 1 and len(ys) == 101
    assert math.isnan(ys[70]) and ys[69] == 669 and ys[71] == 670
    # the replay: one shaded span over readings 60..69 (T0 + 600 .. 690 s, half a spacing of 1 s either side)
    assert drawn.replay_spans == [(epoch(T0) + 599.5, epoch(T0) + 690.5)]
    assert len([p for p in ax.patches if p.get_gid() == "replay"]) == 1
    assert len([x for x in ax.get_lines() if x.get_gid() == "replay-points"][0].get_xdata()) == 10


def test_percent_with_a_calibration_and_raw_on_request(morning):
    calibrate(morning, "bed-1", 800, 400)
    sel = export.selection(board="bed-1")
    series = plot.fetch(morning.gateway_cfg, sel)
    drawn = plot.chart(series, sel)
    assert drawn.value == "percent" and "raw" not in drawn.title
    assert drawn.figure.axes[0].get_ylabel() == "moisture, %"
    assert series.pct[0] == 50.0 and series.raw[0] == 600.0          # (600 - 800) / (400 - 800)
    assert plot.chart(series, sel, raw=True).value == "raw"


def test_a_long_range_is_averaged_per_bucket_in_sql(clean_db):
    insert_readings(clean_db, one_second_readings("bed-1", 20000))
    insert_readings(clean_db, [("bed-1", 2, 0, T0 + datetime.timedelta(seconds=20000), 999, "replay")])
    sel = export.selection(board="bed-1", start="2026-12-01T06:00", end="2026-12-01T11:35")   # 20,100 s
    series = plot.fetch(clean_db.gateway_cfg, sel)
    assert series.rows == 20001 and series.bucket_s == 5                 # ceil(20100 / 5000)
    assert len(series.times) == 4001 and series.times[0] == epoch(T0)
    assert series.raw[0] == pytest.approx(sum(500 + i % 7 for i in range(5)) / 5.0)
    assert series.replay[-1] and not any(series.replay[:-1])
    drawn = plot.chart(series, sel)
    assert "(mean of 5 s)" in drawn.title and drawn.gaps == []


def test_errors_are_one_line(morning, tmp_path):
    cfg = write_config(tmp_path, morning.port)
    env = {"SOIL_DB_PASSWORD": morning.gateway_password}
    proc = run_cli("plot", "-c", cfg, "--board", "bed-9", "-o", str(tmp_path / "x.png"), env_extra=env)
    assert_clean_error(proc, "no readings of board bed-9")
    proc = run_cli("plot", "-c", cfg, "--board", "bed-1", "-o", "/nonexistent-dir/x.png", env_extra=env)
    assert_clean_error(proc, "cannot write /nonexistent-dir/x.png")
    proc = run_cli("plot", "-c", cfg, "--board", "bed-1", "--from", "soon", "-o", str(tmp_path / "x.png"),
                   env_extra=env)
    assert_clean_error(proc, "--from 'soon': not a time")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
