"""MQTT and Home Assistant: a view of the database, published from it, never in the way of a commit.

The database is the record; MQTT is a view. The publisher is a thread of its own with its own ReadingStore
connection: it reads committed readings after a watermark (`plants.id`, `WHERE id > %s ORDER BY id LIMIT 500`),
publishes them with QoS 1 and moves the watermark only when the broker has acknowledged every one of them
(wait_for_publish, bounded). A broker that is away costs nothing but lag: the writer never waits for it, and when it
returns the publisher catches up from the database. More than `max_catch_up` readings behind, it skips to the
newest reading of each board and says how many it skipped in one line (Home Assistant keeps states, not history).
The watermark is kept in memory and in `mqtt_watermark` (schema version 11), so a restart does not publish
everything again. Delivery is at least once: a reading whose acknowledgement was lost is published again.

Topics (docs/MQTT.md), `soil` being topic_prefix and `<b>` the board id made topic-safe:

    soil/gateway/availability         online | offline (retained; offline is the connection's last will)
    soil/<b>/availability             online | offline (retained): offline while the board is silent, its port gone
                                      or its board refused (gateway/web/state.py's view of the board)
    soil/<b>/probe0/state             the newest reading as JSON (retained): what Home Assistant shows
    soil/<b>/probe0/replay            an older reading arriving late (a board's card replayed after an outage),
                                      in sample-time order, not retained: Home Assistant's state stays the newest
    soil/<b>/diagnostics              pending readings on the card, card, clock, link state (retained)
    soil/<b>/alert/<kind>             the last opening or clearing of each alert kind (retained)
    homeassistant/sensor/.../config   discovery (retained): a device per board, a sensor per probe
"""

import json
import logging
import re
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt

from gateway.db import ReadingStore
from gateway.dbconn import DatabaseError
from gateway.moisture import Timeline
from gateway.ratelimit import RepeatLimiter

log = logging.getLogger("gateway.mqtt")

BATCH = 500
ACK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
RETRY_MAX_S = 10.0
MAX_CATCH_UP = 10000

READINGS_SQL = ("SELECT id, board, moisture_raw, TIMESTAMPDIFF(SECOND, '1970-01-01', date_saved), source "
                "FROM plants WHERE id > %s AND board IS NOT NULL ORDER BY id LIMIT " + str(BATCH))


class MqttConfig:
    """The [mqtt] section. `password` comes from the environment variable named by password_env."""

    def __init__(self, host, port=None, username=None, password=None, tls=False, ca_file=None, topic_prefix="soil",
                 discovery_prefix="homeassistant", max_catch_up=MAX_CATCH_UP, client_id=None, silent_after_s=30.0,
                 poll_s=0.5):
        for name, value in (("topic_prefix", topic_prefix), ("discovery_prefix", discovery_prefix)):
            if not value or any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
                raise ValueError("%s %r: a topic without + or # that neither starts nor ends with /" % (name, value))
        if max_catch_up < 1:
            raise ValueError("max_catch_up must be at least 1")
        if ca_file is not None and not tls:
            raise ValueError("ca_file is given but tls = false: set tls = true")
        self.host = host
        self.port = int(port if port is not None else (8883 if tls else 1883))
        if not 0 < self.port < 65536:
            raise ValueError("port must be 1 to 65535, got %d" % self.port)
        self.username = username
        self.password = password
        self.tls = bool(tls)
        self.ca_file = ca_file
        self.topic_prefix = topic_prefix
        self.discovery_prefix = discovery_prefix
        self.max_catch_up = int(max_catch_up)
        self.client_id = client_id or "soil-gateway-" + socket.gethostname()
        self.silent_after_s = float(silent_after_s)
        self.poll_s = float(poll_s)

    def __repr__(self):             # never the password
        return "MqttConfig(%s:%d, tls=%r, user=%r)" % (self.host, self.port, self.tls, self.username)


