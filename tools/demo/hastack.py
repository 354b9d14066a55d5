"""A whole installation over a replicated database: a tools.rpl GTID topology with semi-sync, the schema and the
gateway's account on its primary (both replicate), and a tools.demo.stack.Stack whose gateway is given every server.

`make demo-ha` and the failover benchmark both start from here, so what the benchmark measures is what the demo
shows: the product's own failover monitor and the gateway following the primary by itself.
"""

import threading

from tools.rpl import Monitor, Topology, semisync_enable
from tools.demo.stack import Stack, install_schema


class ReplicatedStack:
    """`topo` (tools.rpl.Topology) + `stack` (tools.demo.stack.Stack). `stack.db` follows the current primary."""

    def __init__(self, topo_dir, stack_dir, servers=3, semisync_timeout_ms=2000, semisync_policy="require"):
        self.topo = Topology.create(topo_dir, servers=servers)
        self.stack = Stack(stack_dir)
        self.monitor = None
        self._stop = threading.Event()
        try:
            semisync_enable(self.topo, timeout_ms=semisync_timeout_ms)
            install_schema(self.topo.primary().admin_kwargs(), self.stack.gateway_password)
            self.stack.db = self.topo.primary().process
            self.stack.db_servers = ["127.0.0.1:%d" % s.port for s in self.topo.servers]
            self.stack.db_options = {"semisync": semisync_policy}
        except BaseException:
            self.close()
            raise

    def watch(self, log=None, interval=0.5, confirm_window=3.0):
        """Start the automatic failover monitor in a thread (one failover at most)."""
        self.monitor = Monitor(self.topo, interval=interval, confirm_window=confirm_window,
                               log=log or (lambda text: None))
        threading.Thread(target=self.monitor.run, kwargs={"stop_event": self._stop, "max_failovers": 1},
                         daemon=True).start()
        return self.monitor

    def follow_primary(self):
        """After a promotion: point the stack's queries at the new primary."""
        self.topo.reload()
        self.stack.db = self.topo.primary().process
        return self.topo.primary()

    def close(self):
        self._stop.set()
        self.stack.db = None            # the topology owns the servers
        self.stack.close()
        self.topo.stop()
