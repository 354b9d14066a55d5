"""The gateway's Prometheus endpoint: its live state as metrics, built when Prometheus scrapes (docs/METRICS.md).

Two kinds of figures. What the gateway already counts (frames, readings and bad frames per board, rows committed,
whether the database answers, which server it writes to, the open alerts) is read at scrape time by GatewayCollector
from the same public accessors the dashboard reads (gateway/web/state.py): nothing is counted twice and nothing can
drift. What only the writer sees as it happens (how many rows each COMMIT carried and how long it took) goes into two
histograms the writer feeds after each COMMIT (`Writer.on_batch`): an observation is a few additions under a lock,
so the commit is never held up.

The server is the standard library's ThreadingHTTPServer, like the dashboard's, so the endpoint answers with the
same rules: GET and HEAD only, localhost by default (Host header checked), a Bearer token everywhere else
(gateway.config refuses to start without one; gateway.web.auth.Guard decides each request). Routes: /metrics.
"""

import logging
import time
from http.server import BaseHTTPRequestHandler

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.alerts import KINDS
from gateway.httpserve import EndpointServer
from gateway.web.auth import Guard

log = logging.getLogger("gateway.metrics")

PREFIX = "soil_gateway_"
# A batch is one reading (live traffic) to batch_max (5000, a replay); a commit a millisecond on a local server to
# seconds on a struggling SD card or a far primary.
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_TIMEOUT_S = 10
# The text format 0.0.4, which every Prometheus 2.x and 3.x reads; the names here need none of 1.0.0's UTF-8
# escaping. (prometheus-client 0.26's CONTENT_TYPE_LATEST says 1.0.0; older clients have no constant for 0.0.4.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayCollector:
    """A prometheus_client custom collector over a gateway.service.Gateway (or anything with its public state:
    sessions, transports, writer, config.database, alerts). `collect()` runs on each scrape, in the scraping
    thread, and reads memory only: no database query, so a scrape answers while the database is away."""

    def __init__(self, gateway, now=time.time):
        self.gateway = gateway
        self._now = now

    def describe(self):
        return []                  # no description up front: the registry does not call collect() at register time

    def collect(self):
        gw = self.gateway
        now = self._now()
        labels = ["board", "port"]
        frames = CounterMetricFamily(PREFIX + "frames", "Frames received from the board (every kind).", labels=labels)
        readings = CounterMetricFamily(PREFIX + "readings", "Readings received from the board and handed to the "
                                       "writer (a reading resent after a rollback counts again).", labels=labels)
        bad = CounterMetricFamily(PREFIX + "bad_frames", "Lines from the board that were not a valid frame.",
                                  labels=labels)
        pending = GaugeMetricFamily(PREFIX + "pending_readings", "Readings waiting on the board's card, from its "
                                    "last status frame.", labels=labels)
        silence = GaugeMetricFamily(PREFIX + "seconds_since_last_frame", "Seconds since the board's last frame "
                                    "(absent before the first).", labels=labels)
        port_open = GaugeMetricFamily(PREFIX + "port_open", "1 while the board's serial port is open.", labels=labels)
        offset = GaugeMetricFamily(PREFIX + "clock_offset_seconds", "The board's clock minus the gateway's at its "
                                   "last hello or status frame (the DS1307 counts whole seconds).", labels=labels)
        for s, t in zip(gw.sessions, gw.transports):
            b = s.board_state()
            key = [b["board"] or "", s.cfg.name]
            frames.add_metric(key, s.stats.frames)
            readings.add_metric(key, s.stats.readings)
            bad.add_metric(key, s.stats.bad_frames)
            port_open.add_metric(key, 1 if t.status()["port_open"] else 0)
            last = b["last_status"] or {}
            if last.get("pending") is not None:
                pending.add_metric(key, last["pending"])
            if b["last_frame_at"]:
                silence.add_metric(key, max(0.0, now - b["last_frame_at"]))
            if s.clock.offset_s is not None:
                offset.add_metric(key, s.clock.offset_s)
        yield from (frames, readings, bad, pending, silence, port_open, offset)

        d = gw.writer.database_state()
        yield CounterMetricFamily(PREFIX + "rows_committed", "Rows the writer committed to the database.",
                                  value=d["committed_rows"])
        yield CounterMetricFamily(PREFIX + "batches_committed", "Transactions the writer committed.",
                                  value=d["batches"])
        yield GaugeMetricFamily(PREFIX + "database_up", "1 while the database takes writes, 0 while the writer "
                                "waits for it.", value=1 if d["ok"] else 0)
        yield GaugeMetricFamily(PREFIX + "writer_queue_items", "Readings and status frames waiting for the writer.",
                                value=d["queued"])
        primary = GaugeMetricFamily(PREFIX + "database_primary", "1 for the server the writer uses (the primary), "
                                    "0 for the other configured servers.", labels=["server"])
        in_use = "%s:%s" % d["server"] if d["server"] else None
        servers = list(gw.config.database.servers)
        if in_use is not None and in_use not in servers:
            servers.append(in_use)
        for server in servers:
            primary.add_metric([server], 1 if server == in_use else 0)
        yield primary

        if gw.alerts is not None:
            counts = dict.fromkeys(KINDS, 0)
            for a in gw.alerts.open_alerts():
                counts[a.kind] = counts.get(a.kind, 0) + 1
            alerts = GaugeMetricFamily(PREFIX + "open_alerts", "Alerts open now, per kind (gateway/alerts.py).",
                                       labels=["kind"])
            for kind, n in sorted(counts.items()):
                alerts.add_metric([kind], n)
            yield alerts