def topic_id(board):
    """A board id as a topic level and a Home Assistant id: letters, digits, _ and - only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(board))


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def state_payload(row_id, board, probe, raw, sample_epoch, source, timeline):
    pct, flag = timeline.percent_at(board, probe, sample_epoch, raw)
    return {"id": row_id, "board": board, "probe": probe, "raw": raw, "percent": pct, "flag": flag,
            "sample_time": iso(sample_epoch), "source": source}


def board_available(view):
    """online unless the gateway's view of the board says it is silent, its port is gone or it was refused; a
    board that talks while the database is down is online (caching, which the diagnostics say)."""
    return "offline" if view.get("cause") in ("silent", "port", "refused") else "online"


class Discovery:
    """Home Assistant discovery configs for one board (pure: topics and payloads, nothing sent)."""

    def __init__(self, cfg, gateway_id):
        self.cfg = cfg
        self.gateway_id = gateway_id

    def topics(self, board):
        b = topic_id(board)
        p = self.cfg.topic_prefix
        return {"availability": "%s/%s/availability" % (p, b), "state": "%s/%s/probe0/state" % (p, b),
                "replay": "%s/%s/probe0/replay" % (p, b), "diagnostics": "%s/%s/diagnostics" % (p, b)}

    def gateway_availability(self):
        return "%s/gateway/availability" % self.cfg.topic_prefix

    def gateway_config(self):
        """(topic, payload): the gateway as a device of its own, its connectivity from its availability topic (the
        last will says offline when it dies); the boards' devices name it as via_device."""
        g = topic_id(self.gateway_id)
        return ("%s/binary_sensor/soil_gateway_%s/status/config" % (self.cfg.discovery_prefix, g),
                {"name": "Gateway", "unique_id": "soil_gateway_%s_status" % g, "object_id": "soil_gateway_%s" % g,
                 "state_topic": self.gateway_availability(), "payload_on": "online", "payload_off": "offline",
                 "device_class": "connectivity", "entity_category": "diagnostic",
                 "device": {"identifiers": ["soil_gateway_%s" % g], "name": "Soil gateway %s" % self.gateway_id,
                            "manufacturer": "soil-ha", "model": "soil-gateway"}})

    def _config_topic(self, board, entity):
        return "%s/sensor/soil_%s/%s/config" % (self.cfg.discovery_prefix, topic_id(board), entity)

    def configs(self, board, calibrated):
        """[(topic, payload or "" to remove)] for a board; the moisture sensor when its probe is calibrated,
        else the raw sensor, the other removed."""
        b = topic_id(board)
        t = self.topics(board)
        device = {"identifiers": ["soil_%s" % b], "name": "Soil board %s" % board, "manufacturer": "soil-ha",
                  "model": "soil-moisture board", "via_device": "soil_gateway_%s" % topic_id(self.gateway_id)}
        avail = {"availability": [{"topic": self.gateway_availability()}, {"topic": t["availability"]}],
                 "availability_mode": "all"}

        def sensor(entity, name, template, topic, **extra):
            body = {"name": name, "unique_id": "soil_%s_%s" % (b, entity), "object_id": "soil_%s_%s" % (b, entity),
                    "state_topic": topic, "value_template": template, "device": device}
            body.update(avail)
            body.update(extra)
            return self._config_topic(board, entity), body

        moisture = sensor("p0_moisture", "Probe 0 moisture", "{{ value_json.percent }}", t["state"],
                          device_class="moisture", unit_of_measurement="%", state_class="measurement",
                          json_attributes_topic=t["state"])
        raw = sensor("p0_raw", "Probe 0 raw", "{{ value_json.raw }}", t["state"], state_class="measurement",
                     json_attributes_topic=t["state"])
        out = [moisture if calibrated else (moisture[0], ""), raw if not calibrated else (raw[0], "")]
        diag = dict(entity_category="diagnostic")
        out.append(sensor("pending", "Pending on card", "{{ value_json.pending }}", t["diagnostics"],
                          state_class="measurement", icon="mdi:sd", **diag))
        out.append(sensor("card", "Card", "{{ value_json.card }}", t["diagnostics"], icon="mdi:sd", **diag))
        out.append(sensor("clock", "Clock", "{{ value_json.clock }}", t["diagnostics"], icon="mdi:clock", **diag))
        out.append(sensor("link", "Link", "{{ value_json.state }}", t["diagnostics"], icon="mdi:lan-connect",
                          json_attributes_topic=t["diagnostics"], **diag))
        return out


