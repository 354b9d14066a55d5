"""The fallback journal on the board's flash (issue 12) under CPython and the real MicroPython interpreter.

The same soil.collector and soil.journal code as on a board, over two chip-model cards (tools/sim/chips/sdcard.py):
the SD card (512-byte blocks) and the board's flash, a card model of a Pico's LittleFS (1.4 MB in 4096-byte blocks),
each on a fresh folder of test_journal_portable.py's `CardFolders`; the DS1307 chip model behind the portable
driver; ticks that wrap like MicroPython's. Nobody acknowledges anything, so every reading must be on a store.

- the card pulled: readings go to the flash, none to RAM, none counted as dropped;
- a power cut (new card objects on the same folders, a new boot): the flash recovers them;
- the card back: they are moved to it, in order, exactly once, and the flash journal is let go;
- a power cut in the middle of a move: nothing lost, only identities of the interrupted batch on the card twice;
- a full card refusing records (drop_newest): they are kept on the flash, so they are not counted as dropped.

Prints `OK fallback_portable <n> checks` at the end.
"""

from boardkit import TICKS_PERIOD, ChipI2C, FixedADC, RecordingLink, Ticks, ticks_diff
from portable import Checks
from test_journal_portable import CardFolders, reboot

from chips.ds1307 import DS1307 as Chip
from chips.sdcard import PowerCut
from soil import codec
from soil.collector import MOVE_BATCH, Collector
from soil.ds1307 import DS1307
from soil.journal import DROP_NEWEST, Journal

checks = Checks("fallback_portable")
folders = CardFolders("fbcard")
ticks = Ticks(TICKS_PERIOD - 1500)
chip = Chip(ticks.clock_ms)
i2c = ChipI2C()
i2c.targets[0x68] = chip
DS1307(i2c).set_datetime((2026, 7, 1, 0, 0, 0))


def board(card, flash, boot, max_bytes=1 << 20, policy="drop_oldest"):
    journal = Journal(card, max_bytes=max_bytes, segment_bytes=512, policy=policy)
    c = Collector("fb-1", boot, DS1307(i2c), FixedADC((1234,)), journal, RecordingLink(), ticks.ticks_ms,
                  ticks_diff, interval_ms=1000, status_interval_ms=5000, uid="e660383b13572a2f", flash=flash)
    c.uplink.rto = c.uplink.rto_ms = 600000   # nobody answers; no resends needed for this script
    c.start()
    return c


def run(c, ms):
    left = ms
    while left > 0:
        ticks.advance(100)
        c.step()
        left -= 100


def identities(journal):
    journal.rewind()
    out = []
    while True:
        item = journal.read_next()
        if item is None:
            return out
        f = item[0].split(b",")
        out.append((int(f[0]), int(f[1])))


card = folders.card(8 << 20)
flash = folders.card(1408 << 10, block_size=4096)

# --- the card pulled, then a power cut ------------------------------------------------------------------------------
c = board(card, flash, 1)
checks.check(c.fallback is None, "the flash journal is not made while the card works")
run(c, 3000)
card.removed = True
run(c, 20000)
checks.equal(c.card_state, codec.CARD_ABSENT, "the board sees the card pulled")
checks.check(c.fallback is not None and c.fallback.pending >= 18, "readings wait on the flash")
checks.equal((len(c.ram), c.dropped()), (0, 0), "none in RAM, none dropped")
boot1 = c.seq

card = reboot(card)                          # the power goes; the card is still out
card.removed = True
flash = reboot(flash)
c = board(card, flash, 2)
checks.check(c.fallback is not None, "the flash journal is opened at boot while it holds readings")
run(c, 5000)
boot2 = c.seq
checks.check(boot2 >= 4, "readings of the new boot")
checks.check(c.fallback.pending >= boot2 + 18, "the flash kept the first boot's readings and takes more")

card.removed = False                         # the card is back: moved at the next status, MOVE_BATCH per step
run(c, 8000)
checks.equal(c.card_state, codec.CARD_OK, "the card works again")
checks.check(c.fallback is None, "all moved, the flash journal let go")
want = [(1, s) for s in range(1, boot1 + 1)] + [(2, s) for s in range(1, c.seq + 1)]
checks.equal(identities(c.journal), want, "every reading on the card once, in order")
checks.equal(c.dropped(), 0, "nothing dropped")

# --- a power cut in the middle of a move ------------------------------------------------------------------------------
card = reboot(card)
flash = reboot(flash)
c = board(card, flash, 3)
card.removed = True
run(c, 3 * MOVE_BATCH * 1000)
card.removed = False
card.power_cut_after(2 * MOVE_BATCH * 44 - 30)  # inside the second batch of appends to the card
cut = False
try:
    run(c, 10000)
except PowerCut:
    cut = True
checks.check(cut, "the power went in the middle of the move")
sampled = [(3, s) for s in range(1, c.seq + 1)]   # each stored before the cut (the flash first, then the move)
card = reboot(card)
flash = reboot(flash)
c = board(card, flash, 4)
run(c, 10000)
checks.check(c.fallback is None, "the move finished after the cut")
on_card = [i for i in identities(c.journal) if i[0] == 3]
first = []
for ident in on_card:
    if ident not in first:
        first.append(ident)
checks.equal(first, sampled, "every reading of the cut boot on the card, in order")
checks.check(len(on_card) - len(first) <= MOVE_BATCH, "at most the interrupted batch twice (same identities)")
checks.equal(c.dropped(), 0, "nothing dropped")

# --- a full card refusing records: kept on the flash, so not counted ---------------------------------------------------
card2 = folders.card(8 << 20)
flash2 = folders.card(1408 << 10, block_size=4096)
c = board(card2, flash2, 1, max_bytes=1024, policy=DROP_NEWEST)
run(c, 40000)
checks.equal(c.card_state, codec.CARD_FULL, "the small card is full")
checks.check(c.fallback is not None and c.fallback.pending > 0, "the refused readings are on the flash")
checks.equal(c.journal.pending + c.fallback.pending, c.seq, "every reading on the card or the flash")
checks.equal(c.dropped(), 0, "a reading the card refused and the flash kept is not dropped")

folders.remove()
checks.done()
