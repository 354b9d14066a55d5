"""Issue 14, part 2: moisture in percent through calibrations kept beside the raw readings (gateway/moisture.py),
and `soil-gateway calibrate` (gateway/calibrate.py).

The `moisture` view and percent() are held to the same answer on a real MariaDB; a calibration corrects the past
it covers and nothing before it; the command measures a running virtual board through the running gateway."""

import subprocess
import sys

import pymysql
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from gateway.db import ReadingStore
from gateway.moisture import Calibrations, percent
from tests.test_db_store import admin_query
from tools.demo.stack import ROOT, wait_for

pytestmark = pytest.mark.timeout(300)


def insert_readings(srv, rows, board="bed-1"):
    """rows: [(sample time 'YYYY-MM-DD HH:MM:SS', raw)] as live readings of `board`, boot 1, seq 1..n."""
    values = [(raw, t, board, 1, i + 1, t) for i, (t, raw) in enumerate(rows)]
    c = pymysql.connect(autocommit=True, **srv.admin_kwargs())
    try:
        with c.cursor() as cur:
            cur.executemany("INSERT INTO plant_moisture.plants (moisture_raw, date_saved, board, boot, seq, source, "
                            "received_at, time_quality) VALUES (%s, %s, %s, %s, %s, 'live', %s, 'rtc')", values)
    finally:
        c.close()


def view_rows(srv, board="bed-1"):
    return admin_query(srv, "SELECT sample_time, raw, pct, flag, calibration FROM moisture WHERE board = %s "
                            "ORDER BY sample_time", (board,))


# --- the arithmetic: Python and SQL agree -----------------------------------------------------------------------
def test_percent_of_a_capacitive_and_a_resistive_probe():
    assert percent(26000, 26000, 12000) == (0.0, "ok")           # capacitive: dry reads high
    assert percent(12000, 26000, 12000) == (100.0, "ok")
    assert percent(19000, 26000, 12000) == (50.0, "ok")
    assert percent(27400, 26000, 12000) == (-10.0, "drier_than_dry")     # not clipped: flagged
    assert percent(11300, 26000, 12000) == (105.0, "wetter_than_wet")
    assert percent(300, 100, 900) == (25.0, "ok")                 # resistive: wet reads high
    assert percent(50, 100, 900) == (-6.3, "drier_than_dry")      # -6.25: a half, away from zero
    assert percent(500, None, 900) == (None, None)                # half a calibration: no percent
    assert percent(500, 700, 700) == (None, None)                 # dry == wet: no span
    # An exact half rounds away from zero, as SQL's ROUND does (Python's round() would give 35.2 and -35.2).
    assert percent(141, 0, 400) == (35.3, "ok")
    assert percent(-141, 0, 400) == (-35.3, "drier_than_dry")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(dry=0, wet=400, raws=[141, 259, 1])          # exact halves: 35.25, 64.75; and 0.25
@example(dry=40000, wet=0, raws=[39999, 30003])       # dividing by the span leaves a tail past 4 digits
@given(dry=st.integers(0, 65535), wet=st.integers(0, 65535),
       raws=st.lists(st.integers(0, 65535), min_size=1, max_size=20))
def test_the_view_computes_what_percent_computes(dbserver, dry, wet, raws):
    admin_query(dbserver, "DELETE FROM plants WHERE board = 'prop-1'")
    admin_query(dbserver, "DELETE FROM calibrations WHERE board = 'prop-1'")
    insert_readings(dbserver, [("2026-06-01 00:%02d:00" % i, r) for i, r in enumerate(raws)], board="prop-1")
    admin_query(dbserver, "INSERT INTO calibrations (board, probe, raw_dry, raw_wet, effective_from, created_at) "
                          "VALUES ('prop-1', 0, %s, %s, '1000-01-01', UTC_TIMESTAMP(3))", (dry, wet))
    got = [(r, None if p is None else float(p), f) for _t, r, p, f, _c in view_rows(dbserver, "prop-1")]
    assert got == [(r,) + percent(r, dry, wet) for r in raws]


