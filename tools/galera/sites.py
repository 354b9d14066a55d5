"""Several sites on one Galera cluster, on one machine: a node, a gateway and virtual boards per site.

`make demo-galera`, tests/test_galera_sites.py and the Galera benchmark start from here, so what the tests prove is
what the demo shows. Site k has node k of the cluster (tools.galera.cluster), its own tools.demo.stack.Stack (its
gateway process and boards) and a link to each far node (tools.galera.wan.WanLink). Its gateway is configured as a
site's gateway would be: `servers` lists its own node first, then the far nodes (through the links), and
`cluster = "galera"`.

    sites = Sites.create("run/galera-sites", sites=3, boards_per_site=2, progress=print)
    sites.start(interval_ms=500)
    sites.site(2).cut()          # node 2 leaves the quorum and site 2 loses its links: its boards cache
    sites.site(2).mend()         # the node rejoins; the boards replay
    sites.move_board("site-1-b", to=3)   # unplugged at site 1, plugged in at site 3
    report = sites.audit()       # per board: rows, readings missing, readings stored twice
    sites.close()

A moved board keeps its card, clock and chip id (its state folder moves with it); each site's gateway lists one
spare port, `<site>/boards/visitor/tty`, where a board brought from another site appears.
"""

import os
import secrets

from tools.demo.stack import BoardProc, Stack, admin_query, install_schema, wait_for
from tools.galera.cluster import Cluster
from tools.galera.wan import WanLink

VISITOR = "visitor"


class Site:
    """Site k: node k, a Stack with its gateway and boards, and its links to the far nodes."""

    def __init__(self, index, node, stack, links):
        self.index = index
        self.name = "site-%d" % index
        self.node = node
        self.stack = stack
        self.links = links                 # {far node index: WanLink}
        self.visitor = BoardProc(stack, VISITOR, os.path.join(stack.run_dir, "boards", VISITOR), {})

    @property
    def gateway(self):
        return self.stack.gateway

    @property
    def boards(self):
        return self.stack.boards

    def servers(self):
        """The gateway's `servers`: its own node first, then each far node through this site's link to it."""
        return ["127.0.0.1:%d" % self.node.port] + ["127.0.0.1:%d" % self.links[i].port for i in sorted(self.links)]

    def server_name(self, server):
        """Which node a `host:port` of this site's gateway is: "node2 (via the link)" for a far node."""
        port = int(server.rsplit(":", 1)[1])
        if port == self.node.port:
            return self.node.name
        for i, link in self.links.items():
            if link.port == port:
                return "node%d (via the link)" % i
        return server

    def cut(self):
        """The site's network link fails: its node leaves the group and the far nodes are out of reach."""
        for link in self.links.values():
            link.cut()
        self.node.isolate(True)

    def mend(self):
        """The link is back: the far nodes are reachable again and the node rejoins the primary component."""
        self.node.isolate(False)
        for link in self.links.values():
            link.mend()

    def in_use(self):
        """The node this site's gateway writes to (`node1`, `node2 (via the link)`), from its status, or None."""
        cluster = (self.gateway.status() or {}).get("database_cluster") or {}
        for n in cluster.get("nodes", []):
            if n.get("in_use"):
                return self.server_name(n["server"])
        return None


