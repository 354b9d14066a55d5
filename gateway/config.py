"""Gateway configuration: one TOML file, the database password from the file or the environment.

Example (see gateway.example.toml):

    [database]
    host = "127.0.0.1"
    port = 3306
    user = "soil_gateway"
    password_env = "SOIL_DB_PASSWORD"   # or: password = "..."
    database = "plant_moisture"
    # ssl_ca = "/etc/soil/ca.pem"       # TLS to the database
    # servers = ["db1:3306", "db2:3306", "db3:3306"]   # a replicated topology: write to whichever is primary
    # semisync = "require"              # "off" | "prefer" | "require" (docs/REPLICATION-GATEWAY.md)
    # cluster = "galera"                 # the servers are Galera nodes, own site's first (docs/GALERA.md)

    [gateway]
    clock_tolerance_s = 2

    # tap_path = "/run/soil-gateway/tap.sock"   # for `monitor --listen` (default: beside the --status file)

    [dashboard]                         # the read-only web page (gateway/web/, docs/DASHBOARD.md)
    bind = "127.0.0.1"                  # anything else needs a token
    port = 8086                         # 0: any free port (logged, and in the status snapshot)
    # token_file = "/etc/soil/dashboard.token"   # or: token = "..."
    # enabled = false

    [hourly]                            # hourly aggregates for long ranges (gateway/hourly.py, docs/AGGREGATES.md)
    every_s = 60                        # one pass a minute
    # enabled = false

    [retention]
    raw_days = 0                        # 0: keep raw readings forever; N: delete them after N days (needs a grant)

    [metrics]                           # a Prometheus endpoint (gateway/metrics.py, docs/METRICS.md); off without it
    port = 9108                         # bind = "127.0.0.1" by default; anything else needs a token, as above

    [[board]]
    url = "/dev/ttyACM0"                # any pyserial URL: /dev/ttyACM0, socket://host:port, spy://..., hwgrep://...
    baudrate = 115200

A board's url and baudrate are checked here, when the file is read (an unknown URL scheme such as serial://, a
baudrate that is not a positive whole number): one line naming the file and the board, before any thread starts.

The password never leaves this machine: boards only ever see frames (flaw F13).
"""

import os

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from gateway.alertwatch import AlertSettings
from gateway.dbconn import DbConfig
from gateway.hourly import HourlySettings
from gateway.mqttpub import MqttConfig
from gateway.notify import SmtpSettings
from gateway.primary import parse_server
from gateway.transport import check_baudrate, check_url

PASSWORD_ENV = "SOIL_DB_PASSWORD"


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and the key."""


class BoardConfig:
    def __init__(self, url, baudrate=115200, name=None):
        self.url = url
        self.baudrate = baudrate
        self.name = name or url

    def __repr__(self):
        return "BoardConfig(%r, %r)" % (self.url, self.baudrate)


def board_config(url, baudrate=115200, name=None, where="board"):
    """A BoardConfig whose url and baudrate can open a port; ConfigError starting with `where` otherwise."""
    try:
        check_url(url)
        check_baudrate(baudrate)
    except ValueError as e:
        raise ConfigError("%s: %s" % (where, e))
    return BoardConfig(url, baudrate, name)


LOCAL_BINDS = ("127.0.0.1", "localhost", "::1")
DASHBOARD_PORT = 8086


def is_local_bind(bind):
    """Is `bind` an address only this machine reaches (where the dashboard and the metrics need no token)?"""
    return bind in LOCAL_BINDS


class DashboardConfig:
    """The dashboard's [dashboard] section. Bound to localhost by default, where no token is asked (anyone who can
    reach 127.0.0.1 can already read the status file); bound elsewhere only with a token (ConfigError otherwise)."""

    def __init__(self, enabled=True, bind="127.0.0.1", port=DASHBOARD_PORT, token=None, silent_after_s=30.0):
        self.enabled = enabled
        self.bind = bind
        self.port = port
        self.token = token
        self.silent_after_s = silent_after_s

    @property
    def local(self):
        return is_local_bind(self.bind)

    def __repr__(self):             # never the token
        return "DashboardConfig(enabled=%r, bind=%r, port=%r, token=%s)" % (
            self.enabled, self.bind, self.port, "set" if self.token else "none")


def read_token(table, section, path):
    """The token of a [dashboard] or [metrics] table: `token`, or the first line of `token_file`; None when neither
    is given. ConfigError naming the file and section when both are given, the file cannot be read, is empty, or
    the token is shorter than 16 characters. Removes both keys from `table` (a dict the caller owns)."""
    if "token" in table and "token_file" in table:
        raise ConfigError("%s: [%s] give either token or token_file, not both" % (path, section))
    if "token_file" in table:
        name = table.pop("token_file")
        try:
            with open(name, encoding="utf-8") as f:
                table["token"] = f.read().strip()
        except OSError as e:
            raise ConfigError("%s: [%s] token_file: cannot read %s: %s" % (path, section, e.filename, e.strerror))
        if not table["token"]:
            raise ConfigError("%s: [%s] token_file %s is empty" % (path, section, name))
    token = table.pop("token", None)
    if token is not None and len(token) < 16:
        raise ConfigError("%s: [%s] the token is too short (at least 16 characters; e.g. the output of "
                          "`openssl rand -hex 16`)" % (path, section))
    return token


def check_exposure(cfg, section, path):
    """A server bound elsewhere than localhost needs a token: ConfigError in one line otherwise. `cfg` has enabled,
    bind, token and local (DashboardConfig, MetricsConfig)."""
    if cfg.enabled and not cfg.local and not cfg.token:
        raise ConfigError("%s: [%s] bind = %r is reachable from other machines: set token_file (or token), "
                          "or bind = \"127.0.0.1\"" % (path, section, cfg.bind))


def check_port(table, section, default, path):
    """ConfigError unless the table's port (or `default`) is 0 (any free port) to 65535."""
    port = table.get("port", default)
    if not 0 <= port < 65536:
        raise ConfigError("%s: [%s] port must be 0 (any free port) to 65535, got %d" % (path, section, port))


