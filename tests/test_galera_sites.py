"""Three sites on one Galera cluster (tools/galera/sites.py): a node, a gateway process and two virtual boards per
site, each gateway listing its own node first and the far nodes through a link that can be cut.

In order, on one cluster (its start is the slow part), while every board samples:

1. each site's gateway writes to its own node;
2. kill -9 of site 1's node: its gateway moves to a far node, the node rejoins;
3. site 2 cut off (its node isolated from the quorum, its links down): its gateway finds no synced node, its boards
   cache on their cards; the link mends, the node rejoins, the boards replay;
4. a board unplugged at site 3 during an outage there and plugged in at site 1, whose gateway replays it, while
   site 3's gateway still holds what it could not commit: the two gateways saw the same readings;
5. the whole cluster killed at once and started again (bootstrapped from the node that saw the last commit).

Then the audit over every board: 0 readings missing, 0 stored twice, every node holding the same rows. Waits are
on events, each bounded; nothing is timed.
"""

import os

import pytest

from tests.conftest import private_dir
from tools.demo.stack import wait_for
from tools.galera.cluster import PROVIDER
from tools.galera.sites import Sites

pytestmark = pytest.mark.integration

BOARD = {"interval_ms": 500, "status_interval_ms": 1000}


@pytest.fixture(scope="module")
def sites():
    from tests.conftest import require_server
    require_server()
    if not os.path.exists(PROVIDER):
        pytest.fail("galera-4 is not installed (make deps runs tools/ensure-galera.sh)")
    with private_dir("galera-sites") as path:
        s = None
        try:
            s = Sites.create(path, sites=3, boards_per_site=2, suspect_timeout=3.0, progress=print)
            s.start(**BOARD)
            yield s
        finally:
            if s is not None:
                for site in s.sites:
                    if site.gateway is not None:
                        print("--- %s gateway log ---\n%s" % (site.name, site.gateway.log_text()[-3000:]))
                s.close()


def more_rows(sites, boards, n, timeout=90, what="rows"):
    """Wait until each board in `boards` has `n` more rows stored than now."""
    before = {b: sites.stored(b) for b in boards}
    wait_for(lambda: all(sites.stored(b) >= before[b] + n for b in boards), timeout, what)


def test_each_site_writes_to_its_own_node(sites):
    more_rows(sites, sites.board_ids(), 4, what="4 readings from every board")
    for s in sites.sites:
        wait_for(lambda: s.in_use() == s.node.name, 30, "%s's gateway on %s" % (s.name, s.node.name))


def node_states(site):
    """{"node1" or "node2 (via the link)": usable} as the site's gateway status shows the cluster."""
    cluster = (site.gateway.status() or {}).get("database_cluster") or {}
    return {site.server_name(n["server"]): n["usable"] for n in cluster.get("nodes", [])}


def test_kill_a_sites_node_its_gateway_moves_to_a_far_node(sites):
    one, three = sites.site(1), sites.site(3)
    one.node.kill()
    wait_for(lambda: (one.in_use() or "").endswith("(via the link)"), 90, "site 1's gateway on a far node")
    more_rows(sites, [b.board_id for b in one.boards], 5, what="site 1's boards committing through a far node")
    assert "now writing to Galera node" in one.gateway.log_text()
    # Site 3's gateway had no trouble of its own (its node lives): its status still shows node 1 down, from the
    # cluster watch's look at every node (it once showed each node as its last reconnection had found it).
    wait_for(lambda: node_states(three).get("node1 (via the link)") is False, 60, "site 3's status: node 1 down")
    sites.cluster.rejoin(1)
    wait_for(one.node.synced, 60, "node 1 Synced again")
    wait_for(lambda: node_states(three).get("node1 (via the link)") is True, 60, "site 3's status: node 1 back")


