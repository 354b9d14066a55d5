"""How the gateway reaches one database server, and what a failure there means.

`DbConfig` says where and how to connect; `connect()` opens a connection that way (autocommit off, UTC, utf8mb4,
TLS that cannot be silently downgraded); `classify()` turns any PyMySQL error into one of three errors a person
or a retry loop can act on:

* `DatabaseConfigError`: retrying will not help (wrong password, unknown database, missing privilege or schema,
  bad TLS). The message names user@host:port and what to check.
* `DatabaseUnavailable`: the server is down, restarting, read-only (a demoted primary), timed out or deadlocked:
  try again later, perhaps on another server.
* `DatabaseError`: anything else, with the server's own text.

Why a module of its own: the reading store (gateway/db.py), the primary look-up (gateway/primary.py), the
configuration loader and the CLI all need these, and the store also needs the primary look-up. With the shared
part here, every dependency points one way: db -> primary -> dbconn.
"""

from dataclasses import dataclass, field

import pymysql

DEFAULT_DATABASE = "plant_moisture"


# -- configuration ------------------------------------------------------------------------------------------------
@dataclass
class DbConfig:
    """Where and how the gateway connects. TLS is used when ssl_ca or ssl_cert is given."""

    host: str = "127.0.0.1"
    port: int = 3306
    unix_socket: str = None
    user: str = "soil_gateway"
    password: str = field(default="", repr=False)
    database: str = DEFAULT_DATABASE
    ssl_ca: str = None
    ssl_cert: str = None
    ssl_key: str = None
    ssl_verify: bool = True       # check the server's certificate against ssl_ca and its name against host
    connect_timeout: float = 5.0
    read_timeout: float = 30.0    # a hung server (not a dead one) must not hold the writer forever
    write_timeout: float = 30.0
    servers: tuple = ()           # several "host:port": write to whichever is the primary (gateway/primary.py)
    cluster: str = "auto"         # "galera": the servers are Galera nodes (gateway/galera.py); "auto": detect
    semisync: str = "off"         # "off", "prefer" or "require": acknowledge only commits on a replica too

    @property
    def tls(self):
        return bool(self.ssl_ca or self.ssl_cert)

    def where(self):
        """`user@host:port` (or `user@localhost (socket ...)`), for messages."""
        if self.servers:
            return "%s@{%s}" % (self.user, ", ".join(self.servers))
        if self.unix_socket:
            return "%s@localhost (socket %s)" % (self.user, self.unix_socket)
        return "%s@%s:%s" % (self.user, self.host, self.port)

    def connect_kwargs(self):
        """Keyword arguments for pymysql.connect(): UTC session, utf8mb4, autocommit off, TLS if configured."""
        kw = {"user": self.user, "password": self.password, "database": self.database, "charset": "utf8mb4",
              "autocommit": False, "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
              "write_timeout": self.write_timeout, "init_command": "SET SESSION time_zone = '+00:00'"}
        if self.unix_socket:
            kw["unix_socket"] = self.unix_socket
        else:
            kw["host"] = self.host
            kw["port"] = int(self.port)
        if self.tls:
            kw.update(ssl_ca=self.ssl_ca, ssl_cert=self.ssl_cert, ssl_key=self.ssl_key,
                      ssl_verify_cert=bool(self.ssl_verify and self.ssl_ca),
                      ssl_verify_identity=bool(self.ssl_verify and self.ssl_ca))
        return kw


# -- errors ---------------------------------------------------------------------------------------------------------
class DatabaseError(Exception):
    """A database problem, with a message meant for the person running the gateway."""

    retryable = False

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class DatabaseUnavailable(DatabaseError):
    """The server is down, unreachable, restarting, read-only or timed out: try again later."""

    retryable = True


class DatabaseConfigError(DatabaseError):
    """Retrying will not help: wrong credentials, unknown database, missing privilege or schema, bad TLS."""


