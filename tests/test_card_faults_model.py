"""The property of issue 12 with the collector: random sequences of a full card and freed space, a pulled card put
back, write errors, database outages and power cuts, on the real Collector, Journal and gateway protocol of
tests/test_link_model.py's World (a simulated DS1307, a SimCard folder, ticks advanced by hand, a dict for the
database, the real gateway.protocol.BoardProtocol acknowledging after its "COMMIT").

At every step every reading the board sampled (every (boot, seq) up to each boot's last) is exactly one of:
delivered (committed in the database model), on the card (a valid record in the card's files: survives a power
cut), held in the board's RAM (the collector's queue or the uplink's frames in flight, for what the card could not
take), or gone, and the gone ones are exactly as many as the board counted dropped (the journal's persisted count
plus each boot's RAM overflow). A full episode never drops more than one segment from the card.

A power cut loses what waits in RAM, uncounted, until the fallback store keeps it on the board's flash: that
variant is xfail(strict) and names the missing piece.
"""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from soil import bootcount
from soil.collector import Collector
from soil.crc import crc32_hex
from soil.ds1307 import DS1307
from soil.journal import Journal
from tests.test_link_model import BOARD, BoardLink, CheckedJournal, World, ticks_diff
from tools.sim.host.sdcard import SimCard

SEGMENT = 512
CARD = 16 * 512          # a small card: it fills by itself too
SHORTEST = 37            # bytes of the shortest reading record (docs/JOURNAL.md)


class SmallCheckedJournal(CheckedJournal):
    def __init__(self, world, card):
        Journal.__init__(self, card, max_bytes=1 << 20, segment_bytes=SEGMENT)
        self.world = world
        self.at = {}

    def append(self, payload):
        position = Journal.append(self, payload)
        self.at[position[:2]] = payload
        return position


class CardWorld(World):
    """test_link_model's World on a small card with faults, a small RAM queue, and every sample counted."""

    faults = None

    def boot_board(self):
        self.card = SimCard(self.card_dir, CARD)
        for k, v in (self.faults or {}).items():
            setattr(self.card, k, v)
        rtc = DS1307(self.i2c)
        boot, _ = bootcount.next_boot(rtc, self.card)
        self.boots.append(boot)
        self.journal = SmallCheckedJournal(self, self.card)
        self.collector = Collector(BOARD, boot, rtc, self.adc, self.journal, BoardLink(self.up, self.down),
                                   self.ticks_ms, ticks_diff, interval_ms=1000, window=4, ram_queue=6,
                                   status_interval_ms=2000, uid="0badc0de")
        self.collector.start()


def _identity(record):
    boot, seq = record.split(b",")[:2]
    return int(boot), int(seq)


class CardFaultsMachine(RuleBasedStateMachine):
    POWER_CUTS = False

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="card-model-")
        self.faults = {"full": False, "removed": False, "write_error": False}
        self.w = CardWorld(self.dir, [], [], 0)
        self.w.faults = self.faults
        self.last_seq = {}          # boot -> seq at its end (earlier boots)
        self.ram_dropped = 0        # RAM overflow of earlier boots (the counters helper persists it)
        self.episode_start = None   # the journal's dropped count when the card was set full

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, ms):
        for _ in range(ms // 50):
            self.w.step(True)

    @rule(seconds=st.integers(1, 8))
    def sample(self, seconds):
        self.run(seconds * 1000)

    @rule(up=st.booleans())
    def database(self, up):
        self.w.db_up = up

    @rule(fault=st.sampled_from(["full", "removed", "write_error"]), on=st.booleans())
    def card_fault(self, fault, on):
        """full / freed, pulled / put back, write errors / none."""
        self.faults[fault] = on
        setattr(self.w.card, fault, on)
        if fault == "full":
            self.episode_start = self.w.journal.dropped if on else None

    @precondition(lambda self: self.POWER_CUTS)
    @rule()
    def power_cut(self):
        c = self.w.collector
        self.last_seq[c.boot] = c.seq
        self.ram_dropped += c.ram_dropped
        self.w.down.flush()
        self.w.boot_board()
        if self.episode_start is not None:
            self.episode_start = self.w.journal.dropped   # a reboot starts a new full episode

    def on_card(self):
        found = set()
        folder = os.path.join(self.dir, "sd", "card")
        for name in os.listdir(folder):
            if name.endswith(".log"):
                with open(os.path.join(folder, name), "rb") as f:
                    for line in f.read().split(b"\n")[:-1]:
                        p, star, crc = line.rpartition(b"*")
                        if star and crc32_hex(p) == crc:
                            found.add(_identity(p))
        return found

    @invariant()
    def every_reading_is_delivered_on_the_card_in_ram_or_counted_once(self):
        c = self.w.collector
        seqs = dict(self.last_seq)
        seqs[c.boot] = c.seq
        sampled = {(b, s) for b, last in seqs.items() for s in range(1, last + 1)}
        delivered = {(boot, seq) for (_, boot, seq) in self.w.db}
        held = {_identity(e[0]) for e in c.ram} | {_identity(e[1]) for e in c.uplink.inflight}
        gone = sampled - delivered - self.on_card() - held
        counted = c.journal.dropped + self.ram_dropped + c.ram_dropped
        assert len(gone) == counted, "%d readings gone, %d counted dropped: %s" % (len(gone), counted,
                                                                                   sorted(gone)[:8])
        if self.episode_start is not None:
            assert c.journal.dropped - self.episode_start <= SEGMENT // SHORTEST, "a full episode ate the cache"


class CardFaultsMachineWithPowerCuts(CardFaultsMachine):
    POWER_CUTS = True


_SETTINGS = settings(max_examples=int(os.environ.get("CARD_MODEL_EXAMPLES", "40")), stateful_step_count=25,
                     deadline=None, suppress_health_check=[HealthCheck.too_slow])

TestCardFaults = CardFaultsMachine.TestCase
TestCardFaults.settings = _SETTINGS


@pytest.mark.xfail(strict=True, reason="this model's board has no flash fallback wired in yet, so a power cut loses "
                                       "the readings waiting in RAM, uncounted (the virtual board's fallback is "
                                       "proven in tests/test_fallback.py and tests/test_full_card_cases.py)")
class TestCardFaultsWithPowerCuts(CardFaultsMachineWithPowerCuts.TestCase):
    settings = _SETTINGS
