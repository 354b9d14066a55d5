"""The SD-card cache journal (soil.journal) and its A/B slot store (soil.slots), on the simulated SD card.

A "reboot" here is what it is for a virtual board: the old SimCard and Journal objects are thrown away and new ones
are made on the same host folder, so only what reached the card survives. Power cuts are the sim's
(tools/sim/host/sdcard.py): a torn write, then `PowerCut`, then a reboot.
"""

import errno
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from soil.crc import crc32_hex
from soil.journal import STATE_FILE, Journal, JournalFull
from soil.records import MAX_RECORD
from soil.slots import SlotFile
from tools.sim.host.sdcard import PowerCut, SimCard

BS = 512


class Board:
    """A card folder plus the journal a board would build on it; `reboot()` starts from what is on the card."""

    def __init__(self, path, capacity=256 * 1024, **journal_kw):
        self.path = str(path)
        self.capacity = capacity
        self.kw = journal_kw
        self.reboot()

    def reboot(self):
        self.card = SimCard(self.path, self.capacity, block_size=BS)
        self.j = Journal(self.card, **self.kw)
        self.j.open()
        return self.j

    def cut_and_reboot(self, action, nbytes, tail="prefix"):
        """Arm a power cut, run `action`, expect the cut, reboot."""
        self.card.power_cut_after(nbytes, tail)
        with pytest.raises(PowerCut):
            action()
        return self.reboot()

    def drain(self):
        out = []
        while True:
            r = self.j.read_next()
            if r is None:
                return out
            out.append(r)

    def payloads(self):
        return [p for p, _ in self.drain()]

    def segments(self):
        return [n for n in self.card.listdir() if n.endswith(".log")]


def rec(i):
    return b"1,%d,2026-11-21T09:55:04Z,512,L" % i


def record_bytes(payload):
    return payload + b"*" + crc32_hex(payload) + b"\n"


@pytest.fixture
def board(tmp_path):
    return Board(tmp_path, segment_bytes=256, max_bytes=64 * 1024)


# --- basics ----------------------------------------------------------------------------------------------------

def test_empty_journal_reads_nothing(board):
    assert board.j.read_next() is None
    assert board.j.pending == 0 and board.j.pending_bytes == 0 and board.j.state == "ok"


def test_records_are_text_lines_with_a_crc_readable_by_cat(board):
    board.j.append(b"hello")
    board.j.append(b"world 2")
    with board.card.open("j0000001.log", "rb") as f:
        assert f.read() == record_bytes(b"hello") + record_bytes(b"world 2")


def test_append_then_read_back_in_order_with_the_same_positions(board):
    appended = [board.j.append(rec(i)) for i in range(20)]
    read = board.drain()
    assert [p for p, _ in read] == [rec(i) for i in range(20)]
    assert [pos for _, pos in read] == appended
    assert appended == sorted(appended) and len(set(appended)) == 20
    assert board.j.pending == 20


def test_segments_rotate_at_segment_bytes(board):
    for i in range(30):
        board.j.append(rec(i))
    names = board.segments()
    assert len(names) > 1
    assert all(board.card.size(n) <= 256 for n in names)
    assert board.payloads() == [rec(i) for i in range(30)]


def test_ack_frees_whole_segments_and_keeps_the_rest(board):
    for i in range(30):
        board.j.append(rec(i))
    read = board.drain()
    before = board.segments()
    board.j.ack(read[19][1])
    assert board.j.pending == 10
    assert len(board.segments()) < len(before)
    assert board.reboot().pending == 10
    assert board.payloads() == [rec(i) for i in range(20, 30)]


def test_ack_of_everything_leaves_at_most_the_open_segment(board):
    for i in range(30):
        board.j.append(rec(i))
    board.j.ack(board.drain()[-1][1])
    assert board.j.pending == 0 and board.j.pending_bytes == 0
    assert len(board.segments()) <= 1
    assert board.reboot().read_next() is None


def test_stale_and_repeated_acks_are_ignored(board):
    for i in range(5):
        board.j.append(rec(i))
    read = board.drain()
    board.j.ack(read[3][1])
    board.j.ack(read[1][1])
    board.j.ack(read[3][1])
    assert board.j.pending == 1
    board.j.rewind()
    assert board.payloads() == [rec(4)]


def test_ack_with_the_position_append_returned(board):
    """A collector may send a live reading with the position `append` gave it."""
    positions = [board.j.append(rec(i)) for i in range(4)]
    board.j.ack(positions[1])
    assert board.j.pending == 2
    assert board.payloads() == [rec(2), rec(3)]


def test_rewind_reads_everything_unacknowledged_again(board):
    for i in range(6):
        board.j.append(rec(i))
    read = board.drain()
    board.j.ack(read[1][1])
    board.j.rewind()
    assert board.payloads() == [rec(i) for i in range(2, 6)]


