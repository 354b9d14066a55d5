"""Master and standby in one process, on simulated chips and one shared simulated clock.

Two collectors run over the real portable core: DS1307 models on their own I2C buses, SD-card journals, and the
heartbeat wire as a byte-level I2C bus with the standby's memory-mode target. Time is a shared variable so the
test is exact: it steps both boards 10 ms at a time and then checks what each one published.
"""

import errno

import pytest

from gateway import frames

from soil import heartbeat as hb, utc
from soil import master as master_side, standby as standby_side
from soil.collector import Collector
from soil.ds1307 import DS1307
from soil.journal import Journal
from soil.master import MasterRole
from soil.standby import StandbyRole
from tools.sim.vboard.hal import ticks_diff
from tools.sim.host.adc import MoistureSensor, constant
from tools.sim.host.ds1307 import DS1307Sim
from tools.sim.host.i2c import I2CBus, MachineI2C
from tools.sim.host.i2ctarget import MemTarget
from tools.sim.host.sdcard import SimCard

START = utc.to_epoch((2026, 11, 21, 12, 0, 0))


class Clock:
    def __init__(self):
        self.t = float(START) + 0.25

    def ticks_ms(self):
        return int(self.t * 1000) & ((1 << 30) - 1)


class Wire:
    """The serial line to the gateway, as the board sees it: what it wrote, and what to hand it next."""

    def __init__(self):
        self.sent = b""
        self.inbox = b""

    def write(self, data):
        self.sent += data
        return len(data)

    def read(self):
        data, self.inbox = self.inbox, b""
        return data

    def frames(self, kind):
        out = []
        for line in self.sent.split(b"\n"):
            if line:
                k, f = frames.decode(line)
                if k == kind:
                    out.append(f)
        return out


class Board:
    """One board of the pair: its collector, and the serial line and card the test looks at."""

    def __init__(self, collector, wire, card):
        self.c = collector
        self.wire = wire
        self.card = card

    def __getattr__(self, name):          # the collector's attributes and methods, for brevity
        return getattr(self.c, name)


def make_board(tmp_path, name, clock, pair, boot=1, clock_set=True):
    bus = I2CBus()
    chip = DS1307Sim(time_source=lambda: clock.t)
    bus.attach(0x68, chip)
    rtc = DS1307(MachineI2C(bus))
    if clock_set:
        rtc.set_datetime(utc.from_epoch(int(clock.t)))  # as the gateway would have done: state 'ok'
    card = SimCard(str(tmp_path / name), 1 << 20)
    wire = Wire()
    c = Collector(name, boot, rtc, MoistureSensor(constant(30000), time_source=lambda: clock.t), Journal(card), wire,
                  clock.ticks_ms, ticks_diff, pair=pair, interval_ms=1000, uid=name.encode().hex()[-32:].ljust(4, "0"))
    return Board(c, wire, card)


def sent_events(board):
    """The events a board sent, by number: no gateway acknowledges them here, so each goes more than once."""
    return [name for _, name in sorted({(f[1], f[2]) for f in board.wire.frames(frames.EVENT)})]


def published(c):
    """(seq, epoch, flags) of every reading the collector handed to its journal."""
    c.journal.rewind()
    out = []
    while True:
        item = c.journal.read_next()
        if item is None:
            return out
        boot, seq, t, raw, flags = item[0].decode().split(",")
        out.append((int(seq), utc.to_epoch(utc.parse_iso(t)), flags))


@pytest.fixture
def pair(tmp_path):
    clock = Clock()
    wire_bus = I2CBus()
    mem = bytearray(hb.MEM_SIZE)
    target = MemTarget(mem)
    wire_bus.attach(hb.ADDRESS, target)
    master = make_board(tmp_path, "bed-1-a", clock, MasterRole(MachineI2C(wire_bus)))
    standby = make_board(tmp_path, "bed-1-b", clock,
                         StandbyRole(standby_side.Mailbox(target, mem, MemTarget.IRQ_END_WRITE)))
    master.start()
    standby.start()
    return clock, wire_bus, target, master, standby


def run(clock, boards, seconds, step_ms=10):
    for _ in range(int(seconds * 1000 / step_ms)):
        clock.t += step_ms / 1000.0
        for b in boards:
            b.step()


def covered_seconds(*collectors):
    seen = {}
    for c in collectors:
        for seq, epoch, flags in published(c):
            seen.setdefault(epoch, []).append(c.board_id)
    return seen


