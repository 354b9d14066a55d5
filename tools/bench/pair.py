"""Standby takeover, measured: repeated master kills on a redundant pair of virtual boards (part of `make bench`).

Each cycle kills the master's process (its power), waits for the standby's takeover, starts the master again and
waits for the hand-back. Takeover latency is from the kill (host clock) to the gateway receiving the standby's
`takeover` event (`collector_events.received_at`, same host clock). Missing and doubled one-second slots are counted
over the whole run from what the database holds. Beat, timeout and hand-back periods are shortened (the logic does
not depend on them), so twenty cycles take a few minutes; the target scales with them: timeout + one interval.
"""

import datetime
import os
import time

from tools.demo.stack import wait_for

PAIR = {"interval_ms": 1000, "status_interval_ms": 1000, "hb_interval_ms": 500, "hb_timeout_ms": 2000,
        "witness_timeout_ms": 2500, "handback_after_ms": 2000, "handback_margin_s": 2,
        "witness_recheck_ms": 3000}


def _events(stack, board, event):
    return stack.query("SELECT received_at FROM collector_events WHERE board=%s AND event=%s ORDER BY id",
                       (board, event))


def bench_pair(stack, kills):
    wire = os.path.join(stack.run_dir, "hb.sock")
    master = stack.start_board("pair-a", role="master", hb_wire=wire, seed=11, **PAIR)
    standby = stack.start_board("pair-b", role="standby", hb_wire=wire, seed=12, **PAIR)
    stack.start_gateway(boards=[master, standby])
    try:
        wait_for(lambda: master.status()["clock"] == "ok" and standby.status()["clock"] == "ok", 30, "clocks")
        wait_for(lambda: standby.status()["role_state"] == "watching", 30, "the standby watching")
        time.sleep(3)
        latencies = []
        for _ in range(kills):
            takeovers = len(_events(stack, "pair-b", "takeover"))
            handbacks = len(_events(stack, "pair-b", "handback"))
            killed_at = time.time()
            master.kill()
            wait_for(lambda: len(_events(stack, "pair-b", "takeover")) > takeovers, 60, "takeover")
            got = _events(stack, "pair-b", "takeover")[-1][0]
            latencies.append((got.replace(tzinfo=datetime.timezone.utc).timestamp() - killed_at) * 1000.0)
            time.sleep(2)
            master.start()
            wait_for(lambda: len(_events(stack, "pair-b", "handback")) > handbacks, 60, "hand-back")
            wait_for(lambda: master.status()["role_state"] == "active" and master.status()["publishing"], 30,
                     "the master publishing")
            time.sleep(2)
        wait_for(lambda: master.status()["pending"] == 0 and standby.status()["pending"] == 0, 60, "drained")
        checked, missing, doubled = stack.slot_audit()
        latencies.sort()
        return {"kills": kills, "p50_ms": latencies[len(latencies) // 2], "max_ms": latencies[-1],
                "min_ms": latencies[0], "target_ms": PAIR["hb_timeout_ms"] + PAIR["interval_ms"],
                "slots": checked, "missing": missing, "doubled": doubled}
    finally:
        stack.gateway.stop()
        for b in (master, standby):
            b.stop()
