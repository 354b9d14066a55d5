"""The downlink and the frame numbers (issue 11): what a board accepts from the gateway, the boot in every ack, frame
numbers that wrap at 2**31, and events that are kept until the gateway has committed them.

The board's half runs as a script under the real MicroPython interpreter and under CPython (tests/mpy.py), on the
chip models (tests/portable/boardkit.py: DS1307 and SD card at byte level). The gateway's half runs end to end:
virtual boards on real pseudo-terminals, the gateway as its own process, a private MariaDB server (tools/demo/stack).
"""

import os
import re

import pytest

from gateway import frames
from tests.mpy import CHIPS, require_micropython, run_cpython, run_micropython
from tools.demo.stack import wait_for

MAX_N = frames.MAX_N

# Every board script starts with this: a collector on a DS1307 model and an SD-card model, a recording link.
PRELUDE = '''
from boardkit import ChipI2C, FixedADC, RecordingLink, Ticks, gateway_frame, of_kind, ticks_diff
from portable import Checks
from test_journal_portable import CardFolders, reboot

from chips.ds1307 import DS1307 as Chip
from soil import codec
from soil.collector import Collector
from soil.ds1307 import DS1307
from soil.journal import Journal

checks = Checks(NAME)
ticks = Ticks(0)
i2c = ChipI2C()
i2c.targets[0x68] = Chip(ticks.clock_ms)
folders = CardFolders("dl")
card = folders.card()
link = RecordingLink()
rtc = DS1307(i2c)


def board(boot, first_n=1, window=8, rto=60000):
    """A collector of boot `boot` that numbers its first frame `first_n`, started (its hello is on the link), not
    sampling until `sample` says so; no retransmit timeout within a script unless `rto` asks for one."""
    journal = Journal(card, max_bytes=16384, segment_bytes=512)
    c = Collector("bench-1", boot, rtc, FixedADC((512, 600, 700)), journal, link, ticks.ticks_ms, ticks_diff,
                  interval_ms=1000, window=window, status_interval_ms=600000, uid="e660383b13572a2f")
    if first_n != 1:
        c.uplink.number_from(first_n)
    c.uplink.rto = c.uplink.rto_ms = rto
    c.start()
    c.sampling = False
    return c, journal


def run(c, ms, step=100):
    while ms > 0:
        ticks.advance(step)
        c.step()
        ms -= step


def sample(c, k):
    """Exactly k more readings (a reading a second), then no more sampling."""
    c.sampling = True
    want = c.seq + k
    while c.seq < want:
        run(c, 100)
    c.sampling = False
    run(c, 100)


def ack(n, boot):
    return gateway_frame(codec.ACK, n, boot)


def numbers(frames_out):
    return [f[0] for f in of_kind(frames_out, "R")]
'''


def run_board_script(name, body):
    """Run PRELUDE + body under MicroPython and CPython; both must finish with `OK <name> <n> checks`."""
    script = "NAME = %r\n" % name + PRELUDE + body + "\nfolders.remove()\nchecks.done()\n"
    libs = ("firmware/lib", "tests/portable")
    results = [("CPython", run_cpython(script, libs=libs, timeout=120, packages=CHIPS))]
    require_micropython()
    results.append(("MicroPython", run_micropython(script, libs=libs, timeout=120, packages=CHIPS)))
    for interpreter, proc in results:
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert proc.returncode == 0 and lines and re.fullmatch(r"OK %s \d+ checks" % name, lines[-1]), (
            "%s under %s: exit %s\n--- stdout\n%s\n--- stderr\n%s"
            % (name, interpreter, proc.returncode, proc.stdout, proc.stderr))


# --- item 1: a board accepts an acknowledgement only for frames it has sent -------------------------------------