class AlertReceiver:
    """A gateway.notify.Notifier receiver: each alert opened or cleared, as JSON on <prefix>/<board>/alert/<kind>,
    retained (the last word per kind), so Home Assistant automations can act on it. Raises OSError while the broker
    is away; the notifier tries again later."""

    name = "mqtt"

    def __init__(self, publisher):
        self._publisher = publisher

    def send(self, message):
        self._publisher.publish_alert(message)


class MqttPublisher:
    """`start()` / `stop()` the thread; `state()` for the status snapshot and /api/status; `alert_receiver()`."""

    def __init__(self, cfg, db_cfg, board_views=lambda: [], store=None, gateway_id=None):
        self.cfg = cfg
        self.store = store or ReadingStore(db_cfg, announce_moves=False)
        self.board_views = board_views     # () -> [gateway.web.state.board_view(...)]
        self.gateway_id = gateway_id or socket.gethostname()
        self.discovery = Discovery(cfg, self.gateway_id)
        self.watermark = None              # the newest plants.id acknowledged (None: not read yet)
        self.published = 0
        self.skipped = 0
        self.connected = threading.Event()
        self.last_error = None
        self._error_kind = None
        self.rows_behind = None
        self.seconds_behind = None
        self.caught_up = threading.Event()  # set whenever a round found nothing more to publish (tests wait on it)
        self._stop = threading.Event()
        self._thread = None
        self._client = None
        self._connack = threading.Event()
        self._connack_reason = None
        self._announced = {}               # board -> calibrated, as its discovery was last published
        self._sent_board = {}              # board -> (availability, diagnostics) last published
        self._newest_sample = {}           # board -> newest sample epoch on its state topic
        self._limiter = RepeatLimiter(first=1)
        log.addFilter(self._limiter)

    # --- for others ---------------------------------------------------------------------------------------------
    def alert_receiver(self):
        return AlertReceiver(self)

    def state(self):
        """How far behind the MQTT view is: {"broker", "connected", "last_error", "watermark", "rows_behind",
        "seconds_behind", "published", "skipped"}."""
        return {"broker": "%s:%d" % (self.cfg.host, self.cfg.port), "connected": self.connected.is_set(),
                "last_error": self.last_error, "watermark": self.watermark, "rows_behind": self.rows_behind,
                "seconds_behind": self.seconds_behind, "published": self.published, "skipped": self.skipped}

    def publish_alert(self, message):
        alert = message["alert"]
        client = self._client             # the publisher's thread may replace it meanwhile: use one
        if client is None or not self.connected.is_set():
            raise OSError("broker %s:%d not connected" % (self.cfg.host, self.cfg.port))
        topic = "%s/%s/alert/%s" % (self.cfg.topic_prefix, topic_id(alert["board"]), alert["kind"])
        body = dict(message, state="on" if message["event"] == "open" else "off")
        info = client.publish(topic, json.dumps(body), qos=1, retain=True)
        try:
            info.wait_for_publish(ACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as e:
            raise OSError(str(e))
        if not info.is_published():
            raise OSError("no acknowledgement for the alert in %.0f s" % ACK_TIMEOUT_S)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=ACK_TIMEOUT_S + CONNECT_TIMEOUT_S + 5)
        client = self._client
        if client is not None and self.connected.is_set():
            try:   # a clean goodbye: the last will would say offline too, but only after the keepalive
                client.publish(self.discovery.gateway_availability(), "offline", qos=1, retain=True) \
                    .wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        self._drop_client()
        self.store.close()
        log.removeFilter(self._limiter)

    # --- the thread -----------------------------------------------------------------------------------------------
    def _run(self):
        backoff = 1.0
        while not self._stop.is_set():
            if not self.connected.is_set():
                if not self._connect():
                    try:                        # how far behind the view falls meanwhile, for the status
                        self.store.run_statement(self._measure)
                    except DatabaseError:
                        pass
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, RETRY_MAX_S)
                    continue
                backoff = 1.0
            try:
                more = self._round()
            except DatabaseError as e:
                self._say("database", "cannot read readings to publish (%s); trying again" % e)
                self._stop.wait(min(backoff, RETRY_MAX_S))
                continue
            if self._error_kind == "database":      # reading again: that problem is over
                log.info("mqtt: reading the database again")
                self.last_error = self._error_kind = None
            if not more:
                self.caught_up.set()
                self._stop.wait(self.cfg.poll_s)

    def _say(self, kind, text, level=logging.WARNING):
        """One line per new problem (the same one again is not repeated); the limiter bounds flapping."""
        self._error_kind = kind
        if text != self.last_error:
            self.last_error = text
            # "%s: <text>" with the port-like "mqtt" first: gateway/ratelimit.py keys on the message, so one text
            # repeated by a flapping broker passes once a minute, with a count of the rest.
            log.log(level, "%s: " + text.replace("%", "%%"), "mqtt")

    def _make_client(self):
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id,
                        protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if self.cfg.username is not None:
            c.username_pw_set(self.cfg.username, self.cfg.password)
        if self.cfg.tls:
            c.tls_set(ca_certs=self.cfg.ca_file)
        c.will_set(self.discovery.gateway_availability(), "offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        return c

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._connack_reason = reason_code
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set():
            self.connected.clear()
            self._say("lost", "broker %s:%d: connection lost (%s); readings are kept in the database and published "
                      "when it is back" % (self.cfg.host, self.cfg.port, reason_code))

    def _drop_client(self):
        c, self._client = self._client, None
        self.connected.clear()
        if c is not None:
            try:
                c.disconnect()
            except Exception:
                pass
            c.loop_stop()

    def _connect(self):
        self._drop_client()
        where = "broker %s:%d" % (self.cfg.host, self.cfg.port)
        try:
            c = self._make_client()
            self._connack.clear()
            c.connect(self.cfg.host, self.cfg.port, keepalive=30)
        except ssl.SSLError as e:
            self._say("tls", "%s: TLS failed (%s): check ca_file and the broker's certificate; the gateway keeps "
                      "storing readings" % (where, e.reason or e), logging.ERROR)
            return False
        except (OSError, ValueError) as e:
            self._say("reach", "%s: cannot connect (%s); the gateway keeps storing readings and publishes them "
                      "when the broker answers" % (where, getattr(e, "strerror", None) or e))
            return False
        self._client = c
        c.loop_start()
        if not self._connack.wait(CONNECT_TIMEOUT_S):
            self._say("reach", "%s: no answer to CONNECT in %.0f s" % (where, CONNECT_TIMEOUT_S))
            self._drop_client()
            return False
        rc = self._connack_reason
        if rc.is_failure:
            hint = ""
            if "not authori" in str(rc).lower() or "password" in str(rc).lower():
                hint = ": check [mqtt] username and the password in the variable named by password_env"
            self._say("refused", "%s refused the connection (%s)%s; the gateway keeps storing readings"
                      % (where, rc, hint), logging.ERROR)
            self._drop_client()
            return False
        self.connected.set()
        if self.last_error is not None:
            log.info("mqtt: connected to %s", where)
        self.last_error = self._error_kind = None
        self._announced.clear()
        self._sent_board.clear()
        self._publish(*self.discovery.gateway_config())
        c.publish(self.discovery.gateway_availability(), "online", qos=1, retain=True)
        return True

    def _publish(self, topic, payload, retain=True):
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        return self._client.publish(topic, text, qos=1, retain=retain)

    def _load_watermark(self, cur):
        cur.execute("SELECT last_id FROM mqtt_watermark WHERE id = 1")
        row = cur.fetchone()
        return row[0] if row else 0

    def _round(self):
        """Publish the next batch; True when there may be more waiting."""
        rows, timeline, boards = self.store.run_statement(self._read)
        self._announce(boards, timeline)
        self._boards()
        if not rows:
            self.rows_behind, self.seconds_behind = 0, 0.0
            return False
        pending = []
        for row_id, board, raw, epoch, source in sorted(rows, key=lambda r: (r[3], r[0])):
            payload = state_payload(row_id, board, 0, raw, epoch, source, timeline)
            topics = self.discovery.topics(board)
            if epoch >= self._newest_sample.get(board, float("-inf")):
                self._newest_sample[board] = epoch
                pending.append(self._publish(topics["state"], payload))
            else:
                pending.append(self._publish(topics["replay"], payload, retain=False))
        if not self._acknowledged(pending):
            return False
        new_mark = rows[-1][0]
        self.store.run_statement(lambda cur: self._save_watermark(cur, new_mark))
        self.watermark = new_mark
        self.published += len(rows)
        return len(rows) == BATCH

    def _acknowledged(self, infos):
        deadline = time.monotonic() + ACK_TIMEOUT_S
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                return False
            if not info.is_published():
                return False       # not all acknowledged: the watermark stays, the batch goes again
        return True

    def _save_watermark(self, cur, last_id):
        cur.execute("INSERT INTO mqtt_watermark (id, last_id, updated_at) VALUES (1, %s, UTC_TIMESTAMP(3)) "
                    "ON DUPLICATE KEY UPDATE last_id = VALUES(last_id), updated_at = VALUES(updated_at)", (last_id,))

    def _measure(self, cur):
        """rows_behind and seconds_behind (since the oldest unpublished reading was received); the row count."""
        if self.watermark is None:
            self.watermark = self._load_watermark(cur)
        cur.execute("SELECT COUNT(*), MIN(received_at) FROM plants WHERE id > %s AND board IS NOT NULL",
                    (self.watermark,))
        behind, oldest = cur.fetchone()
        self.rows_behind = behind
        cur.execute("SELECT TIMESTAMPDIFF(MICROSECOND, %s, UTC_TIMESTAMP(3)) / 1e6", (oldest,))
        lag = cur.fetchone()[0]
        self.seconds_behind = round(float(lag), 1) if lag is not None else 0.0
        return behind

    def _read(self, cur):
        behind = self._measure(cur)
        if behind > self.cfg.max_catch_up:
            rows = self._skip_ahead(cur, behind)
        else:
            cur.execute(READINGS_SQL, (self.watermark,))
            rows = cur.fetchall()
        timeline = Timeline.load(cur)
        cur.execute("SELECT board FROM boards")
        boards = [r[0] for r in cur.fetchall()]
        return rows, timeline, boards

    def _skip_ahead(self, cur, behind):
        """Too far behind to be worth it: only the newest reading of each board (Home Assistant shows a state, not
        a history; the database keeps every reading). The watermark then moves past everything skipped."""
        cur.execute("SELECT MAX(id) FROM plants WHERE id > %s AND board IS NOT NULL GROUP BY board",
                    (self.watermark,))
        newest = sorted(r[0] for r in cur.fetchall())
        skipped = behind - len(newest)
        log.warning("mqtt: %d readings behind (more than max_catch_up = %d): skipped %d, publishing the newest of "
                    "each of %d boards (the database keeps them all)", behind, self.cfg.max_catch_up, skipped,
                    len(newest))
        self.skipped += skipped
        cur.execute("SELECT id, board, moisture_raw, TIMESTAMPDIFF(SECOND, '1970-01-01', date_saved), source "
                    "FROM plants WHERE id IN (%s) ORDER BY id" % ", ".join(str(int(i)) for i in newest))
        return cur.fetchall()

    def _announce(self, boards, timeline):
        for board in boards:
            calibrated = timeline.calibrated(board)
            if self._announced.get(board) == calibrated:
                continue
            for topic, payload in self.discovery.configs(board, calibrated):
                self._publish(topic, payload)
            self._announced[board] = calibrated

    def _boards(self):
        """Availability and diagnostics of every board the gateway serves, published when they change."""
        for view in self.board_views():
            board = view.get("board")
            if not board:
                continue
            diag = {"board": board, "state": view.get("state"), "cause": view.get("cause"), "why": view.get("why"),
                    "pending": view.get("pending"), "card": view.get("card"), "clock": view.get("clock"),
                    "port": view.get("port")}
            sent = (board_available(view), diag)
            if self._sent_board.get(board) == sent:
                continue
            topics = self.discovery.topics(board)
            self._publish(topics["availability"], sent[0])
            self._publish(topics["diagnostics"], diag)
            self._sent_board[board] = sent
