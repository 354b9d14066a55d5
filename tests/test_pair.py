"""A redundant pair as real processes: two virtual boards joined by a heartbeat wire that spans processes, the
gateway, a private database. Killing the master's process is its death; cutting the wire keeps both alive.

Timings are shortened (beat 0.5 s, timeout 2 s) so each story takes seconds; the logic is the same. Checks are on
what the database holds: every one-second slot covered, none twice, each row labelled with its collector.
"""

import datetime
import os

import pytest

from tools.demo.stack import wait_for

pytestmark = pytest.mark.integration

PAIR = {"interval_ms": 1000, "status_interval_ms": 1000, "hb_interval_ms": 500, "hb_timeout_ms": 2000,
        "witness_timeout_ms": 2500, "handback_after_ms": 2000, "handback_margin_s": 3,
        "witness_recheck_ms": 3000}




def start_pair(stack, seed=1):
    wire = os.path.join(stack.run_dir, "hb.sock")
    # The master first, as on a bench: a standby powered up with no master would (rightly) take over.
    master = stack.start_board("bed-1-a", role="master", hb_wire=wire, seed=seed, **PAIR)
    standby = stack.start_board("bed-1-b", role="standby", hb_wire=wire, seed=seed + 1, **PAIR)
    stack.start_gateway()
    wait_for(lambda: master.status()["clock"] == "ok" and standby.status()["clock"] == "ok", 30,
             "the gateway to set both clocks")
    wait_for(lambda: len(stack.readings("bed-1-a")) >= 3, 30, "the master's first readings")
    wait_for(lambda: standby.status()["role_state"] == "watching" and standby.status()["ring"] >= 2, 30,
             "the standby hearing the master")
    return master, standby


def slots(stack, since=None):
    """second -> list of collectors that stored a reading sampled in it (trusted clock only)."""
    rows = stack.query("SELECT date_saved, board, collector FROM plants WHERE board LIKE 'bed-1-%%' "
                       "AND time_quality = 'rtc' ORDER BY date_saved")
    out = {}
    for t, board, collector in rows:
        if since is None or t >= since:
            out.setdefault(t, []).append((board, collector))
    return out


def assert_no_gap_no_double(stack, first, last):
    seen = slots(stack)
    second = datetime.timedelta(seconds=1)
    t, missing = first, []
    while t <= last:
        if t not in seen:
            missing.append(t)
        t += second
    doubles = {t: who for t, who in seen.items() if first <= t <= last and len(who) > 1}
    assert not missing, "missing slots: %s" % [m.strftime("%H:%M:%S") for m in missing]
    assert not doubles, "slots stored twice: %s" % doubles


def events(stack, board=None):
    sql = "SELECT board, event, detail FROM collector_events"
    args = ()
    if board:
        sql += " WHERE board = %s"
        args = (board,)
    return stack.query(sql + " ORDER BY id", args)


def first_trusted(stack):
    return stack.query("SELECT MIN(date_saved) FROM plants WHERE board LIKE 'bed-1-%%' AND time_quality='rtc'")[0][0]


def test_master_killed_standby_takes_over_with_no_gap(stack):
    master, standby = start_pair(stack)
    master.kill()
    wait_for(lambda: any(e[1] == "takeover" for e in events(stack, "bed-1-b")), 30, "the standby's takeover")
    wait_for(lambda: len(stack.readings("bed-1-b")) >= 5, 30, "the standby's readings")
    latest = stack.query("SELECT MAX(date_saved) FROM plants WHERE board='bed-1-b'")[0][0]
    assert_no_gap_no_double(stack, first_trusted(stack), latest - datetime.timedelta(seconds=1))
    rows = stack.readings("bed-1-b")
    assert {r[8] for r in rows} == {"standby"}
    assert len({(r[1], r[2]) for r in rows}) == len(rows)


def test_master_back_takes_over_again_without_doubles(stack):
    master, standby = start_pair(stack)
    master.kill()
    wait_for(lambda: any(e[1] == "takeover" for e in events(stack, "bed-1-b")), 30, "takeover")
    master.start()
    wait_for(lambda: any(e[1] == "handback" for e in events(stack, "bed-1-b")), 30, "hand-back")
    back = stack.query("SELECT MAX(date_saved) FROM plants WHERE board='bed-1-b'")[0][0]
    wait_for(lambda: stack.query("SELECT MAX(date_saved) FROM plants WHERE board='bed-1-a'")[0][0] >
             back + datetime.timedelta(seconds=3), 30, "the master publishing again")
    assert standby.status()["role_state"] == "watching" and master.status()["role_state"] == "active"
    latest = stack.query("SELECT MAX(date_saved) FROM plants WHERE board='bed-1-a'")[0][0]
    assert_no_gap_no_double(stack, first_trusted(stack), latest - datetime.timedelta(seconds=1))