def test_board_accepts_acks_only_for_frames_it_sent():
    run_board_script("acks_only_for_frames_sent", '''
c, journal = board(5)
link.inbox = ack(0, 5)                      # the gateway confirms the hello
run(c, 100)
checks.check(c.uplink.synced, "hello confirmed")
sample(c, 5)
checks.equal(numbers(link.take()), [1, 2, 3, 4, 5], "five frames in flight")
checks.equal(journal.pending, 5, "five readings on the card")

# The database is down; an A from somewhere acknowledges frames this board never sent (the seen case: 7 readings
# dropped). Nothing may leave the card.
link.inbox = ack(12, 5)
run(c, 100)
checks.equal(journal.pending, 5, "an ack beyond the highest frame sent deletes nothing")
checks.equal(c.uplink.acks_beyond_sent, 1, "and is counted")
checks.equal(len(c.uplink.inflight), 5, "the frames stay in flight")
link.inbox = ack(1000000, 5)
run(c, 100)
checks.equal((journal.pending, c.uplink.acks_beyond_sent), (5, 2), "nor one far beyond")
link.inbox = ack(MAX, 5)
run(c, 100)
checks.equal(journal.pending, 5, "nor an ack of 2**31-1 (on the circle of numbers, the point before frame 1)")

# The gateway's numbering is not ours: at the retransmit timeout the board says hello again, with the oldest frame
# it still holds, and resends.
c.uplink.rto = c.uplink.rto_ms = 3000
out = []
waited = 0
while waited < 4000 and not of_kind(out, "H"):
    run(c, 100)
    waited += 100
    out += link.take()
checks.equal([h[3] for h in of_kind(out, "H")], [1], "a hello at the timeout: n_next is still 1")
checks.equal(sorted(set(numbers(out))), [1, 2, 3, 4, 5], "and the five frames go again")

# A real ack of what was sent works as ever.
link.inbox = ack(3, 5)
run(c, 100)
checks.equal(journal.pending, 2, "A,3 acknowledges three")
link.inbox = ack(5, 5)
run(c, 100)
checks.equal(journal.pending, 0, "A,5 the rest")

# An N for a frame the board never sent: the gateway holds another numbering; the board answers with a hello.
sample(c, 1)
link.take()
link.inbox = gateway_frame(codec.RESEND, 400)
run(c, 100)
out = link.take()
checks.equal([h[3] for h in of_kind(out, "H")], [6], "N beyond what was sent is answered with a hello")
'''.replace("MAX", str(MAX_N)))


# --- item 2: the boot number in the ack, so a stale A,0 cannot confirm a new boot --------------------------------

def test_stale_ack_of_the_previous_boot_does_not_confirm_the_hello():
    run_board_script("stale_ack_previous_boot", '''
c, journal = board(1)
link.inbox = ack(0, 1)
run(c, 100)
sample(c, 3)
link.take()
checks.equal(journal.pending, 3, "three readings of boot 1 unacknowledged at the reset")

card = reboot(card)                         # the board resets: its card keeps the three
c, journal = board(2)
checks.equal(of_kind(link.take(), "H")[0][2:4], (2, 1), "boot 2 says hello with n_next 1")
# The gateway still answers in boot 1's numbering (an A,0 it sent to boot 1's hello, late on the line, and a
# cumulative ack of boot 1's frames): neither may confirm boot 2's hello nor delete a reading.
link.inbox = ack(0, 1) + ack(3, 1)
run(c, 100)
checks.check(not c.uplink.synced, "A,0 of boot 1 does not confirm boot 2's hello")
checks.equal(c.uplink.ignored_acks, 2, "both acks of boot 1 are ignored and counted")
sample(c, 1)
out = link.take()
checks.equal(numbers(out), [1, 2, 3, 4], "the cached three and the new reading are sent, numbered from 1")
link.inbox = ack(4, 1)
run(c, 100)
checks.equal(journal.pending, 4, "an ack of boot 1's frame 4 deletes none of boot 2's frames")
link.inbox = ack(0, 2)
run(c, 100)
checks.check(c.uplink.synced, "A,0,2 confirms boot 2's hello")
link.inbox = ack(4, 2)
run(c, 100)
checks.equal(journal.pending, 0, "and boot 2's acks count")
''')


# --- item 3: frame numbers wrap at 2**31 --------------------------------------------------------------------------