# --- calibrations over time ---------------------------------------------------------------------------------------
def test_a_first_calibration_covers_the_past_and_a_later_one_only_what_follows(clean_db):
    insert_readings(clean_db, [("2026-06-01 10:00:00", 20000), ("2026-06-01 11:00:00", 20000),
                               ("2026-06-01 12:00:00", 20000)])
    assert [r[2] for r in view_rows(clean_db)] == [None, None, None]      # raw only, until calibrated
    store = ReadingStore(clean_db.gateway_cfg)
    try:
        cals = Calibrations(store)
        first = cals.record("bed-1", 0, "dry", 26000)
        assert [r[2] for r in view_rows(clean_db)] == [None, None, None]  # half a calibration: still no %
        assert cals.record("bed-1", 0, "wet", 12000) == first             # the wet point completes it
        assert [float(r[2]) for r in view_rows(clean_db)] == [42.9, 42.9, 42.9]   # the past too
        # The probe is recalibrated from 11:30 (a new probe): readings before keep the first calibration.
        second = cals.record("bed-1", 0, "dry", 24000, effective_from="2026-06-01 11:30:00")
        cals.record("bed-1", 0, "wet", 16000)
        assert [(float(r[2]), r[4]) for r in view_rows(clean_db)] == [(42.9, first), (42.9, first), (50.0, second)]
        # A re-measured point of an incomplete calibration replaces it instead of starting another.
        third = cals.record("bed-1", 0, "dry", 30000, effective_from="2026-06-01 11:45:00")
        assert cals.record("bed-1", 0, "dry", 25000) == third
        assert cals.get(third)[3:5] == (25000, None)
        assert [r[4] for r in view_rows(clean_db)] == [first, first, second]   # incomplete: not in effect
        cals.remove(third)
        cals.remove(second)
        assert [(float(r[2]), r[4]) for r in view_rows(clean_db)] == [(42.9, first)] * 3
        t, raw, pct, flag = cals.latest_reading("bed-1")
        assert (str(t), raw, float(pct), flag) == ("2026-06-01 12:00:00", 20000, 42.9, "ok")
    finally:
        store.close()
    raws = admin_query(clean_db, "SELECT COUNT(*) FROM plants WHERE moisture_raw = 20000")
    assert raws == ((3,),)                                   # raw readings are never changed


# --- the command against a running gateway -------------------------------------------------------------------------
def gateway_cli(gw, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "gateway", "calibrate", "-c", gw.config_path] + list(args), cwd=ROOT,
                          env=gw.command_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_calibrate_measures_a_running_board_and_the_readings_show_in_percent(stack):
    stack.start_board("bed-1", interval_ms=500)
    gw = stack.start_gateway()
    wait_for(lambda: stack.query("SELECT COUNT(*) FROM plants WHERE board = 'bed-1'")[0][0] >= 3, 60, "readings")
    config = gw

    dry = gateway_cli(config, "bed-1", "--dry", "--seconds", "4")
    assert dry.returncode == 0, dry.stderr
    assert "reading bed-1 probe 0 for 4 s" in dry.stderr
    first = dry.stdout.splitlines()
    assert first[0].startswith("bed-1 probe 0 dry: raw ") and "mean of " in first[0], first
    assert first[1].startswith("calibration 1 of bed-1 probe 0: dry ") and ", wet -, in effect from the first " \
        "reading" in first[1], first
    assert first[2] == "in percent once both points are taken (the other: calibrate bed-1 --wet)"
    raw_dry = int(first[0].split("raw ")[1].split()[0])
    live = [r[0] for r in stack.query("SELECT moisture_raw FROM plants WHERE board = 'bed-1'")]
    assert min(live) <= raw_dry <= max(live)

    wet = gateway_cli(config, "bed-1", "--wet", "--raw", str(raw_dry - 10000))
    assert wet.returncode == 0, wet.stderr
    assert wet.stdout.splitlines()[1] == ("calibration 1 of bed-1 probe 0: dry %d, wet %d, in effect from the first "
                                          "reading" % (raw_dry, raw_dry - 10000))
    assert " % now (raw " in wet.stdout.splitlines()[2]
    assert stack.query("SELECT COUNT(*) FROM moisture WHERE board = 'bed-1' AND pct IS NULL")[0][0] == 0

    listed = gateway_cli(config, "--list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[:5] == [
        "1", "bed-1", "0", str(raw_dry), str(raw_dry - 10000)], listed.stdout

    # Mistakes get one line and exit 1, never a traceback.
    for args, says in ((["bed-9", "--dry", "--seconds", "2"], "0 live reading(s) of bed-9 in 2 s"),
                       (["bed-1", "--wet", "--raw", "1", "--from", "yesterday"], "--from 'yesterday': not a time; give UTC"),
                       (["--remove", "7"], "no calibration 7"),
                       (["bed-1", "3", "--dry"], "probe 3: readings carry one probe (0) so far"),
                       (["bed-1"], "calibrate BOARD [PROBE] --dry|--wet")):
        r = gateway_cli(config, *args)
        assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("soil-gateway: "), (args, r.stderr)
        assert says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)

    removed = gateway_cli(config, "--remove", "1")
    assert removed.returncode == 0 and removed.stdout.startswith("removed calibration 1 of bed-1"), removed.stdout
    assert stack.query("SELECT COUNT(*) FROM moisture WHERE board = 'bed-1' AND pct IS NOT NULL")[0][0] == 0

    stack.db.stop()
    down = gateway_cli(config, "--list")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr.startswith("soil-gateway: ") and len(down.stderr.strip().splitlines()) == 1, down.stderr