def test_a_site_cut_off_caches_on_its_cards_and_replays_once(sites):
    two = sites.site(2)
    ids = [b.board_id for b in two.boards]
    log_before = len(two.gateway.log_text())
    two.cut()
    try:
        wait_for(lambda: (two.node.wsrep() or {}).get("wsrep_cluster_status") == "non-Primary", 60,
                 "node 2 to leave the primary component")
        # Nothing can be stored for site 2 now; its boards keep sampling onto their cards.
        wait_for(lambda: all(b.pending() >= 6 for b in two.boards), 90, "site 2's boards caching")
        log = two.gateway.log_text()
        assert "no synced Galera node" in log, log[-2000:]
        # The other sites go on.
        more_rows(sites, [b.board_id for s in (sites.site(1), sites.site(3)) for b in s.boards], 3,
                  what="sites 1 and 3 still committing")
        during = {b: sites.stored(b) for b in ids}
    finally:
        two.mend()
    two.node.wait_synced()
    wait_for(lambda: all(b.pending() == 0 for b in two.boards), 120, "site 2's boards to replay their caches")
    assert all(sites.stored(b) > during[b] for b in ids)
    # The gateway retried every 250 ms and each failure named every node; the log said the outage in a few lines
    # (gateway/outagelog.py: it once took 4 warnings a second) and its end once.
    wait_for(lambda: "database is back after" in two.gateway.log_text()[log_before:], 30, "the end of the outage")
    # Each outage (the cut; perhaps a short one more while the healed node's view forms): at most its first 3
    # messages and one a minute, however often the writer retried.
    outages = two.gateway.log_text()[log_before:].split("database is back after")[:-1]
    said = [[line[-160:] for line in o.splitlines() if " database: " in line] for o in outages]
    assert said and all(1 <= len(lines) <= 4 for lines in said), said


def test_a_board_moved_between_sites_during_an_outage_is_stored_once(sites):
    three = sites.site(3)
    moved_id = three.boards[0].board_id
    three.cut()
    try:
        wait_for(lambda: three.boards[0].pending() >= 6, 90, "%s caching while site 3 is cut off" % moved_id)
        # Unplugged at site 3 (its gateway still holds the readings it could not commit) and plugged in at site 1.
        moved = sites.move_board(moved_id, to=1)
        wait_for(lambda: moved.pending() == 0, 120, "%s to replay through site 1" % moved_id)
    finally:
        three.mend()
    three.node.wait_synced()
    # Site 3's gateway, back on the cluster, writes what it still held: the same readings, stored once.
    wait_for(lambda: three.boards[0].pending() == 0, 120, "site 3's remaining board to replay")
    assert "site-1" in sites.find_board(moved_id)[0].name


def last_committed(node):
    return int((node.wsrep() or {}).get("wsrep_last_committed") or -1)


def test_the_whole_cluster_down_and_up_again(sites):
    history = max(last_committed(n) for n in sites.cluster.nodes)
    for n in sites.cluster.nodes:
        n.kill()
    wait_for(lambda: all(b.pending() >= 6 for s in sites.sites for b in s.boards), 90, "every board caching")
    said = []
    took = sites.cluster.start(progress=said.append)
    print("whole cluster started again in %.1f s: %s" % (took, "; ".join(said)))
    # Every node was killed, so grastate.dat says -1 on each: the bootstrap node was chosen by InnoDB's recovery.
    assert "recovered from InnoDB" in said[0] and "seqno -" not in said[0], said
    # Each node started from its recovered position: the cluster's history went on (a bootstrap without it starts
    # a new history at seqno 1 and every joiner throws its data away for a full state transfer).
    assert all(last_committed(n) >= history for n in sites.cluster.nodes), (history, [last_committed(n) for n in
                                                                                     sites.cluster.nodes])
    more_rows(sites, sites.board_ids(), 2, timeout=120, what="every board committing again")


def test_audit_nothing_lost_nothing_stored_twice(sites):
    sites.stop_sampling()
    sites.wait_drained(180)
    report = sites.audit()
    print("audit:", report)
    assert set(report) == set(sites.board_ids())
    assert all(r["rows"] > 0 for r in report.values())
    assert {b: r for b, r in report.items() if r["missing"] or r["doubled"]} == {}
    wait_for(sites.same_on_every_node, 60, "every node to hold the same readings")
    # Each move of a gateway to another node is said once: by the writer's store (the service's other stores
    # follow quietly; each of them once said it too, so every move was in the log twice in a row).
    for s in sites.sites:
        moves = [line.split(" WARNING ", 1)[1] for line in s.gateway.log_text().splitlines()
                 if " WARNING now writing to Galera node" in line]
        assert moves or s.index != 1, "site 1's gateway moved when its node was killed: the log does not say so"
        assert not any(a == b for a, b in zip(moves, moves[1:])), (s.name, moves)
