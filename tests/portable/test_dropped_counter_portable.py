"""The board's `dropped` counter (soil.bootcount.DropCounter through soil.collector) survives reboots, a dead RTC
battery and a new card, under CPython and the real MicroPython interpreter (issue 12: it was reset at every boot).

Built like test_collector_portable.py: the DS1307 chip model on a byte-level I2C bus (its NVRAM is where the counter
lives), the SD card chip model (its A/B slot file `drop.slt`), a link that records the board's frames. The script
loses readings the two ways a board loses them (a RAM queue that overflows while the card is pulled; the journal's
full-card policy) and reads the S frame's `dropped` after each reboot. Prints `OK dropped_counter_portable <n> checks`.
"""

from boardkit import TICKS_PERIOD, ChipI2C, FixedADC, RecordingLink, Ticks, of_kind, ticks_diff
from portable import Checks
from test_journal_portable import CardFolders, reboot

from chips.ds1307 import DS1307 as Chip
from soil import bootcount, codec
from soil.collector import Collector
from soil.ds1307 import DS1307
from soil.journal import DROP_NEWEST, Journal

checks = Checks("dropped_counter_portable")
ticks = Ticks(TICKS_PERIOD - 2500)
folders = CardFolders("dcard")


def new_chip():
    chip = Chip(ticks.clock_ms)
    i2c = ChipI2C()
    i2c.targets[0x68] = chip
    return DS1307(i2c)


class Board:
    """One boot of a board: the boot counter, the dropped counter, the journal and the collector, as soil.board
    builds them."""

    def __init__(self, rtc, card, ram_queue=200, policy=DROP_NEWEST):
        self.card = card
        self.boot, _ = bootcount.next_boot(rtc, card)
        self.journal = Journal(card, max_bytes=16384, segment_bytes=512, policy=policy)
        self.link = RecordingLink()
        self.c = Collector("bench-1", self.boot, rtc, FixedADC((512,)), self.journal, self.link, ticks.ticks_ms,
                           ticks_diff, interval_ms=1000, window=4, status_interval_ms=1000, ram_queue=ram_queue,
                           uid="e660383b13572a2f", drops=bootcount.DropCounter(rtc, card))
        self.c.uplink.rto = self.c.uplink.rto_base = 600000    # no acks, no resends: readings pile up
        self.c.start()

    def run(self, seconds):
        for _ in range(seconds * 10):
            ticks.advance(100)
            self.c.step()

    def status_dropped(self):
        """The `dropped` of the newest S frame the board sends (sampling paused meanwhile: no new losses)."""
        self.c.sampling = False
        self.run(2)
        self.c.sampling = True
        s = of_kind(self.link.take(), "S")
        checks.check(len(s) > 0, "boot %d sends status frames" % self.boot)
        return s[-1][3]


rtc = new_chip()
card = folders.card()

# --- boot 1: the card is pulled; readings wait in RAM (4) beyond the window (4); the rest are lost and counted ------
b = Board(rtc, card, ram_queue=4)
checks.equal(b.status_dropped(), 0, "boot 1 starts with nothing dropped")
card.removed = True
b.run(20)
lost1 = b.c.dropped()
checks.check(lost1 > 0, "readings lost while the card was out and RAM overflowed (%d)" % lost1)
checks.equal(b.status_dropped(), lost1, "the S frame says so")

# --- boot 2 (the card back in): the count is the board's lifetime count, not reset -------------------------------
card = reboot(card)
b = Board(rtc, card, ram_queue=4)
checks.equal(b.boot, 2, "boot 2")
checks.equal(b.status_dropped(), lost1, "after a reboot the S frame still counts boot 1's losses")

# --- a second episode in boot 2 adds to it ----------------------------------------------------------------------
card.removed = True
b.run(20)
lost2 = b.c.dropped()
checks.check(lost2 > lost1, "a second loss adds to the count (%d -> %d)" % (lost1, lost2))
card.removed = False

# --- the journal's own losses (drop_newest on a full card; the RAM queue large enough here) are folded in once ------
card = reboot(card)
b = Board(rtc, card)
checks.equal(b.status_dropped(), lost2, "boot 3 keeps both episodes")
card.full = True
b.run(12)
full_lost = b.journal.dropped
checks.check(full_lost > 0, "the full card refused readings (%d)" % full_lost)
checks.equal(b.status_dropped(), lost2 + full_lost, "the journal's drops are in the count")
card.full = False
card = reboot(card)                          # a power cut: the journal's count is on the card already
b = Board(rtc, card)
checks.equal(b.status_dropped(), lost2 + full_lost, "after the reboot the journal's drops are not counted twice")
total = lost2 + full_lost

# --- a power cut after the journal counted a loss and before the counter saw it: added once at the next start ----
card.full = True
b.run(1)                                     # no status frame in between: the counter has not seen it yet
extra = b.journal.dropped - full_lost
checks.check(extra > 0, "the journal refused more readings (%d)" % extra)
card = reboot(card)
b = Board(rtc, card)
checks.equal(b.status_dropped(), total + extra, "losses the journal kept before the cut are counted, once")
total += extra
card = reboot(card)
b = Board(rtc, card)
checks.equal(b.status_dropped(), total, "and not again at the next boot")

# --- either store alone keeps the count ---------------------------------------------------------------------------
rtc2 = new_chip()                            # a new DS1307 (a dead battery): its NVRAM is blank
card = reboot(card)
b = Board(rtc2, card)
checks.equal(b.status_dropped(), total, "a new RTC battery: the card still knows")
card2 = folders.card()                       # a new card: the NVRAM knows
b = Board(rtc2, card2)
checks.equal(b.status_dropped(), total, "a new card: the NVRAM still knows")
card2.full = True
b.run(3)
new_card_lost = b.journal.dropped
checks.check(new_card_lost > 0, "the new card's journal drops too (%d)" % new_card_lost)
checks.equal(b.status_dropped(), total + new_card_lost, "only the new card's own losses are added")
checks.equal(bootcount.DropCounter(rtc2, None).total, total + new_card_lost, "the NVRAM record alone")
checks.equal(bootcount.DropCounter(None, reboot(card2)).total, total + new_card_lost, "the card record alone")
checks.equal(bootcount.DropCounter().total, 0, "nowhere to keep it: counts from 0")

# --- the NVRAM layout: the boot counter's 8 bytes are untouched ---------------------------------------------------
checks.equal(bytes(rtc2.nvram_read(0, 2)), b"BT", "boot counter at NVRAM 0..7")
checks.equal(bytes(rtc2.nvram_read(8, 2)), b"DR", "dropped counter at NVRAM 8..19")

folders.remove()
checks.done()