class Metrics:
    """The registry a scrape reads: the collector and the writer's two histograms. `observe_batch(rows, seconds)`
    is the writer's `on_batch` callback."""

    def __init__(self, gateway, now=time.time):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gateway, now))
        self.batch_rows = Histogram(PREFIX + "commit_batch_rows", "Rows per committed transaction.",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram(PREFIX + "commit_duration_seconds", "Time to INSERT and COMMIT one batch.",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)

    def observe_batch(self, rows, seconds):
        self.batch_rows.observe(rows)
        self.commit_seconds.observe(seconds)

    def exposition(self):
        return generate_latest(self.registry)


class MetricsServer:
    """Serves /metrics for `gateway` with `cfg` (gateway.config.MetricsConfig). `start()` binds (OSError when it
    cannot: the caller says so in one line) and serves from a daemon thread; `url` is then the endpoint's address
    (with port 0: the port the system chose). `stop()` joins."""

    def __init__(self, cfg, gateway):
        self.cfg = cfg
        self.metrics = Metrics(gateway)
        self.guard = Guard(cfg.token, cfg.local)
        self.httpd = None
        self.url = None
        self.scrapes = 0

    def observe_batch(self, rows, seconds):
        self.metrics.observe_batch(rows, seconds)

    def start(self):
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = EndpointServer((self.cfg.bind, self.cfg.port), handler, "metrics", log)
        self.url = self.httpd.url("/metrics")
        self.httpd.start()
        log.info("metrics: %s%s", self.url, "" if self.cfg.local else " (Bearer token required)")
        return self.url

    def stop(self):
        if self.httpd is not None:
            self.httpd.stop()
            self.httpd = None


class _Handler(BaseHTTPRequestHandler):
    app = None                     # the MetricsServer, set on the subclass MetricsServer.start makes
    server_version = "soil-gateway"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, fmt, *args):
        log.debug("metrics: %s %s", self.address_string(), fmt % args)

    def _send(self, status, body, ctype="text/plain; charset=utf-8", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        refused = self.app.guard.check(self.headers)
        if refused is not None:
            if refused[0] == 401:
                self._send(401, b"a token is needed: send Authorization: Bearer ...\n",
                           extra=(("WWW-Authenticate", "Bearer"),))
            else:
                self._send(refused[0], (refused[1] + "\n").encode())
            return
        if self.path.split("?", 1)[0] != "/metrics":
            self._send(404, b"the metrics are at /metrics\n")
            return
        self.app.scrapes += 1
        try:
            body = self.app.metrics.exposition()
        except Exception as e:        # a bug in a figure: one line and a 500, never a traceback; boards are served
            log.error("metrics: the scrape failed: %s: %s", type(e).__name__, e)
            self._send(500, b"the scrape failed; the gateway's log says why\n")
            return
        self._send(200, body, CONTENT_TYPE)

    do_HEAD = do_GET

    def _read_only(self):
        self._send(405, b"the metrics endpoint is read-only: GET and HEAD only\n", extra=(("Allow", "GET, HEAD"),))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _read_only