def test_frame_numbers_wrap_at_2_31_on_the_board():
    run_board_script("frame_numbers_wrap", '''
checks.equal(codec.n_after(MAX), 1, "MAX_N is followed by 1")
checks.equal((codec.n_diff(1, MAX), codec.n_diff(MAX, 1), codec.n_diff(0, MAX)), (1, -1, 0),
             "distances across the wrap; 0 and MAX_N are one point")
checks.equal((codec.n_diff(5, 3), codec.n_diff(3, 5)), (2, -2), "and away from it")

c, journal = board(9, first_n=MAX - 2)
checks.equal(of_kind(link.take(), "H")[0][3], MAX - 2, "the hello announces the first number")
link.inbox = ack(MAX - 3, 9)
run(c, 100)
checks.check(c.uplink.synced, "A,n_next-1 confirms it")
sample(c, 6)
checks.equal(numbers(link.take()), [MAX - 2, MAX - 1, MAX, 1, 2, 3], "numbered across the wrap")
link.inbox = ack(MAX - 1, 9)
run(c, 100)
checks.equal(journal.pending, 4, "an ack before the wrap acknowledges only its frames")
link.inbox = ack(1, 9)
run(c, 100)
checks.equal(journal.pending, 2, "A,1 acknowledges MAX_N and 1")
link.inbox = ack(MAX, 9)
run(c, 100)
checks.equal(journal.pending, 2, "a stale ack from before the wrap changes nothing")
checks.equal(c.uplink.acks_beyond_sent, 0, "and is not taken for one beyond what was sent")
link.inbox = ack(4, 9)
run(c, 100)
checks.equal((journal.pending, c.uplink.acks_beyond_sent), (2, 1), "A,4 is beyond what was sent")
link.take()
link.inbox = gateway_frame(codec.RESEND, 3)
run(c, 100)
checks.equal(numbers(link.take()), [3], "N,3 resends only 3")
link.inbox = ack(3, 9)
run(c, 100)
checks.equal((journal.pending, len(c.uplink.inflight)), (0, 0), "everything acknowledged once")
'''.replace("MAX", str(MAX_N)))


# --- item 4: events are kept and repeated until the gateway committed them ---------------------------------------

def test_events_are_kept_and_repeated_until_acknowledged():
    run_board_script("events_kept_until_acknowledged", '''
c, journal = board(3, rto=3000)
link.take()
c.send_event(codec.STANDBY_MISSING, "no ACK from the standby at 0x42")   # no gateway listens yet
e = of_kind(link.take(), "E")
checks.equal([f[:3] for f in e], [(3, 1, "standby_missing")], "event 1 of boot 3 goes out at once")
run(c, 3500)
e = of_kind(link.take(), "E")
checks.equal([f[:3] for f in e], [(3, 1, "standby_missing")], "unacknowledged, it is sent again 3 s later")
# The gateway opens the port and confirms a hello: the event goes again at once.
link.inbox = ack(0, 3)
run(c, 100)
e = of_kind(link.take(), "E")
checks.equal([f[:2] for f in e], [(3, 1)], "resent when the hello is confirmed")
link.inbox = gateway_frame(codec.EVENT_ACK, 2, 1)
run(c, 100)
checks.equal(len(c.uplink.events), 1, "a K of another boot is not ours")
link.inbox = gateway_frame(codec.EVENT_ACK, 3, 1)
run(c, 100)
checks.equal(len(c.uplink.events), 0, "K,3,1: committed, forgotten")
link.take()
run(c, 7000)
checks.equal(of_kind(link.take(), "E"), [], "and never sent again")
c.send_event(codec.TAKEOVER, "x")
checks.equal([f[:3] for f in of_kind(link.take(), "E")], [(3, 2, "takeover")], "the next event is number 2")
for i in range(c.uplink.event_slots):
    c.send_event(codec.HANDBACK, "h%d" % i)
checks.equal(len(c.uplink.events), c.uplink.event_slots, "RAM is bounded")
checks.equal((c.uplink.events_dropped, c.uplink.events[0][0]), (1, 3), "the oldest is dropped, and counted")
''')


# --- end to end: the gateway, real ptys, a private MariaDB -----------------------------------------------------------

FAST = {"interval_ms": 200, "status_interval_ms": 1000, "seed": 1}


def assert_complete(stack, board_id):
    """Every reading of every boot 1..max(seq) is stored, each exactly once."""
    rows = stack.readings(board_id)
    ids = [(r[1], r[2]) for r in rows]
    assert len(ids) == len(set(ids)), "a reading was stored twice"
    by_boot = {}
    for boot, seq in ids:
        by_boot.setdefault(boot, set()).add(seq)
    for boot, seqs in by_boot.items():
        missing = set(range(1, max(seqs) + 1)) - seqs
        assert not missing, "boot %d is missing seq %s" % (boot, sorted(missing)[:10])
    return rows


def drained(board):
    st = board.status()
    return st["pending"] == 0 and st["inflight"] == 0


