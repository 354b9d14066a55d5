"""Issue 15, MQTT and Home Assistant: the database is the record, MQTT a view of it (gateway/mqttpub.py).

Every test runs a private Mosquitto (tools/mqttbroker.py: its own config, port, password file and, for TLS, a CA made
here with openssl), never the machine's broker on 1883, and ends it by its pid. The first tests run the publisher in
this process against the private MariaDB; the last ones run the real gateway process with a virtual board
(tools.demo.stack)."""

import json
import logging
import os
import secrets
import threading
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from gateway.alerts import Alert
from gateway.config import ConfigError, from_dict
from gateway.db import ReadingStore
from gateway.moisture import Calibrations, percent
from gateway.notify import Notifier
from gateway.mqttpub import MqttConfig, MqttPublisher
from tests.conftest import private_dir
from tests.test_db_store import admin_query
from tools.demo.stack import wait_for
from tools.mqttbroker import BrokerError, PrivateBroker

pytestmark = [pytest.mark.timeout(300), pytest.mark.integration]

USER = "soil"


@pytest.fixture
def broker(request):
    password = secrets.token_hex(8)
    with private_dir("mqtt") as path:
        try:
            b = PrivateBroker(path, users={USER: password, "ha": password}, tls=True)
            b.start()
        except BrokerError as e:
            if os.environ.get("CI") or os.environ.get("SOIL_REQUIRE_SERVER"):
                pytest.fail(str(e))
            pytest.skip(str(e))
        b.password = password
        try:
            yield b
        finally:
            b.stop()
            print("--- mosquitto log ---\n" + b.log_tail(30))


class Subscriber:
    """A Home-Assistant-like client: subscribes to everything under the prefixes, keeps every message. With
    `persistent` its session (QoS 1) outlives a broker restart, so nothing published meanwhile is missed."""

    def __init__(self, broker, topics=("soil/#", "homeassistant/#"), persistent=False):
        self.messages = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id="test-sub-" + secrets.token_hex(4), clean_session=not persistent)
        self.client.username_pw_set("ha", broker.password)
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload.decode(), msg.retain))
            self.cond.notify_all()

    def payloads(self, suffix):
        with self.cond:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p and p[0] == "{"]

    def last(self, topic):
        with self.cond:
            found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def add_readings(srv, board, seqs, raw=2000, boot=1, t0="2026-12-01 10:00:00"):
    admin_query(srv, "INSERT IGNORE INTO boards (board) VALUES (%s)", (board,))
    for seq in seqs:
        admin_query(srv, "INSERT INTO plants (moisture_raw, date_saved, board, collector, boot, seq, source, "
                         "received_at, time_quality) VALUES (%s, %s + INTERVAL %s SECOND, %s, %s, %s, %s, 'live', "
                         "UTC_TIMESTAMP(3), 'rtc')", (raw + seq, t0, seq, board, board, boot, seq))
    return [r[0] for r in admin_query(srv, "SELECT id FROM plants WHERE board = %s ORDER BY id", (board,))]


def publisher(srv, broker, **cfg):
    c = MqttConfig("127.0.0.1", port=broker.port, username=USER, password=broker.password, poll_s=0.1, **cfg)
    p = MqttPublisher(c, srv.gateway_cfg, gateway_id="test-gw")
    p.start()
    return p


