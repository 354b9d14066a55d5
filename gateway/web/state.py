"""The live state the dashboard and `soil-gateway status` show, built only from the service's public accessors.

Why a board is caching is derived here, in one place, from what the gateway's parts own:
the transport (is its port open, and why not), the board's session (when its last frame and reading arrived, its
last status frame: pending readings on its card, card and clock state) and the writer (is the database taking
writes, and the last error). The order of the causes is the order in which they hide each other: a port that is
gone hides whether the board is silent; a silent board hides whether the database would take its readings.

The database part says what the gateway knows (the server it writes to, the configured servers, the semi-sync
policy and what the last commits showed) and names what it does not know (replica lag: the gateway's
least-privilege account reads no replica's status). On a Galera cluster it carries each node as the newest look-up
round found it (gateway/galera.py: the writer's, or the cluster watch's every 10 s), and what it does not know is
how the nodes changed since that round.
"""

import json
import time

from gateway.galera import WATCH_EVERY_S

PUBLISHING_WINDOW_S = 10.0   # a collector that stored a reading this recently is the one publishing


def _iso(epoch):
    if not epoch:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


BRIEF_MAX = 120              # characters of the database's message a board's card repeats


def brief(message):
    """The gist of a database message for a board's card: up to its first parenthesised detail, at most BRIEF_MAX
    characters. The whole message is shown once, in the database's part of the page."""
    text = message.split(" (", 1)[0]
    return text if len(text) <= BRIEF_MAX else text[:BRIEF_MAX - 3].rstrip() + "..."


def board_view(session, transport, db_ok, db_error, now, silent_after_s):
    """One board's card on the page: identity, online / caching / unseen and why, pending, card, clock, fw, role."""
    b = session.board_state()
    port = transport.status()
    last = b["last_status"] or {}
    frame_age = now - b["last_frame_at"] if b["last_frame_at"] else None
    reading_age = now - b["last_reading_at"] if b["last_reading_at"] else None
    cause, why = None, None
    if b["refused"]:
        cause, why = "refused", b["refused"]
    elif not port["port_open"]:
        cause, why = "port", "port gone: %s" % (port["port_error"] or "not open yet")
    elif frame_age is None or frame_age > silent_after_s:
        cause = "silent"
        why = ("board silent: no frame for %.0f s" % frame_age) if frame_age is not None else \
            "board silent: no frame since the port opened"
    elif not db_ok:
        cause, why = "database", "database down: %s" % (brief(db_error) if db_error else "not answering")
    pending = last.get("pending")
    replaying = (cause is None and b["last_reading_source"] == "replay" and reading_age is not None
                 and reading_age < PUBLISHING_WINDOW_S)
    view = {
        "port": session.cfg.name, "board": b["board"], "role": b["role"], "boot": b["boot"], "fw": b["fw"],
        # A port no board has said hello on since the gateway started holds nothing it knows of: `unseen`.
        "state": "online" if cause is None else ("caching" if b["board"] is not None else "unseen"),
        "cause": cause, "why": why,
        "replaying": replaying, "pending": pending, "dropped": last.get("dropped"), "card": last.get("card"),
        "clock": last.get("clock"), "journal_bytes": last.get("journal_bytes"),
        "board_time": last.get("board_time"), "last_frame_s": None if frame_age is None else round(frame_age, 1),
        "last_reading_s": None if reading_age is None else round(reading_age, 1),
        "publishing": reading_age is not None and reading_age < PUBLISHING_WINDOW_S,
        "readings": session.stats.readings, "bad_frames": session.stats.bad_frames,
    }
    if b["role"] in ("master", "standby"):
        view["collector"] = "publishing" if view["publishing"] else "standing by"
    return view


def database_view(writer, db_cfg):
    """The database as the gateway knows it; `unknown` lists what it cannot say and why."""
    d = writer.database_state()
    server = d["server"]
    in_use = "%s:%s" % server if server else None
    servers = []
    for entry in db_cfg.servers:
        servers.append({"server": entry, "role": "primary, in use" if entry == in_use else
                        "configured (a replica, or down: the gateway writes only to the primary)"})
    cluster = d.get("cluster")
    if cluster is not None:       # a Galera cluster: every synced node is writable (gateway/galera.py)
        servers = [{"server": n["server"], "role": ("synced, in use" if n["in_use"] else "synced") if n["usable"]
                    else "%s, %s" % (n["state"] or "down", n["status"] or n["error"])} for n in cluster["nodes"]]
        cluster = dict(cluster, checked=_iso(cluster["checked_at"]),
                       nodes_usable=sum(1 for n in cluster["nodes"] if n["usable"]),
                       nodes=[dict(n, error=brief(n["error"]) if n["error"] else None) for n in cluster["nodes"]])
        unknown = ["how the nodes changed since %s: the gateway looks at them every %g s, when it connects and "
                   "after trouble (python -m tools.galera show, or SHOW STATUS LIKE 'wsrep_%%' on a node, says now)"
                   % (cluster["checked"] or "its last look-up", WATCH_EVERY_S)]
    else:
        unknown = ["replica lag and replica threads: the gateway's least-privilege account reads no replica's "
                   "status (tools/rpl shows them with an admin account)"]
    ss = d["semisync"]
    if ss["policy"] != "off" and ss["degraded"] is None:
        unknown.append("semi-sync state: no commit checked yet")
    return {"cluster": cluster, "ok": d["ok"], "error": None if d["ok"] else d["last_error"], "last_error": d["last_error"],
            "in_use": in_use, "servers": servers, "semisync": ss, "committed_rows": d["committed_rows"],
            "batches": d["batches"], "queued": d["queued"], "unknown": unknown}


def gateway_view(gateway, now=None, silent_after_s=30.0, dashboard_url=None):
    """Everything /api/status answers: boards, database, the open alerts (gateway/alerts.py)."""
    now = time.time() if now is None else now
    db = database_view(gateway.writer, gateway.config.database)
    boards = [board_view(s, t, db["ok"], db["last_error"], now, silent_after_s)
              for s, t in zip(gateway.sessions, gateway.transports)]
    return {"now": _iso(now), "dashboard": dashboard_url, "database": db, "boards": boards,
            "identity_alerts": list(gateway.identity.alerts),
            "open_alerts": [a.as_dict() for a in gateway.alerts.open_alerts()] if gateway.alerts is not None else [],
            "alerts_enabled": gateway.alerts is not None,
            "mqtt": gateway.mqtt.state() if getattr(gateway, "mqtt", None) is not None else None}


class Redactor:
    """Removes secrets from any text the dashboard serves: the database password and user name (error messages
    name `user@host:port`) and the dashboard token. Applied to every JSON answer as a last line of defence; the
    views above are built not to contain them in the first place."""

    def __init__(self, db_cfg, token=None):
        self._secrets = [s for s in (db_cfg.password, token) if s]
        self._user = db_cfg.user

    def text(self, text):
        for secret in self._secrets:
            text = text.replace(secret, "***")
        if self._user:
            text = text.replace(self._user + "@", "")
        return text

    def json(self, obj):
        return self.text(json.dumps(obj, separators=(",", ":")))
