"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer in a thread of the gateway process.

Read-only by construction: only GET and HEAD are answered (every other method gets 405 with `Allow: GET, HEAD`),
and no route changes anything. Routes:

    /                     the page (static/index.html); /?token=... sets the token cookie and redirects to /
    /static/app.js, /static/style.css, /static/favicon.svg   its assets, from the package: no CDN, works offline
    /api/status           boards and database (gateway/web/state.py), what `soil-gateway status` prints
    /api/readings?range=hour|day|week[&value=raw|pct]   the chart's series (gateway/web/data.py)
    /api/events           the board events of the last hour (below the open alerts, which /api/status has)

Why the standard library and not a web framework: five read-only routes, a few requests a second at most, and a
Raspberry Pi that should not need another dependency to show its own state. Every answer carries a
Content-Security-Policy that allows only the gateway's own scripts and styles.
"""

import logging
import os
import urllib.parse
from http.server import BaseHTTPRequestHandler

from gateway.dbconn import DatabaseError
from gateway.httpserve import EndpointServer
from gateway.web import data, state
from gateway.web.auth import Guard

log = logging.getLogger("gateway.web")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC = {"/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/static/style.css": ("style.css", "text/css; charset=utf-8"),
           "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
           "/": ("index.html", "text/html; charset=utf-8")}
_HEADERS = (("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
            ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"), ("Cache-Control", "no-store"))
REQUEST_TIMEOUT_S = 10        # a client that opens a connection and sends nothing does not hold a thread forever


class DashboardServer:
    """Serves the dashboard for `gateway` (a gateway.service.Gateway) with `cfg` (gateway.config.DashboardConfig).

    `start()` binds (OSError when it cannot: the caller says so in one line) and serves from a daemon thread;
    `url` is then the address to open (with port 0: the port the system chose). `stop()` joins."""

    def __init__(self, cfg, gateway):
        self.cfg = cfg
        self.gateway = gateway
        self.guard = Guard(cfg.token, cfg.local)
        self.redactor = state.Redactor(gateway.config.database, cfg.token)
        self.chart = data.ChartData(gateway.config.database)
        self.httpd = None
        self.url = None
        self.requests = 0

    def start(self):
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = EndpointServer((self.cfg.bind, self.cfg.port), handler, "dashboard", log)
        self.url = self.httpd.url("/")
        self.httpd.start()
        log.info("dashboard: %s%s", self.url, "" if self.cfg.local else " (token required)")
        return self.url

    def stop(self):
        if self.httpd is not None:
            self.httpd.stop()
            self.httpd = None
        self.chart.close()

    # --- the answers, as (status, content type, body bytes) --------------------------------------------------
    def status_json(self):
        view = state.gateway_view(self.gateway, silent_after_s=self.cfg.silent_after_s, dashboard_url=self.url)
        return self.redactor.json(view)

    def api(self, path, query):
        if path == "/api/status":
            return 200, self.status_json()
        try:
            if path == "/api/readings":
                return 200, self.redactor.json(self.chart.readings(query.get("range", ["hour"])[0],
                                                                   value=query.get("value", ["auto"])[0]))
            if path == "/api/events":
                return 200, self.redactor.json({"events": self.chart.events()})
        except data.UnknownRange as e:
            return 400, self.redactor.json({"error": str(e)})
        except DatabaseError as e:
            return 503, self.redactor.json({"error": "database unavailable: %s" % state.brief(str(e))})
        return None


class _Handler(BaseHTTPRequestHandler):
    app = None                     # the DashboardServer, set on the subclass DashboardServer.start makes
    server_version = "soil-gateway"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, fmt, *args):
        log.debug("dashboard: %s %s", self.address_string(), fmt % args)

    def _send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in _HEADERS + tuple(extra):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, message, extra=()):
        self._send(status, self.app.redactor.json({"error": message}).encode(), extra=extra)

    def do_GET(self):
        self.app.requests += 1
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/" and "token" in query and not self.app.guard.local:
            if self.app.guard.matches(query["token"][0]):
                self._send(303, b"", "text/plain", (("Location", "/"), ("Set-Cookie", self.app.guard.cookie_header())))
            else:
                self._error(401, "wrong token")
            return
        refused = self.app.guard.check(self.headers)
        if refused is not None:
            self._error(*refused)
            return
        if url.path in _STATIC:
            name, ctype = _STATIC[url.path]
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                self._send(200, f.read(), ctype)
            return
        answer = self.app.api(url.path, query)
        if answer is None:
            self._error(404, "no such page: %s" % url.path[:80])
            return
        self._send(answer[0], answer[1].encode("utf-8"))

    do_HEAD = do_GET

    def _read_only(self):
        self._error(405, "the dashboard is read-only: GET and HEAD only", (("Allow", "GET, HEAD"),))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _read_only