def dashboard_config(table, path="<config>"):
    """A DashboardConfig from a [dashboard] table; ConfigError naming the file and key when it cannot be used."""
    _check(table, _DASH_KEYS, "dashboard", path)
    t = dict(table)
    t["token"] = read_token(t, "dashboard", path)
    check_port(t, "dashboard", DASHBOARD_PORT, path)
    cfg = DashboardConfig(**t)
    check_exposure(cfg, "dashboard", path)
    return cfg


METRICS_PORT = 9108


class MetricsConfig:
    """The [metrics] section: the Prometheus endpoint (gateway/metrics.py, docs/METRICS.md). Off without the
    section; like the dashboard, on localhost by default and bound elsewhere only with a token (Bearer)."""

    def __init__(self, enabled=True, bind="127.0.0.1", port=METRICS_PORT, token=None):
        self.enabled = enabled
        self.bind = bind
        self.port = port
        self.token = token

    @property
    def local(self):
        return is_local_bind(self.bind)

    def __repr__(self):             # never the token
        return "MetricsConfig(enabled=%r, bind=%r, port=%r, token=%s)" % (
            self.enabled, self.bind, self.port, "set" if self.token else "none")


def metrics_config(table, path="<config>"):
    """A MetricsConfig from a [metrics] table; ConfigError naming the file and key when it cannot be used."""
    _check(table, _METRICS_KEYS, "metrics", path)
    t = dict(table)
    t["token"] = read_token(t, "metrics", path)
    check_port(t, "metrics", METRICS_PORT, path)
    cfg = MetricsConfig(**t)
    check_exposure(cfg, "metrics", path)
    return cfg


class GatewayConfig:
    """Everything the service needs; defaults suit a Raspberry Pi next to a handful of boards."""

    def __init__(self, database, boards=(), clock_tolerance_s=2.0, wait_ms=2000, batch_max=5000,
                 retry_initial_s=0.25, retry_max_s=2.0, status_path=None, linger_ms=10, tap_path=None,
                 dashboard=None, alerts=None, hourly=None, metrics=None, summary_every_s=600.0, mqtt=None):
        self.database = database
        self.boards = list(boards)
        self.clock_tolerance_s = clock_tolerance_s
        self.wait_ms = wait_ms
        self.batch_max = batch_max
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.status_path = status_path
        self.linger_ms = linger_ms
        self.tap_path = tap_path       # the Unix socket of gateway/tap.py (None: no tap)
        self.dashboard = dashboard     # a DashboardConfig (None: no dashboard; a TOML file gets the default)
        self.alerts = alerts           # gateway.alertwatch.AlertSettings, None: no alerts ([alerts] enabled = false)
        self.hourly = hourly           # gateway.hourly.HourlySettings, None: no aggregates (a TOML file: enabled)
        self.metrics = metrics         # a MetricsConfig (None: no Prometheus endpoint, the default without [metrics])
        self.summary_every_s = summary_every_s   # the log's summary line (gateway/supervisor.py); 0: none
        self.mqtt = mqtt               # gateway.mqttpub.MqttConfig, None: no [mqtt] section (or enabled = false)


