"""`make bench`: the performance targets of BRIEF.md, measured side by side (bench and test equipment).

    python -m tools.bench          # the targets (targets.py): replay, link, latency, CPU, takeover, heap, flash
    python -m tools.bench.ha       # the replicated database: failover, semi-sync (ha.py)
    python -m tools.bench.galera   # Galera, 3 nodes: load vs one server, kill -9, a site cut off (galera.py)
"""
