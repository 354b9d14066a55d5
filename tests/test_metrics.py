"""The Prometheus endpoint (gateway/metrics.py): its figures against real parts, its server as Prometheus meets it,
the example alert rules under promtool, and the whole installation scraped over HTTP against what was stored."""

import http.client
import json
import shutil
import subprocess
import sys
import types
import urllib.parse

import pymysql
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import frames
from gateway.config import ConfigError, GatewayConfig, MetricsConfig, from_dict
from gateway.dbconn import DbConfig
from gateway.db import ReadingStore
from gateway.metrics import Metrics
from gateway.service import Gateway, Writer
from soil import utc
from tests.fake_clock import T0
from tests.test_dashboard_state import Port
from tests.test_gateway_protocol import Rig, reading
from tools.dbserver import free_port
from tools.demo.stack import ROOT, Stack, process_env, wait_for

TOKEN = "metrics-" + "5" * 24
RULES = ROOT + "/gateway/prometheus/soil-alerts.yml"
RULE_TESTS = ROOT + "/tests/prometheus/soil-alerts.test.yml"
ISO_AHEAD = utc.iso(utc.from_epoch(int(T0) + 5))      # a board clock 5 s ahead of the rig's


def samples(text):
    """{(sample name, frozenset(labels)): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed, name, **labels):
    return parsed.get((name, frozenset(labels.items())))


def request(url, path="/metrics", method="GET", headers=None):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


# --- the collector over real parts ----------------------------------------------------------------------------
def rig_gateway(servers=()):
    """A Gateway's public state from real parts: a BoardProtocol fed real frames (the protocol tests' rig and
    clock), a port's status, a Writer over a ReadingStore that has not connected yet."""
    rig = Rig()
    db = DbConfig(host="127.0.0.1", port=free_port(), user="nobody", password="x", servers=tuple(servers))
    writer = Writer(ReadingStore(db))
    gw = types.SimpleNamespace(sessions=[rig.p], transports=[Port()], writer=writer,
                               config=types.SimpleNamespace(database=db), alerts=None)
    return rig, gw


def test_per_board_figures_from_the_session():
    rig, gw = rig_gateway()
    metrics = Metrics(gw, now=rig.clock)
    before = samples(metrics.exposition().decode())
    # Before the first frame: counted from zero, no silence and no pending figure yet (absent, not a made-up 0).
    assert value(before, "soil_gateway_frames_total", board="", port=rig.p.cfg.name) == 0
    assert value(before, "soil_gateway_seconds_since_last_frame", board="", port=rig.p.cfg.name) is None
    assert value(before, "soil_gateway_pending_readings", board="", port=rig.p.cfg.name) is None

    rig.hello()
    rig.feed(reading(1), reading(2), reading(3), b"garbage", frames.status(ISO_AHEAD, "ok", 7, 0, "ok", 2048))
    rig.clock.t += 12.5
    m = samples(metrics.exposition().decode())
    key = {"board": "bed-1", "port": rig.p.cfg.name}
    assert value(m, "soil_gateway_frames_total", **key) == rig.p.stats.frames == 5
    assert value(m, "soil_gateway_readings_total", **key) == 3
    assert value(m, "soil_gateway_bad_frames_total", **key) == 1
    assert value(m, "soil_gateway_pending_readings", **key) == 7
    assert value(m, "soil_gateway_seconds_since_last_frame", **key) == pytest.approx(12.5)
    assert value(m, "soil_gateway_port_open", **key) == 1
    # The status said the board's clock is 5 s ahead (whole seconds: the DS1307 counts no fractions).
    assert 4.0 <= value(m, "soil_gateway_clock_offset_seconds", **key) <= 5.0
    assert value(m, "soil_gateway_database_up") == 1
    assert value(m, "soil_gateway_rows_committed_total") == 0
    assert value(m, "soil_gateway_open_alerts", kind="silent") is None     # [alerts] off: no figure


def test_the_primary_among_the_configured_servers_and_the_histograms():
    rig, gw = rig_gateway(servers=("db1:3306", "db2:3306"))
    metrics = Metrics(gw, now=rig.clock)
    m = samples(metrics.exposition().decode())
    # Before the first connection no server is in use: every configured one is 0.
    assert value(m, "soil_gateway_database_primary", server="db1:3306") == 0
    assert value(m, "soil_gateway_database_primary", server="db2:3306") == 0
    for rows, seconds in ((1, 0.002), (3, 0.004), (400, 0.3)):
        metrics.observe_batch(rows, seconds)
    m = samples(metrics.exposition().decode())
    assert value(m, "soil_gateway_commit_batch_rows_count") == 3
    assert value(m, "soil_gateway_commit_batch_rows_sum") == 404
    assert value(m, "soil_gateway_commit_batch_rows_bucket", le="5.0") == 2
    assert value(m, "soil_gateway_commit_duration_seconds_bucket", le="0.005") == 2
    assert value(m, "soil_gateway_commit_duration_seconds_bucket", le="+Inf") == 3
    assert value(m, "soil_gateway_commit_duration_seconds_sum") == pytest.approx(0.306)


