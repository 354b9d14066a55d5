"""`make demo` and `make demo-ha`, and the private installations they, the benchmarks and the tests run (bench and test
equipment): a database server, virtual boards and the gateway as real processes (stack.py), over a replicated
database (hastack.py).

    python -m tools.demo           # an outage and its replay, then a redundant pair (story.py)
    python -m tools.demo.ha        # the primary killed while boards stream (ha.py)
"""
