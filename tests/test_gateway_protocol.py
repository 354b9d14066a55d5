"""gateway.protocol.BoardProtocol driven line by line, without a port: the lines a board sends go in, and the
frames the gateway answers with are read back from a capturing transport (docs/PROTOCOL.md, "Flow")."""

import threading

import pytest

from gateway.clock import ClockKeeper
from gateway.db import Reading
from gateway.protocol import BoardProtocol
from gateway import frames
from soil import utc
from tests.fake_clock import T0, Clock, Timers

ISO0 = utc.iso(utc.from_epoch(int(T0)))


class Line:
    """The protocol's transport: every frame written, decoded."""

    def __init__(self):
        self.sent = []
        self.written = threading.Event()

    def write(self, data):
        assert data.endswith(b"\n")
        self.sent.append(frames.decode(data))
        self.written.set()

    def take(self):
        out, self.sent = self.sent, []
        return out


class Cfg:
    name = "port-1"
    url = "loop://"
    baudrate = 115200


class Rig:
    def __init__(self, writer_ok=True, witness=None):
        self.clock = Clock()
        self.timers = Timers()
        self.submitted = []
        self.statuses = []
        self.db_up = writer_ok
        self.line = Line()
        self.p = BoardProtocol(Cfg(), self.submit, lambda: self.db_up, self.status, wait_ms=1500, now=self.clock,
                               clock=ClockKeeper(2.0, now=self.clock, timer=self.timers), witness=witness)
        self.p.connection_made(self.line)

    def submit(self, protocol, epoch, n, reading):
        assert protocol is self.p
        self.submitted.append((epoch, n, reading))

    def status(self, protocol, kind, fields):
        assert protocol is self.p
        self.statuses.append((kind, fields))

    def feed(self, *lines):
        for line in lines:
            self.p.handle_line(line.rstrip(b"\n"))
        return self.line.take()

    def hello(self, n_next=1, boot=3, clock="ok", rtc=None, role="single", board="bed-1", uid="e660383b13572a2f"):
        return self.feed(frames.hello(board, boot, n_next, rtc or ISO0, clock, role, "1.0", uid))


def reading(n, seq=None, boot=3, time=ISO0, raw=512, flags="L"):
    return frames.encode(frames.READING, (n, boot, seq or n, time, raw, flags))


def status(dropped=0, clock="ok", rtc=ISO0):
    return frames.status(rtc, clock, 4, dropped, "ok", 2048)


def test_connection_made_asks_the_board_where_it_stands():
    rig = Rig()
    assert rig.line.take() == [(frames.QUERY, ())]
    assert rig.p.connected.is_set() and not rig.p.synced


def test_hello_is_confirmed_with_the_ack_below_n_next_and_starts_an_epoch():
    rig = Rig()
    rig.line.take()
    assert rig.hello(n_next=17) == [(frames.ACK, (16, 3))]
    p = rig.p
    assert (p.board_id, p.boot, p.role, p.synced, p.epoch, p.expected, p.committed) == ("bed-1", 3, "single", True,
                                                                                        1, 17, 16)
    assert rig.statuses == [("hello", {"role": "single", "fw": "1.0", "boot": 3, "clock": "ok",
                                       "board_time": ISO0, "uid": "e660383b13572a2f"})]
    assert rig.timers.pending == [] and p.stats.clock_sets == 0    # its clock is right: no T
    rig.hello(n_next=1)
    assert p.epoch == 2 and p.expected == 1 and p.committed == 0


def test_readings_in_order_are_submitted_and_acked_only_after_the_commit():
    rig = Rig()
    rig.line.take()
    rig.hello()
    assert rig.feed(reading(1), reading(2, flags="CQ"), reading(3, flags="LS")) == []
    assert rig.submitted == [
        (1, 1, Reading("bed-1", "single", 3, 1, utc.sql(utc.from_epoch(int(T0))), 512, "live", "rtc")),
        (1, 2, Reading("bed-1", "single", 3, 2, utc.sql(utc.from_epoch(int(T0))), 512, "replay",
                       "suspect")),
        (1, 3, Reading("bed-1", "standby", 3, 3, utc.sql(utc.from_epoch(int(T0))), 512, "live", "rtc")),
    ]
    rig.p.committed_through(1, 3)
    assert rig.line.take() == [(frames.ACK, (3, 3))]
    assert rig.p.committed == 3 and rig.p.stats.readings == 3


