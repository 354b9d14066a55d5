"""End to end on real parts: a private MariaDB server, virtual boards on real pseudo-terminals, the gateway as its
own process. Each test is the book's failure story told again, and checks the database afterwards.

Waits are on events (rows in the database, a board's counters), each bounded; no test asserts a timing.
"""

import datetime
import os

import pytest

from gateway import frames
from tools.demo.stack import wait_for

pytestmark = pytest.mark.integration

FAST = {"interval_ms": 200, "status_interval_ms": 1000, "seed": 1}




def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def _count(stack, board=None):
    return len(stack.readings(board))


def assert_complete(stack, board_proc, allow_missing=()):
    """Every reading the board sampled is in the database exactly once, identity by identity."""
    rows = stack.readings(board_proc.board_id)
    ids = [(r[1], r[2]) for r in rows]
    assert len(ids) == len(set(ids)), "a reading was stored twice"
    by_boot = {}
    for boot, seq in ids:
        by_boot.setdefault(boot, set()).add(seq)
    for boot, seqs in by_boot.items():
        expected = set(range(1, max(seqs) + 1)) - {s for b, s in allow_missing if b == boot}
        assert expected <= seqs, "boot %d is missing seq %s" % (boot, sorted(expected - seqs)[:10])
    return rows


def drained(board):
    st = board.status()
    return st["pending"] == 0 and st["inflight"] == 0


def test_live_readings_arrive_with_sample_time_and_identity(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 15, 30, "15 live readings")
    rows = assert_complete(stack, b)
    assert {r[5] for r in rows[2:]} == {"live"}
    for r in rows:
        # Sample time from the board's RTC (UTC), received a moment later; never the other way round.
        assert r[3] <= r[7].replace(microsecond=0) + datetime.timedelta(seconds=1)
    # A new board's clock is halted until the gateway sets it (at hello): only readings before that are suspect.
    quality = [r[6] for r in rows]
    first_rtc = quality.index("rtc")
    assert set(quality[first_rtc:]) == {"rtc"} and set(quality[:first_rtc]) <= {"suspect"}


def test_book_listing_8_8_outage_is_replayed_with_sample_times(stack):
    """Listing 8-8: the database goes away, readings are cached, and come back with their own times."""
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 5, 30, "live readings before the outage")
    stack.db.stop()
    down_at = _utcnow() + datetime.timedelta(seconds=1)
    wait_for(lambda: _utcnow() >= down_at + datetime.timedelta(seconds=3) and b.status()["pending"] >= 10, 30,
             "readings cached during the outage")
    up_at = _utcnow() - datetime.timedelta(seconds=1)
    stack.db.start()
    wait_for(lambda: drained(b), 60, "the cache to drain")
    rows = assert_complete(stack, b)
    during = [r for r in rows if down_at <= r[3] <= up_at]
    assert len(during) >= 3
    for r in during:
        assert r[5] == "replay"
        assert r[7] >= up_at - datetime.timedelta(seconds=1), "received after the database came back"
        assert r[3] < r[7] - datetime.timedelta(seconds=1), "stored with its sample time, not the replay time"
    assert b.status()["dropped"] == 0


def test_f2_board_reset_during_an_outage_loses_nothing(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 3, 30, "first readings")
    stack.db.stop()
    wait_for(lambda: b.status()["pending"] >= 8, 30, "cached readings")
    before = b.status()
    b.kill()                                  # power cut: no clean shutdown
    b.start()
    assert b.status()["boot"] == before["boot"] + 1
    assert b.status()["pending"] >= before["pending"], "the cache survived the reset"
    wait_for(lambda: b.status()["seq"] >= 5, 30, "samples in the new boot")
    stack.db.start()
    wait_for(lambda: drained(b), 60, "the cache to drain after the outage")
    rows = assert_complete(stack, b)
    boots = {r[1] for r in rows}
    assert {before["boot"], before["boot"] + 1} <= boots
    last_old = max(r[2] for r in rows if r[1] == before["boot"])
    assert last_old >= before["seq"], "every reading of the old boot is stored"


def test_f1_f9_database_killed_mid_replay_loses_and_duplicates_nothing(stack):
    b = stack.start_board("bed-1", interval_ms=20, status_interval_ms=1000, seed=2)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 5, 30, "first readings")
    stack.db.stop()
    wait_for(lambda: b.status()["pending"] >= 600, 60, "a large cache")
    stack.db.start()
    start = _count(stack, "bed-1")
    wait_for(lambda: _count(stack, "bed-1") >= start + 50, 60, "the replay to start")
    stack.db.kill()                           # crash mid-replay: the transaction in flight is lost
    stack.db.start()
    wait_for(lambda: drained(b), 90, "the replay to finish")
    assert_complete(stack, b)


