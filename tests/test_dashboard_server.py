"""The dashboard's server (gateway/web/) as a client meets it: a real Gateway with its dashboard on a free port
and a real private database server. Read-only (GET and HEAD, nothing else), localhost by default, a token
everywhere else (refused at start-up without one), and no secret in any answer."""

import calendar
import dataclasses
import http.client
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.parse

import pymysql
import pytest

from gateway.config import ConfigError, DashboardConfig, GatewayConfig, from_dict
from gateway.db import ReadingStore
from gateway.dbconn import DatabaseError
from gateway.hourly import HourlyAggregates
from gateway.moisture import percent
from gateway.service import Gateway
from gateway.web import data
from tools.dbserver import free_port
from tools.demo.stack import ROOT, process_env

pytestmark = pytest.mark.integration

TOKEN = "tok-" + "7" * 28
PATHS = ("/", "/static/app.js", "/static/style.css", "/static/favicon.svg", "/api/status",
         "/api/readings?range=hour", "/api/events")


def request(url, path, method="GET", headers=None, body=None):
    """(status, headers dict, body text) for one request; a fresh connection each time."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.fixture
def serve(clean_db):
    """serve(db_cfg=..., **dashboard keys) -> a started Gateway (no boards) whose dashboard listens on a free port."""
    started = []

    def start(db_cfg=None, **dash):
        dash.setdefault("port", 0)
        cfg = GatewayConfig(db_cfg or clean_db.gateway_cfg, [], dashboard=DashboardConfig(**dash))
        gw = Gateway(cfg)
        try:
            gw.check_database()            # as `soil-gateway run` does before it starts
        except DatabaseError:
            pass
        gw.start()
        started.append(gw)
        assert gw.dashboard is not None and gw.dashboard.url
        return gw

    yield start
    for gw in started:
        gw.stop()


def insert_rows(dbserver, rows):
    """rows of (board, boot, seq, 'YYYY-mm-dd HH:MM:SS' UTC, raw, source), as the admin."""
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **dbserver.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.executemany("INSERT INTO plants (board, collector, boot, seq, date_saved, moisture_raw, source, "
                            "received_at, time_quality) VALUES (%s, 'single', %s, %s, %s, %s, %s, UTC_TIMESTAMP(3), "
                            "'rtc')", rows)
    finally:
        conn.close()


def utc_now_sql(dbserver, offset_s):
    conn = pymysql.connect(**dbserver.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL %s SECOND, '%%Y-%%m-%%d %%H:%%i:%%s')",
                        (offset_s,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_localhost_is_the_default_and_every_route_answers(serve):
    assert DashboardConfig().bind == "127.0.0.1" and DashboardConfig().port == 8086
    assert from_dict({}).dashboard.bind == "127.0.0.1"
    gw = serve()
    assert gw.dashboard.url.startswith("http://127.0.0.1:")
    for path in PATHS:
        status, headers, body = request(gw.dashboard.url, path)
        assert status == 200, (path, body)
        assert "default-src 'self'" in headers["content-security-policy"]
    status, _, body = request(gw.dashboard.url, "/api/status")
    view = json.loads(body)
    assert view["database"]["ok"] is True and view["boards"] == []
    assert view["dashboard"] == gw.dashboard.url
    assert gw.snapshot()["dashboard"] == gw.dashboard.url


def test_the_page_loads_nothing_from_elsewhere(serve):
    gw = serve()
    for path in ("/", "/static/app.js", "/static/style.css"):
        _, _, body = request(gw.dashboard.url, path)
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "") and "https://" not in body, path


def test_only_get_and_head(serve):
    gw = serve()
    status, headers, body = request(gw.dashboard.url, "/api/status", "HEAD")
    assert status == 200 and body == "" and int(headers["content-length"]) > 0
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
        status, headers, body = request(gw.dashboard.url, "/api/status", method, body="x=1")
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD"
        assert "read-only" in json.loads(body)["error"]


def test_unknown_paths_and_ranges_are_clear_errors(serve):
    gw = serve()
    status, _, body = request(gw.dashboard.url, "/etc/passwd")
    assert status == 404 and "no such page" in json.loads(body)["error"]
    status, _, body = request(gw.dashboard.url, "/static/../server.py")
    assert status == 404
    status, _, body = request(gw.dashboard.url, "/api/readings?range=year")
    assert status == 400 and "hour, day or week" in json.loads(body)["error"]


def test_on_localhost_a_foreign_host_name_is_refused(serve):
    """DNS rebinding: a page elsewhere reaching 127.0.0.1 through a name of its own gets nothing."""
    gw = serve()
    status, _, body = request(gw.dashboard.url, "/api/status", headers={"Host": "evil.example:8086"})
    assert status == 403 and "localhost" in json.loads(body)["error"]
    status, _, _ = request(gw.dashboard.url, "/api/status", headers={"Host": "localhost:8086"})
    assert status == 200


def test_bound_elsewhere_without_a_token_is_refused_in_one_line(tmp_path, clean_db):
    with pytest.raises(ConfigError, match=r"reachable from other machines: set token_file"):
        from_dict({"dashboard": {"bind": "0.0.0.0"}}, "gw.toml")
    with pytest.raises(ConfigError, match="too short"):
        from_dict({"dashboard": {"bind": "0.0.0.0", "token": "short"}}, "gw.toml")
    with pytest.raises(ConfigError, match="token_file: cannot read"):
        from_dict({"dashboard": {"bind": "0.0.0.0", "token_file": str(tmp_path / "none")}}, "gw.toml")
    (tmp_path / "tok").write_text(TOKEN + "\n")
    cfg = from_dict({"dashboard": {"bind": "0.0.0.0", "token_file": str(tmp_path / "tok")}}, "gw.toml")
    assert cfg.dashboard.token == TOKEN and TOKEN not in repr(cfg.dashboard)
    # The service itself: one line, exit 1, before anything starts.
    path = tmp_path / "gateway.toml"
    path.write_text('[database]\nhost = "127.0.0.1"\nport = %d\n\n[dashboard]\nbind = "0.0.0.0"\n\n'
                    '[[board]]\nurl = "/dev/null-board"\n' % clean_db.port)
    env = process_env()
    env["SOIL_DB_PASSWORD"] = clean_db.gateway_password
    proc = subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("soil-gateway: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "token" in proc.stderr and "Traceback" not in proc.stderr


def test_bound_elsewhere_every_route_needs_the_token(serve):
    gw = serve(bind="0.0.0.0", token=TOKEN)
    url = gw.dashboard.url.replace("0.0.0.0", "127.0.0.1")
    for path in PATHS:
        status, _, body = request(url, path)
        assert status == 401, path
        assert TOKEN not in body
        status, _, _ = request(url, path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "8"})
        assert status == 401, path
        status, _, _ = request(url, path, headers={"Authorization": "Bearer " + TOKEN})
        assert status == 200, path
    status, _, _ = request(url, "/?token=wrong-token-wrong-token")
    assert status == 401
    status, headers, _ = request(url, "/?token=" + TOKEN)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    status, _, _ = request(url, "/api/status", headers={"Cookie": cookie})
    assert status == 200


def test_no_secret_in_any_answer(serve, clean_db):
    """The database password, the account name and the token appear in no answer, also when the database is
    away and its error messages (which name user@host:port) are shown."""
    good = serve(bind="0.0.0.0", token=TOKEN)
    down_cfg = dataclasses.replace(clean_db.gateway_cfg, port=free_port(), connect_timeout=2)
    down = serve(db_cfg=down_cfg, bind="0.0.0.0", token=TOKEN)
    auth = {"Authorization": "Bearer " + TOKEN}
    seen_error = False
    for gw in (good, down):
        url = gw.dashboard.url.replace("0.0.0.0", "127.0.0.1")
        for path in PATHS + ("/nothing", "/api/readings?range=x"):
            for headers in (auth, {}):
                status, hdrs, body = request(url, path, headers=headers)
                text = body + json.dumps(hdrs)
                if status == 303:
                    continue
                assert clean_db.gateway_password not in text, path
                assert TOKEN not in text, path
                assert "soil_gateway@" not in text, path
                seen_error |= "unavailable" in body
    assert seen_error, "the database errors were never shown: the test proves nothing"


def test_a_busy_port_leaves_the_boards_served(clean_db, caplog):
    """Like the tap: the page is for people watching; a port someone else holds is one error line, and the
    service goes on serving its boards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        gw = Gateway(GatewayConfig(clean_db.gateway_cfg, [], dashboard=DashboardConfig(port=port)))
        gw.start()
        try:
            assert gw.dashboard is None
            assert gw.writer.ok()
            assert any("cannot listen on 127.0.0.1:%d" % port in r.getMessage() for r in caplog.records)
        finally:
            gw.stop()