def test_an_ack_computed_for_an_earlier_epoch_never_reaches_the_board():
    rig = Rig()
    rig.hello()
    rig.feed(reading(1), reading(2))
    rig.hello(n_next=1, boot=4)                  # the board reset: its frame numbers start again
    rig.p.committed_through(1, 2)
    rig.p.rollback(1)
    assert rig.line.take() == []
    assert rig.p.committed == 0 and rig.p.expected == 1


def test_a_gap_asks_for_a_resend_once_per_second():
    rig = Rig()
    rig.hello()
    assert rig.feed(reading(1)) == []
    assert rig.feed(reading(3), reading(4)) == [(frames.RESEND, (2,))]
    rig.clock.t += 1.0
    assert rig.feed(reading(5)) == [(frames.RESEND, (2,))]
    assert rig.p.stats.gaps == 3
    assert rig.feed(reading(2), reading(3)) == []     # the resend arrives and is accepted in order
    assert [n for _, n, _ in rig.submitted] == [1, 2, 3]


def test_a_resent_committed_frame_is_acked_again():
    rig = Rig()
    rig.hello(n_next=10)
    assert rig.feed(reading(8)) == [(frames.ACK, (9, 3))]
    assert rig.feed(reading(9)) == []                 # rate limited: one A per second for duplicates
    assert rig.p.stats.duplicates == 2 and rig.submitted == []


def test_frames_before_a_hello_get_a_query_not_a_row():
    rig = Rig()
    rig.line.take()
    assert rig.feed(reading(1), status(), frames.event(3, 1, "takeover", "x", ISO0)) == [(frames.QUERY, ())]
    rig.clock.t += 1.0
    assert rig.feed(reading(2)) == [(frames.QUERY, ())]
    assert rig.submitted == [] and rig.statuses == []


def test_while_the_database_is_down_nothing_is_kept_and_the_board_is_told_to_wait():
    rig = Rig(writer_ok=False)
    rig.hello()
    assert rig.feed(reading(1), reading(2)) == [(frames.WAIT, (1500,))]
    assert rig.submitted == [] and rig.p.expected == 1
    rig.db_up = True
    rig.p.resume()
    assert rig.line.take() == [(frames.RESEND, (1,))]


def test_rollback_forgets_the_uncommitted_readings_and_says_wait():
    rig = Rig()
    rig.hello()
    rig.feed(reading(1), reading(2), reading(3))
    rig.p.committed_through(1, 1)
    rig.line.take()
    rig.p.rollback(1)
    assert rig.line.take() == [(frames.WAIT, (1500,))]
    assert rig.p.expected == 2
    assert rig.feed(reading(2)) == [] and rig.submitted[-1][1] == 2


def test_resume_asks_nothing_of_a_board_without_a_hello():
    rig = Rig()
    rig.line.take()
    rig.p.resume()
    assert rig.line.take() == []


def test_garbage_is_counted_never_answered():
    rig = Rig()
    rig.hello()
    good = reading(1)
    bad = good[:-4] + (b"0000" if good[-4:] != b"0000" else b"1111")   # the CRC no longer matches
    assert rig.feed(bad, b"noise without a dollar", b"\r", b"") == []
    assert rig.p.stats.bad_frames == 2 and rig.submitted == []
    rig.feed(frames.ack(3, 3))                         # a gateway frame coming back: not something a board sends
    assert rig.p.stats.bad_frames == 3