def test_reading_catches_up_with_appends(board):
    board.j.append(rec(1))
    assert board.j.read_next()[0] == rec(1)
    assert board.j.read_next() is None
    for i in range(2, 40):  # across segment boundaries while the cursor sits at the end
        board.j.append(rec(i))
        assert board.j.read_next()[0] == rec(i)
        assert board.j.read_next() is None


@pytest.mark.parametrize("bad", [b"", b"x" * 101, b"a*b", b"a\nb", b"caf\xc3\xa9", b"\x00"])
def test_payload_must_be_printable_ascii_without_star(board, bad):
    with pytest.raises(ValueError):
        board.j.append(bad)
    assert board.j.pending == 0


def test_longest_payload_round_trips(board):
    board.j.append(b"~" * 100)
    assert board.payloads() == [b"~" * 100]


def test_pending_bytes_counts_from_the_ack_pointer(board):
    for i in range(3):
        board.j.append(rec(i))
    size = len(record_bytes(rec(0)))
    assert board.j.pending_bytes == 3 * size
    board.j.ack(board.j.read_next()[1])
    assert board.j.pending_bytes == 2 * size
    assert board.reboot().pending_bytes == 2 * size


# --- the flaws ---------------------------------------------------------------------------------------------------

def test_f1_unacknowledged_records_survive_a_failed_replay(board):
    """The book deleted the cache after a replay whether or not the inserts worked. Here only the gateway's ack
    frees a record: a replay that dies half-way leaves every unacknowledged record, after a rewind or a reset."""
    for i in range(25):
        board.j.append(rec(i))
    sent = board.drain()  # the whole cache went onto the line
    board.j.ack(sent[9][1])  # the gateway committed 10, then the database dropped
    board.j.rewind()  # resync: resend everything unacknowledged
    assert board.payloads() == [rec(i) for i in range(10, 25)]
    board.reboot()  # or the board resets instead
    assert board.j.pending == 15
    assert board.payloads() == [rec(i) for i in range(10, 25)]


def test_f2_reboot_keeps_the_cache(board):
    """The book's setup() deleted the cache at every boot: a reset during an outage lost everything."""
    for i in range(25):
        board.j.append(rec(i))
    names = board.segments()
    for _ in range(3):
        board.reboot()
        assert board.segments() == names
        assert board.j.pending == 25
    assert board.payloads() == [rec(i) for i in range(25)]
    board.j.append(rec(25))  # and the cache keeps growing after the reboot
    board.reboot()
    assert board.payloads() == [rec(i) for i in range(26)]


def test_f6_full_card_drops_by_policy_and_counts(tmp_path):
    """The book asked "what happens when the disk is full?" and left it there. Each policy drops what it says,
    counts what it deleted, and the count survives a reboot. A refused record is not counted: the caller has it."""
    # drop_oldest over the byte budget: the newest readings are kept, whole old segments go
    b = Board(tmp_path / "oldest", segment_bytes=256, max_bytes=1024, policy="drop_oldest")
    for i in range(100):
        b.j.append(rec(i))
    kept = b.payloads()
    assert b.j.dropped > 0
    assert b.j.dropped + len(kept) == 100
    assert kept == [rec(i) for i in range(100 - len(kept), 100)]
    assert b.j.pending_bytes <= 1024
    assert b.reboot().dropped == 100 - len(kept)
    assert b.j.pending == len(kept)

    # drop_newest over the byte budget: what is cached stays, new readings are refused (the caller keeps them)
    b = Board(tmp_path / "newest", segment_bytes=256, max_bytes=1024, policy="drop_newest")
    stored = refused = 0
    for i in range(100):
        try:
            b.j.append(rec(i))
            stored += 1
        except JournalFull:
            refused += 1
            assert b.j.state == "full"
    assert refused > 0 and b.j.dropped == 0
    assert b.payloads() == [rec(i) for i in range(stored)]
    assert b.reboot().dropped == 0

    # a card that is really full (ENOSPC), with drop_oldest: space comes back from the oldest segments
    b = Board(tmp_path / "card", capacity=8 * BS, segment_bytes=256, max_bytes=1 << 20, policy="drop_oldest")
    for i in range(60):
        b.j.append(rec(i))
    kept = b.payloads()
    assert b.j.dropped > 0 and b.j.dropped + len(kept) == 60
    assert kept == [rec(i) for i in range(60 - len(kept), 60)]
    assert b.reboot().dropped == 60 - len(kept)

    # the `full` fault (free space forced to 0): at most one segment goes, then records are refused
    b = Board(tmp_path / "forced", segment_bytes=256, max_bytes=1 << 20, policy="drop_oldest")
    for i in range(20):
        b.j.append(rec(i))
    b.card.full = True
    refused = 0
    for i in range(20, 70):
        try:
            b.j.append(rec(i))
        except JournalFull:
            refused += 1
            assert b.j.state == "full"
    assert refused > 0 and b.j.dropped <= 256 // len(record_bytes(rec(0)))
    b.card.full = False
    b.j.append(rec(99))
    assert b.j.state == "ok"
    got = b.payloads()
    assert got[-1] == rec(99) and b.j.dropped + len(got) + refused == 71