_DB_KEYS = {"host": str, "port": int, "unix_socket": str, "user": str, "password": str, "password_env": str,
            "database": str, "ssl_ca": str, "ssl_cert": str, "ssl_key": str, "ssl_verify": bool,
            "connect_timeout": (int, float), "servers": list, "semisync": str, "cluster": str}
_GW_KEYS = {"clock_tolerance_s": (int, float), "wait_ms": int, "batch_max": int, "retry_initial_s": (int, float),
            "retry_max_s": (int, float), "status_path": str, "linger_ms": (int, float), "tap_path": str,
            "summary_every_s": (int, float)}
_DASH_KEYS = {"enabled": bool, "bind": str, "port": int, "token": str, "token_file": str,
              "silent_after_s": (int, float)}
_METRICS_KEYS = {"enabled": bool, "bind": str, "port": int, "token": str, "token_file": str}


_ALERT_KEYS = {"enabled": bool, "dry_below": (int, float), "dry_clear_above": (int, float),
               "silent_after_s": (int, float), "grace_s": (int, float), "drop_window_s": (int, float),
               "every_s": (int, float), "webhook_url": str, "webhook_token_env": str, "smtp_host": str,
               "smtp_port": int, "smtp_from": str, "smtp_to": (str, list), "smtp_user": str, "smtp_password_env": str,
               "smtp_starttls": bool, "smtp_ssl": bool}


def _alert_settings(table, path, environ):
    """[alerts] -> AlertSettings, or None when `enabled = false`. Secrets come from the environment, by name."""
    a = dict(table)
    _check(a, _ALERT_KEYS, "alerts", path)
    if not a.pop("enabled", True):
        return None
    url = a.pop("webhook_url", None)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError("%s: [alerts] webhook_url must start with http:// or https://, got %r" % (path, url))
    token_env = a.pop("webhook_token_env", None)
    smtp = {k[len("smtp_"):]: a.pop(k) for k in list(a) if k.startswith("smtp_")}
    smtp_settings = None
    if smtp:
        if "host" not in smtp or "to" not in smtp or "from" not in smtp:
            raise ConfigError("%s: [alerts] e-mail needs smtp_host, smtp_from and smtp_to" % path)
        password_env = smtp.pop("password_env", None)
        smtp_settings = SmtpSettings(smtp.pop("host"), smtp.pop("to"), smtp.pop("from"),
                                     password=environ.get(password_env) if password_env else None, **smtp)
    try:
        return AlertSettings(webhook_url=url, webhook_token=environ.get(token_env) if token_env else None,
                             smtp=smtp_settings, **a)
    except ValueError as e:
        raise ConfigError("%s: [alerts] %s" % (path, e))


_HOURLY_KEYS = {"enabled": bool, "every_s": (int, float), "margin_s": (int, float)}
_RETENTION_KEYS = {"raw_days": int, "batch_rows": int}


def _hourly_settings(hourly, retention, path):
    """[hourly] and [retention] -> HourlySettings (enabled by default); retention needs the aggregates."""
    _check(hourly, _HOURLY_KEYS, "hourly", path)
    _check(retention, _RETENTION_KEYS, "retention", path)
    try:
        settings = HourlySettings(**dict(hourly, **retention))
    except ValueError as e:
        raise ConfigError("%s: [hourly]/[retention] %s" % (path, e))
    if settings.raw_days and not settings.enabled:
        raise ConfigError("%s: [retention] raw_days = %d needs [hourly] enabled: raw readings are deleted only "
                          "once they are in an hour's aggregate" % (path, settings.raw_days))
    return settings
_MQTT_KEYS = {"enabled": bool, "host": str, "port": int, "username": str, "password_env": str, "tls": bool,
              "ca_file": str, "topic_prefix": str, "discovery_prefix": str, "max_catch_up": int,
              "client_id": str, "silent_after_s": (int, float), "poll_s": (int, float)}


