"""Replication tooling for the logger's database: a local GTID topology, switchover, failover, errant
transactions, semi-synchronous replication and an automatic failover monitor. MariaDB 10.3+ and MySQL 8.0/8.4.

Library use (see docs/REPLICATION.md)::

    from tools.rpl import Topology, failover, switchover, Monitor
    topo = Topology.load("run/rpl")
    topo.primary().port
    new = failover(topo)                       # the promoted Server
    rejoin(topo, 1)                            # the repaired old primary follows the new one
    Monitor(topo, on_promote=callback).run(stop_event)
"""

from tools.rpl.topology import Server, Topology, RplError  # noqa: F401
from tools.rpl.ha import (failover, switchover, errant_transactions, skip_errant, semisync_enable,  # noqa: F401
                          semisync_status, semisync_check, start, rejoin)
from tools.rpl.monitor import Monitor  # noqa: F401