def test_master_death_standby_fills_the_gap_from_the_witness_answer(pair):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 20)
    assert standby.pair.state == "watching" and not published(standby)
    last_master = master.last_published_epoch
    died_at = clock.t
    run(clock, [standby], 10.5)                           # the master is dead: only the standby runs
    queries = standby.wire.frames(frames.WITNESS_QUERY)
    assert queries == [("bed-1-a",)]
    assert clock.t - died_at >= 10.0                      # asked after the full timeout, not before (F10)
    standby.wire.inbox = frames.witness_answer("bed-1-a", "dead", utc.iso(utc.from_epoch(last_master)))
    run(clock, [standby], 5)
    assert standby.pair.state == "active"
    seen = covered_seconds(master, standby)
    span = range(START + 1, int(clock.t) - 1)
    assert [s for s in span if s not in seen] == [], "no missing slot across the failover"
    assert [s for s, who in seen.items() if len(who) > 1] == [], "no slot published twice"
    assert all("S" in f for _, _, f in published(standby))
    events = standby.wire.frames(frames.EVENT)
    assert events and events[0][2] == "takeover"


def test_master_returns_and_takes_back_at_the_agreed_time(pair, tmp_path):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 10)
    run(clock, [standby], 11)                             # master gone
    standby.wire.inbox = frames.witness_answer("bed-1-a", "dead", "-")
    run(clock, [standby], 5)
    assert standby.pair.state == "active"
    # The master resets: a new collector on the same card, which first asks the standby where it stands.
    old_master = master
    master = make_board(tmp_path, "bed-1-a", clock, MasterRole(MachineI2C(wire_bus)), boot=2)
    master.start()
    assert master.pair.state == "returning" and not master.publishing
    run(clock, [master, standby], 30)
    assert master.pair.state == "active" and standby.pair.state == "watching"
    seen = covered_seconds(master, standby)               # the card holds both boots of the master
    span = range(START + 1, int(clock.t) - 1)
    assert [s for s in span if s not in seen] == []
    assert [s for s, who in seen.items() if len(who) > 1] == []
    assert sent_events(standby) == ["takeover", "handback"]
    assert old_master.board_id == master.board_id


def test_wire_cut_but_gateway_hears_the_master_no_takeover(pair):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 5)
    wire_bus.cut = True
    run(clock, [master, standby], 11)
    assert standby.wire.frames(frames.WITNESS_QUERY)
    standby.wire.inbox = frames.witness_answer("bed-1-a", "alive", "-")
    run(clock, [master, standby], 5)
    assert standby.pair.state == "watching" and not published(standby)


def test_wire_cut_and_gateway_silent_standby_takes_over_labelled(pair):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 5)
    wire_bus.cut = True
    run(clock, [master, standby], 15)                     # timeout, then the witness timeout with no answer
    assert standby.pair.state == "active"
    assert published(standby) and all("S" in f for _, _, f in published(standby))


def test_f10_watchdog_measures_one_tick_difference_not_a_running_sum():
    t = [(1 << 30) - 3000]                                 # start 3 s before the tick counter wraps

    def ticks():
        return t[0] & ((1 << 30) - 1)
    dog = standby_side.Watchdog(ticks, ticks_diff, 10000)
    book_elapsed, start = 0, t[0]
    for _ in range(900):                                   # 9 s of a busy loop, 10 ms per pass
        t[0] += 10
        book_elapsed += t[0] - start                       # the book: elapsedTime += millis() - startTime
        assert not dog.expired()
    assert book_elapsed > 10000, "the book's sum would have declared the master dead already"
    t[0] += 990                                            # 9.99 s of silence, across the wrap: not yet
    assert not dog.expired()
    t[0] += 10                                             # 10 s exactly
    assert dog.expired()


def test_f11_heartbeat_handler_does_not_block(pair):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 10)
    assert standby.pair.mailbox.beats >= 3
    assert target.handler_max_s < 0.005, "the receive handler only sets a flag"


def test_f12_master_notices_a_missing_standby(pair):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 4)
    wire_bus.detach(hb.ADDRESS)                            # the standby is gone: its address NACKs
    run(clock, [master], 4)
    assert master.pair.beats_failed >= 1 and master.pair.standby_present is False
    assert sent_events(master) == ["standby_missing"]
    wire_bus.attach(hb.ADDRESS, target)
    run(clock, [master, standby], 4)
    assert sent_events(master) == ["standby_missing", "standby_back"]