def test_f9_gateway_killed_after_commit_resends_are_stored_once(stack):
    b = stack.start_board("bed-1", interval_ms=50, status_interval_ms=1000, seed=3)
    gw = stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 40, 30, "readings")
    gw.proc.kill()                            # acks in flight are lost; the board will resend those readings
    gw.proc.wait(10)
    wait_for(lambda: b.status()["pending"] >= 20, 30, "readings waiting for a gateway")
    stack.start_gateway()
    wait_for(lambda: drained(b), 60, "the backlog to drain")
    assert_complete(stack, b)


def test_garbage_on_the_line_is_counted_and_never_stored(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 3, 30, "first readings")
    for noise in (b"$R,1,1,1,2026-01-01T00:00:00Z,1,L*00000000\n", b"\x07\x1b[2J noise $$$ ***\n",
                  b"$R,99,9,9,x\r\n", bytes(range(256)) + b"\n", b"x" * 500 + b"\n"):
        b.control("noise " + noise.hex())
    wait_for(lambda: (stack.gateway.status() or {}).get("boards", [{}])[0].get("bad_frames", 0) >= 1, 30,
             "the gateway to count bad frames")
    n = _count(stack, "bed-1")
    wait_for(lambda: _count(stack, "bed-1") >= n + 5, 30, "readings after the noise")
    rows = assert_complete(stack, b)
    assert not any(r[4] == 1 and r[1] == 1 and r[2] == 1 and r[3].year == 2026 and r[3].month == 1 for r in rows)


def test_halted_clock_flags_rows_and_the_gateway_sets_it(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: b.status()["clock"] == "ok", 30, "the gateway to set the new board's clock")
    b.control("rtc halt")                     # the battery is failing: the oscillator stops
    wait_for(lambda: any(r[6] == "suspect" for r in stack.readings("bed-1")[5:]), 30, "flagged rows")
    wait_for(lambda: b.status()["clock"] == "ok", 30, "the gateway to restart the clock")
    n = _count(stack, "bed-1")
    wait_for(lambda: _count(stack, "bed-1") >= n + 5, 30, "readings after the fix")
    rows = assert_complete(stack, b)
    assert all(r[6] == "rtc" for r in rows[-3:])


def test_f3_board_reset_does_not_reset_the_clock(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: b.status()["clock"] == "ok", 30, "clock set by the gateway")
    stack.gateway.stop()                      # nobody to set the clock after the reset
    b.kill()
    b.start()
    assert b.status()["clock"] == "ok", "the RTC kept running on its battery across the reset"


def test_torn_journal_record_after_power_cut_mid_write(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 3, 30, "first readings")
    stack.db.stop()
    wait_for(lambda: b.status()["pending"] >= 5, 30, "cached readings")
    b.set_card_faults(power_cut_after={"nbytes": 17, "tail": "garbage"})
    b.proc.wait(30)                           # the board dies mid-write
    assert b.proc.returncode == 3
    b.start()
    stack.db.start()
    wait_for(lambda: drained(b), 60, "the cache to drain")
    rows = stack.readings("bed-1")
    boots = sorted({r[1] for r in rows})
    torn_boot = boots[-2]
    last_seq = max(r[2] for r in rows if r[1] == torn_boot)
    # The reading being written when the power went is the only one allowed to be missing.
    assert_complete(stack, b, allow_missing={(torn_boot, last_seq + 1)})


def test_f6_full_card_drops_by_policy_counts_and_reports(stack):
    b = stack.start_board("bed-1", interval_ms=20, status_interval_ms=500, journal_max=8192, seed=4)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 3, 30, "first readings")
    stack.db.stop()
    wait_for(lambda: b.status()["dropped"] > 0, 60, "the bounded journal to drop by policy")
    stack.db.start()
    wait_for(lambda: stack.query("SELECT 1 FROM boards WHERE board='bed-1' AND dropped > 0"), 60,
             "the dropped count reported to the database")
    events = stack.query("SELECT event, detail FROM board_events WHERE board='bed-1' AND event='dropped'")
    assert events, "a board event records the loss"


def test_f13_no_credentials_reach_the_board(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 5, 30, "readings")
    received = bytes.fromhex(b.control("rxlog"))
    assert received, "the board heard from the gateway"
    assert stack.gateway_password.encode() not in received
    assert b"soil_gateway" not in received
    for line in received.split(b"\n"):
        if line:
            kind, _ = frames.decode(line)
            assert kind in "ANWTQ"