_CONFIG_HINTS = {
    1044: "no access to the database (it may not exist: an account only sees databases it has privileges on): "
          "check [database] database, then provision the account (soil-gateway migrate --provision)",
    1045: "access denied: check the user name and password, and that the account exists for this client host",
    1049: "unknown database: check [database] database, or create it with soil-gateway migrate",
    1142: "a privilege is missing on a table: re-provision the account (soil-gateway migrate --provision)",
    1143: "a column privilege is missing: re-provision the account (soil-gateway migrate --provision)",
    1146: "a table is missing: run soil-gateway migrate",
    1054: "a column is missing: the schema is older than the gateway, run soil-gateway migrate",
    1227: "the account lacks a privilege this operation needs",
    1251: "the server wants an authentication method this client cannot do",
    1698: "access denied: check the user name and password",
    1862: "the account's password has expired: set a new one",
    1820: "the account must change its password first",
    2005: "unknown server host: check [database] host",
    2026: "TLS handshake failed: check ssl_ca/ssl_cert/ssl_key and the server's certificate",
    2059: "the server wants an authentication plugin this client cannot load",
    3118: "the account is locked",
    3159: "the server requires TLS: set ssl_ca in [database]",
    4151: "the account is locked",
}
_UNAVAILABLE = {
    1040: "too many connections",
    1047: "the Galera node is not in the primary component (WSREP not ready)",
    1180: "the COMMIT failed (a Galera node leaving the cluster?)",
    1053: "the server is shutting down",
    1077: "the server is shutting down",
    1152: "the connection was aborted",
    1158: "network read error", 1159: "network read timeout", 1160: "network write error", 1161: "network write timeout",
    1205: "lock wait timeout", 1213: "deadlock",
    1290: "the server is read-only (a replica or a demoted primary?)",
    1792: "the transaction is read-only", 1836: "the server is in read-only mode",
    1317: "the query was interrupted", 1927: "the connection was killed", 1969: "the statement timed out",
    2002: "cannot connect to the socket", 2003: "cannot connect (is the server running and the port right?)",
    2006: "the server has gone away", 2013: "lost connection to the server", 2014: "commands out of sync",
    2055: "lost connection to the server", 3024: "the statement timed out", 4031: "the server closed an idle session",
}


def classify(exc, cfg=None):
    """Map a PyMySQL exception to DatabaseConfigError, DatabaseUnavailable or DatabaseError (a new exception)."""
    where = cfg.where() if cfg is not None else "the database"
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, pymysql.err.InterfaceError):
        return DatabaseUnavailable("database %s: the connection is closed (%s)" % (where, _detail(exc)), None)
    errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = _detail(exc)
    low = text.lower()
    if errno in (2003, 2002) and ("ssl" in low or "certificate" in low or "tls" in low):
        return DatabaseConfigError("cannot connect to %s: TLS failed (%s); check ssl_ca/ssl_cert/ssl_key and that "
                                   "the server's certificate names this host" % (where, _short(text)), errno)
    if errno in _CONFIG_HINTS:
        return DatabaseConfigError("cannot use the database as %s: %s (error %d: %s)"
                                   % (where, _CONFIG_HINTS[errno], errno, _short(text)), errno)
    if errno in _UNAVAILABLE or isinstance(exc, pymysql.err.OperationalError) and errno is not None and errno >= 2000:
        hint = _UNAVAILABLE.get(errno, "client error")
        return DatabaseUnavailable("database %s unavailable: %s (error %s: %s)" % (where, hint, errno, _short(text)),
                                   errno)
    return DatabaseError("database %s: error %s: %s" % (where, errno, _short(text)), errno)


def _detail(exc):
    if len(exc.args) >= 2:
        return str(exc.args[1])
    return str(exc) or exc.__class__.__name__


def _short(text, limit=160):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- connections ----------------------------------------------------------------------------------------------------
def connect(cfg):
    """Open a connection (autocommit off, UTC, utf8mb4, TLS if configured) or raise a classified DatabaseError."""
    try:
        conn = pymysql.connect(**cfg.connect_kwargs())
    except pymysql.MySQLError as exc:
        raise classify(exc, cfg) from exc
    except OSError as exc:  # e.g. an unreadable CA file
        raise DatabaseConfigError("cannot connect to %s: %s" % (cfg.where(), exc)) from exc
    if cfg.tls:
        # PyMySQL quietly goes on without TLS when the server does not offer it; a downgrade must not pass.
        try:
            cur = conn.cursor()
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
        except pymysql.MySQLError as exc:
            conn.close()
            raise classify(exc, cfg) from exc
        if not row or not row[1]:
            conn.close()
            raise DatabaseConfigError("cannot connect to %s with TLS: the server does not offer it; configure "
                                      "ssl_cert/ssl_key on the server or remove ssl_ca from [database]" % cfg.where())
    return conn