def test_f12_master_on_rp2_takes_a_nack_as_no_standby(tmp_path):
    """The rp2 port reports a NACKed address as EIO, not ENODEV (ports/rp2/machine_i2c.c: every pico-sdk error but
    a timeout). A master whose standby is gone publishes alone at once on rp2 too, instead of waiting the standby's
    whole timeout as for an answer it cannot read (seen on the real rp2 firmware: 10 s without a published second)."""
    clock = Clock()
    wire_bus = I2CBus()                                    # no standby on the wire at all
    master = make_board(tmp_path, "bed-1-a", clock, MasterRole(MachineI2C(wire_bus, address_nack=errno.EIO)))
    master.start()
    run(clock, [master], 3)
    assert master.pair.beats_failed >= 1 and master.pair.standby_present is False
    assert master.pair.state == hb.ACTIVE and master.publishing
    assert len(published(master)) >= 2, published(master)     # from its first seconds, not after 10 s
    assert sent_events(master) == ["standby_missing"]


def test_beat_and_status_records_reject_damage():
    beat = master_side.encode_beat("bed-1-a", 3, 42, START, True, "active")
    assert standby_side.decode_beat(beat + b"\x00" * 10) == ("bed-1-a", 3, 42, START, True, "active")
    damaged = bytearray(beat)
    damaged[5] ^= 0x01
    assert standby_side.decode_beat(damaged) is None
    assert standby_side.decode_beat(beat[:-4]) is None
    st = standby_side.encode_status("handback", START, START + 7)
    assert master_side.decode_status(st) == ("handback", START, START + 7)
    assert master_side.decode_status(b"\xff" * 32) is None


# --- late loops: whatever the order in which the two loops run, no second is published by both --------------------
# Each test below drives one interleaving of a loop that runs late (a board not stepped for a while is a loop that
# did not run: a loaded CPU, a long card write, a stopped process). The rule under test is structural: a collector
# publishes second s only if the shared record on the wire gives it s when it publishes, and the side that hands
# over states the last second it published.

def no_gap_no_double(master_collectors, standby, last):
    seen = covered_seconds(*(master_collectors + [standby]))
    span = range(START + 1, last)
    doubles = dict((s, who) for s, who in seen.items() if len(who) > 1)
    missing = [s for s in span if s not in seen]
    assert doubles == {}, "seconds published by both: %s" % sorted(doubles)
    assert missing == [], "seconds nobody published: %s" % missing


def take_over(clock, standby, answer_last):
    run(clock, [standby], 10.5)                           # the master is silent (dead, or its loop is late)
    standby.wire.inbox = frames.witness_answer("bed-1-a", "dead", answer_last)
    run(clock, [standby], 2)
    assert standby.pair.state == "active"


def test_late_master_loop_after_a_takeover_publishes_no_second_twice(pair):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 10)
    # The master's loop stops running (the witness gets no answer from it in time and says dead) ...
    take_over(clock, standby, utc.iso(utc.from_epoch(master.last_published_epoch)))
    # ... then wakes up, late, still believing it is the active collector.
    run(clock, [master, standby], 30)
    assert master.pair.state == "active" and standby.pair.state == "watching"
    no_gap_no_double([master], standby, int(clock.t) - 1)


def test_master_dead_with_seconds_the_gateway_has_not_stored_the_standby_starts_after_them(pair):
    clock, wire_bus, target, master, standby = pair
    run(clock, [master, standby], 10.3)
    last = master.last_published_epoch                    # on the master's card, replayed when it comes back
    # The power goes with the last two readings still on their way: the gateway has stored up to last - 2.
    take_over(clock, standby, utc.iso(utc.from_epoch(last - 2)))
    run(clock, [standby], 3)
    no_gap_no_double([master], standby, int(clock.t) - 1)


def returning_master(tmp_path, clock, wire_bus, standby):
    """The master after a reset, on the same card: boot 2."""
    take_over(clock, standby, "-")
    master = make_board(tmp_path, "bed-1-a", clock, MasterRole(MachineI2C(wire_bus)), boot=2)
    master.start()
    return master


def run_until(clock, boards, predicate, limit_s=60, step_ms=10):
    for _ in range(int(limit_s * 1000 / step_ms)):
        if predicate():
            return
        run(clock, boards, step_ms / 1000.0, step_ms)
    raise AssertionError("never happened")