def test_data_received_splits_lines_across_chunks_and_drops_overlong_ones():
    rig = Rig()
    rig.hello()
    data = reading(1) + b"x" * (frames.MAX_FRAME + 10) + b"\n" + reading(2)
    for i in range(0, len(data), 7):
        rig.p.data_received(data[i:i + 7])
    assert [n for _, n, _ in rig.submitted] == [1, 2]
    assert rig.p.stats.overruns == 1


def test_status_and_events_go_to_the_status_sink():
    rig = Rig()
    rig.hello()
    rig.statuses.clear()
    rig.feed(status(dropped=7), frames.event(3, 2, "takeover", "master silent", ISO0))
    assert rig.statuses == [
        ("status", {"clock": "ok", "pending": 4, "dropped": 7, "card": "ok", "journal_bytes": 2048,
                    "board_time": ISO0}),
        ("event", {"event": "takeover", "detail": "master silent", "board_time": ISO0, "boot": 3, "event_no": 2}),
    ]
    rig.p.event_stored("bed-1", 3, 2)                 # the writer committed it: the board may forget it
    assert rig.line.take()[-1] == (frames.EVENT_ACK, (3, 2))
    rig.p.event_stored("bed-9", 3, 2)                 # a board this port no longer serves: not acknowledged here
    assert rig.line.take() == []


def test_gateway_numbering_wraps_at_2_31():
    rig = Rig()
    rig.hello(n_next=frames.MAX_N - 1)
    assert rig.feed(reading(frames.MAX_N - 1), reading(frames.MAX_N), reading(1), reading(2)) == []
    assert [n for _, n, _ in rig.submitted] == [frames.MAX_N - 1, frames.MAX_N, 1, 2]
    rig.p.committed_through(1, 1)
    assert rig.line.take() == [(frames.ACK, (1, 3))] and rig.p.committed == 1
    assert rig.feed(reading(frames.MAX_N)) == [(frames.ACK, (1, 3))]    # a resend from before the wrap: a duplicate
    assert rig.p.stats.duplicates == 1 and len(rig.submitted) == 4
    rig.p.rollback(1)
    assert rig.p.expected == 2


def test_a_reading_far_from_the_hellos_numbering_asks_for_a_fresh_hello():
    """A stray hello (n_next near 2**31 while the board numbers from 6): nothing is acked or kept from it."""
    rig = Rig()
    rig.hello(n_next=frames.MAX_N - 5000)
    rig.line.take()
    assert rig.feed(reading(6)) == [(frames.QUERY, ())]
    assert rig.submitted == [] and rig.p.stats.gaps == 1


@pytest.mark.parametrize("verdict", ["alive", "dead"])
def test_a_witness_query_is_answered_with_the_gateways_verdict(verdict):
    asked = []

    def witness(protocol, master_id):
        asked.append((protocol, master_id))
        return verdict, "2026-11-18T10:00:00Z"
    rig = Rig(witness=witness)
    rig.hello(role="standby", board="bed-1-b")
    rig.statuses.clear()
    assert rig.feed(frames.witness_query("bed-1-a")) == [
        (frames.WITNESS_ANSWER, ("bed-1-a", verdict, "2026-11-18T10:00:00Z"))]
    assert asked == [(rig.p, "bed-1-a")]
    refused = [("event", {"event": "witness_refused", "detail": "master bed-1-a still heard by the gateway",
                          "board_time": None})]
    assert rig.statuses == (refused if verdict == "alive" else [])


def test_a_witness_query_without_a_master_is_unknown():
    rig = Rig(witness=lambda p, m: pytest.fail("nothing to ask about"))
    rig.hello(role="standby")
    assert rig.feed(frames.witness_query("-")) == [(frames.WITNESS_ANSWER, ("-", "unknown", "-"))]


def test_a_clock_that_needs_setting_gets_one_t_frame_from_the_keeper():
    rig = Rig()
    rig.hello(clock="halted", rtc="2000-01-01T00:00:00Z")
    assert rig.p.stats.clock_sets == 1
    rig.feed(status(clock="halted", rtc="2000-01-01T00:00:03Z"))     # the T is not out yet: no second one
    assert rig.p.stats.clock_sets == 1
    (timer,) = rig.timers.pending
    timer.fire()
    assert rig.line.take() == [(frames.SETTIME, (utc.iso(utc.from_epoch(int(T0) + 1)),))]