def test_the_chart_gets_every_row_with_replays_and_gaps(serve, clean_db):
    """Rows in the last hour: a live run, a replayed run, a 5-minute hole, another live run; one row of the day
    before (outside the hour). The series has every row of the hour, replay flags, and a gap threshold that the
    hole exceeds and a one-second step does not."""
    rows = []
    for i in range(20):
        source = "replay" if 5 <= i < 10 else "live"
        rows.append(("bed-1", 1, i + 1, utc_now_sql(clean_db, 900 - i), 20000 + i, source))
    for i in range(10):
        rows.append(("bed-1", 1, 21 + i, utc_now_sql(clean_db, 580 - i), 21000 + i, "live"))
    rows.append(("bed-1", 1, 99, utc_now_sql(clean_db, 20 * 3600), 1, "live"))
    rows.append(("bed-2", 4, 1, utc_now_sql(clean_db, 100), 300, "live"))
    insert_rows(clean_db, rows)
    gw = serve()
    status, _, body = request(gw.dashboard.url, "/api/readings?range=hour")
    assert status == 200
    r = json.loads(body)
    assert r["value"] == "raw" and r["bucket_s"] == 0            # no probe calibrated: raw
    by_name = {s["name"]: s for s in r["series"]}
    assert sorted(by_name) == ["bed-1", "bed-2"]
    bed1 = by_name["bed-1"]
    assert len(bed1["points"]) == bed1["rows"] == 30
    assert [p[2] for p in bed1["points"]] == [1 if 5 <= i < 10 else 0 for i in range(30)]
    steps = [b[0] - a[0] for a, b in zip(bed1["points"], bed1["points"][1:])]
    assert sum(step > bed1["gap_s"] for step in steps) == 1        # exactly the hole
    assert by_name["bed-2"]["points"][0][1] == 300
    status, _, body = request(gw.dashboard.url, "/api/readings?range=day")
    assert {s["name"]: s["rows"] for s in json.loads(body)["series"]} == {"bed-1": 31, "bed-2": 1}


