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
        rows = check._run(lambda conn, cur: (cur.execute(
            "SELECT seq FROM plants WHERE board='w-c' ORDER BY seq"), cur.fetchall())[1])
        events = check._run(lambda conn, cur: (cur.execute(
            "SELECT event FROM board_events WHERE board='w-c'"), cur.fetchall())[1])
    finally:
        check.close()
    assert [r[0] for r in rows] == [1, 3]
    assert ("invalid_reading",) in events
