"""`soil-gateway status`: the running service's /api/status (and /api/events) as one screen of text.

Why ask the service over HTTP rather than read its status file: the file is written every few seconds and only
when `--status` is given, while /api/status is built at the moment of asking from the live state, with the same
"why" the dashboard shows (gateway/web/state.py). One view, two renderings.
"""


def _v(value, none="-"):
    return none if value is None else str(value)


def database_lines(db):
    if db["ok"]:
        head = "database: taking writes on %s" % _v(db["in_use"], "(not connected yet)")
    else:
        head = "database: DOWN (%s); boards cache on their cards" % _v(db["error"], "not answering")
    ss = db["semisync"]
    cluster = db.get("cluster")
    if ss["policy"] == "off" and cluster is not None:
        sem = "Galera: a commit is certified by the cluster"
    elif ss["policy"] == "off":
        sem = "semi-sync not checked (off)"
    elif ss["degraded"] is None:
        sem = "semi-sync %s: no commit checked yet" % ss["policy"]
    else:
        sem = "semi-sync %s: %s" % (ss["policy"], "FELL BACK to asynchronous" if ss["degraded"] else "on")
    lines = ["%s; %s; %d readings committed in %d transactions" % (head, sem, db["committed_rows"], db["batches"])]
    if cluster is not None:
        lines.append("  Galera cluster: %d of %d nodes usable (as of %s)" % (
            cluster["nodes_usable"], len(cluster["nodes"]), _v(cluster.get("checked"), "no look-up yet")))
        width = max(len(n["server"]) for n in cluster["nodes"]) if cluster["nodes"] else 0
        lines += [node_line(n, width) for n in cluster["nodes"]]
    else:
        for s in db["servers"]:
            lines.append("  server %s: %s" % (s["server"], s["role"]))
    for u in db["unknown"]:
        lines.append("  not known: %s" % u)
    return lines


def node_line(n, width):
    """One Galera node: in use / usable / NOT usable, its state comment, cluster status and size (or why it is
    down)."""
    if n["in_use"]:
        use = "in use" if n["usable"] else "last used"      # the node it wrote to until trouble, now unusable
    else:
        use = "usable" if n["usable"] else "NOT usable"
    if n.get("error"):
        what = "down (%s)" % n["error"]
    else:
        what = ", ".join(x for x in (n["state"] or "not ready", n["status"],
                                     None if n["size"] is None else "size %s" % n["size"],
                                     None if n["ready"] in ("ON", None) else "wsrep_ready=%s" % n["ready"]) if x)
    return "  node %-*s %-10s %s" % (width, n["server"], use, what)


def board_line(b, width):
    state = b["state"] + (" (replaying)" if b.get("replaying") else "")
    role = b["role"] + (" %s" % b["collector"] if b.get("collector") else "")
    line = "  %-*s %-20s pending %-6s card %-6s clock %-8s fw %-8s %-20s last frame %s" % (
        width, _v(b["board"], "(no hello)"), state, _v(b["pending"], "?"), _v(b["card"]), _v(b["clock"]),
        _v(b["fw"]), role, "never" if b["last_frame_s"] is None else "%.0f s ago" % b["last_frame_s"])
    if b["why"]:
        line += "\n  %-*s   why: %s" % (width, "", b["why"])
    return line


def render(status, events=None, events_error=None):
    """The screen, as one string (no trailing newline)."""
    lines = ["gateway %s at %s" % (_v(status.get("dashboard"), "(dashboard url unknown)"), status["now"])]
    lines += database_lines(status["database"])
    boards = status["boards"]
    width = max([10] + [len(_v(b["board"], "(no hello)")) for b in boards])
    unseen = sum(b["state"] == "unseen" for b in boards)
    lines.append("boards (%d): %d online, %d caching%s" % (len(boards), sum(b["state"] == "online" for b in boards),
                                                           sum(b["state"] == "caching" for b in boards),
                                                           ", %d port(s) with no board seen yet" % unseen
                                                           if unseen else ""))
    lines += [board_line(b, width) for b in boards]
    alerts = status.get("open_alerts") or []
    if not status.get("alerts_enabled", True):
        lines.append("alerts: off ([alerts] enabled = false)")
    else:
        lines.append("alerts open: %d" % len(alerts))
    for a in alerts:
        what = a["kind"] + ("" if a.get("probe") is None else " probe %s" % a["probe"])
        lines.append("  %s  %-*s %-16s %s" % (a["opened_at"], width, a["board"], what, _v(a["detail"], "")))
    if events_error:
        lines.append("board events of the last hour: not available (%s)" % events_error)
    else:
        events = events or []
        lines.append("board events of the last hour: %d" % len(events))
        for e in events[:5]:
            lines.append("  %s  %-*s %-20s %s" % (e["received_at"], width, e["board"], e["event"], _v(e["detail"], "")))
        if len(events) > 5:
            lines.append("  ... %d more on the dashboard" % (len(events) - 5))
    return "\n".join(lines)
