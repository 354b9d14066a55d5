"""The fallback journal on the board's own flash (issue 12): while the card is pulled or failing, readings wait on the
flash, survive a power cut there, and are moved to the card, in order, when it is back.

End to end on real parts (a private MariaDB server, virtual boards on real pseudo-terminals, the gateway process):
the database is down while the card is away, so nothing can be delivered from RAM, and every reading must come
from a store that survived. The moves themselves (exactly once across a power cut in the middle of one) are driven
on the card model in CPython and under MicroPython (tests/portable/test_fallback_portable.py).

Waits are on events (rows, a board's counters), each bounded; no test asserts a timing.
"""

import os

import pytest

from soil import codec
from soil.collector import MOVE_BATCH, Collector
from soil.ds1307 import DS1307
from soil.journal import Journal
from tests.test_backbone import assert_complete, drained
from tools.demo.stack import wait_for
from tools.sim.host.ds1307 import DS1307Sim
from tools.sim.host.i2c import I2CBus, MachineI2C
from tools.sim.host.sdcard import PowerCut, SimCard

FAST = {"interval_ms": 20, "status_interval_ms": 300, "seed": 3}


def _count(stack, board):
    return len(stack.readings(board))


def _pull_card(b, removed):
    b.set_card_faults(removed=removed)
    want = codec.CARD_ABSENT if removed else codec.CARD_OK
    wait_for(lambda: b.status()["card"] == want, 30, "the board to see its card %s" % want)


@pytest.mark.integration
def test_card_pulled_then_power_cut_every_reading_arrives_exactly_once(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 3, 30, "first readings")
    stack.db.stop()                           # nothing is delivered: what the board holds must survive the cut
    _pull_card(b, True)
    at_pull = b.status()["seq"]
    wait_for(lambda: b.status()["seq"] >= at_pull + 150, 60, "readings sampled with the card away")
    st = b.status()
    assert st["fallback"] == "flash" and st["fallback_pending"] > 0 and st["dropped"] == 0, st
    b.kill()                                  # power cut while the card is away
    b.start()
    after = b.status()
    assert after["boot"] == st["boot"] + 1
    assert after["fallback_pending"] >= st["fallback_pending"], "the flash kept the readings through the cut"
    wait_for(lambda: b.status()["seq"] >= 20, 30, "readings of the new boot, card still away")
    _pull_card(b, False)                      # the card is back: the flash is moved to it
    wait_for(lambda: b.status()["fallback_pending"] == 0, 60, "the flash to be moved to the card")
    stack.db.start()
    wait_for(lambda: drained(b), 90, "everything to reach the database")
    rows = assert_complete(stack, b)
    last_old = max(r[2] for r in rows if r[1] == st["boot"])
    assert last_old >= st["seq"], "every reading of the boot that lost its power is stored"
    assert b.status()["dropped"] == 0


@pytest.mark.integration
def test_card_pulled_twice_with_a_reboot_between_loses_nothing(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 3, 30, "first readings")
    stack.db.stop()
    boots = []
    for episode in range(2):
        _pull_card(b, True)
        at_pull = b.status()["seq"]
        # More than the RAM queue (64) holds: before the fallback, each episode lost what did not fit.
        wait_for(lambda: b.status()["seq"] >= at_pull + 120, 60, "readings sampled with the card away")
        _pull_card(b, False)
        wait_for(lambda: b.status()["fallback_pending"] == 0, 60, "the flash to be moved to the card")
        st = b.status()
        boots.append((st["boot"], st["seq"]))
        if episode == 0:
            b.kill()
            b.start()
    stack.db.start()
    wait_for(lambda: drained(b), 90, "everything to reach the database")
    rows = assert_complete(stack, b)
    for boot, seq in boots:
        assert max(r[2] for r in rows if r[1] == boot) >= seq, "boot %d lost its last readings" % boot
    assert b.status()["dropped"] == 0


@pytest.mark.integration
def test_card_pulled_with_the_gateway_up_readings_are_sent_from_the_flash_and_its_acks_free_it(stack):
    b = stack.start_board("bed-1", **FAST)
    stack.start_gateway()
    wait_for(lambda: _count(stack, "bed-1") >= 3, 30, "first readings")
    _pull_card(b, True)
    at_pull = b.status()["seq"]
    wait_for(lambda: _count(stack, "bed-1") >= at_pull + 100, 60, "readings sent from the flash")
    st = b.status()
    assert st["fallback"] == "flash" and st["fallback_pending"] < 100, "acknowledged readings leave the flash"
    _pull_card(b, False)
    wait_for(lambda: b.status()["fallback"] == "idle" and drained(b), 60, "the flash emptied, everything stored")
    assert_complete(stack, b)
    assert b.status()["dropped"] == 0


# --- the move, on the card models (no link: nothing is acknowledged, so everything must stay on a store) -----------
class _Link:
    def read(self):
        return b""

    def write(self, data):
        return len(data)


class _Clock:
    def __init__(self):
        self.ms = 0

    def __call__(self):
        return self.ms


class _ADC:
    def read_u16(self):
        return 30000


_BUSES = {}