def test_f6_enospc_with_drop_newest_refuses_and_counts_nothing(tmp_path):
    b = Board(tmp_path, capacity=8 * BS, segment_bytes=256, max_bytes=1 << 20, policy="drop_newest")
    stored = []
    refused = 0
    for i in range(60):
        try:
            b.j.append(rec(i))
            stored.append(rec(i))
        except JournalFull:
            refused += 1
    assert refused > 0 and b.j.dropped == 0          # refused, not dropped: the caller still holds them
    assert b.payloads() == stored
    assert b.reboot().dropped == 0 and b.payloads() == stored


def test_a_card_that_stays_full_drops_at_most_one_segment_per_episode(tmp_path):
    """A card reporting full (free space 0 whatever is deleted) for many samples used to lose one segment per
    sample until the whole cache was gone. One full episode gives up at most one segment; the rest is refused
    (the caller keeps it) until the card has room again; a reboot starts a new episode."""
    b = Board(tmp_path, segment_bytes=512, max_bytes=1 << 20, policy="drop_oldest")
    for i in range(300):
        b.j.append(rec(i))
    per_segment = 512 // len(record_bytes(rec(0)))
    b.card.full = True
    for i in range(300, 400):                        # 100 samples of "full"
        try:
            b.j.append(rec(i))
        except JournalFull:
            pass
    assert 0 < b.j.dropped <= per_segment
    assert b.j.pending >= 300 - per_segment
    b.reboot()
    b.card.full = True
    first = b.j.dropped
    assert first > 0                                 # the count survives the reboot
    for i in range(400, 420):
        try:
            b.j.append(rec(i))
        except JournalFull:
            pass
    assert b.j.dropped - first <= per_segment


def test_full_is_not_failing_a_write_error_deletes_nothing(tmp_path):
    """EIO (a card that fails whatever is deleted) and ENODEV (pulled) never make the policy delete anything."""
    b = Board(tmp_path, segment_bytes=256, max_bytes=1 << 20, policy="drop_oldest")
    for i in range(30):
        b.j.append(rec(i))
    for fault in ("write_error", "removed"):
        setattr(b.card, fault, True)
        for i in range(20):
            with pytest.raises(OSError):
                b.j.append(rec(100 + i))
            assert b.j.state == "error"
        setattr(b.card, fault, False)
    assert b.j.dropped == 0
    assert b.reboot().pending == 30


def test_the_count_never_counts_a_reading_in_flight(tmp_path):
    """Records read (sent) and not yet acknowledged may still be committed: the policy never gives up their
    segment, it drops the oldest one behind them, and the gateway's late ack still frees what it covers."""
    b = Board(tmp_path, segment_bytes=256, max_bytes=1024, policy="drop_oldest")
    for i in range(15):
        b.j.append(rec(i))
    sent = [b.j.read_next() for _ in range(3)]       # three in flight
    for i in range(15, 60):
        b.j.append(rec(i))
    assert b.j.dropped > 0
    b.j.ack(sent[-1][1])                             # the gateway committed them after all
    rest = b.payloads()
    assert rest[-1] == rec(59)
    assert b.j.dropped + len(rest) + 3 == 60          # delivered, kept or counted: each exactly once
    assert b.j.pending == len(rest)
    b.reboot()
    assert b.payloads() == rest and b.j.dropped + len(rest) + 3 == 60


def test_a_cut_between_counting_and_deleting_a_dropped_segment_counts_it_once(tmp_path):
    """A segment given up behind records in flight is marked in jstate.bin before it is deleted: after a cut
    there, open() deletes it, so its records are not both counted and read again."""
    b = Board(tmp_path, segment_bytes=256, max_bytes=1024, policy="drop_oldest")
    for i in range(15):
        b.j.append(rec(i))
    b.j.read_next()                                  # one in flight: the oldest segment stays
    b.card.power_cut_before_remove()
    n = 15
    with pytest.raises(PowerCut):
        while True:
            b.j.append(rec(n))
            n += 1
    b.reboot()
    got = b.payloads()
    assert len(got) == len(set(got))
    assert b.j.dropped + len(got) == n                # every record appended before the cut, once


def test_a_new_segment_never_takes_the_number_of_the_drop_mark(tmp_path):
    """The last segment given up behind records in flight is the drop mark, which open() deletes if it is there.
    After a reboot a new segment must not be given that number, or the next boot would delete its readings."""
    b = Board(tmp_path, capacity=8 * BS, segment_bytes=512, max_bytes=1 << 20, policy="drop_oldest")
    i = 0
    while len(b.segments()) < 2:
        b.j.append(rec(i))
        i += 1
    b.j.read_next()                                  # in flight: the first segment stays, the second may go
    b.card.full = True
    with pytest.raises(JournalFull):
        while True:
            b.j.append(rec(i))
            i += 1
    assert b.j.dropped > 0
    b.card.full = False
    b.reboot()
    after = b"after the drop " + b"x" * 80           # too long for the first segment: a new one
    b.j.append(after)
    assert len(b.segments()) == 2
    b.reboot()
    assert b.payloads()[-1] == after