def test_the_chart_is_in_percent_once_a_probe_is_calibrated(serve, clean_db):
    insert_rows(clean_db, [("bed-1", 1, 1, utc_now_sql(clean_db, 300), 26000, "live"),
                           ("bed-1", 1, 2, utc_now_sql(clean_db, 200), 19000, "live"),
                           ("bed-1", 1, 3, utc_now_sql(clean_db, 100), 11300, "live"),
                           ("bed-2", 1, 1, utc_now_sql(clean_db, 100), 500, "live")])
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **clean_db.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO calibrations (board, probe, raw_dry, raw_wet, effective_from, created_at) "
                        "VALUES ('bed-1', 0, 26000, 12000, '1000-01-01', UTC_TIMESTAMP(3))")
            cur.execute("SELECT pct FROM moisture WHERE board = 'bed-1' ORDER BY sample_time")
            view = [float(p) for (p,) in cur.fetchall()]
    finally:
        conn.close()
    gw = serve()
    r = json.loads(request(gw.dashboard.url, "/api/readings?range=hour")[2])
    assert r["value"] == "pct"
    by_name = {s["name"]: s for s in r["series"]}
    assert [p[1] for p in by_name["bed-1"]["points"]] == view == [0.0, 50.0, 105.0]     # what the view says
    assert by_name["bed-1"]["calibrated"] and not by_name["bed-2"]["calibrated"]
    assert [p[1] for p in by_name["bed-2"]["points"]] == [None]        # no percent without a calibration
    raw = json.loads(request(gw.dashboard.url, "/api/readings?range=hour&value=raw")[2])
    assert raw["value"] == "raw" and [p[1] for p in raw["series"][0]["points"]] == [26000, 19000, 11300]
    status, _, body = request(gw.dashboard.url, "/api/readings?range=hour&value=volts")
    assert status == 400 and "unknown value" in json.loads(body)["error"]


def test_a_long_range_is_averaged_into_buckets(serve, clean_db, monkeypatch):
    monkeypatch.setattr(data, "MAX_POINTS", 10)
    insert_rows(clean_db, [("bed-1", 1, i + 1, utc_now_sql(clean_db, 60 + i * 60), 100 + i,
                            "replay" if i == 3 else "live") for i in range(50)])
    gw = serve()
    r = json.loads(request(gw.dashboard.url, "/api/readings?range=hour")[2])
    assert r["bucket_s"] == 360
    pts = r["series"][0]["points"]
    assert 8 <= len(pts) <= 11 and r["series"][0]["rows"] == 50
    assert sum(p[2] for p in pts) == 1
    assert r["series"][0]["gap_s"] >= 3 * 360