def test_discovery_and_states_raw_then_percent_after_a_calibration(clean_db, broker):
    sub = Subscriber(broker)
    ids = add_readings(clean_db, "bed-1", range(1, 4))
    pub = publisher(clean_db, broker)
    try:
        wait_for(lambda: len(sub.payloads("bed-1/probe0/state")) >= 3, 30, "three states")
        raw_cfg = json.loads(wait_for(lambda: sub.last("homeassistant/sensor/soil_bed-1/p0_raw/config"), 10, "raw"))
        assert "device_class" not in raw_cfg and raw_cfg["state_topic"] == "soil/bed-1/probe0/state"
        assert raw_cfg["device"]["identifiers"] == ["soil_bed-1"]
        assert [s["percent"] for s in sub.payloads("bed-1/probe0/state")] == [None, None, None]
        first = sub.payloads("bed-1/probe0/state")[0]
        assert first == {"id": ids[0], "board": "bed-1", "probe": 0, "raw": 2001, "percent": None, "flag": None,
                         "sample_time": "2026-12-01T10:00:01Z", "source": "live"}
        assert sub.last("soil/gateway/availability") == "online"
        gw = json.loads(sub.last("homeassistant/binary_sensor/soil_gateway_test-gw/status/config"))
        assert gw["device_class"] == "connectivity"
        assert raw_cfg["device"]["via_device"] == gw["device"]["identifiers"][0]
        # Calibrated: the moisture sensor replaces the raw one, and states carry the percent.
        cal = Calibrations(ReadingStore(clean_db.gateway_cfg))
        cal.record("bed-1", 0, "dry", 3000)
        cal.record("bed-1", 0, "wet", 1000)
        add_readings(clean_db, "bed-1", range(4, 6))
        cfg = json.loads(wait_for(lambda: sub.last("homeassistant/sensor/soil_bed-1/p0_moisture/config") or None,
                                  30, "the moisture sensor"))
        for key, value in (("device_class", "moisture"), ("unit_of_measurement", "%"),
                           ("state_class", "measurement"), ("value_template", "{{ value_json.percent }}")):
            assert cfg[key] == value
        assert cfg["unique_id"] == "soil_bed-1_p0_moisture" and cfg["availability_mode"] == "all"
        assert {a["topic"] for a in cfg["availability"]} == {"soil/gateway/availability", "soil/bed-1/availability"}
        wait_for(lambda: sub.last("homeassistant/sensor/soil_bed-1/p0_raw/config") == "", 10, "raw removed")
        states = wait_for(lambda: [s for s in sub.payloads("bed-1/probe0/state") if s["percent"] is not None],
                          30, "a state in percent")
        assert states[0]["percent"] == percent(states[0]["raw"], 3000, 1000)[0]
        for diag in ("pending", "card", "clock", "link"):
            d = json.loads(sub.last("homeassistant/sensor/soil_bed-1/%s/config" % diag))
            assert d["entity_category"] == "diagnostic" and d["device"]["identifiers"] == ["soil_bed-1"]
        wait_for(lambda: pub.state()["rows_behind"] == 0, 10, "caught up")
        assert admin_query(clean_db, "SELECT last_id FROM mqtt_watermark")[0][0] == max(ids) + 2
    finally:
        pub.stop()
        sub.close()
    assert sub.last("soil/gateway/availability") == "offline"


def test_a_restarted_publisher_starts_at_its_watermark_and_far_behind_skips_to_the_newest(clean_db, broker, caplog):
    ids = add_readings(clean_db, "bed-1", range(1, 6))
    pub = publisher(clean_db, broker)
    wait_for(lambda: pub.state()["watermark"] == ids[-1], 30, "the first five published")
    pub.stop()
    pub = publisher(clean_db, broker)      # a gateway restart: nothing published again
    try:
        pub.caught_up.wait(30)
        assert pub.state()["published"] == 0 and pub.state()["watermark"] == ids[-1]
    finally:
        pub.stop()
    sub = Subscriber(broker)
    add_readings(clean_db, "bed-1", range(6, 40))
    new2 = add_readings(clean_db, "bed-2", range(1, 20))
    caplog.set_level(logging.WARNING, "gateway.mqtt")
    pub = publisher(clean_db, broker, max_catch_up=10)
    try:
        wait_for(lambda: pub.state()["rows_behind"] == 0, 30, "caught up")
        got = sorted((s["board"], s["id"]) for s in sub.payloads("/probe0/state") if s["id"] > ids[-1])
        newest1 = admin_query(clean_db, "SELECT MAX(id) FROM plants WHERE board = 'bed-1'")[0][0]
        assert got == [("bed-1", newest1), ("bed-2", new2[-1])]
        assert pub.state()["skipped"] == 34 + 19 - 2
        assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
            "mqtt: 53 readings behind (more than max_catch_up = 10): skipped 51, publishing the newest of each of "
            "2 boards (the database keeps them all)"]
    finally:
        pub.stop()
        sub.close()


