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

    [gateway]
    clock_tolerance_s = 2

    # tap_path = "/run/soil-gateway/tap.sock"   # for `monitor --listen` (default: beside the --status file)

    [dashboard]                         # the read-only web page (gateway/web/, docs/DASHBOARD.md)
    bind = "127.0.0.1"                  # anything else needs a token
    port = 8086                         # 0: any free port (logged, and in the status snapshot)
    # token_file = "/etc/soil/dashboard.token"   # or: token = "..."
    # enabled = false

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
        return self.bind in LOCAL_BINDS

    def __repr__(self):             # never the token
        return "DashboardConfig(enabled=%r, bind=%r, port=%r, token=%s)" % (
            self.enabled, self.bind, self.port, "set" if self.token else "none")


def dashboard_config(table, path="<config>"):
    """A DashboardConfig from a [dashboard] table; ConfigError naming the file and key when it cannot be used."""
    _check(table, _DASH_KEYS, "dashboard", path)
    t = dict(table)
    if "token" in t and "token_file" in t:
        raise ConfigError("%s: [dashboard] give either token or token_file, not both" % path)
    if "token_file" in t:
        try:
            with open(t.pop("token_file"), encoding="utf-8") as f:
                t["token"] = f.read().strip()
        except OSError as e:
            raise ConfigError("%s: [dashboard] token_file: cannot read %s: %s" % (path, e.filename, e.strerror))
        if not t["token"]:
            raise ConfigError("%s: [dashboard] token_file %s is empty" % (path, table["token_file"]))
    port = t.get("port", DASHBOARD_PORT)
    if not 0 <= port < 65536:
        raise ConfigError("%s: [dashboard] port must be 0 (any free port) to 65535, got %d" % (path, port))
    cfg = DashboardConfig(**t)
    if cfg.token is not None and len(cfg.token) < 16:
        raise ConfigError("%s: [dashboard] the token is too short (at least 16 characters; e.g. the output of "
                          "`openssl rand -hex 16`)" % path)
    if cfg.enabled and not cfg.local and not cfg.token:
        raise ConfigError("%s: [dashboard] bind = %r is reachable from other machines: set token_file (or token), "
                          "or bind = \"127.0.0.1\"" % (path, cfg.bind))
    return cfg


class GatewayConfig:
    """Everything the service needs; defaults suit a Raspberry Pi next to a handful of boards."""

    def __init__(self, database, boards=(), clock_tolerance_s=2.0, wait_ms=2000, batch_max=5000,
                 retry_initial_s=0.25, retry_max_s=2.0, status_path=None, linger_ms=10, tap_path=None,
                 dashboard=None, alerts=None, mqtt=None):
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
        self.mqtt = mqtt               # gateway.mqttpub.MqttConfig, None: no [mqtt] section (or enabled = false)


_DB_KEYS = {"host": str, "port": int, "unix_socket": str, "user": str, "password": str, "password_env": str,
            "database": str, "ssl_ca": str, "ssl_cert": str, "ssl_key": str, "ssl_verify": bool,
            "connect_timeout": (int, float), "servers": list, "semisync": str}
_GW_KEYS = {"clock_tolerance_s": (int, float), "wait_ms": int, "batch_max": int, "retry_initial_s": (int, float),
            "retry_max_s": (int, float), "status_path": str, "linger_ms": (int, float), "tap_path": str}
_DASH_KEYS = {"enabled": bool, "bind": str, "port": int, "token": str, "token_file": str,
              "silent_after_s": (int, float)}


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
        if key not in ("database", "gateway", "board", "dashboard", "alerts", "mqtt"):
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
    mqtt = _mqtt_config(data.get("mqtt", {}), path, environ)
    return GatewayConfig(database, boards, dashboard=dashboard, alerts=alerts, mqtt=mqtt, **gw)