def test_a_figure_that_fails_is_a_500_and_one_line(caplog):
    from gateway.metrics import MetricsServer

    class Broken:
        def database_state(self):
            raise RuntimeError("boom")

    _, gw = rig_gateway()
    gw.writer = Broken()
    server = MetricsServer(MetricsConfig(port=0), gw)
    server.start()
    try:
        with caplog.at_level("ERROR", logger="gateway.metrics"):
            status, _, body = request(server.url)
        assert status == 500 and "Traceback" not in body
    finally:
        server.stop()
    assert [r.getMessage() for r in caplog.records] == ["metrics: the scrape failed: RuntimeError: boom"]


# --- the configuration --------------------------------------------------------------------------------------
def test_off_without_the_section_localhost_9108_with_it():
    assert from_dict({}).metrics is None
    cfg = from_dict({"metrics": {}}).metrics
    assert (cfg.enabled, cfg.bind, cfg.port, cfg.token, cfg.local) == (True, "127.0.0.1", 9108, None, True)
    with pytest.raises(ConfigError, match=r"gw.toml: \[metrics\] port must be 0"):
        from_dict({"metrics": {"port": 70000}}, "gw.toml")
    with pytest.raises(ConfigError, match=r"unknown key \[metrics\] path"):
        from_dict({"metrics": {"path": "/m"}}, "gw.toml")