def test_alerts_are_published_retained_per_kind_and_wait_for_a_broker_that_is_away(clean_db, broker):
    pub = publisher(clean_db, broker)
    notifier = Notifier([pub.alert_receiver()], gateway_name="test-gw")
    notifier.start()
    sub = Subscriber(broker, topics=("soil/+/alert/#",))
    try:
        pub.connected.wait(30)
        notifier.deliver("open", Alert("dry", "bed-1", 0, "18% (alert below 20%, clears above 25%)", 1.8e9, 7))
        body = json.loads(wait_for(lambda: sub.last("soil/bed-1/alert/dry"), 30, "the alert"))
        assert body["event"] == "open" and body["state"] == "on" and body["alert"]["id"] == 7
        assert body["alert"]["opened_at"] == "2027-01-15T08:00:00Z" and body["gateway"] == "test-gw"
        broker.stop()
        wait_for(lambda: not pub.connected.is_set(), 30, "the publisher to notice")
        notifier.deliver("clear", Alert("dry", "bed-1", 0, "31%", 1.8e9, 7))
        wait_for(lambda: notifier.failures["mqtt"] >= 1, 30, "a failed delivery")
        broker.start()
        wait_for(lambda: notifier.delivered["mqtt"] == 2, 60, "the clearing delivered after the restart")
        late = Subscriber(broker, topics=("soil/+/alert/#",))      # retained: a client that comes later sees it
        try:
            body = json.loads(wait_for(lambda: late.last("soil/bed-1/alert/dry"), 30, "the retained alert"))
            assert body["event"] == "clear" and body["state"] == "off"
        finally:
            late.close()
    finally:
        notifier.stop()
        pub.stop()
        sub.close()


def test_mqtt_settings_are_checked_when_the_file_is_read():
    db = {"database": {"user": "u"}}
    cfg = from_dict(dict(db, mqtt={"host": "ha.local", "username": "soil", "password_env": "PW", "tls": True}),
                    environ={"PW": "secret"})
    assert (cfg.mqtt.port, cfg.mqtt.password, cfg.mqtt.topic_prefix, cfg.mqtt.discovery_prefix,
            cfg.mqtt.max_catch_up) == (8883, "secret", "soil", "homeassistant", 10000)
    assert "secret" not in repr(cfg.mqtt)
    assert from_dict(dict(db, mqtt={"host": "h", "enabled": False})).mqtt is None
    assert from_dict(db).mqtt is None
    for table, message in (({"host": "h", "password": "x"}, "unknown key \\[mqtt\\] password"),
                           ({"host": "h", "password_env": "NOPE"}, "NOPE, which is not set"),
                           ({"port": 1883}, "needs host"),
                           ({"host": "h", "ca_file": __file__}, "tls = false"),
                           ({"host": "h", "tls": True, "ca_file": "/nonexistent/ca.pem"}, "ca.pem: no such file"),
                           ({"host": "h", "topic_prefix": "soil/#"}, "topic_prefix"),
                           ({"host": "h", "port": "1883"}, "wrong type")):
        with pytest.raises(ConfigError, match=message):
            from_dict(dict(db, mqtt=table), environ={})


# --- the gateway process ----------------------------------------------------------------------------------------
def mqtt_section(broker, **extra):
    section = {"host": "127.0.0.1", "port": broker.port, "username": USER, "password_env": "SOIL_MQTT_PASSWORD"}
    section.update(extra)
    return section


def test_gateway_over_tls_with_a_password_publishes_live_states(broker, stack, monkeypatch):
    monkeypatch.setenv("SOIL_MQTT_PASSWORD", broker.password)
    sub = Subscriber(broker)
    try:
        stack.start_board("mq-1", interval_ms=500)
        stack.start_gateway(dashboard={"port": 0}, sections={"mqtt": mqtt_section(broker, port=broker.tls_port,
                                                                                    tls=True, ca_file=broker.ca_file)})
        states = wait_for(lambda: [s for s in sub.payloads("mq-1/probe0/state") if s["source"] == "live"], 60,
                          "a live state over TLS")
        assert states[0]["board"] == "mq-1" and states[0]["sample_time"].endswith("Z")
        assert isinstance(states[0]["raw"], int) and states[0]["percent"] is None
        assert wait_for(lambda: sub.last("soil/mq-1/availability"), 30, "availability") == "online"
        diag = json.loads(wait_for(lambda: sub.last("soil/mq-1/diagnostics"), 30, "diagnostics"))
        assert diag["state"] == "online" and "pending" in diag
        status = wait_for(lambda: ((stack.gateway.status() or {}).get("mqtt") or {}).get("connected") and
                          stack.gateway.status()["mqtt"], 30, "connected in the status")
        assert status["broker"] == "127.0.0.1:%d" % broker.tls_port and status["last_error"] is None
        with urllib.request.urlopen(stack.gateway.dashboard_url().rstrip("/") + "/api/status", timeout=10) as r:
            api = json.loads(r.read())
        assert api["mqtt"]["connected"] and api["mqtt"]["rows_behind"] is not None
        # The board unplugged: its port is gone, so it is offline in Home Assistant.
        stack.boards[0].kill()
        wait_for(lambda: sub.last("soil/mq-1/availability") == "offline", 30, "the board offline")
    finally:
        sub.close()