def _rtc(tmp_path):
    """The real DS1307 driver on one simulated chip per test: a reboot (a second _collector) keeps its NVRAM."""
    if tmp_path not in _BUSES:
        bus = I2CBus()
        bus.attach(0x68, DS1307Sim())
        DS1307(MachineI2C(bus)).set_datetime((2026, 1, 1, 0, 0, 0))
        _BUSES[tmp_path] = bus
    return DS1307(MachineI2C(_BUSES[tmp_path]))


def _collector(tmp_path, boot, ram_queue=64):
    card = SimCard(os.path.join(str(tmp_path), "sd"), 8 << 20)
    flash = SimCard(os.path.join(str(tmp_path), "flash"), 1408 << 10, block_size=4096)
    journal = Journal(card)
    clock = _Clock()
    c = Collector("b1", boot, _rtc(tmp_path), _ADC(), journal, _Link(), clock, lambda a, b: a - b, interval_ms=100,
                  uid="00112233", flash=flash, ram_queue=ram_queue)
    c.start()
    return c, card, flash, clock


def test_the_ram_queues_dropped_count_survives_a_reboot_in_the_clocks_nvram(tmp_path):
    """Issue 12: the count was reset at reboot (boards.dropped went 64 -> 0). Readings lost from the RAM queue (card
    and flash both away) are counted in the DS1307's NVRAM, so the next boot reports them still, and adds to them."""
    c, card, flash, _ = _collector(tmp_path, 1, ram_queue=4)
    card.removed = flash.removed = True
    for _ in range(10):
        c.sample()
    assert c.dropped() == 6
    c2, card2, flash2, _ = _collector(tmp_path, 2, ram_queue=4)
    assert c2.dropped() == 6, "the reboot kept the count"
    card2.removed = flash2.removed = True
    for _ in range(7):
        c2.sample()
    assert c2.dropped() == 9
    assert _collector(tmp_path, 3)[0].dropped() == 9


def test_a_new_batterys_random_nvram_is_not_read_as_a_dropped_count(tmp_path):
    rtc = _rtc(tmp_path)
    rtc.nvram_write(8, bytes([0x5A, 0x13, 0x00, 0x00, 0xFF, 0x00, 0x7E, 0x01]))
    assert _collector(tmp_path, 1)[0].dropped() == 0


def _seqs(journal):
    journal.rewind()
    out = []
    while True:
        item = journal.read_next()
        if item is None:
            return out
        out.append(tuple(int(x) for x in item[0].split(b",")[0:2]))


def test_a_power_cut_in_the_middle_of_a_move_loses_nothing_and_repeats_only_identities(tmp_path):
    c, card, flash, clock = _collector(tmp_path, 1)
    card.removed = True
    for _ in range(3 * MOVE_BATCH):
        c.sample()
    assert c.card_state == codec.CARD_ABSENT and c.pending() == 3 * MOVE_BATCH and c.dropped() == 0
    card.removed = False
    # The cut lands in the middle of the second batch's appends to the card (records 1-9 are 43 bytes, then 44).
    card.power_cut_after(9 * 43 + 3 * 44 + 20)
    clock.ms += 10000                         # the next status: the card is tried again and the move begins
    with pytest.raises(PowerCut):
        for _ in range(4):
            c.step()
    sampled = {(1, s) for s in range(1, c.seq + 1)}
    # Next boot: the flash and the card hold every reading; the ones of the interrupted batch perhaps on both.
    c2, card2, flash2, _ = _collector(tmp_path, 2)
    on_flash = Journal(flash2)
    assert set(_seqs(c2.journal)) | set(_seqs(on_flash)) == sampled
    while c2.fallback is not None:
        assert c2.move_fallback() > 0
    everything = _seqs(c2.journal)
    assert set(everything) == sampled
    first = []
    for ident in everything:
        if ident not in first:
            first.append(ident)
    assert first == sorted(first), "moved in order"
    assert 0 < len(everything) - len(first) <= MOVE_BATCH, "only the interrupted batch is on the card twice"
    assert c2.dropped() == 0


def test_f6_a_reading_the_card_refused_is_counted_dropped_once_and_only_when_it_is_gone(tmp_path):
    """The count overstated: a record the full card refused was counted dropped, kept in RAM, delivered later, and
    counted again when the RAM queue overflowed. Without a flash (RAM only), what is counted is what is gone."""
    from soil import board as soil_board
    from tools.sim.vboard.hal import SimHAL
    hal = SimHAL(str(tmp_path / "state"))
    try:
        hal.flash = None                          # a board without a writable flash: RAM is the only fallback
        s = soil_board.settings(lambda name, default: {"board": "b1", "journal_max": 8192,
                                                       "full_policy": "drop_newest"}.get(name, default))
        c = soil_board.build(s, hal)
        c.start()
        for _ in range(400):                      # 8 KB holds ~180 records; RAM 64 more; the rest is gone
            c.sample()
        on_card = len(_seqs(c.journal))
        assert c.card_state == codec.CARD_FULL and len(c.ram) == c.ram_limit
        gone = c.seq - on_card - len(c.ram)
        assert gone > 0 and c.dropped() == gone
    finally:
        hal.close()