def test_wire_cut_gateway_hears_master_no_takeover(stack):
    master, standby = start_pair(stack)
    master.control("wire cut")
    wait_for(lambda: any(e[1] == "witness_refused" for e in events(stack, "bed-1-b")), 30, "the witness refusal")
    wait_for(lambda: any(e[1] == "standby_missing" for e in events(stack, "bed-1-a")), 30,
             "the master reporting its silent standby")
    n = len(stack.readings("bed-1-a"))
    wait_for(lambda: len(stack.readings("bed-1-a")) >= n + 4, 30, "the master going on")
    assert stack.readings("bed-1-b") == ()
    assert standby.status()["role_state"] in ("watching", "asking")


def test_wire_cut_and_gateway_down_standby_takes_over_and_labels_rows(stack):
    master, standby = start_pair(stack)
    stack.gateway.stop()
    master.control("wire cut")
    wait_for(lambda: standby.status()["role_state"] == "active", 30, "a takeover without a witness")
    wait_for(lambda: standby.status()["pending"] >= 3, 30, "the standby caching on its own card")
    stack.start_gateway()
    wait_for(lambda: len(stack.readings("bed-1-b")) >= 3, 30, "the standby's cached rows")
    assert {r[8] for r in stack.readings("bed-1-b")} == {"standby"}
    assert {r[8] for r in stack.readings("bed-1-a")} == {"master"}
    # Reachable again, the gateway hears the master: the standby stands down by itself.
    wait_for(lambda: standby.status()["role_state"] == "watching", 30, "the standby standing down")


def test_f12_standby_missing_is_reported(stack):
    master, standby = start_pair(stack)
    standby.kill()
    wait_for(lambda: any(e[1] == "standby_missing" for e in events(stack, "bed-1-a")), 30, "standby_missing")
    assert master.status()["beats_failed"] >= 1
    standby.start()
    wait_for(lambda: any(e[1] == "standby_back" for e in events(stack, "bed-1-a")), 30, "standby_back")


def test_f11_heartbeat_handler_never_blocks_in_a_real_process(stack):
    master, standby = start_pair(stack)
    wait_for(lambda: (standby.status()["hb_handler_max_s"] or 0) > 0, 30, "beats handled")
    assert standby.status()["hb_handler_max_s"] < 0.01


def test_pair_on_a_slowed_machine_never_stores_a_second_twice(stack):
    """The pair beside busy-loop processes (one per core) and with its boards' processes stopped and continued in
    short bursts, through kills of the master and freezes of it that end after the standby took over (the
    master's loop wakes late, still active). Audited with the stack's slot audit: no second stored twice, none
    missing."""
    from tools.bench.pair import KILL, STOP, CpuHogs, Throttle, audit, cycles, start_pair as start_bench_pair
    master, standby = start_bench_pair(stack)
    with CpuHogs(), Throttle([master, standby]) as throttle:
        latencies = cycles(stack, master, standby, [STOP, KILL, STOP, KILL], throttle)
    checked, missing, doubled = audit(stack, master, standby)
    print("takeover ms: %s; slots %d, missing %d, doubled %d, bursts %d"
          % ([round(t) for t in latencies], checked, missing, doubled, throttle.bursts))
    detail = slot_detail(stack, "pair-")
    assert checked >= 30 and throttle.bursts > 0
    assert doubled == 0, "seconds stored twice: %s" % detail
    assert missing == 0, "seconds not stored: %s" % detail


def slot_detail(stack, prefix):
    """The seconds the slot audit flags, each with who stored its neighbours, and the pair's events."""
    rows = stack.query("SELECT date_saved, board, boot, seq FROM plants WHERE board LIKE %s AND time_quality='rtc' "
                       "ORDER BY date_saved, board", (prefix + "%",))
    by = {}
    for t, board, boot, seq in rows:
        by.setdefault(t, []).append("%s/%d/%d" % (board[-1], boot, seq))
    first, last = rows[0][0], rows[-1][0]
    second = datetime.timedelta(seconds=1)
    out, t = [], first
    while t < last:
        if len(by.get(t, ())) != 1:
            out.append(" ".join("%s=%s" % ((t + k * second).strftime("%S"), ",".join(by.get(t + k * second, ["-"])))
                                for k in (-2, -1, 0, 1, 2)))
        t += second
    ev = stack.query("SELECT board, event, board_time, detail FROM collector_events WHERE board LIKE %s ORDER BY id",
                     (prefix + "%",))
    return "%s; events %s" % (out, [(b[-1], e, str(bt)[-8:], d[:60]) for b, e, bt, d in ev])
