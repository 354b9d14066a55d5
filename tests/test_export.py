"""`soil-gateway export` against a real private server, with the gateway's least-privilege account: the exact CSV
and JSON lines (ISO UTC times, % from a calibration, the flags, empty % without one, a replayed row's source), the
filters, memory that does not grow with the rows (a server-side cursor), and one-line errors."""

import datetime
import gc
import io
import json
import os
import subprocess
import sys
import tracemalloc

import pymysql
import pytest

from gateway import export
from gateway.db import ReadingStore
from gateway.moisture import Calibrations
from tests.test_gateway_cli import assert_clean_error, run_cli, write_config
from tools.dbserver import free_port
from tools.demo.stack import ROOT, process_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

T0 = datetime.datetime(2026, 12, 1, 6, 0, 0)


def insert_readings(dbserver, rows):
    """rows of (board, boot, seq, datetime UTC, raw, source), as the admin, in one executemany."""
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **dbserver.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.executemany("INSERT INTO plants (board, collector, boot, seq, date_saved, moisture_raw, source, "
                            "received_at, time_quality) VALUES (%s, 'single', %s, %s, %s, %s, %s, UTC_TIMESTAMP(3), "
                            "'rtc')", rows)
    finally:
        conn.close()


def one_second_readings(board, n, first=0, raw=500):
    """n readings a second apart from T0 + `first` seconds (seq = that offset)."""
    return [(board, 1, i, T0 + datetime.timedelta(seconds=i), raw + i % 7, "live") for i in range(first, first + n)]


def calibrate(dbserver, board, dry, wet, effective_from="2026-01-01 00:00:00"):
    store = ReadingStore(dbserver.gateway_cfg)
    try:
        cal = Calibrations(store)
        cal.record(board, 0, "dry", dry, effective_from=effective_from)
        cal.record(board, 0, "wet", wet)
    finally:
        store.close()


@pytest.fixture
def garden(clean_db):
    """bed-1 calibrated dry 800 / wet 400: 50 %, 0 %, drier than dry, wetter than wet, one replayed; bed-2 never
    calibrated."""
    insert_readings(clean_db, [
        ("bed-1", 1, 0, T0, 600, "live"),
        ("bed-1", 1, 1, T0 + datetime.timedelta(seconds=1), 800, "live"),
        ("bed-1", 1, 2, T0 + datetime.timedelta(seconds=2), 900, "replay"),
        ("bed-1", 1, 3, T0 + datetime.timedelta(hours=1), 300, "live"),
        ("bed-2", 7, 0, T0 + datetime.timedelta(seconds=30), 512, "live"),
    ])
    calibrate(clean_db, "bed-1", 800, 400)
    return clean_db


CSV_ALL = """board,probe,sample_time,raw,percent,flag,source,time_quality
bed-1,0,2026-12-01T06:00:00Z,600,50.0,ok,live,rtc
bed-1,0,2026-12-01T06:00:01Z,800,0.0,ok,live,rtc
bed-1,0,2026-12-01T06:00:02Z,900,-25.0,drier_than_dry,replay,rtc
bed-1,0,2026-12-01T07:00:00Z,300,125.0,wetter_than_wet,live,rtc
bed-2,0,2026-12-01T06:00:30Z,512,,,live,rtc
"""


def cli(dbserver, tmp_path, *args):
    cfg = write_config(tmp_path, dbserver.port)
    return run_cli("export", "-c", cfg, *args, env_extra={"SOIL_DB_PASSWORD": dbserver.gateway_password})


def test_csv_through_the_cli_exactly(garden, tmp_path):
    proc = cli(garden, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == CSV_ALL
    assert proc.stderr == "soil-gateway: 5 readings (any board) to stdout\n"


def test_jsonl_to_a_file_exactly(garden, tmp_path):
    out = tmp_path / "bed-1.jsonl"
    proc = cli(garden, tmp_path, "--board", "bed-1", "--format", "jsonl", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = out.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"board": "bed-1", "probe": 0, "sample_time": "2026-12-01T06:00:00Z", "raw": 600, "percent": 50.0,
         "flag": "ok", "source": "live", "time_quality": "rtc"},
        {"board": "bed-1", "probe": 0, "sample_time": "2026-12-01T06:00:01Z", "raw": 800, "percent": 0.0,
         "flag": "ok", "source": "live", "time_quality": "rtc"},
        {"board": "bed-1", "probe": 0, "sample_time": "2026-12-01T06:00:02Z", "raw": 900, "percent": -25.0,
         "flag": "drier_than_dry", "source": "replay", "time_quality": "rtc"},
        {"board": "bed-1", "probe": 0, "sample_time": "2026-12-01T07:00:00Z", "raw": 300, "percent": 125.0,
         "flag": "wetter_than_wet", "source": "live", "time_quality": "rtc"}]
    assert lines[0] == ('{"board":"bed-1","probe":0,"sample_time":"2026-12-01T06:00:00Z","raw":600,"percent":50.0,'
                        '"flag":"ok","source":"live","time_quality":"rtc"}')
    assert not os.path.exists(str(out) + ".part")


def test_uncalibrated_probe_has_null_percent_in_jsonl(garden):
    buf = io.StringIO()
    n = export.export(garden.gateway_cfg, export.selection(board="bed-2"), "jsonl", stdout=buf)
    assert n == 1
    row = json.loads(buf.getvalue())
    assert row["percent"] is None and row["flag"] is None and row["raw"] == 512


