"""A private MariaDB Galera cluster for the demo, the tests and a user's bench (tools/galera/cluster.py), and its
command line (`python -m tools.galera`, tools/galera/cli.py). docs/GALERA.md says how and why."""

from tools.galera.cluster import Cluster, GaleraError, GaleraNode  # noqa: F401
