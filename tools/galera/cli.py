"""`python -m tools.galera`: a private Galera cluster on loopback, in the style of `python -m tools.rpl`.

    python -m tools.galera create --dir run/galera --nodes 3 [--suspect-timeout 5]
    python -m tools.galera show --dir run/galera [--json]
    python -m tools.galera kill --dir run/galera --node 1      # SIGKILL, as a power cut would
    python -m tools.galera rejoin --dir run/galera --node 1    # start it again; it rejoins by IST/SST
    python -m tools.galera stop --dir run/galera               # clean shutdown of every node
    python -m tools.galera start --dir run/galera              # bootstrap from the safe node, the others join

Data on stdout, progress on stderr; any failure is `galera: message` on stderr with exit code 1.
"""

import argparse
import json
import sys

from tools.dbserver import ServerError
from tools.galera.cluster import Cluster, GaleraError


def _status(text):
    print(text, file=sys.stderr, flush=True)


def _print_nodes(cluster):
    for n in cluster.show():
        print("node %d port=%s pid=%s gmcast=%d ready=%s state=%s cluster=%s size=%s seqno=%s"
              % (n["node"], n["port"], n["pid"], n["gmcast"], n["ready"], n["state"], n["status"], n["size"],
                 n["seqno"]))


def cmd_create(args):
    cluster = Cluster.create(args.dir, nodes=args.nodes, suspect_timeout=args.suspect_timeout, progress=_status)
    _print_nodes(cluster)
    print("servers = %s" % json.dumps(["127.0.0.1:%d" % n.port for n in cluster.nodes]))


def cmd_show(args):
    cluster = Cluster.load(args.dir)
    if args.json:
        print(json.dumps(cluster.show(), indent=2))
    else:
        _print_nodes(cluster)
    return 0 if all(n.synced() for n in cluster.nodes) else 1


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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.galera", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn in (("create", cmd_create), ("show", cmd_show), ("start", cmd_start), ("stop", cmd_stop),
                     ("kill", cmd_kill), ("rejoin", cmd_rejoin)):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
        p.set_defaults(fn=fn)
        if name == "create":
            p.add_argument("--nodes", type=int, default=3)
            p.add_argument("--suspect-timeout", type=float, default=5.0,
                           help="evs.suspect_timeout in seconds (Galera's default 5)")
        if name == "show":
            p.add_argument("--json", action="store_true")
        if name in ("kill", "rejoin"):
            p.add_argument("--node", type=int, required=True)
    args = ap.parse_args(argv)
    try:
        return args.fn(args) or 0
    except (GaleraError, ServerError, OSError) as exc:
        print("galera: %s" % exc, file=sys.stderr)
        return 1