def _mqtt_config(table, path, environ):
    """[mqtt] -> MqttConfig (docs/MQTT.md), or None without the section or with `enabled = false`. The password
    comes from the environment variable named by password_env, never from the file."""
    if not table:
        return None
    m = dict(table)
    _check(m, _MQTT_KEYS, "mqtt", path)
    if not m.pop("enabled", True):
        return None
    if "host" not in m:
        raise ConfigError("%s: [mqtt] needs host (the broker's name or address)" % path)
    password_env = m.pop("password_env", None)
    if password_env and password_env not in environ:
        raise ConfigError("%s: [mqtt] password_env names %s, which is not set in the environment"
                          % (path, password_env))
    if "ca_file" in m and not os.path.isfile(m["ca_file"]):
        raise ConfigError("%s: [mqtt] ca_file %s: no such file" % (path, m["ca_file"]))
    try:
        return MqttConfig(password=environ.get(password_env) if password_env else None, **m)
    except ValueError as e:
        raise ConfigError("%s: [mqtt] %s" % (path, e))


def _check(table, allowed, where, path):
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError("%s: unknown key [%s] %s" % (path, where, key))
        if not isinstance(value, allowed[key]) or (allowed[key] is int and isinstance(value, bool)):
            raise ConfigError("%s: [%s] %s has the wrong type" % (path, where, key))


def load(path, environ=None):
    """Read a gateway TOML file. The password comes from `password`, else from the variable named by
    `password_env` (default SOIL_DB_PASSWORD)."""
    environ = os.environ if environ is None else environ
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("%s: no such configuration file" % path)
    except IsADirectoryError:
        raise ConfigError("%s: is a folder, not a configuration file (give the .toml file inside it)" % path)
    except UnicodeDecodeError as e:
        # TOML is UTF-8 by definition; an editor that saved latin-1 (or a binary file) lands here.
        raise ConfigError("%s: not UTF-8 text (byte 0x%02x at offset %d): save it as UTF-8"
                          % (path, e.object[e.start], e.start))
    except OSError as e:
        raise ConfigError("%s: cannot read the configuration file: %s" % (path, e.strerror or e))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: %s" % (path, e))
    return from_dict(data, path, environ)


def from_dict(data, path="<config>", environ=None):
    environ = os.environ if environ is None else environ
    for key in data:
        if key not in ("database", "gateway", "board", "dashboard", "alerts", "hourly", "retention", "metrics",
                       "mqtt"):
            raise ConfigError("%s: unknown section [%s]" % (path, key))
    db = dict(data.get("database", {}))
    _check(db, _DB_KEYS, "database", path)
    env_name = db.pop("password_env", PASSWORD_ENV)
    if "password" not in db:
        db["password"] = environ.get(env_name, "")
    if "servers" in db:
        if not db["servers"]:
            raise ConfigError("%s: [database] servers is empty" % path)
        for entry in db["servers"]:
            try:
                parse_server(entry)
            except ValueError as e:
                raise ConfigError("%s: [database] servers: %s" % (path, e))
        if "host" in db or "unix_socket" in db:
            raise ConfigError("%s: [database] give either servers or host/unix_socket, not both" % path)
        db["servers"] = tuple(db["servers"])
    if db.get("semisync", "off") not in ("off", "prefer", "require"):
        raise ConfigError("%s: [database] semisync must be \"off\", \"prefer\" or \"require\"" % path)
    if db.get("cluster", "auto") not in ("auto", "galera"):
        raise ConfigError("%s: [database] cluster must be \"auto\" or \"galera\"" % path)
    database = DbConfig(**db)
    gw = dict(data.get("gateway", {}))
    _check(gw, _GW_KEYS, "gateway", path)
    boards = []
    for i, b in enumerate(data.get("board", [])):
        if "url" not in b:
            raise ConfigError("%s: [[board]] number %d has no url" % (path, i + 1))
        _check(b, {"url": str, "baudrate": int, "name": str}, "board", path)
        boards.append(board_config(where="%s: [[board]] number %d" % (path, i + 1), **b))
    dashboard = dashboard_config(data.get("dashboard", {}), path)
    alerts = _alert_settings(data.get("alerts", {}), path, environ)
    hourly = _hourly_settings(data.get("hourly", {}), data.get("retention", {}), path)
    metrics = metrics_config(data["metrics"], path) if "metrics" in data else None
    mqtt = _mqtt_config(data.get("mqtt", {}), path, environ)
    return GatewayConfig(database, boards, dashboard=dashboard, alerts=alerts, hourly=hourly, metrics=metrics,
                         mqtt=mqtt, **gw)