class Sites:
    """A cluster of N nodes and N sites; `boards_per_site` virtual boards at each, named site-K-a, site-K-b ..."""

    def __init__(self, directory, cluster, password, boards_per_site):
        self.dir = os.path.abspath(directory)
        self.cluster = cluster
        self.password = password
        self.boards_per_site = boards_per_site
        self.sites = []
        for node in cluster.nodes:
            stack = Stack(os.path.join(self.dir, "site-%d" % node.index))
            stack.gateway_password = password
            stack.db = node
            stack.db_options = {"cluster": "galera"}
            links = {far.index: WanLink(far.port) for far in cluster.nodes if far is not node}
            site = Site(node.index, node, stack, links)
            stack.db_servers = site.servers()
            self.sites.append(site)

    @classmethod
    def create(cls, directory, sites=3, boards_per_site=2, suspect_timeout=3.0, progress=None):
        """Start a new cluster of `sites` nodes, create the schema and the gateway's account (they replicate)."""
        directory = os.path.abspath(directory)
        cluster = Cluster.create(os.path.join(directory, "cluster"), nodes=sites, suspect_timeout=suspect_timeout,
                                 progress=progress)
        password = secrets.token_hex(12)
        try:
            install_schema(cluster.nodes[0].admin_kwargs(), password)
            return cls(directory, cluster, password, boards_per_site)
        except BaseException:
            cluster.close()
            raise

    def site(self, index):
        return self.sites[int(index) - 1]

    def board_ids(self):
        return [b.board_id for s in self.sites for b in s.boards]

    def start(self, wait_ms=300, dashboards=False, **board_options):
        """Every site's boards, then its gateway (listing its boards and its spare port); with `dashboards`, each
        gateway serves its dashboard on a free localhost port (Site.gateway.dashboard_url())."""
        letters = "abcdefgh"
        for s in self.sites:
            for k in range(self.boards_per_site):
                s.stack.start_board("%s-%s" % (s.name, letters[k]), **dict(board_options, seed=s.index * 10 + k))
        for s in self.sites:
            s.stack.start_gateway(boards=list(s.boards) + [s.visitor], wait_ms=wait_ms,
                                  dashboard={"port": 0} if dashboards else None)
        return self

    def find_board(self, board_id):
        for s in self.sites:
            for b in s.boards:
                if b.board_id == board_id:
                    return s, b
        raise KeyError(board_id)

    def move_board(self, board_id, to):
        """Unplug the board at its site (power gone: SIGKILL) and plug it in at site `to`: its state folder (card,
        clock, chip id) moves to that site's spare port, where the site's gateway finds it."""
        here, board = self.find_board(board_id)
        there = self.site(to)
        if there.visitor.alive:
            raise RuntimeError("%s already has a visiting board" % there.name)
        board.kill()
        here.stack.boards.remove(board)
        os.rename(board.state_dir, there.visitor.state_dir)
        moved = BoardProc(there.stack, board_id, there.visitor.state_dir, board.options)
        there.stack.boards.append(moved)
        return moved.start()

    # --- what the cluster holds ---------------------------------------------------------------------------
    def query(self, sql, args=None, node=None):
        node = node or next(n for n in self.cluster.nodes if n.synced())
        return admin_query(node.admin_kwargs(), sql, args)

    def rows(self, node=None):
        """{board: [(boot, seq), ...]} of every reading stored, from one synced node (or `node`)."""
        out = {}
        for board, boot, seq in self.query("SELECT board, boot, seq FROM plants WHERE board IS NOT NULL", node=node):
            out.setdefault(board, []).append((boot, seq))
        return out

    def stored(self, *board_ids):
        """How many readings of these boards are stored (on one synced node)."""
        rows = self.rows()
        return sum(len(rows.get(b, [])) for b in board_ids)

    def stop_sampling(self):
        """No more samples anywhere (the boards still send what they hold), so an audit can be final."""
        for s in self.sites:
            for b in s.boards:
                b.stop_sampling()

    def drained(self):
        """Every board has sent everything it sampled and holds nothing unacknowledged."""
        for s in self.sites:
            for b in s.boards:
                st = b.status() if b.alive else None
                if not st or st.get("pending") or st.get("inflight") or st.get("fallback_pending"):
                    return False
        return True

    def audit(self, node=None):
        """{board: {"rows", "missing", "doubled"}}: a reading is missing when its seq is absent below the highest
        stored seq of its boot, or (for the board's running boot) below what the board says it sampled; doubled when
        one (boot, seq) is stored more than once. Final after `stop_sampling()` and `wait_drained()`."""
        stored = self.rows(node)
        report = {}
        for s in self.sites:
            for b in s.boards:
                ids = stored.get(b.board_id, [])
                by_boot = {}
                for boot, seq in ids:
                    by_boot.setdefault(boot, []).append(seq)
                st = b.status() if b.alive else {}
                if st.get("boot") is not None:
                    by_boot.setdefault(st["boot"], [])
                missing = 0
                for boot, seqs in by_boot.items():
                    top = max(seqs + [st["seq"] if st.get("boot") == boot else 0])
                    missing += top - len(set(seqs))
                report[b.board_id] = {"rows": len(ids), "missing": missing, "doubled": len(ids) - len(set(ids))}
        return report

    def same_on_every_node(self):
        """Whether every running, synced node holds the same set of readings."""
        views = [sorted((b, i) for b, ids in self.rows(n).items() for i in ids)
                 for n in self.cluster.nodes if n.synced()]
        return all(v == views[0] for v in views)

    def wait_drained(self, timeout=120):
        wait_for(self.drained, timeout, "every board to drain its card")

    def close(self):
        for s in self.sites:
            s.stack.db = None          # the cluster owns the nodes
            try:
                s.stack.close()
            finally:
                for link in s.links.values():
                    link.close()
        self.cluster.close()
