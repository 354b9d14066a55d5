"""`make demo-galera`: three sites on one MariaDB Galera cluster; a node killed, a site cut off, every reading once.

1. A private Galera cluster of three nodes on loopback (tools/galera), the schema and the gateway's account.
2. Three sites (tools/galera/sites.py): each a gateway process that lists its own node first and the far nodes
   through the site's network link, and two virtual boards.
3. kill -9 of site 1's node while every board streams: site 1's gateway moves to a far node by itself; the node
   rejoins.
4. Site 2 cut off: its node leaves the quorum (gmcast.isolate) and its links go down. Its gateway finds no synced
   node, so its boards cache on their cards while sites 1 and 3 go on; the link mends and the boards replay.
5. The boards stop sampling and drain; the summary: every reading sampled is stored exactly once, on every node.

It exits 0 when every check passed, 1 otherwise.
"""

import argparse
import datetime
import os
import shutil
import sys
import time

from tools.browser import chromium
from tools.demo.stack import ROOT, wait_for
from tools.dbserver import ServerError
from tools.galera.cluster import GaleraError
from tools.galera.sites import Sites


def say(text=""):
    print(text, flush=True)


def step(text):
    say("\n== %s" % text)


def stamped_after(sites, boards, t):
    """How many readings of `boards` a synced node shows that the gateway stamped after host time `t`."""
    marks = ", ".join(["%s"] * len(boards))
    return sites.query("SELECT COUNT(*) FROM plants WHERE board IN (%s) AND received_at > FROM_UNIXTIME(%%s)"
                       % marks, [b.board_id for b in boards] + [t])[0][0]


def longest_pause(sites, boards, t0, t1):
    """The longest time between two consecutive commits of `boards` from host time t0 to t1 (received_at)."""
    marks = ", ".join(["%s"] * len(boards))
    times = [r[0].replace(tzinfo=datetime.timezone.utc).timestamp() for r in sites.query(
        "SELECT received_at FROM plants WHERE board IN (%s) AND received_at BETWEEN FROM_UNIXTIME(%%s) AND "
        "FROM_UNIXTIME(%%s) ORDER BY received_at" % marks, [b.board_id for b in boards] + [t0, t1])]
    times = [t0] + times
    return max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else None


def open_dashboard(site, failures):
    """A headless browser on the site's dashboard (its gateway serves it on localhost), or None without one."""
    why = chromium.missing()
    if why:
        failures.append("no screenshot of the dashboard: %s" % why)
        return None
    page = chromium.Browser()
    try:
        page.open(site.gateway.dashboard_url())
    except BaseException:
        page.close()
        raise
    return page


