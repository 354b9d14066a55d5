"""`python -m tools.galera`: a private Galera cluster on loopback, in the style of `python -m tools.rpl`.

    python -m tools.galera create --dir run/galera --nodes 3 [--suspect-timeout 5] [--garbd]
    python -m tools.galera show --dir run/galera [--json]
    python -m tools.galera kill --dir run/galera --node 1      # SIGKILL, as a power cut would
    python -m tools.galera rejoin --dir run/galera --node 1    # start it again; it rejoins by IST/SST
    python -m tools.galera isolate --dir run/galera --node 3   # cut it off the group, as a failed site link would
    python -m tools.galera heal --dir run/galera --node 3      # reconnect it; back when it is Synced
    python -m tools.galera stop --dir run/galera               # clean shutdown of every node
    python -m tools.galera start --dir run/galera              # bootstrap from the safe node, the others join

Data on stdout, progress on stderr; any failure is `galera: message` on stderr with exit code 1.
"""

import argparse
import json
import sys

import pymysql

from tools.dbserver import ServerError
from tools.galera.cluster import Cluster, GaleraError


def _status(text):
    print(text, file=sys.stderr, flush=True)


def _print_nodes(cluster):
    for n in cluster.show():
        print("node %d port=%s pid=%s gmcast=%d ready=%s state=%s cluster=%s size=%s seqno=%s"
              % (n["node"], n["port"], n["pid"], n["gmcast"], n["ready"], n["state"], n["status"], n["size"],
                 n["seqno"]))
    g = cluster.garbd_state()
    if g is not None:
        print("garbd pid=%s gmcast=%d log=%s" % (g["pid"], g["gmcast"], g["log"]))


def cmd_create(args):
    cluster = Cluster.create(args.dir, nodes=args.nodes, suspect_timeout=args.suspect_timeout, progress=_status,
                             garbd=args.garbd)
    _print_nodes(cluster)
    print("servers = %s" % json.dumps(["127.0.0.1:%d" % n.port for n in cluster.nodes]))


def cmd_show(args):
    cluster = Cluster.load(args.dir)
    if args.json:
        print(json.dumps({"nodes": cluster.show(), "garbd": cluster.garbd_state()}, indent=2))
    else:
        _print_nodes(cluster)
    healthy = all(n.synced() for n in cluster.nodes) and (cluster.garbd is None or cluster.garbd.running)
    return 0 if healthy else 1


def cmd_start(args):
    cluster = Cluster.load(args.dir)
    took = cluster.start(progress=_status)
    _status("cluster up in %.1f s" % took)
    _print_nodes(cluster)


def cmd_stop(args):
    Cluster.load(args.dir).stop()
    _status("stopped")


def cmd_kill(args):
    cluster = Cluster.load(args.dir)
    node = cluster.node(args.node)
    pid = node.pid
    node.kill()
    _status("node %d (pid %s) killed" % (args.node, pid))


def cmd_rejoin(args):
    cluster = Cluster.load(args.dir)
    took = cluster.rejoin(args.node)
    _status("node %d Synced %.1f s after its start" % (args.node, took))
    _print_nodes(cluster)


def cmd_isolate(args):
    cluster = Cluster.load(args.dir)
    took = cluster.isolate(args.node, timeout=args.timeout)
    _status("node %d isolated (gmcast.isolate=1): out of the primary component after %.1f s" % (args.node, took))
    _print_nodes(cluster)


def cmd_heal(args):
    cluster = Cluster.load(args.dir)
    took = cluster.heal(args.node, timeout=args.timeout)
    _status("node %d healed (gmcast.isolate=0): Synced in the primary component after %.1f s" % (args.node, took))
    _print_nodes(cluster)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.galera", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn in (("create", cmd_create), ("show", cmd_show), ("start", cmd_start), ("stop", cmd_stop),
                     ("kill", cmd_kill), ("rejoin", cmd_rejoin), ("isolate", cmd_isolate), ("heal", cmd_heal)):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
        p.set_defaults(fn=fn)
        if name == "create":
            p.add_argument("--nodes", type=int, default=3)
            p.add_argument("--suspect-timeout", type=float, default=5.0,
                           help="evs.suspect_timeout in seconds (Galera's default 5)")
            p.add_argument("--garbd", action="store_true",
                           help="also start one Galera arbitrator (a vote without data: 2 nodes survive a loss)")
        if name == "show":
            p.add_argument("--json", action="store_true")
        if name in ("kill", "rejoin", "isolate", "heal"):
            p.add_argument("--node", type=int, required=True)
        if name in ("isolate", "heal"):
            p.add_argument("--timeout", type=float, default=60.0 if name == "isolate" else 180.0,
                           help="seconds to wait for the node to leave (isolate) or be Synced again (heal)")
    args = ap.parse_args(argv)
    try:
        return args.fn(args) or 0
    except (GaleraError, ServerError, OSError, pymysql.MySQLError) as exc:
        print("galera: %s" % exc, file=sys.stderr)
        return 1
