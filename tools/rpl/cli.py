"""`python -m tools.rpl`: build a local topology and run switchover, failover, errant-GTID and semi-sync tasks.

    python -m tools.rpl create --dir run/rpl --servers 3
    python -m tools.rpl show --dir run/rpl              # topology with health (like mysqlrplshow)
    python -m tools.rpl switchover --dir run/rpl --to 2
    python -m tools.rpl failover --dir run/rpl [--to N] [--force]
    python -m tools.rpl errant --dir run/rpl            # exit 1 when any replica has errant GTIDs
    python -m tools.rpl skip-errant --dir run/rpl 0-3-12
    python -m tools.rpl semisync enable|status|check --dir run/rpl   # check: exit 1 + ALERT when fallen back
    python -m tools.rpl monitor --dir run/rpl           # automatic failover until Ctrl-C
    python -m tools.rpl add-replica --dir run/rpl
    python -m tools.rpl stop --dir run/rpl
    python -m tools.rpl start --dir run/rpl             # start a stopped topology again (same ports, same data)
    python -m tools.rpl rejoin --dir run/rpl --server 1 # a repaired old primary (or detached replica) follows again

Data on stdout, status on stderr; any failure is `rpl: message` on stderr with exit code 1.
"""

import argparse
import json
import os
import signal
import sys
import threading

import pymysql

from tools.dbserver import ServerError
from tools.rpl import ha
from tools.rpl.monitor import Monitor
from tools.rpl.topology import RplError, Topology


def _status(text):
    print(text, file=sys.stderr, flush=True)


def cmd_create(args):
    topo = Topology.create(args.dir, servers=args.servers)
    for s in topo.servers:
        print("server %d port=%d socket=%s%s" % (s.server_id, s.port, s.socket,
                                                 " (primary)" if s is topo.primary() else ""))


def cmd_add_replica(args):
    s = Topology.load(args.dir).add_replica()
    print("server %d port=%d socket=%s" % (s.server_id, s.port, s.socket))


def cmd_show(args):
    topo = Topology.load(args.dir)
    health = topo.health()
    primary = topo.primary()
    if args.json:
        print(json.dumps(health, indent=2))
        return _report_problems(show_problems(health, primary))
    print("# %s topology in %s" % (topo.flavour.name, topo.dir))
    by_id = {h["server_id"]: h for h in health}
    p = by_id[primary.server_id]
    print("%s:%s (server %d) PRIMARY%s gtid=%s" % (p["host"], p["port"], primary.server_id,
                                                  "" if p["reachable"] else " UNREACHABLE", p["gtid_position"]))
    for h in health:
        if h["server_id"] == primary.server_id:
            continue
        if not h["reachable"]:
            state = "UNREACHABLE"
        elif h["io_running"] is None:
            state = "not replicating (read_only=%s)" % ("ON" if h["read_only"] else "OFF")
        else:
            state = "io=%s sql=%s lag=%s source=%s" % ("Yes" if h["io_running"] else "NO",
                                                      "Yes" if h["sql_running"] else "NO", h["seconds_behind"],
                                                      h["source"])
        line = "  +--- %s:%s (server %d) %s gtid=%s" % (h["host"], h["port"], h["server_id"], state,
                                                        h["gtid_position"])
        if h["errant"]:
            line += " ERRANT=%s" % ",".join(h["errant"])
        if h["error"]:
            line += " error=%r" % h["error"]
        print(line)
    return _report_problems(show_problems(health, primary))


def _report_problems(problems):
    if problems:
        _status("rpl: %d problem(s): %s" % (len(problems), "; ".join(problems)))
        return 1
    return 0


def show_problems(health, primary):
    """What `show` calls wrong (exit 1): a server unreachable, a replica that does not replicate from the primary
    with both threads running, errant GTIDs, a replication error."""
    out = []
    for h in health:
        sid = h["server_id"]
        if not h["reachable"]:
            out.append("server %d unreachable" % sid)
            continue
        if h["server_id"] != primary.server_id:
            if h["io_running"] is None:
                out.append("server %d does not replicate (rejoin it)" % sid)
            elif not (h["io_running"] and h["sql_running"]):
                out.append("server %d: replica threads stopped (io=%s sql=%s)"
                           % (sid, "Yes" if h["io_running"] else "NO", "Yes" if h["sql_running"] else "NO"))
            elif h["source"] != "%s:%s" % (primary.host, primary.port):
                out.append("server %d replicates from %s, not from the primary" % (sid, h["source"]))
        if h["errant"]:
            out.append("server %d has errant GTIDs %s" % (sid, ",".join(h["errant"])))
        if h["error"]:
            out.append("server %d: %s" % (sid, h["error"]))
    return out


def cmd_switchover(args):
    new = ha.switchover(Topology.load(args.dir), args.to, timeout=args.timeout, log=_status)
    print("primary: server %d port=%d" % (new.server_id, new.port))


def cmd_failover(args):
    new = ha.failover(Topology.load(args.dir), candidate=args.to, force=args.force, timeout=args.timeout,
                      log=_status)
    print("primary: server %d port=%d" % (new.server_id, new.port))