def test_probe_answers_at_once_for_a_board_just_heard():
    rig = Rig()
    rig.hello()
    rig.line.take()
    assert rig.p.probe(timeout=0)
    assert rig.line.take() == []


def test_probe_of_a_lost_port_does_not_wait():
    rig = Rig()
    rig.hello()
    rig.clock.t += 5
    rig.p.connection_lost(OSError("unplugged"))
    assert not rig.p.probe(timeout=30)
    assert not rig.p.synced and rig.line.take() == []


def test_probe_asks_a_quiet_board_and_waits_for_any_frame():
    rig = Rig()
    rig.hello()
    rig.clock.t += 5
    rig.line.take()
    rig.line.written.clear()
    answer = []
    asker = threading.Thread(target=lambda: answer.append(rig.p.probe(timeout=30)))
    asker.start()
    assert rig.line.written.wait(10)
    assert rig.line.take() == [(frames.QUERY, ())]
    rig.feed(status())
    asker.join(10)
    assert answer == [True]
    rig.clock.t += 5
    assert rig.p.probe(timeout=0) is False            # a quiet board that does not answer at all


def test_after_a_lost_connection_nothing_is_sent_until_the_port_is_back():
    rig = Rig()
    rig.hello()
    rig.feed(reading(1))
    rig.line.take()
    rig.p.connection_lost(OSError("gone"))
    rig.p.committed_through(1, 1)                     # the commit still counts; the ack cannot go out
    assert rig.p.committed == 1 and rig.line.take() == []
    line = Line()
    rig.p.connection_made(line)
    assert line.take() == [(frames.QUERY, ())]
    rig.line = line
    assert rig.feed(reading(2)) == [(frames.QUERY, ())]   # not synced until the next hello: ask for it
    assert rig.p.stats.readings == 1 and len(rig.submitted) == 1


def test_a_hello_claiming_frames_this_gateway_never_acked_is_not_confirmed():
    """Seen: while the database was down, a stray hello made the gateway confirm frames it never stored, and the
    board deleted them. In one boot, on one connection, only this gateway acks: a hello of the same board and boot
    whose n_next is past what was committed is not the board's. It is refused; the board is asked again."""
    rig = Rig()
    rig.hello(n_next=1)
    rig.feed(*[reading(n) for n in range(1, 21)])
    rig.p.committed_through(1, 10)
    rig.line.take()
    assert rig.hello(n_next=21) == [(frames.QUERY, ())]          # no A,20: frames 11..20 are not committed
    assert rig.p.stats.stray_hellos == 1 and rig.p.committed == 10 and rig.p.epoch == 1
    assert rig.hello(n_next=11) == [(frames.ACK, (10, 3))]       # the board's own hello is confirmed
    assert rig.hello(n_next=30, boot=4) == [(frames.ACK, (29, 4))]   # a new boot numbers afresh
    rig.p.connection_lost(None)
    rig.p.connection_made(rig.line)
    rig.line.take()
    # After the port was away the board may have been served elsewhere: its claim is taken again.
    assert rig.hello(n_next=90, boot=4) == [(frames.ACK, (89, 4))]


def test_a_stray_hello_behind_the_board_does_not_lock_out_the_boards_own():
    """A hello claiming less than was acked (n_next near 2**31 while the board is at 6) is harmless to accept (its
    ack acknowledges nothing the board has) but must not lower what this gateway knows it acked."""
    rig = Rig()
    rig.hello(n_next=1)
    rig.feed(*[reading(n) for n in range(1, 6)])
    rig.p.committed_through(1, 5)
    rig.hello(n_next=frames.MAX_N - 5)
    assert rig.hello(n_next=6) == [(frames.ACK, (5, 3))]
    assert rig.p.stats.stray_hellos == 0 and rig.p.expected == 6