def test_f8_overlong_record_is_skipped_with_bounded_buffer(board):
    """The book copied a cache line into a 128-byte buffer without a bound. A line longer than MAX_RECORD is
    skipped and counted, and no read ever asks the card for more than the journal's fixed buffer."""
    board.j.append(rec(1))
    with board.card.open("j0000001.log", "ab") as f:
        f.write(b"9" * 5000 + b"*00000000\n")  # far longer than any buffer
        f.write(b"x" * (MAX_RECORD - 9) + b"*" + crc32_hex(b"x" * (MAX_RECORD - 9)) + b"\n")  # one byte too long
        f.write(b"bad crc*00000000\n")
    board.reboot()
    board.j.append(rec(2))
    board.card.largest_read = 0
    assert board.payloads() == [rec(1), rec(2)]
    assert board.j.corrupt == 3
    assert board.card.largest_read <= 256


@pytest.mark.timeout(30)
def test_f6_a_card_with_one_block_left_refuses_the_record_instead_of_looping(tmp_path):
    """A card another file has filled to its last block (a segment needs two: its directory entry and a data
    block). The new record's empty segment was the only one to drop; dropping it freed that block again, so the
    full-card policy created, failed and dropped segments for ever, rewriting jstate.bin each time. It must refuse
    the record (counted) after trying each segment there was once."""
    b = Board(tmp_path, capacity=8 * BS, segment_bytes=256, max_bytes=64 * 1024)
    left = b.card.free_bytes() // BS                       # what jstate.bin (its entry and two slots) left
    with b.card.open("other.bin", "wb") as f:              # someone else's file (its entry + data): all but one
        f.write(b"x" * ((left - 2) * BS))
    assert b.card.free_bytes() == BS
    with pytest.raises(JournalFull):
        b.j.append(rec(1))
    assert b.j.dropped == 0 and b.j.state == "full"        # refused, not counted: the caller keeps it
    assert len(b.segments()) <= 1


# --- torn writes and power cuts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tail", ["prefix", "zeros", "garbage"])
@pytest.mark.parametrize("keep", [0, 1, 9, len(record_bytes(rec(99))) - 1])
def test_torn_last_record_is_skipped_and_every_earlier_record_survives(tmp_path, tail, keep):
    b = Board(tmp_path, segment_bytes=4096, max_bytes=64 * 1024)
    for i in range(5):
        b.j.append(rec(i))
    b.cut_and_reboot(lambda: b.j.append(rec(99)), keep, tail)
    assert b.j.pending == 5
    b.j.append(rec(5))  # must not be glued onto the torn bytes
    assert b.payloads() == [rec(i) for i in range(6)]
    b.reboot()
    assert b.payloads() == [rec(i) for i in range(6)]
    assert b.j.corrupt == 0 or tail == "garbage"  # garbage may hold newlines: counted, never returned


def test_power_cut_in_the_middle_of_a_full_segment_series(tmp_path):
    b = Board(tmp_path, segment_bytes=256, max_bytes=64 * 1024)
    expected = []
    for n in range(12):
        for i in range(7):
            p = rec(n * 100 + i)
            b.j.append(p)
            expected.append(p)
        b.cut_and_reboot(lambda: b.j.append(b"lost"), n * 3 % 13, ("prefix", "zeros", "garbage")[n % 3])
    assert b.payloads() == expected


@pytest.mark.parametrize("keep", range(0, 22, 3))
@pytest.mark.parametrize("tail", ["prefix", "zeros", "garbage"])
def test_power_cut_during_the_ack_pointer_write_replays_but_loses_nothing(tmp_path, keep, tail):
    """A torn ack write leaves the previous pointer (the other slot): the records of that ack are sent again,
    the gateway stores them once by identity (at-least-once), and nothing before or after is lost."""
    b = Board(tmp_path, segment_bytes=256, max_bytes=64 * 1024)
    for i in range(10):
        b.j.append(rec(i))
    read = b.drain()
    b.j.ack(read[2][1])
    b.cut_and_reboot(lambda: b.j.ack(read[6][1]), keep, tail)
    assert b.j.pending == 7
    assert b.payloads() == [rec(i) for i in range(3, 10)]


