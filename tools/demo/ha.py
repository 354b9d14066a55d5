"""`make demo-ha`: the database's primary is killed while boards stream, and nothing acknowledged is lost.

1. A GTID topology of three private MariaDB servers with semi-synchronous replication (tools/rpl).
2. Two virtual boards and the gateway, which is given all three servers and acknowledges a board only after a
   COMMIT that a replica has also received (`semisync = "require"`).
3. The failover monitor watches the primary.
4. The primary gets kill -9. The monitor confirms the death with the replicas and promotes the most advanced one;
   the gateway finds the new primary by itself and resumes; the boards cached meanwhile.
5. The boards stop sampling and drain; then the summary from the new primary: every reading sampled is stored
   exactly once (the count is final: nothing is sampled after it).

It exits 0 when every check passed, 1 otherwise.
"""

import argparse
import datetime
import os
import shutil
import sys
import time

from tools.demo.hastack import ReplicatedStack
from tools.demo.stack import ROOT, wait_for


def say(text=""):
    print(text, flush=True)


def step(text):
    say("\n== %s" % text)


def identities_complete(rows):
    """(stored twice, missing) over (board, boot, seq) identities, each boot's seqs expected from 1 to its max."""
    ids = [(r[0], r[1], r[2]) for r in rows]
    twice = len(ids) - len(set(ids))
    top = {}
    for board, boot, seq in set(ids):
        top[(board, boot)] = max(top.get((board, boot), 0), seq)
    missing = sum(top[k] for k in top) - len(set(ids))
    return twice, missing


def main(argv=None):
    p = argparse.ArgumentParser(prog="demo-ha", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default=os.path.join(ROOT, "run", "demo-ha"))
    args = p.parse_args(argv)
    shutil.rmtree(args.run_dir, ignore_errors=True)
    os.makedirs(args.run_dir)
    failures = []
    ha = None
    try:
        step("1. three private MariaDB servers, GTID replication, semi-sync")
        ha = ReplicatedStack(os.path.join(args.run_dir, "rpl"), os.path.join(args.run_dir, "stack"))
        topo, stack = ha.topo, ha.stack
        for s in topo.servers:
            say("  server %d  port %d  %s" % (s.server_id, s.port, "primary" if s is topo.primary() else "replica"))

        step("2. two virtual boards and the gateway (acknowledges after a semi-synchronous COMMIT)")
        boards = [stack.start_board("ha-%d" % i, interval_ms=200, status_interval_ms=1000, seed=30 + i)
                  for i in (1, 2)]
        stack.start_gateway()
        wait_for(lambda: len(stack.readings()) >= 20, 60, "readings on the primary")
        say("  %d readings stored" % len(stack.readings()))

        step("3. the failover monitor watches the primary")
        monitor = ha.watch(log=lambda t: say("  " + t))
        time.sleep(2)

        step("4. kill -9 of the primary while the boards stream")
        old = topo.primary()
        killed_at = time.time()
        old.process.kill()
        say("  %s  server %d killed" % (time.strftime("%H:%M:%S"), old.server_id))
        wait_for(lambda: monitor.promotions, 30, "a promotion")
        promo = monitor.promotions[0]
        new = ha.follow_primary()
        say("  promoted server %d %.2f s after the kill" % (new.server_id, promo["promoted_at"] - killed_at))
        before = len(stack.readings())
        wait_for(lambda: len(stack.readings()) > before + 10, 60, "commits on the new primary")
        first = stack.query("SELECT MIN(received_at) FROM plants WHERE received_at > FROM_UNIXTIME(%s)",
                            (promo["promoted_at"],))[0][0]
        if first is not None:
            lag = first.replace(tzinfo=datetime.timezone.utc).timestamp() - promo["promoted_at"]
            say("  the gateway's first commit on the new primary came %.2f s after the promotion" % lag)
        # The summary must be final: the boards stop sampling first, then everything they hold drains.
        for b in boards:
            b.stop_sampling()
        wait_for(lambda: all(b.status()["pending"] == 0 and b.status()["inflight"] == 0 for b in boards), 60,
                 "the boards to drain")

        step("5. summary, from the new primary (the boards stopped sampling and hold nothing)")
        status = [b.status() for b in boards]
        sampled = sum(st["seq"] for st in status)     # one boot each: seq counts every sample of the run
        rows = stack.query("SELECT board, boot, seq FROM plants WHERE board LIKE 'ha-%%'")
        twice, missing = identities_complete(rows)
        say("  readings sampled:         %d" % sampled)
        say("  readings stored:          %d" % len(rows))
        say("  stored twice:             %d" % twice)
        say("  missing:                  %d" % missing)
        say("  boards pending / dropped: %s" % ", ".join("%d/%d" % (st["pending"], st["dropped"]) for st in status))
        if twice or missing:
            failures.append("%d stored twice, %d missing" % (twice, missing))
        if len(rows) != sampled:
            failures.append("%d readings sampled, %d stored" % (sampled, len(rows)))
        if any(b.status()["seq"] != st["seq"] for b, st in zip(boards, status)):
            failures.append("a board kept sampling after `sampling off`")
    except (TimeoutError, RuntimeError, OSError) as e:
        failures.append(str(e))
    finally:
        if ha is not None:
            ha.close()
    if failures:
        for f in failures:
            say("demo-ha: FAILED: %s" % f)
        return 1
    say("\ndemo-ha: the primary died, a replica was promoted, the gateway followed; every reading stored once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
