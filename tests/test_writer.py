"""The gateway's writer against a real server: acknowledgements only after COMMIT, per board and epoch, and a
reading that can never be a row does not stall the ones behind it."""

import threading

import pytest

from gateway.db import Reading, ReadingStore
from gateway.service import Writer

pytestmark = pytest.mark.integration


class Board:
    """What the writer calls back on a session: the acks and rollbacks it would send to the board."""

    def __init__(self, name):
        self.board_id = name
        self.cfg = type("Cfg", (), {"name": name})()
        self.acks = []
        self.rollbacks = []
        self.done = threading.Event()

    def committed_through(self, epoch, n):
        self.acks.append((epoch, n))
        self.done.set()

    def rollback(self, epoch):
        self.rollbacks.append(epoch)
        self.done.set()

    def seen_seqs(self):
        return {}


def reading(board, seq, **kw):
    fields = dict(board=board, collector="single", boot=1, seq=seq, sample_time="2026-11-21 10:00:%02d" % seq,
                  raw=30000 + seq, source="live", time_quality="rtc")
    fields.update(kw)
    return Reading(**fields)


def run_batch(store, items):
    w = Writer(store, linger_s=0.0)
    for session, epoch, n, r in items:
        w.submit(session, epoch, n, r)
    w.start()
    for session in {it[0] for it in items}:
        assert session.done.wait(10)
    w.stop()
    return w


def test_acks_after_commit_per_board_and_epoch(clean_db):
    store = ReadingStore(clean_db.gateway_cfg)
    a, b = Board("w-a"), Board("w-b")
    run_batch(store, [(a, 1, 1, reading("w-a", 1)), (a, 1, 2, reading("w-a", 2)), (b, 4, 7, reading("w-b", 1))])
    assert a.acks == [(1, 2)] and b.acks == [(4, 7)]
    store = ReadingStore(clean_db.gateway_cfg)
    assert store.last_sample_time("w-a") == "2026-11-21 10:00:02"
    store.close()


def test_an_invalid_reading_is_skipped_and_reported_not_retried_forever(clean_db):
    store = ReadingStore(clean_db.gateway_cfg)
    a = Board("w-c")
    w = run_batch(store, [(a, 1, 1, reading("w-c", 1)), (a, 1, 2, reading("w-c", 2, collector="x" * 40)),
                          (a, 1, 3, reading("w-c", 3))])
    assert a.acks == [(1, 3)] and a.rollbacks == []
    assert w.ok()
    check = ReadingStore(clean_db.gateway_cfg)
    try:
        rows = check.run_statement(lambda cur: (cur.execute(
            "SELECT seq FROM plants WHERE board='w-c' ORDER BY seq"), cur.fetchall())[1])
        events = check.run_statement(lambda cur: (cur.execute(
            "SELECT event FROM board_events WHERE board='w-c'"), cur.fetchall())[1])
    finally:
        check.close()
    assert [r[0] for r in rows] == [1, 3]
    assert ("invalid_reading",) in events


def test_f6_a_dropped_count_is_recorded_once_per_increase(clean_db):
    """Every status frame repeats the board's lifetime `dropped` count; the writer records a `dropped` event with
    the number lost when it grew past what the database holds, and one `dropped_reset` when it went back."""
    store = ReadingStore(clean_db.gateway_cfg)
    a = Board("w-d")
    a.role, a.boot = "single", 1
    w = Writer(store, linger_s=0.0)
    for dropped in (0, 3, 3, 2, 5, 5):
        w.submit_status(a, "status", {"clock": "ok", "pending": 0, "dropped": dropped, "card": "full",
                                      "journal_bytes": 8192, "board_time": "2026-11-21T10:00:00Z"})
    w.submit(a, 1, 1, reading("w-d", 1))
    w.start()
    assert a.done.wait(10)
    # The statuses share the reading's batch and are written after its ack; the next batch waits for them.
    a.done.clear()
    w.submit(a, 1, 2, reading("w-d", 2))
    assert a.done.wait(10)
    w.stop()
    check = ReadingStore(clean_db.gateway_cfg)
    try:
        events = check.run_statement(lambda cur: (cur.execute(
            "SELECT detail FROM board_events WHERE board='w-d' AND event='dropped' ORDER BY id"), cur.fetchall())[1])
        stored = check.run_statement(lambda cur: (cur.execute(
            "SELECT dropped FROM boards WHERE board='w-d'"), cur.fetchall())[1])
    finally:
        check.close()
    assert [e[0].split(":")[0] for e in events] == [
        "3 readings lost by the board (a full or failed card, RAM that overflowed)",
        "3 readings lost by the board (a full or failed card, RAM that overflowed)"]
    assert "5 in its lifetime, was 2" in events[1][0]
    assert stored == ((5,),)