def test_power_cut_between_ack_write_and_segment_delete_is_finished_at_boot(tmp_path):
    b = Board(tmp_path, segment_bytes=256, max_bytes=64 * 1024)
    for i in range(30):
        b.j.append(rec(i))
    read = b.drain()
    old = b.segments()
    b.card.power_cut_before_remove()
    with pytest.raises(PowerCut):
        b.j.ack(read[24][1])
    assert SimCard(b.path, b.capacity).listdir() == old + [STATE_FILE]  # nothing deleted yet
    b.reboot()
    assert len(b.segments()) < len(old)  # open() finished the compaction
    assert b.j.pending == 5
    assert b.payloads() == [rec(i) for i in range(25, 30)]


def test_power_cut_while_dropping_the_oldest_segment(tmp_path):
    b = Board(tmp_path, segment_bytes=256, max_bytes=1024, policy="drop_oldest")
    i = 0
    while b.j.pending_bytes + 60 <= 1024:
        b.j.append(rec(i))
        i += 1
    b.card.power_cut_before_remove()
    with pytest.raises(PowerCut):
        for k in range(i, i + 10):
            b.j.append(rec(k))
    dropped = b.reboot().dropped
    kept = b.payloads()
    assert dropped > 0
    assert kept == [rec(n) for n in range(dropped, dropped + len(kept))]


def test_power_cut_while_the_state_file_is_first_created(tmp_path):
    card = SimCard(str(tmp_path), 64 * 1024, block_size=BS)
    card.power_cut_after(100, "zeros")
    with pytest.raises(PowerCut):
        Journal(card).open()
    b = Board(tmp_path)
    b.j.append(b"first")
    b.reboot()
    assert b.payloads() == [b"first"]


# --- card errors -------------------------------------------------------------------------------------------------

def test_removed_card_raises_enodev_and_recovers(board):
    board.j.append(rec(0))
    board.card.removed = True
    with pytest.raises(OSError) as e:
        board.j.append(rec(1))
    assert e.value.errno == errno.ENODEV and board.j.state == "error"
    board.card.removed = False
    board.j.append(rec(2))
    assert board.j.state == "ok"
    assert board.payloads() == [rec(0), rec(2)]


def test_write_error_raises_eio_and_keeps_the_cache(board):
    board.j.append(rec(0))
    board.card.write_error = True
    with pytest.raises(OSError) as e:
        board.j.append(rec(1))
    assert e.value.errno == errno.EIO and board.j.state == "error"
    r = board.j.read_next()
    with pytest.raises(OSError):
        board.j.ack(r[1])
    board.card.write_error = False
    board.j.append(rec(2))
    board.j.rewind()
    assert board.payloads() == [rec(0), rec(2)]
    assert board.reboot().pending == 2


def test_a_short_write_on_enospc_is_sealed_off(tmp_path):
    """On a full card the FAT driver writes what fits, then raises ENOSPC: that partial record must never have a
    later record appended behind it, in this boot or the next."""
    b = Board(tmp_path, capacity=8 * BS, segment_bytes=2 * BS, max_bytes=1 << 20, policy="drop_newest")
    stored = []
    i = 0
    while True:
        p = b"%d:" % i + b"z" * 90
        i += 1
        try:
            b.j.append(p)
            stored.append(p)
        except JournalFull:
            break
    last = b.segments()[-1]
    with b.card.open(last, "rb") as f:
        assert not f.read().endswith(b"\n")  # part of the refused record landed
    read = b.drain()
    assert [p for p, _ in read] == stored
    b.j.ack(read[-1][1])  # frees the closed segments
    b.j.append(b"after the short write")
    b.j.rewind()
    assert b.payloads() == [b"after the short write"]
    b.reboot()
    assert b.payloads() == [b"after the short write"]


# --- the slot store ----------------------------------------------------------------------------------------------

def test_slot_file_first_load_is_none_then_keeps_the_newest(tmp_path):
    card = SimCard(str(tmp_path), 64 * 1024)
    s = SlotFile(card, "boot.bin", 8)
    assert s.load() is None
    for v in range(1, 6):
        s.store(b"v%d" % v)
        assert SlotFile(SimCard(str(tmp_path), 64 * 1024), "boot.bin", 8).load() == b"v%d" % v
    assert card.size("boot.bin") == 1024  # two slots, one sector each


@pytest.mark.parametrize("tail", ["prefix", "zeros", "garbage"])
def test_slot_file_torn_store_keeps_the_previous_value(tmp_path, tail):
    for keep in range(0, 6 + 5 + 4):  # every tear of the 15-byte slot record
        d = tmp_path / ("%s%d" % (tail, keep))
        card = SimCard(str(d), 64 * 1024)
        s = SlotFile(card, "boot.bin", 8)
        s.store(b"old-1")
        s.store(b"old-2")
        card.power_cut_after(keep, tail)
        with pytest.raises(PowerCut):
            s.store(b"new-3")
        s2 = SlotFile(SimCard(str(d), 64 * 1024), "boot.bin", 8)
        assert s2.load() == b"old-2"
        s2.store(b"next")
        assert SlotFile(SimCard(str(d), 64 * 1024), "boot.bin", 8).load() == b"next"