def test_the_week_reads_the_hourly_aggregates(serve, clean_db):
    """A week: one point per hour from `hourly` (gateway/hourly.py), its exact mean and replay flag, the series'
    rows the hours' counts; before the aggregates hold anything, the week is bucketed from plants as before."""
    rows = [("bed-1", 1, i + 1, utc_now_sql(clean_db, 3 * 86400 + 600 * i), 100 + i, "replay" if i == 7 else "live")
            for i in range(12)]
    insert_rows(clean_db, rows)
    gw = serve()
    before = json.loads(request(gw.dashboard.url, "/api/readings?range=week")[2])
    assert before["bucket_s"] == 0 and len(before["series"][0]["points"]) == before["series"][0]["rows"] == 12
    store = ReadingStore(clean_db.gateway_cfg)
    try:
        HourlyAggregates(store).refresh()
    finally:
        store.close()
    r = json.loads(request(gw.dashboard.url, "/api/readings?range=week")[2])
    assert r["bucket_s"] == data.HOURLY_BUCKET_S and r["value"] == "raw"
    (bed1,) = r["series"]
    assert bed1["rows"] == 12 and bed1["gap_s"] >= 3 * 3600
    expect = {}
    for _, _, _, t, raw, source in rows:
        hour = calendar.timegm(time.strptime(t[:13], "%Y-%m-%d %H"))
        expect.setdefault(hour, []).append((raw, source == "replay"))
    assert [[p[0], p[1], p[2]] for p in bed1["points"]] == [
        [float(h), round(sum(v for v, _ in vs) / float(len(vs)), 2), int(any(rep for _, rep in vs))]
        for h, vs in sorted(expect.items())]
    assert set(before) == set(r) and set(before["series"][0]) == set(bed1)
    # Calibrated, the week is in percent: each hour's exact mean through the calibration (gateway.moisture.percent).
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **clean_db.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO calibrations (board, probe, raw_dry, raw_wet, effective_from, created_at) "
                        "VALUES ('bed-1', 0, 200, 100, '1000-01-01', UTC_TIMESTAMP(3))")
    finally:
        conn.close()
    pct = json.loads(request(gw.dashboard.url, "/api/readings?range=week")[2])
    assert pct["value"] == "pct" and pct["bucket_s"] == data.HOURLY_BUCKET_S
    assert [p[1] for p in pct["series"][0]["points"]] == [
        percent(sum(v for v, _ in vs) / float(len(vs)), 200, 100)[0] for _, vs in sorted(expect.items())]


def test_events_of_the_last_hour(serve, clean_db):
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **clean_db.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO board_events (board, event, detail, received_at) VALUES "
                        "('bed-1', 'boot', 'boot 2', UTC_TIMESTAMP(3)), "
                        "('bed-1', 'dropped', 'old', UTC_TIMESTAMP(3) - INTERVAL 2 HOUR)")
    finally:
        conn.close()
    gw = serve()
    events = json.loads(request(gw.dashboard.url, "/api/events")[2])["events"]
    assert [(e["board"], e["event"], e["detail"]) for e in events] == [("bed-1", "boot", "boot 2")]


def test_status_without_a_running_service_is_one_line(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[database]\nhost = "127.0.0.1"\n\n[dashboard]\nport = %d\n' % free_port())
    proc = subprocess.run([sys.executable, "-m", "gateway", "status", "-c", str(path)], cwd=ROOT, env=process_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("soil-gateway: the gateway service is not running"), proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    path.write_text('[database]\nhost = "127.0.0.1"\n\n[dashboard]\nenabled = false\n')
    proc = subprocess.run([sys.executable, "-m", "gateway", "status", "-c", str(path)], cwd=ROOT, env=process_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "[dashboard] is disabled" in proc.stderr and proc.stderr.count("\n") == 1


def test_status_prints_the_running_service(serve, clean_db, tmp_path):
    """`status -c` finds the service through its [dashboard] (a wildcard bind is asked on 127.0.0.1 with the token
    from the configuration); `--url` asks the given address."""
    gw = serve(bind="0.0.0.0", token=TOKEN)
    port = int(gw.dashboard.url.rsplit(":", 1)[1].strip("/"))
    path = tmp_path / "gateway.toml"
    path.write_text('[database]\nhost = "127.0.0.1"\n\n[dashboard]\nbind = "0.0.0.0"\nport = %d\ntoken = "%s"\n'
                    % (port, TOKEN))
    proc = subprocess.run([sys.executable, "-m", "gateway", "status", "-c", str(path)], cwd=ROOT, env=process_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "database: taking writes on 127.0.0.1:%d" % clean_db.port in proc.stdout
    assert "boards (0): 0 online, 0 caching" in proc.stdout
    assert "alerts: off ([alerts] enabled = false)" in proc.stdout     # the fixture's Gateway has no [alerts]
    assert "board events of the last hour: 0" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "gateway", "status", "--url", "http://127.0.0.1:%d/" % port],
                          cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("soil-gateway: the gateway at") and "HTTP 401" in proc.stderr


def test_a_client_that_goes_away_leaves_no_traceback(serve, capfd):
    """A browser closed (or a page reloaded) in the middle of an answer: the server's write meets a reset
    connection. That is the client's doing: one debug line at most, never a traceback in the gateway's log (seen in
    make demo-galera: BrokenPipeError from the dashboard's handler), and the next client is served."""
    gw = serve()
    parts = urllib.parse.urlsplit(gw.dashboard.url)
    for _ in range(20):
        s = socket.create_connection((parts.hostname, parts.port), timeout=5)
        s.sendall(b"GET /static/app.js HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with RST
        s.close()
    assert request(gw.dashboard.url, "/api/status")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "ConnectionResetError" not in err, err[-2000:]