@pytest.mark.parametrize("kwargs, want", [
    ({"board": "bed-1", "start": "2026-12-01T06:00:01Z", "end": "2026-12-01T07:00"}, [1, 2]),   # [from, to)
    ({"start": "2026-12-01T06:00:02", "end": "2026-12-02"}, [2, 3, 4]),
    ({"board": "bed-1", "probe": 0, "end": "2026-12-01T06:00:01Z"}, [0]),
    ({"board": "bed-1", "probe": 1}, []),
    ({"end": "2026-12-01"}, []),
])
def test_filters_by_board_probe_and_range(garden, kwargs, want):
    buf = io.StringIO()
    n = export.export(garden.gateway_cfg, export.selection(**kwargs), "csv", stdout=buf)
    all_rows = CSV_ALL.splitlines()[1:]
    assert buf.getvalue().splitlines() == [CSV_ALL.splitlines()[0]] + [all_rows[i] for i in want]
    assert n == len(want)


def test_unknown_board_is_zero_rows_and_a_note(garden, tmp_path):
    proc = cli(garden, tmp_path, "--board", "bed-9")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == CSV_ALL.splitlines()[0] + "\n"
    assert "no readings of board bed-9; boards with readings: bed-1, bed-2" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, words", [
    (("--from", "yesterday"), ("--from 'yesterday': not a time", "2026-12-01T06:00:00Z")),
    (("--to", "2026-13-01"), ("--to '2026-13-01': not a time",)),
    (("--from", "2026-12-02", "--to", "2026-12-01"), ("is not after --from",)),
    (("--from", "2026-12-01T06:00+02:00"), ("not a time",)),
    (("-o", "/nonexistent-dir/out.csv"), ("cannot write /nonexistent-dir/out.csv", "No such file")),
])
def test_user_mistakes_are_one_line(garden, tmp_path, args, words):
    proc = cli(garden, tmp_path, *args)
    assert_clean_error(proc, *words)
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stdout == ""


def test_database_down_and_wrong_password_are_one_line_and_leave_no_file(tmp_path, dbserver):
    out = tmp_path / "out.csv"
    cfg = write_config(tmp_path, free_port())
    proc = run_cli("export", "-c", cfg, "-o", str(out), env_extra={"SOIL_DB_PASSWORD": "x"})
    assert_clean_error(proc, "cannot connect")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not out.exists() and not os.path.exists(str(out) + ".part")
    cfg = write_config(tmp_path, dbserver.port)
    proc = run_cli("export", "-c", cfg, env_extra={"SOIL_DB_PASSWORD": "not-the-password"})
    assert_clean_error(proc, "access denied")
    assert len(proc.stderr.splitlines()) == 1 and "not-the-password" not in proc.stderr


def test_a_pipe_that_closes_ends_quietly(clean_db, tmp_path):
    insert_readings(clean_db, one_second_readings("bed-1", 30000))
    cfg = write_config(tmp_path, clean_db.port)
    env = process_env()
    env["SOIL_DB_PASSWORD"] = clean_db.gateway_password
    proc = subprocess.run("%s -m gateway export -c %s | head -3" % (sys.executable, cfg), shell=True, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["board,probe,sample_time,raw,percent,flag,source,time_quality",
                                        "bed-1,0,2026-12-01T06:00:00Z,500,,,live,rtc",
                                        "bed-1,0,2026-12-01T06:00:01Z,501,,,live,rtc"]
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


class Sink:
    """A file that keeps nothing: only the exporter's own memory is measured."""

    def __init__(self):
        self.chars = 0

    def write(self, text):
        self.chars += len(text)

    def flush(self):
        pass


def peak_traced_bytes(db_cfg, selection, fmt):
    gc.collect()
    tracemalloc.start()
    try:
        sink = Sink()
        n = export.export(db_cfg, selection, fmt, stdout=sink)
        return n, tracemalloc.get_traced_memory()[1], sink.chars
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_rows(clean_db):
    """200,000 rows exported with about the same peak traced memory as 20,000: rows are streamed from a server-side
    cursor, not fetched into a list (a buffered cursor holds every row: about 10x the peak here)."""
    insert_readings(clean_db, one_second_readings("bed-1", 200000))
    small = export.selection(board="bed-1", end="2026-12-01T11:33:20Z")      # the first 20,000 seconds
    assert (T0 + datetime.timedelta(seconds=20000)).strftime("%H:%M:%S") == "11:33:20"
    n_small, peak_small, _ = peak_traced_bytes(clean_db.gateway_cfg, small, "csv")
    n_big, peak_big, chars = peak_traced_bytes(clean_db.gateway_cfg, export.selection(board="bed-1"), "csv")
    print("peak traced memory: %d rows %d B, %d rows %d B" % (n_small, peak_small, n_big, peak_big))
    assert (n_small, n_big) == (20000, 200000)
    assert chars > 200000 * 40                                   # every row was written
    assert peak_big < 1.5 * peak_small + 256 * 1024, (peak_small, peak_big)
    assert peak_big < 8 * 1024 * 1024, peak_big                  # 200,000 rows as tuples alone would be ~60 MB


def test_output_to_dev_null_is_written_not_replaced(garden):
    """-o /dev/null (the benchmark's, a user's dry run) is opened as it is: a FILE.part renamed over it would have
    replaced the device with a regular file."""
    import stat
    n = export.export(garden.gateway_cfg, export.selection(), "csv", path=os.devnull)
    assert n == 5
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert not os.path.exists(os.devnull + ".part")