def test_slot_file_stores_on_a_full_card(tmp_path):
    card = SimCard(str(tmp_path), 64 * 1024)
    s = SlotFile(card, "boot.bin", 8)
    s.store(b"1")
    card.full = True
    s.store(b"2")
    s.store(b"3")
    assert SlotFile(card, "boot.bin", 8).load() == b"3"


# --- the property: any sequence of operations, cuts and reboots ------------------------------------------------

class JournalMachine(RuleBasedStateMachine):
    """Random sequences of appends, reads (sent, in flight), acks (delivered), rewinds, reboots, power cuts, and the
    card's faults: full and freed, pulled and put back, write errors on and off. At every step every record the test
    handed to the journal is exactly one of: on the card (readable after a power cut: checked against the card's
    files), delivered (acknowledged), counted in `dropped` (exactly once: the records missing from the card are as
    many as `dropped` rose), or handed back (JournalFull or OSError: the caller keeps it). A record in flight is
    never dropped, and one full episode never drops more than one segment of records (`SEGMENT` bytes)."""

    POLICY = "drop_oldest"
    CAPACITY = 256 * 1024
    MAX_BYTES = 1024
    SEGMENT = 256
    BOUNDED = False   # the budget (MAX_BYTES) is a ring of its own; the episode bound is checked where it cannot act

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="journal-machine-")
        self.unacked = []  # payloads whose append returned, not acknowledged, not found dropped; oldest first
        self.read_pos = []  # positions returned for unacked[:len(read_pos)] since the last rewind / boot (in flight)
        self.sampled = 0
        self.delivered = 0
        self.handed_back = 0
        self.counted = 0  # records found missing from the card, each matched by a rise of `dropped`
        self.counter = 0
        self.faults = {"full": False, "removed": False, "write_error": False}
        self.episode_dropped = 0
        self.boot()
        self.dropped_seen = self.j.dropped

    def teardown(self):
        try:
            self.faults = {"full": False, "removed": False, "write_error": False}
            self.boot()
            got = []
            while True:
                r = self.j.read_next()
                if r is None:
                    break
                got.append(r[0])
            assert got == self.unacked
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def boot(self):
        self.card = SimCard(self.dir, self.CAPACITY, block_size=BS, seed=self.counter)
        for k, v in self.faults.items():
            setattr(self.card, k, v)
        self.j = Journal(self.card, max_bytes=self.MAX_BYTES, segment_bytes=self.SEGMENT, policy=self.POLICY)
        self.unopened = False
        try:
            self.j.open()
        except OSError:
            self.unopened = True  # a pulled card: the journal opens when it is back (append/read_next open it)
        self.read_pos = []
        self.episode_dropped = 0  # a reboot starts a new full episode

    def on_card(self):
        """Every valid record payload in the card's segment files, read from the host folder (not the journal)."""
        found = set()
        folder = os.path.join(self.dir, "card")
        for name in os.listdir(folder):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(folder, name), "rb") as f:
                lines = f.read().split(b"\n")[:-1]
            for line in lines:
                p, star, crc = line.rpartition(b"*")
                if star and crc32_hex(p) == crc:
                    found.add(p)
        return found

    def payload(self, pad):
        self.counter += 1
        return b"%d:" % self.counter + b"p" * pad

    def ack_front(self, k):
        del self.unacked[:k]
        del self.read_pos[:k]
        self.delivered += k

    def do_append(self, p):
        self.sampled += 1
        try:
            self.j.append(p)
        except JournalFull:
            self.handed_back += 1
            self.unopened = False   # it opened (a refusal comes after open)
            assert self.j.state == "full"
            return
        except OSError:
            self.handed_back += 1
            assert self.j.state == "error"
            return
        self.unacked.append(p)
        self.unopened = False
        assert self.j.state == "ok"
        # a torn tail left by a cut may overshoot the budget until the next append, never after it
        assert self.j.pending_bytes <= self.MAX_BYTES

    @rule(pad=st.integers(0, 90))
    def append(self, pad):
        self.do_append(self.payload(pad))

    @rule()
    def read(self):
        try:
            r = self.j.read_next()
        except OSError:
            assert self.faults["removed"]
            return
        self.unopened = False
        i = len(self.read_pos)
        if i < len(self.unacked):
            assert r is not None and r[0] == self.unacked[i]
            self.read_pos.append(r[1])
        else:
            assert r is None

    @precondition(lambda self: self.read_pos)
    @rule(data=st.data())
    def ack(self, data):
        k = data.draw(st.integers(1, len(self.read_pos)))
        before = self.j.pending
        try:
            self.j.ack(self.read_pos[k - 1])
        except OSError:
            assert self.faults["removed"] or self.faults["write_error"]
            if self.j.pending == before:
                return    # the pointer was not written: not acknowledged, sent again later
        self.ack_front(k)

    @rule()
    def rewind(self):
        self.j.rewind()
        self.read_pos = []

    @rule()
    def reboot(self):
        self.boot()

    @rule(fault=st.sampled_from(["full", "removed", "write_error"]), on=st.booleans())
    def card_fault(self, fault, on):
        """full / freed, pulled / put back, write errors / none."""
        self.faults[fault] = on
        setattr(self.card, fault, on)
        if fault == "full":
            self.episode_dropped = 0

    @rule(pad=st.integers(0, 90), keep=st.integers(0, 120), tail=st.sampled_from(["prefix", "zeros", "garbage"]))
    def power_cut_during_append(self, pad, keep, tail):
        p = self.payload(pad)
        self.card.power_cut_after(keep, tail)
        try:
            self.do_append(p)
        except PowerCut:
            self.handed_back += 1   # its append never returned: not cached (do_append counted it as sampled)
            self.boot()
        else:
            self.card.power_cut_after(None)

    @precondition(lambda self: self.read_pos and not self.faults["removed"] and not self.faults["write_error"])
    @rule(data=st.data(), keep=st.integers(0, 21), tail=st.sampled_from(["prefix", "zeros", "garbage"]))
    def power_cut_during_ack(self, data, keep, tail):
        k = data.draw(st.integers(1, len(self.read_pos)))
        writes = []  # (file, offset, bytes) of each write the ack starts
        card_open = self.card.open

        def recording_open(name, mode="rb"):
            f = card_open(name, mode)
            file_write = f.write

            def write(b):
                writes.append((name, f.tell(), bytes(b)))
                return file_write(b)

            f.write = write
            return f

        self.card.open = recording_open
        self.card.power_cut_after(keep, tail)
        with pytest.raises(PowerCut):
            self.j.ack(self.read_pos[k - 1])
        name, offset, intended = writes[-1]
        with open(os.path.join(self.dir, "card", name), "rb") as f:
            f.seek(offset)
            spared = f.read(len(intended)) == intended
        self.boot()
        # The torn ack is lost: those records come back. Unless the cut left every byte the write meant to write: the
        # bytes after the cut were already those (prefix) or the tail put them there (a slot whose CRC ends in 0x00,
        # cut one byte short, with a zero tail). Then the ack is on the card, complete.
        if spared:
            self.ack_front(k)

    @precondition(lambda self: self.read_pos and not self.faults["removed"] and not self.faults["write_error"])
    @rule(data=st.data())
    def power_cut_before_compaction(self, data):
        k = data.draw(st.integers(1, len(self.read_pos)))
        self.card.power_cut_before_remove()
        try:
            self.j.ack(self.read_pos[k - 1])
        except PowerCut:
            self.ack_front(k)  # the pointer was written: acknowledged
            self.boot()
        else:
            self.ack_front(k)
            self.card.power_cut_before_remove(False)

    @invariant()
    def every_record_is_on_the_card_delivered_counted_or_handed_back(self):
        present = self.on_card()
        in_flight = set(self.unacked[:len(self.read_pos)])
        missing = [p for p in self.unacked if p not in present]
        assert not in_flight.intersection(missing), "a record in flight was dropped"
        if self.unopened:     # the card was away at boot: nothing read from it yet, nothing changed on it
            assert not missing
            return
        rise = self.j.dropped - self.dropped_seen
        assert len(missing) == rise, "%d records gone from the card, dropped rose by %d" % (len(missing), rise)
        self.dropped_seen = self.j.dropped
        self.counted += rise
        self.episode_dropped += rise
        gone = set(missing)
        self.unacked = [p for p in self.unacked if p not in gone]
        assert self.j.pending == len(self.unacked)
        assert self.sampled == len(self.unacked) + self.delivered + self.counted + self.handed_back
        if self.POLICY == "drop_newest":
            assert self.j.dropped == 0
        if self.BOUNDED and self.faults["full"]:
            assert self.episode_dropped <= self.SEGMENT // 12, "one full episode dropped more than one segment"