def photograph(page, js, path):
    """Once the page shows what `js` tests, a screenshot of it at `path`."""
    if page is None:
        return None
    try:
        page.wait(js, 30)
        page.screenshot(path)
    finally:
        page.close()
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="demo-galera", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default=os.path.join(ROOT, "run", "demo-galera"))
    p.add_argument("--suspect-timeout", type=float, default=3.0,
                   help="evs.suspect_timeout, seconds: how long a silent node stays in the component")
    args = p.parse_args(argv)
    shutil.rmtree(args.run_dir, ignore_errors=True)
    os.makedirs(args.run_dir)
    os.chmod(args.run_dir, 0o755)            # the nodes run as the mysql user and must reach their folders
    failures = []
    sites = None
    try:
        step("1. a Galera cluster of three private nodes (evs.suspect_timeout %g s)" % args.suspect_timeout)
        sites = Sites.create(args.run_dir, sites=3, boards_per_site=2, suspect_timeout=args.suspect_timeout,
                             progress=lambda t: say("  " + t))

        step("2. three sites: a gateway (its own node first) and two boards each")
        sites.start(interval_ms=500, status_interval_ms=1000, dashboards=True)
        wait_for(lambda: all(s.in_use() == s.node.name for s in sites.sites), 60, "each site on its own node")
        wait_for(lambda: all(len(sites.rows().get(b, [])) >= 5 for b in sites.board_ids()), 60, "readings")
        for s in sites.sites:
            say("  %s  gateway writes to %s   boards %s" % (s.name, s.in_use(), ", ".join(b.board_id
                                                                                          for b in s.boards)))

        step("3. kill -9 of site 1's node while every board streams")
        one = sites.site(1)
        killed_at = time.time()
        one.node.kill()
        say("  %s  node1 killed" % time.strftime("%H:%M:%S"))
        # The gateway's INSERT on a survivor is stamped at once, but its COMMIT waits until the cluster has dropped
        # the dead node: the first reading *visible* on a survivor is when writing resumed.
        wait_for(lambda: stamped_after(sites, one.boards, killed_at) > 0, 60, "site 1 committing again",
                 interval=0.02)
        lag = time.time() - killed_at
        wait_for(lambda: (one.in_use() or "").endswith("(via the link)"), 60, "site 1 on a far node")
        say("  site 1's gateway now writes to %s; its first reading there was visible %.1f s after the kill"
            % (one.in_use(), lag))
        took = sites.cluster.rejoin(1)
        say("  node1 started again: Synced %.1f s later (incremental state transfer)" % took)

        step("4. site 2 cut off: its node leaves the quorum, its links to the far nodes go down")
        two = sites.site(2)
        others = [b for s in (sites.site(1), sites.site(3)) for b in s.boards]
        other_ids = [b.board_id for b in others]
        page = open_dashboard(two, failures)
        two.cut()
        cut_at, cut_wall = time.monotonic(), time.time()
        wait_for(lambda: (two.node.wsrep() or {}).get("wsrep_cluster_status") == "non-Primary", 60,
                 "node 2 out of the primary component")
        say("  node2: %s" % (two.node.wsrep() or {}).get("wsrep_cluster_status"))
        before = sites.stored(*other_ids)
        # The others go on once the cluster has dropped node 2 (after evs.suspect_timeout); site 2 caches.
        wait_for(lambda: sites.stored(*other_ids) >= before + 20, 90, "sites 1 and 3 committing without node 2")
        wait_for(lambda: all(b.pending() >= 20 for b in two.boards), 90, "site 2's boards caching")
        say("  site 2's boards hold %s readings on their cards; sites 1 and 3 stored %d more meanwhile"
            % (" and ".join(str(b.pending()) for b in two.boards), sites.stored(*other_ids) - before))
        shot = photograph(page, "document.getElementById('cluster').textContent.includes('non-Primary') && "
                                "document.getElementById('boards').textContent.includes('caching')",
                          os.path.join(args.run_dir, "site-2-cut-off.png"))
        if shot:
            say("  site 2's dashboard while it is cut off: %s" % os.path.relpath(shot, ROOT))
        pause = longest_pause(sites, others, cut_wall, time.time())
        say("  sites 1 and 3 paused %.1f s at most: the cluster holds commits until it drops the silent node "
            "(evs.suspect_timeout)" % pause)
        two.mend()
        mended_at = time.monotonic()
        two.node.wait_synced()
        wait_for(lambda: all(b.pending() == 0 for b in two.boards), 120, "site 2's boards to replay")
        say("  the link mended after %.0f s cut off; node2 Synced and site 2's cards drained %.1f s later"
            % (mended_at - cut_at, time.monotonic() - mended_at))

        step("5. summary (the boards stopped sampling and hold nothing)")
        sites.stop_sampling()
        sites.wait_drained(120)
        status = {b.board_id: b.status() for s in sites.sites for b in s.boards}
        report = sites.audit()
        sampled = sum(st["seq"] for st in status.values())   # one boot each: seq counts every sample
        rows = sum(r["rows"] for r in report.values())
        twice = sum(r["doubled"] for r in report.values())
        missing = sum(r["missing"] for r in report.values())
        for s in sites.sites:
            say("  %s  %s" % (s.name, "  ".join("%s %d sampled / %d stored" % (b.board_id, status[b.board_id]["seq"],
                                                                               report[b.board_id]["rows"])
                                                for b in s.boards)))
        say("  readings sampled:   %d" % sampled)
        say("  readings stored:    %d" % rows)
        say("  stored twice:       %d" % twice)
        say("  missing:            %d" % missing)
        same = sites.same_on_every_node()
        say("  every node holds the same rows: %s" % ("yes" if same else "NO"))
        if twice or missing:
            failures.append("%d stored twice, %d missing" % (twice, missing))
        if rows != sampled:
            failures.append("%d readings sampled, %d stored" % (sampled, rows))
        if not same:
            failures.append("the nodes hold different rows")
    except (TimeoutError, RuntimeError, OSError, GaleraError, ServerError) as e:
        failures.append(str(e))
    finally:
        if sites is not None:
            sites.close()
    if failures:
        for f in failures:
            say("demo-galera: FAILED: %s" % f)
        return 1
    say("\ndemo-galera: a node died and a site was cut off; every reading stored once, on every node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
