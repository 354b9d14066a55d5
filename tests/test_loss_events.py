"""Issue 12: every reading a board lost is recorded once in board_events, for good.

- `dropped`: the S frame's count is the board's lifetime count (soil.bootcount.DropCounter); the gateway compares it
  with what the database holds for the board (boards.dropped), so each increase is one `dropped` event however
  many port sessions, gateway restarts and board reboots lie between, and a count that went backwards is one
  `dropped_reset` event, never a negative loss (gateway.db.ReadingStore.record_dropped);
- `gap`: readings of a boot that never arrived and were never counted as dropped, recorded once, and only when
  nothing of that boot can still arrive: a status of a later boot with pending 0 and a readable card
  (ReadingStore.close_boots).

The first tests drive the gateway's real protocol (gateway.protocol.BoardProtocol, frames in, no port) into the real
writer (gateway.service.Writer) and a private MariaDB; the last ones are virtual boards (tools/sim/vboard) with card
faults through sd/faults.json, a private server and the gateway process (tools.demo.stack).
"""

import pytest

from gateway import frames
from gateway.db import ReadingStore
from gateway.protocol import BoardProtocol
from gateway.service import Writer
from tests.test_db_store import admin_query, wait_until
from tests.test_gateway_protocol import ISO0, Cfg, Line

BOARD = "loss-1"
UID = "e660383b13572a2f"


class Session:
    """One port session: the gateway's protocol for the board, its frames going to `writer`."""

    def __init__(self, writer, db_up=lambda: True):
        self.line = Line()
        self.p = BoardProtocol(Cfg(), writer.submit, lambda: writer.ok() and db_up(), writer.submit_status)
        self.p.connection_made(self.line)

    def feed(self, *lines):
        for line in lines:
            self.p.handle_line(line.rstrip(b"\n"))

    def hello(self, boot):
        self.feed(frames.hello(BOARD, boot, 1, ISO0, "ok", "single", "1.0", UID))

    def readings(self, boot, seqs, first_n=1):
        self.feed(*[frames.encode(frames.READING, (first_n + i, boot, s, ISO0, 500, "L")) for i, s in enumerate(seqs)])

    def status(self, dropped=0, pending=0, card="ok"):
        self.feed(frames.status(ISO0, "ok", pending, dropped, card, 0))


@pytest.fixture
def writer(clean_db):
    w = Writer(ReadingStore(clean_db.gateway_cfg))
    w.start()
    try:
        yield w
    finally:
        w.stop()
        w.store.close()


def events(srv, kind):
    return [r[0] for r in admin_query(srv, "SELECT detail FROM board_events WHERE board = %s AND event = %s "
                                           "ORDER BY id", (BOARD, kind))]


def board_dropped(srv):
    rows = admin_query(srv, "SELECT dropped FROM boards WHERE board = %s", (BOARD,))
    return rows[0][0] if rows else None


def stored(srv, boot):
    return admin_query(srv, "SELECT COUNT(*) FROM plants WHERE board = %s AND boot = %s", (BOARD, boot))[0][0]


def test_every_dropped_increase_is_one_event_across_sessions_restarts_and_reboots(writer, clean_db):
    s = Session(writer)
    s.hello(3)
    s.status(dropped=64)
    s.status(dropped=64)
    wait_until(lambda: board_dropped(clean_db) == 64, what="boards.dropped 64")
    # A new port session (the port was reopened) and a reboot: the board still says 64, nothing new is lost.
    s = Session(writer)
    s.hello(4)
    s.status(dropped=64)
    # A second loss after the reboot: one event of the 36 lost.
    s.status(dropped=100)
    wait_until(lambda: board_dropped(clean_db) == 100, what="boards.dropped 100")
    # A gateway restart: a new writer and store; the database, not the process, says what is recorded.
    writer.stop()
    w2 = Writer(ReadingStore(clean_db.gateway_cfg))
    w2.start()
    try:
        s = Session(w2)
        s.hello(4)
        s.status(dropped=100)
        s.status(dropped=0)          # a new card and a dead RTC battery: the board's count went back
        s.status(dropped=0)
        s.status(dropped=5)          # and it counts from 0 again
        wait_until(lambda: board_dropped(clean_db) == 5, what="boards.dropped 5")
        got = events(clean_db, "dropped")
        assert len(got) == 3, got
        assert got[0].startswith("64 readings lost") and "64 in its lifetime, was 0" in got[0], got
        assert got[1].startswith("36 readings lost") and "100 in its lifetime, was 64" in got[1], got
        assert got[2].startswith("5 readings lost"), got
        reset = events(clean_db, "dropped_reset")
        assert len(reset) == 1 and "from 100 to 0" in reset[0], reset
    finally:
        w2.stop()
        w2.store.close()


def test_a_gap_is_recorded_once_when_nothing_of_its_boot_can_still_arrive(writer, clean_db):
    s = Session(writer)
    s.hello(3)
    s.readings(3, list(range(1, 61)) + list(range(101, 121)))      # seq 61-100 never arrive
    s.status(dropped=15, pending=0)                                 # the board counted 15 of them as dropped
    wait_until(lambda: stored(clean_db, 3) == 80 and board_dropped(clean_db) == 15, what="boot 3 stored")
    s.hello(4)                               # a new boot: its card may still replay boot 3's readings
    s.status(dropped=15, pending=30)         # it still holds readings: no verdict yet
    s.status(dropped=15, pending=0, card="absent")   # a pulled card's readings are not in `pending`
    s.readings(4, [1, 2])
    wait_until(lambda: stored(clean_db, 4) == 2, what="boot 4 stored")
    assert events(clean_db, "gap") == []
    s.status(dropped=15, pending=0)          # everything delivered: boot 3's missing readings can no longer come
    s.status(dropped=15, pending=0)
    gaps = wait_until(lambda: events(clean_db, "gap"), what="a gap event")
    s.hello(5)
    s.status(dropped=15, pending=0)          # boot 4 has no gap: nothing new
    s.readings(5, [1])
    wait_until(lambda: stored(clean_db, 5) == 1, what="boot 5 stored")
    s.status(dropped=15, pending=0)
    assert wait_until(lambda: admin_query(clean_db, "SELECT gaps_checked_boot FROM boards WHERE board = %s",
                                          (BOARD,))[0][0] == 4, what="boot 4 checked")
    gaps = events(clean_db, "gap")
    assert gaps == ["boot 3: 25 readings never arrived and were not counted as dropped "
                    "(seq 61-100; 40 missing, 15 of them counted as dropped)"], gaps


def test_a_gap_names_readings_seen_while_the_database_was_away(writer, clean_db):
    up = [True]
    s = Session(writer, db_up=lambda: up[0])
    s.hello(7)
    s.readings(7, range(1, 11))
    wait_until(lambda: stored(clean_db, 7) == 10, what="boot 7 stored")
    up[0] = False                            # seen on the line, answered W, never stored: then a power cut
    s.readings(7, range(11, 16), first_n=11)
    up[0] = True
    s.hello(8)
    s.status(pending=0)
    gaps = wait_until(lambda: events(clean_db, "gap"), what="a gap event")
    assert gaps == ["boot 7: 5 readings never arrived and were not counted as dropped "
                    "(seq 11-15; 5 missing, 0 of them counted as dropped)"], gaps