class JournalMachineDropNewest(JournalMachine):
    POLICY = "drop_newest"


class JournalMachineSmallCard(JournalMachine):
    """The card, not the budget, runs out: ENOSPC and short writes."""
    CAPACITY = 8 * BS
    MAX_BYTES = 1 << 20
    BOUNDED = True


class JournalMachineSmallCardDropNewest(JournalMachineSmallCard):
    POLICY = "drop_newest"


class JournalMachineStaysFull(JournalMachine):
    """A roomy card and no budget to speak of: only the card's faults can make it full."""
    MAX_BYTES = 1 << 20
    BOUNDED = True


# JOURNAL_EXAMPLES=2000 for a long soak; the default keeps the suite quick.
_SETTINGS = settings(max_examples=int(os.environ.get("JOURNAL_EXAMPLES", "100")), stateful_step_count=50,
                     deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])

TestJournalMachine = JournalMachine.TestCase
TestJournalMachineDropNewest = JournalMachineDropNewest.TestCase
TestJournalMachineSmallCard = JournalMachineSmallCard.TestCase
TestJournalMachineSmallCardDropNewest = JournalMachineSmallCardDropNewest.TestCase
TestJournalMachineStaysFull = JournalMachineStaysFull.TestCase
for _case in (TestJournalMachine, TestJournalMachineDropNewest, TestJournalMachineSmallCard,
              TestJournalMachineSmallCardDropNewest, TestJournalMachineStaysFull):
    _case.settings = _SETTINGS