def test_broker_stopped_and_restarted_loses_nothing_the_gateway_committed(broker, stack, monkeypatch):
    monkeypatch.setenv("SOIL_MQTT_PASSWORD", broker.password)
    sub = Subscriber(broker, topics=("soil/+/probe0/#",), persistent=True)
    stack.start_board("mq-2", interval_ms=200)
    stack.start_gateway(sections={"mqtt": mqtt_section(broker)})
    try:
        wait_for(lambda: sub.payloads("mq-2/probe0/state"), 60, "a first state")
        broker.stop()
        before = len(stack.readings("mq-2"))
        status = wait_for(lambda: (stack.gateway.status() or {}).get("mqtt", {}).get("rows_behind", 0) >= 10 and
                          stack.gateway.status()["mqtt"], 60, "readings committed while the broker is away")
        assert not status["connected"] and "cannot connect (Connection refused)" in status["last_error"]
        assert len(stack.readings("mq-2")) > before           # the database keeps taking readings
        broker.start()
        committed = [r[0] for r in stack.query("SELECT id FROM plants WHERE board = 'mq-2' ORDER BY id")]
        wait_for(lambda: set(committed) <= {s["id"] for s in sub.payloads("/probe0/state") +
                                            sub.payloads("/probe0/replay")}, 60, "every committed reading published")
        wait_for(lambda: stack.query("SELECT 1 FROM mqtt_watermark WHERE last_id >= %s", (committed[-1],)), 30,
                 "the watermark past them")
        wait_for(lambda: (stack.gateway.status() or {}).get("mqtt", {}).get("connected"), 30, "reconnected")
    finally:
        sub.close()
    log = stack.gateway.log_text()
    assert log.count("connection lost") == 1 and log.count("cannot connect") == 1, log   # one line each, no flood


def test_a_wrong_password_is_one_clear_line_and_readings_keep_being_stored(broker, stack, monkeypatch):
    monkeypatch.setenv("SOIL_MQTT_PASSWORD", "not-the-password")
    stack.start_board("mq-3", interval_ms=200)
    stack.start_gateway(sections={"mqtt": mqtt_section(broker)})
    wait_for(lambda: "refused the connection" in stack.gateway.log_text(), 60, "the refusal in the log")
    n = len(stack.readings("mq-3"))
    wait_for(lambda: len(stack.readings("mq-3")) >= n + 15, 60, "readings still stored")
    wait_for(lambda: (stack.gateway.status() or {}).get("mqtt", {}).get("last_error"), 30, "the error in the status")
    log = stack.gateway.log_text()
    lines = [line for line in log.splitlines() if "mqtt" in line]
    assert len(lines) == 1, lines
    assert "check [mqtt] username and the password" in lines[0] and "Traceback" not in log
    assert "not-the-password" not in log


def test_after_a_database_outage_the_replay_is_published_in_sample_order_and_ha_never_goes_back(broker, stack,
                                                                                                 monkeypatch):
    monkeypatch.setenv("SOIL_MQTT_PASSWORD", broker.password)
    sub = Subscriber(broker, topics=("soil/+/probe0/#",))
    board = stack.start_board("mq-4", interval_ms=250)
    stack.start_gateway(sections={"mqtt": mqtt_section(broker)})
    try:
        wait_for(lambda: sub.payloads("mq-4/probe0/state"), 60, "a first state")
        stack.db.stop()                       # the board caches on its card
        wait_for(lambda: board.status()["pending"] >= 12, 60, "readings cached on the card")
        stack.db.start()
        wait_for(lambda: board.status().get("pending") == 0, 120, "the replay")
        replayed = {r[0] for r in stack.query("SELECT id FROM plants WHERE board = 'mq-4' AND source = 'replay'")}
        assert len(replayed) >= 12
        wait_for(lambda: replayed <= {s["id"] for s in sub.payloads("/probe0/state") + sub.payloads("/probe0/replay")},
                 60, "every replayed reading published")
        states = [s["sample_time"] for s in sub.payloads("mq-4/probe0/state")]
        assert states == sorted(states)           # Home Assistant's state never goes back in time
        late = [s["sample_time"] for s in sub.payloads("mq-4/probe0/replay")]
        assert late == sorted(late)               # the late ones in sample-time order, each with its own time
        # (a live reading can land there too: one stored after a replayed reading with a later sample time)
    finally:
        sub.close()