@pytest.mark.integration
def test_frame_numbers_cross_the_2_31_wrap_end_to_end(stack):
    b = stack.start_board("bed-1", first_n=MAX_N - 12, **FAST)
    stack.start_gateway()
    wait_for(lambda: b.status()["next_n"] > 12 and b.status()["next_n"] < 1000, 60, "frame numbers past the wrap")
    wait_for(lambda: len(stack.readings("bed-1")) >= 30, 60, "30 readings")
    b.control("quit")
    wait_for(lambda: not b.alive, 10, "the board to stop")
    rows = assert_complete(stack, "bed-1")
    assert len(rows) >= 30


@pytest.mark.integration
def test_stray_hellos_lose_no_reading_whatever_n_next_says(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: len(stack.readings("bed-1")) >= 5, 30, "live readings")
    st = b.status()
    # Stray hellos on the board's line, as the gateway reads it: n_next near 2**31 (the seen case lost 30
    # readings), n_next ahead of the board's, and another boot. Each is followed by readings.
    for n_next, boot in ((MAX_N - 5, st["boot"]), (st["next_n"] + 500, st["boot"]), (st["next_n"], st["boot"] + 7)):
        before = len(stack.readings("bed-1"))
        hello = frames.hello("bed-1", boot, n_next, "2026-11-21T09:55:04Z", "ok", "single", "forged", st["uid"])
        assert b.control("noise " + hello.hex()) == "ok"
        wait_for(lambda: len(stack.readings("bed-1")) >= before + 25, 60, "readings after a stray hello")
    wait_for(lambda: b.status()["acks_beyond_sent"] + b.status()["ignored_acks"] >= 1, 10,
             "the board to have refused the gateway's acks in a stray numbering")
    # The database is down and frames wait in flight; a stray hello says they are all acknowledged. Confirming it
    # would be an ack of readings never stored.
    before = len(stack.readings("bed-1"))
    stack.db.stop()
    wait_for(lambda: b.status()["inflight"] >= 3, 30, "frames in flight while the database is down")
    def stray_hellos():
        snap = stack.gateway.status()
        return snap["boards"][0]["stray_hellos"] if snap else 0
    refused = stray_hellos()
    st = b.status()
    hello = frames.hello("bed-1", st["boot"], st["next_n"], "2026-11-21T09:55:04Z", "ok", "single", "forged",
                         st["uid"])
    assert b.control("noise " + hello.hex()) == "ok"
    wait_for(lambda: stray_hellos() > refused, 30, "the gateway to refuse the hello")
    stack.db.start()
    wait_for(lambda: len(stack.readings("bed-1")) >= before + 25, 60, "readings after the outage")
    b.control("quit")
    wait_for(lambda: not b.alive, 10, "the board to stop")
    assert_complete(stack, "bed-1")


@pytest.mark.integration
def test_standby_missing_before_the_gateway_opens_the_port_is_stored_once(stack):
    pair = {"interval_ms": 1000, "status_interval_ms": 1000, "hb_interval_ms": 500, "hb_timeout_ms": 2000,
            "witness_timeout_ms": 2500, "handback_after_ms": 2000, "handback_margin_s": 3, "witness_recheck_ms": 3000}
    wire = os.path.join(stack.run_dir, "hb.sock")
    master = stack.start_board("bed-1-a", role="master", hb_wire=wire, seed=1, **pair)
    standby = stack.start_board("bed-1-b", role="standby", hb_wire=wire, seed=2, **pair)
    wait_for(lambda: master.status()["standby_present"] is True, 30, "the master to hear its standby")
    standby.kill()                                       # no gateway runs yet: nobody hears the event
    wait_for(lambda: master.status()["standby_present"] is False, 30, "the master to miss its standby")
    assert master.status()["events_pending"] >= 1
    stack.start_gateway(boards=[master])
    wait_for(lambda: master.status()["events_pending"] == 0, 30, "the gateway to acknowledge the event")
    rows = stack.query("SELECT boot, event_no, event FROM collector_events WHERE board = 'bed-1-a' "
                       "ORDER BY event_no")
    boot = master.status()["boot"]
    # Every event the master sent, none twice: numbered 1.. in its boot, the last the standby going missing
    # (it may have missed its standby at start-up, before the standby listened, and found it back).
    assert [r[:2] for r in rows] == [(boot, k) for k in range(1, len(rows) + 1)], rows
    assert rows[-1][2] == "standby_missing", rows