del _case


# --- the same code under the real MicroPython ----------------------------------------------------------------------

_MPY_SCRIPT = r'''
from soil.journal import Journal, JournalFull
from soil.slots import SlotFile

class RamFile:
    def __init__(self, data, mode):
        self.d = data
        self.pos = len(data) if mode == "ab" else 0
        self.append = mode == "ab"
    def read(self, n=-1):
        end = len(self.d) if n < 0 else min(len(self.d), self.pos + n)
        out = bytes(self.d[self.pos:end])
        self.pos = end
        return out
    def readinto(self, buf):
        b = self.read(len(buf))
        buf[0:len(b)] = b
        return len(b)
    def seek(self, off, whence=0):
        self.pos = off if whence == 0 else (self.pos + off if whence == 1 else len(self.d) + off)
        return self.pos
    def tell(self):
        return self.pos
    def write(self, data):
        data = bytes(data)
        if self.append:
            self.pos = len(self.d)
        while len(self.d) < self.pos:
            self.d.append(0)
        self.d[self.pos:self.pos + len(data)] = data
        self.pos += len(data)
        return len(data)
    def flush(self):
        pass
    def close(self):
        pass
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.close()

class RamCard:
    def __init__(self):
        self.files = {}
    def open(self, name, mode):
        if mode in ("rb", "r+b") and name not in self.files:
            raise OSError(2)
        if mode == "wb" or name not in self.files:
            self.files[name] = bytearray()
        return RamFile(self.files[name], mode)
    def remove(self, name):
        if name not in self.files:
            raise OSError(2)
        del self.files[name]
    def listdir(self):
        return list(self.files)
    def size(self, name):
        if name not in self.files:
            raise OSError(2)
        return len(self.files[name])
    def free_bytes(self):
        return 1 << 20

card = RamCard()
j = Journal(card, max_bytes=2048, segment_bytes=256)
j.open()
for i in range(20):
    j.append(b"1,%d,2026-11-21T09:55:04Z,512,L" % i)
got = []
while True:
    r = j.read_next()
    if r is None:
        break
    got.append(r)
assert len(got) == 20, len(got)
j.ack(got[9][1])
last = sorted(n for n in card.files if n.endswith(".log"))[-1]
card.files[last].extend(b"torn rec")  # a power cut's leftovers
j = Journal(card, max_bytes=2048, segment_bytes=256)
j.open()
assert j.pending == 10, j.pending
j.append(b"after")
out = []
while True:
    r = j.read_next()
    if r is None:
        break
    out.append(r[0])
assert out[0] == b"1,10,2026-11-21T09:55:04Z,512,L" and out[-1] == b"after" and len(out) == 11, out
for i in range(300):
    j.append(b"x%d" % i)
assert j.dropped > 0
s = SlotFile(card, "boot.bin", 4)
assert s.load() is None
s.store(b"\x01\x00\x00\x00")
assert SlotFile(card, "boot.bin", 4).load() == b"\x01\x00\x00\x00"
print("OK journal")
'''


@pytest.mark.micropython
@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_journal_runs_unchanged_under_micropython_and_cpython(interpreter):
    """The journal is portable core: the same script, with a card kept in RAM, under both interpreters."""
    from tests.mpy import require_micropython, run_cpython, run_micropython

    if interpreter == "micropython":
        require_micropython()
        proc = run_micropython(_MPY_SCRIPT)
    else:
        proc = run_cpython(_MPY_SCRIPT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK journal" in proc.stdout


def test_at_the_write_position_read_next_does_not_open_the_store(tmp_path):
    """The collector asks for the next record at every wake; at the journal's end the answer must cost nothing (on
    a Pico, parsing the end of a LittleFS file each time took most of a sample step). A removed card shows whether
    the store was touched: reading it raises ENODEV."""
    b = Board(tmp_path)
    for i in range(3):
        b.j.append(rec(i))
    assert b.payloads() == [rec(i) for i in range(3)]
    b.card.removed = True
    assert b.j.read_next() is None
    b.card.removed = False
    b.j.append(rec(3))                       # a record written after the end is read as before
    assert b.payloads() == [rec(3)]
    b.reboot()                               # and after a reboot the unacknowledged ones come back from the card
    assert b.payloads() == [rec(i) for i in range(4)]