def test_returning_master_whose_loop_misses_the_handback_takes_back_after_the_standby(pair, tmp_path):
    clock, wire_bus, target, first, standby = pair
    run(clock, [first, standby], 10)
    master = returning_master(tmp_path, clock, wire_bus, standby)
    run_until(clock, [master, standby], lambda: standby.pair.state == "handback")
    # The master's loop is late through the whole hand-back: the next status it reads says `watching`.
    run_until(clock, [standby], lambda: standby.pair.state == "watching")
    run(clock, [standby], 1)
    run(clock, [master, standby], 10)
    assert master.pair.state == "active"
    no_gap_no_double([master], standby, int(clock.t) - 1)


def test_master_booting_while_the_standby_rewrites_its_status_waits_for_it(pair, tmp_path):
    clock, wire_bus, target, first, standby = pair
    run(clock, [first, standby], 10)
    take_over(clock, standby, "-")
    mem = standby.pair.mailbox.mem
    whole = bytes(mem[hb.STATUS_OFF:hb.STATUS_OFF + hb.STATUS_LEN])
    # The master reads the status while the standby's write of it is half done (a torn record) ...
    mem[hb.STATUS_OFF:hb.STATUS_OFF + 12] = standby_side.encode_status("handback", START, START + 9)[:12]
    master = make_board(tmp_path, "bed-1-a", clock, MasterRole(MachineI2C(wire_bus)), boot=2)
    master.start()
    mem[hb.STATUS_OFF:hb.STATUS_OFF + hb.STATUS_LEN] = whole      # ... and the write completes
    run(clock, [master, standby], 30)
    assert master.pair.state == "active" and standby.pair.state == "watching"
    no_gap_no_double([master], standby, int(clock.t) - 1)


def test_standby_late_at_its_last_second_the_master_starts_right_after_the_standby(pair, tmp_path):
    clock, wire_bus, target, first, standby = pair
    run(clock, [first, standby], 10)
    master = returning_master(tmp_path, clock, wire_bus, standby)
    run_until(clock, [master, standby], lambda: standby.pair.state == "handback")
    h = standby.pair.handback_at
    run_until(clock, [master, standby], lambda: int(clock.t) == h - 1)
    # The standby's loop stalls through its last second before H: its sample for H - 1 is taken after H.
    run_until(clock, [master], lambda: clock.t >= h + 0.6)
    run(clock, [master, standby], 10)
    assert master.pair.state == "active" and standby.pair.state == "watching"
    no_gap_no_double([master], standby, int(clock.t) - 1)


def test_late_sample_loop_never_stamps_one_second_twice(tmp_path):
    """A board samples once a second on its tick counter; the stamp is the RTC's second. Sampling just before a
    second ends, a loop pass that runs late would give the late sample the next second, and the next sample the
    same one: a second stored twice, the one before it missing. At start-up the board finds where the clock's
    second begins and samples just after it, so passes late by 220 and 700 ms keep their seconds."""
    clock = Clock()
    clock.t = START + 0.05                                # the clock is set: its seconds begin at .05
    board = make_board(tmp_path, "solo", clock, None)
    clock.t = START + 0.95                                # the board starts 0.9 s into a second
    board.start()
    run(clock, [board], 5.99)
    clock.t += 0.22                                       # one pass of the loop runs late, across a sample
    run(clock, [board], 4.5)
    clock.t += 0.7                                        # and later another, by more
    run(clock, [board], 5)
    seconds = [epoch for _, epoch, _ in published(board.c)]
    assert len(seconds) == len(set(seconds)), "a second stamped twice: %s" % seconds
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), "a second missing: %s" % seconds


def test_clock_set_by_the_gateway_puts_samples_at_the_start_of_a_second(tmp_path):
    """A new board's DS1307 is halted; the gateway's T frame sets it on the gateway's second boundary and the chip
    starts its second then. The samples that follow come just after a second begins, so a pass of the loop that
    runs 700 ms late still keeps its second: the trusted series has each second once."""
    clock = Clock()
    board = make_board(tmp_path, "solo", clock, None, clock_set=False)
    clock.t = START + 0.95
    board.start()
    run(clock, [board], 2.05)                             # samples at .95, flagged: the clock is halted
    board.wire.inbox = frames.settime(utc.iso(utc.from_epoch(round(clock.t))))   # the gateway's .00
    run(clock, [board], 3.5)
    clock.t += 0.7
    run(clock, [board], 4)
    seconds = [epoch for _, epoch, flags in published(board.c) if "Q" not in flags]
    assert len(seconds) >= 7
    assert len(seconds) == len(set(seconds)), "a second stamped twice: %s" % seconds
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), "a second missing: %s" % seconds