def test_bound_elsewhere_without_a_token_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"\[metrics\] bind = '0.0.0.0' is reachable from other machines"):
        from_dict({"metrics": {"bind": "0.0.0.0"}}, "gw.toml")
    with pytest.raises(ConfigError, match=r"\[metrics\] the token is too short"):
        from_dict({"metrics": {"bind": "0.0.0.0", "token": "short"}}, "gw.toml")
    (tmp_path / "tok").write_text(TOKEN + "\n")
    cfg = from_dict({"metrics": {"bind": "0.0.0.0", "token_file": str(tmp_path / "tok")}}, "gw.toml").metrics
    assert cfg.token == TOKEN and TOKEN not in repr(cfg)
    # The service: one line on stderr, exit 1, before anything starts.
    path = tmp_path / "gateway.toml"
    path.write_text('[database]\nhost = "127.0.0.1"\nport = %d\n\n[metrics]\nbind = "0.0.0.0"\n\n'
                    '[[board]]\nurl = "/dev/null-board"\n' % free_port())
    proc = subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(path)], cwd=ROOT, env=process_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("soil-gateway: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "[metrics] bind = '0.0.0.0'" in proc.stderr and "Traceback" not in proc.stderr


# --- the server, with a real Gateway and database -----------------------------------------------------------
@pytest.fixture
def serve(clean_db):
    started = []

    def start(**keys):
        keys.setdefault("port", 0)
        from gateway.alertwatch import AlertSettings
        cfg = GatewayConfig(clean_db.gateway_cfg, [], dashboard=None, alerts=AlertSettings(grace_s=0, every_s=0.2),
                            metrics=MetricsConfig(**keys))
        gw = Gateway(cfg)
        gw.check_database()
        gw.start()
        started.append(gw)
        assert gw.metrics is not None and gw.metrics.url.endswith("/metrics")
        return gw

    start.db_cfg = clean_db.gateway_cfg
    yield start
    for gw in started:
        gw.stop()


@pytest.mark.integration
def test_the_endpoint_on_localhost_read_only(serve, clean_db):
    gw = serve()
    assert gw.snapshot()["metrics"] == gw.metrics.url and gw.metrics.url.startswith("http://127.0.0.1:")
    status, headers, body = request(gw.metrics.url)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    m = samples(body)
    assert value(m, "soil_gateway_database_up") == 1
    assert value(m, "soil_gateway_database_primary", server="127.0.0.1:%d" % clean_db.port) == 1
    assert {k: value(m, "soil_gateway_open_alerts", kind=k) for k in ("dry", "silent", "card", "clock",
                                                                        "identity")} == dict.fromkeys(
        ("dry", "silent", "card", "clock", "identity"), 0)
    # A board whose row says its card is full: the gateway's own alert thread opens a card alert (grace_s = 0).
    conn = pymysql.connect(autocommit=True, database="plant_moisture", **clean_db.admin_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO boards (board, card, clock, dropped) VALUES ('bed-9', 'full', 'ok', 0)")
    finally:
        conn.close()
    wait_for(lambda: value(samples(request(gw.metrics.url)[2]), "soil_gateway_open_alerts", kind="card") == 1, 30,
             "the card alert in the metrics")
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = request(gw.metrics.url, method=method)
        assert status == 405 and headers["allow"] == "GET, HEAD", method
    assert request(gw.metrics.url, "/")[0] == 404
    status, _, body = request(gw.metrics.url, "/metrics", "HEAD")
    assert status == 200 and body == ""
    # DNS rebinding: a page elsewhere reaching 127.0.0.1 through a name of its own is refused.
    assert request(gw.metrics.url, headers={"Host": "evil.example:9108"})[0] == 403


@pytest.mark.integration
def test_bound_elsewhere_every_scrape_needs_the_bearer_token(serve):
    gw = serve(bind="0.0.0.0", token=TOKEN)
    url = gw.metrics.url.replace("0.0.0.0", "127.0.0.1")
    status, headers, body = request(url)
    assert status == 401 and headers["www-authenticate"] == "Bearer" and TOKEN not in body
    assert request(url, headers={"Authorization": "Bearer " + TOKEN[:-1] + "6"})[0] == 401
    status, _, body = request(url, headers={"Authorization": "Bearer " + TOKEN})
    assert status == 200 and "soil_gateway_database_up 1.0" in body


@pytest.mark.integration
def test_a_port_in_use_is_one_line_and_the_gateway_serves_on(serve, caplog):
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with caplog.at_level("ERROR", logger="gateway"):
            gw = Gateway(GatewayConfig(serve.db_cfg, [], dashboard=None,
                                       metrics=MetricsConfig(port=port)))
            gw.start()
            try:
                assert gw.metrics is None and gw.snapshot()["metrics"] is None
                assert gw.writer.ok()
            finally:
                gw.stop()
    finally:
        taken.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway"]
    assert len(lines) == 1 and lines[0].startswith("metrics: cannot listen on 127.0.0.1:%d (" % port), lines
    assert "the boards are served without it" in lines[0]


# --- the example alert rules --------------------------------------------------------------------------------
def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian's prometheus package; `make deps` installs it)")
    return path


def test_the_example_rules_are_valid_and_fire_as_their_unit_tests_say():
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([tool, "test", "rules", RULE_TESTS], capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_a_rule_unit_test_that_disagrees_fails(tmp_path):
    """The unit tests can fail: the same series with the pending threshold's `for` longer than the data."""
    tool = promtool()
    with open(RULES) as f:
        rules = f.read()
    assert "for: 30m" in rules
    (tmp_path / "rules.yml").write_text(rules.replace("for: 30m", "for: 50m"))
    with open(RULE_TESTS) as f:
        tests = f.read().replace("../../gateway/prometheus/soil-alerts.yml", "rules.yml")
    (tmp_path / "t.yml").write_text(tests)
    tested = subprocess.run([tool, "test", "rules", str(tmp_path / "t.yml")], capture_output=True, text=True,
                            timeout=60)
    assert tested.returncode != 0 and "SoilReadingsPendingLong" in tested.stdout + tested.stderr


@pytest.mark.integration
def test_a_real_prometheus_scrapes_it_with_the_token_and_loads_the_rules(serve, tmp_path):
    """Debian's Prometheus (the package that brings promtool), private: its own data folder and a free port, the
    scrape configuration of docs/METRICS.md, ended by its pid."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian's prometheus package; `make deps` installs it)")
    gw = serve(bind="0.0.0.0", token=TOKEN)
    (tmp_path / "token").write_text(TOKEN + "\n")
    target = "127.0.0.1:%d" % urllib.parse.urlsplit(gw.metrics.url).port
    (tmp_path / "prometheus.yml").write_text(PROMETHEUS_YML % {"rules": RULES, "token": tmp_path / "token",
                                                               "target": target})
    checked = subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    web = "127.0.0.1:%d" % free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(["prometheus", "--config.file=%s" % (tmp_path / "prometheus.yml"),
                             "--storage.tsdb.path=%s" % (tmp_path / "data"), "--web.listen-address=" + web],
                            stdout=log, stderr=log, cwd=str(tmp_path))
    log.close()

    def api(path):
        try:
            status, _, body = request("http://" + web, path)
        except OSError:
            return None
        return json.loads(body)["data"] if status == 200 else None

    try:
        def up():
            data = api("/api/v1/query?query=soil_gateway_database_up")
            return data and data["result"] and data["result"][0]["value"][1] == "1" and data
        data = wait_for(up, 60, "Prometheus to scrape soil_gateway_database_up 1")
        assert data["result"][0]["metric"]["job"] == "soil-gateway"
        targets = api("/api/v1/targets")["activeTargets"]
        assert [t["health"] for t in targets] == ["up"] and targets[0]["lastError"] == ""
        assert gw.metrics.scrapes >= 1
        groups = wait_for(lambda: (api("/api/v1/rules") or {}).get("groups"), 60, "the rules to load")
        rules = {r["name"]: r["state"] for g in groups for r in g["rules"]}
        assert rules == dict.fromkeys(("SoilGatewayDown", "SoilBoardSilent", "SoilDatabaseDown",
                                       "SoilReadingsPendingLong", "SoilCommitLatencyHigh"), "inactive")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_the_scrape_configuration_in_the_docs_is_valid(tmp_path):
    with open(ROOT + "/docs/METRICS.md") as f:
        doc = f.read()
    block = doc.split("## Prometheus: `prometheus.yml`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "job_name: soil-gateway" in block and "127.0.0.1:9108" in block
    (tmp_path / "prometheus.yml").write_text(block.replace("/etc/prometheus/soil-alerts.yml", RULES))
    checked = subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr


# The scrape configuration docs/METRICS.md shows, with this test's paths and intervals.
PROMETHEUS_YML = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %(rules)s
scrape_configs:
  - job_name: soil-gateway
    authorization:
      credentials_file: %(token)s
    static_configs:
      - targets: ["%(target)s"]
"""


# --- the whole installation -----------------------------------------------------------------------------------
@pytest.mark.integration
def test_scraped_figures_match_what_was_stored(tmp_path):
    from tests.conftest import require_server
    require_server()
    with Stack(str(tmp_path / "run")) as stack:
        stack.start_db()
        boards = [stack.start_board(b, interval_ms=200, status_interval_ms=500) for b in ("met-1", "met-2")]
        gateway = stack.start_gateway(sections={"metrics": {"port": 0}})
        url = wait_for(lambda: (gateway.status() or {}).get("metrics"), 60, "the gateway's metrics URL")
        assert ("metrics: " + url) in gateway.log_text()
        keys = {b.board_id: {"board": b.board_id, "port": b.tty} for b in boards}

        def scrape():
            status, _, body = request(url)
            assert status == 200
            return samples(body)

        wait_for(lambda: all((value(scrape(), "soil_gateway_readings_total", **k) or 0) >= 10 for k in keys.values()),
                 60, "ten readings counted from each board")
        for b in boards:
            b.stop_sampling()

        # Settled: every card empty and the counters the same in two scrapes a second apart. A reading a board
        # resends (its batch rolled back, or its acknowledgement late on a loaded machine) is received and
        # committed again, as a no-op in the table: the counters count it twice, plants once. So what was received
        # is at least what was committed, which is at least what plants holds (equal when nothing was resent).
        last = {}

        def settled():
            m = scrape()
            now = tuple(value(m, name, **k) for k in keys.values()
                        for name in ("soil_gateway_readings_total", "soil_gateway_pending_readings")) + (
                value(m, "soil_gateway_rows_committed_total"),)
            done = now == last.get("counts") and all(
                value(m, "soil_gateway_pending_readings", **k) == 0 for k in keys.values())
            last["counts"] = now
            return (m, dict(stack.query("SELECT board, COUNT(*) FROM plants GROUP BY board"))) if done else None

        m, stored = wait_for(settled, 60, "the counts to settle", interval=1.0)
        committed = value(m, "soil_gateway_rows_committed_total")
        received = {b: value(m, "soil_gateway_readings_total", **k) for b, k in keys.items()}
        assert sum(received.values()) >= committed >= sum(stored.values()), (received, committed, stored)
        assert all(received[b] >= stored[b] for b in keys), (received, stored)
        assert set(stored) == set(keys) and min(stored.values()) >= 10
        total = sum(stored.values())
        assert value(m, "soil_gateway_database_up") == 1
        assert value(m, "soil_gateway_database_primary", server="127.0.0.1:%d" % stack.db.port) == 1
        for b, k in keys.items():
            assert value(m, "soil_gateway_frames_total", **k) > stored[b]       # hellos and status frames too
            assert value(m, "soil_gateway_bad_frames_total", **k) == 0
            assert value(m, "soil_gateway_port_open", **k) == 1
            assert -2.0 <= value(m, "soil_gateway_clock_offset_seconds", **k) <= 2.0
            assert value(m, "soil_gateway_seconds_since_last_frame", **k) >= 0
        assert value(m, "soil_gateway_commit_batch_rows_sum") == committed
        assert value(m, "soil_gateway_commit_duration_seconds_count") == \
            value(m, "soil_gateway_batches_committed_total") >= 1

        stack.db.stop()          # the next status frame finds the database gone
        wait_for(lambda: value(scrape(), "soil_gateway_database_up") == 0, 60, "database_up to go 0")
        assert "Traceback" not in gateway.log_text()