def cmd_errant(args):
    found = ha.errant_transactions(Topology.load(args.dir))
    for sid, gtids in sorted(found.items()):
        print("server %d: %s" % (sid, ", ".join(gtids) if gtids else "clean"))
    return 1 if any(found.values()) else 0


def cmd_skip_errant(args):
    ha.skip_errant(Topology.load(args.dir), args.gtid, timeout=args.timeout, log=_status)


def cmd_semisync(args):
    topo = Topology.load(args.dir)
    if args.action == "enable":
        ha.semisync_enable(topo, timeout_ms=args.timeout_ms)
        _status("semi-sync enabled (timeout %d ms)" % args.timeout_ms)
    if args.action in ("enable", "status"):
        print(json.dumps(ha.semisync_status(topo), indent=2))
        return 0
    ok, message = ha.semisync_check(topo)
    print(message)
    return 0 if ok else 1


def cmd_monitor(args):
    topo = Topology.load(args.dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    monitor = Monitor(topo, interval=args.interval, confirm_window=args.confirm_window)
    try:
        monitor.run(stop, max_failovers=args.max_failovers)
    except KeyboardInterrupt:
        pass


def cmd_start(args):
    topo = Topology.load(args.dir)
    started = ha.start(topo, timeout=args.timeout, log=_status)
    if not started:
        _status("rpl: every server was already running")
    for s in topo.servers:
        print("server %d port=%d socket=%s%s" % (s.server_id, s.port, s.socket,
                                                 " (primary)" if s is topo.primary() else ""))


def cmd_rejoin(args):
    s = ha.rejoin(Topology.load(args.dir), args.server, timeout=args.timeout, log=_status)
    print("server %d port=%d replicates from the primary" % (s.server_id, s.port))


def cmd_stop(args):
    topo = Topology.load(args.dir)
    topo.stop(kill=args.kill)
    _status("rpl: stopped %d servers" % len(topo.servers))


COMMANDS = {"create": cmd_create, "add-replica": cmd_add_replica, "show": cmd_show, "switchover": cmd_switchover,
            "failover": cmd_failover, "errant": cmd_errant, "skip-errant": cmd_skip_errant,
            "semisync": cmd_semisync, "monitor": cmd_monitor, "stop": cmd_stop, "start": cmd_start,
            "rejoin": cmd_rejoin}


def build_parser():
    parser = argparse.ArgumentParser(prog="rpl", description="GTID replication topology tools (MariaDB / MySQL 8).")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dir", default="run/rpl", help="topology folder (default run/rpl)")
        return p

    p = add("create", "start N private servers: server 1 primary, the rest GTID replicas")
    p.add_argument("--servers", type=int, default=3)
    add("add-replica", "start one more server and replicate it from the primary's binary log")
    p = add("show", "the topology with each server's health (exit 1 when something is wrong)")
    p.add_argument("--json", action="store_true")
    for name, help_text in (("switchover", "planned change of primary, nothing lost"),
                            ("failover", "promote the most advanced replica (the primary is gone)")):
        p = add(name, help_text)
        g = p.add_argument_group("choice")
        g.add_argument("--to", type=int, required=(name == "switchover"), help="server id of the new primary")
        if name == "failover":
            g.add_argument("--force", action="store_true", help="accept a candidate with errant transactions")
        p.add_argument("--timeout", type=float, default=ha.DEFAULT_TIMEOUT)
    add("errant", "list errant GTIDs per replica (exit 1 when any)")
    p = add("skip-errant", "commit an empty transaction with this GTID on the primary")
    p.add_argument("gtid")
    p.add_argument("--timeout", type=float, default=ha.DEFAULT_TIMEOUT)
    p = add("semisync", "semi-synchronous replication: enable, status, check (exit 1 + ALERT when fallen back)")
    p.add_argument("action", choices=("enable", "status", "check"))
    p.add_argument("--timeout-ms", type=int, default=10000, help="fallback timeout set by enable")
    p = add("monitor", "automatic failover: poll the primary, confirm with the replicas, promote")
    g = p.add_argument_group("timing")
    g.add_argument("--interval", type=float, default=1.0)
    g.add_argument("--confirm-window", type=float, default=4.0)
    p.add_argument("--max-failovers", type=int, default=None, help="exit after this many promotions")
    p = add("stop", "stop every server of the topology")
    p.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean shutdown")
    p = add("start", "start the stopped servers of a topology again (same ports and data), primary first")
    p.add_argument("--timeout", type=float, default=ha.DEFAULT_TIMEOUT, help="for the replicas to catch up")
    p = add("rejoin", "a repaired old primary or a detached replica replicates from the primary again")
    p.add_argument("--server", type=int, required=True, help="its server id")
    p.add_argument("--timeout", type=float, default=ha.DEFAULT_TIMEOUT)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except (RplError, ServerError, pymysql.err.MySQLError) as exc:
        print("rpl: %s" % (exc,), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `rpl show | head`: the reader went away; stop quietly (Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
