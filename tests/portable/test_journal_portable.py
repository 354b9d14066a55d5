"""soil.journal, soil.slots and soil.bootcount over the SD card chip model, under CPython and real MicroPython.

The card is tools/sim/chips/sdcard.py (`chips.sdcard.Card`, the one SD card model, which test_chips.py tests): the
`card` interface of docs/ARCHITECTURE.md over a folder of whichever interpreter runs this script, with FAT-like
block accounting (one directory block per file, `free_bytes()` in whole free blocks), ENOSPC after writing what fits,
Linux errno numbers, and one-shot power cuts that keep a prefix of the write in progress, optionally followed by
zeros or garbage to the end of its block (`PowerCut`; the card is dead after it, and a new `Card` on the same
folder is the reboot). The test reads and corrupts the card's bytes only through that interface.

`CardFolders` gives each card a fresh folder under one folder per run, relative to the working directory (a
fresh folder tests/mpy.py makes under CPython, /app in the in-memory filesystem under MicroPython): no tempfile, which MicroPython lacks.
test_collector_portable.py imports it from here; the checks run only when this file is the main script.
Prints `OK journal_portable <n> checks` at the end.
"""

import os

from chips.sdcard import Card, PowerCut

_ENOENT = 2
_ENOSPC = 28
BS = 512


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class CardFolders:
    """Fresh folders for chip-model cards: `.<prefix>-<n>` in the working directory, the first n not taken (os.mkdir
    is the test, so two runs at once never share one), a subfolder per card; `remove()` deletes it all."""

    def __init__(self, prefix):
        n = 0
        while True:
            n += 1
            base = ".%s-%d" % (prefix, n)
            try:
                os.mkdir(base)
                break
            except OSError:
                if n >= 1000 or not _exists(base):
                    raise
        self.base = base
        self.cards = 0

    def card(self, size=1 << 20, block_size=BS):
        """A new, empty card of `size` bytes on a folder of its own."""
        self.cards += 1
        return Card("%s/card%d" % (self.base, self.cards), size, block_size=block_size)

    def remove(self):
        for sub in os.listdir(self.base):
            path = self.base + "/" + sub
            for name in os.listdir(path):
                os.remove(path + "/" + name)
            os.rmdir(path)
        os.rmdir(self.base)


def reboot(card):
    """The same card after a reboot (or a power cut): a new Card on the same folder."""
    return Card(card.root, card.blocks * card.block_size, block_size=card.block_size)


def read_all(card, name):
    with card.open(name, "rb") as f:
        return f.read()


def xor_byte(card, name, offset, mask):
    """Flip bits of one byte in place, as a bad block would."""
    with card.open(name, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes((b ^ mask,)))


def blocks_used(card):
    """The card's blocks in use, counted here from the files: a directory block each plus their data blocks."""
    n = 0
    for name in card.listdir():
        n += 1 + (card.size(name) + card.block_size - 1) // card.block_size
    return n


def main():
    folders = CardFolders("jcard")
    try:
        run(folders)
    finally:
        folders.remove()


def run(folders):
    from portable import Checks
    from soil import bootcount
    from soil.journal import Journal, JournalFull
    from soil.slots import SlotFile

    checks = Checks("journal_portable")

    def rec(i):
        return ("1,%d,2026-11-21T09:55:%02dZ,%d," % (i, i % 60, 1000 + i)).encode()

    def drain(j):
        out = []
        while True:
            item = j.read_next()
            if item is None:
                return out
            out.append(item)

    def segments(card):
        return [n for n in card.listdir() if n.endswith(".log")]

    def cut(card, nbytes, action, tail="prefix"):
        """Arm a power cut, run `action`, expect the cut; returns the card after the reboot."""
        card.power_cut_after(nbytes, tail)
        try:
            action()
        except PowerCut:
            return reboot(card)
        raise AssertionError("the power cut did not happen")

    # --- the card itself (the interface the journal is written against, as this script uses it) -------------------
    card = folders.card(4 * BS)
    try:
        card.open("missing", "rb")
        raise AssertionError("opened a missing file")
    except OSError as e:
        checks.equal(e.args[0], _ENOENT, "missing file is ENOENT")
    with card.open("f", "wb") as f:
        checks.equal(f.write(b"hello"), 5, "write")
    with card.open("f", "ab") as f:
        f.write(b" world")
    with card.open("f", "r+b") as f:
        f.seek(0)
        f.write(b"H")
        f.seek(6)
        buf = bytearray(3)
        checks.equal(f.readinto(memoryview(buf)[0:2]), 2, "readinto a memoryview slice")
        checks.equal(bytes(buf), b"wo\x00", "readinto data")
    checks.equal(read_all(card, "f"), b"Hello world", "in-place rewrite")
    checks.equal(card.free_bytes(), 2 * BS,
                 "free bytes: whole free blocks (11 bytes take a directory block and a data block)")
    with card.open("g", "wb") as f:
        try:
            f.write(b"x" * (2 * BS))
            raise AssertionError("overfilled the card")
        except OSError as e:
            checks.equal(e.args[0], _ENOSPC, "ENOSPC")
    checks.equal(card.size("g"), BS, "a full card keeps the prefix that fit (the one block it could allocate)")
    try:
        card.open("h", "wb")
        raise AssertionError("created a file on a full card")
    except OSError as e:
        checks.equal((e.args[0], card.listdir()), (_ENOSPC, ["f", "g"]), "a new file needs a directory block")

    # --- append, read, ack, reopen ------------------------------------------------------------------------------
    card = folders.card()
    j = Journal(card, max_bytes=8192, segment_bytes=256)
    j.open()
    checks.equal((j.pending, j.read_next()), (0, None), "fresh journal is empty")
    positions = []
    for i in range(1, 11):
        positions.append(j.append(rec(i)))
    checks.equal(j.pending, 10, "ten appended")
    checks.check(positions == sorted(positions), "positions increase")
    checks.check(len(segments(card)) > 1, "256-byte segments roll over")
    items = drain(j)
    checks.equal([p for p, _ in items], [rec(i) for i in range(1, 11)], "read back in order")
    checks.equal([pos for _, pos in items], positions, "read positions equal append positions")
    for name in segments(card):
        for line in read_all(card, name).split(b"\n")[:-1]:
            checks.check(line[-9:-8] == b"*" and len(line) <= 109, "record is payload*crc on one line")
    j.ack(positions[3])
    checks.equal(j.pending, 6, "ack of the 4th leaves 6")
    j.ack(positions[1])
    checks.equal(j.pending, 6, "a stale ack changes nothing")

    card = reboot(card)
    j2 = Journal(card, max_bytes=8192, segment_bytes=256)
    j2.open()
    checks.equal(j2.pending, 6, "reopened: 6 pending (F2: nothing wiped at boot)")
    checks.equal([p for p, _ in drain(j2)], [rec(i) for i in range(5, 11)], "reopened: the unacked ones, in order")
    j2.rewind()
    again = drain(j2)
    checks.equal(len(again), 6, "rewind reads them again")
    j2.ack(again[-1][1])
    checks.equal(j2.pending, 0, "all acked")
    checks.check(len(segments(card)) <= 1, "acked segments are deleted: %r" % card.listdir())
    card = reboot(card)
    j3 = Journal(card, max_bytes=8192, segment_bytes=256)
    j3.open()
    checks.equal((j3.pending, j3.read_next()), (0, None), "after a full ack a reboot finds nothing pending")
    p = j3.append(rec(11))
    checks.equal(j3.read_next(), (rec(11), p), "new records after the acked ones")

    # --- a torn tail: a power cut in the middle of an append -----------------------------------------------------
    card = folders.card()
    j = Journal(card, max_bytes=8192, segment_bytes=4096)
    j.open()
    for i in range(1, 4):
        j.append(rec(i))
    card = cut(card, 7, lambda: j.append(rec(4)))
    checks.check(True, "power cut during the 4th append")
    tail = read_all(card, segments(card)[-1])
    checks.check(not tail.endswith(b"\n") and tail.endswith(rec(4)[:7]), "the card holds a torn prefix")
    j = Journal(card, max_bytes=8192, segment_bytes=4096)
    j.open()
    checks.equal(j.pending, 3, "after the cut: the three complete records are pending, the torn one is not")
    p5 = j.append(rec(5))
    checks.equal(len(segments(card)), 2, "a new record goes to a fresh segment, never glued to the torn bytes")
    got = drain(j)
    checks.equal([x for x, _ in got], [rec(1), rec(2), rec(3), rec(5)], "torn tail skipped, the rest intact")
    checks.equal(j.torn, 1, "torn tail counted")
    j.ack(p5)
    checks.equal(j.pending, 0, "acked through the new record")

    # the same cut, where the card leaves zeros or garbage after the prefix to the end of the block (as FAT can)
    for tail in ("zeros", "garbage"):
        card = folders.card()
        j = Journal(card, max_bytes=8192, segment_bytes=4096)
        j.open()
        for i in range(1, 4):
            j.append(rec(i))
        card = cut(card, 7, lambda: j.append(rec(4)), tail)
        checks.equal(card.size(segments(card)[-1]) % BS, 0, "%s: the cut block is filled to its end" % tail)
        j = Journal(card, max_bytes=8192, segment_bytes=4096)
        j.open()
        checks.equal(j.pending, 3, "%s: the three complete records are pending" % tail)
        j.append(rec(5))
        checks.equal([x for x, _ in drain(j)], [rec(1), rec(2), rec(3), rec(5)],
                     "%s: the torn block skipped, the rest intact, the new record after it" % tail)

    # garbage glued to the tail at byte level (zeros left by FAT after a cut), and a corrupt complete line
    card = folders.card()
    j = Journal(card, max_bytes=8192, segment_bytes=4096)
    j.open()
    for i in range(1, 4):
        j.append(rec(i))
    seg = segments(card)[0]
    xor_byte(card, seg, 3, 0x04)   # flip a bit in the first record's payload: its CRC no longer matches
    with card.open(seg, "ab") as f:
        f.write(b"1,99,2026\x00\x00\x00\x00")
    card = reboot(card)
    j = Journal(card, max_bytes=8192, segment_bytes=4096)
    j.open()
    checks.equal(j.pending, 2, "corrupt line and garbage tail are not pending readings")
    checks.equal([x for x, _ in drain(j)], [rec(2), rec(3)], "only the intact records are read")
    checks.equal(j.corrupt, 1, "the bad line is counted as corrupt")
    p = j.append(rec(4))
    checks.equal(j.read_next(), (rec(4), p), "appending after a garbage tail works")

    # --- full card ------------------------------------------------------------------------------------------------
    card = folders.card()
    j = Journal(card, max_bytes=256, segment_bytes=128, policy="drop_newest")
    j.open()
    stored = 0
    refused = 0
    for i in range(1, 8):
        try:
            j.append(rec(i))
            stored += 1
        except JournalFull:
            refused += 1
    checks.check(stored > 0 and refused > 0, "drop_newest: some stored, the rest refused (%d/%d)" % (stored, refused))
    checks.equal(j.dropped, 0, "refused records are not counted: the caller still holds them")
    checks.equal(j.state, "full", "state full")
    card = reboot(card)
    j = Journal(card, max_bytes=256, segment_bytes=128, policy="drop_newest")
    j.open()
    checks.equal((j.dropped, j.pending), (0, stored), "what was stored survives a reboot")

    card = folders.card()
    j = Journal(card, max_bytes=512, segment_bytes=128, policy="drop_oldest")
    j.open()
    for i in range(1, 21):
        j.append(rec(i))
    got = [x for x, _ in drain(j)]
    checks.check(got and got[-1] == rec(20) and len(got) + j.dropped == 20,
                 "drop_oldest keeps the newest and counts the rest (%d kept, %d dropped)" % (len(got), j.dropped))

    # The card, not the budget, runs out: 8 blocks hold jstate.bin (a directory block and two slot sectors) and one
    # 1024-byte segment (three blocks), and a second segment's record that crosses into a block the card no longer
    # has is written up to the block's end, then ENOSPC: a torn record, as a full board leaves.
    card = folders.card(8 * BS)
    j = Journal(card, max_bytes=65536, segment_bytes=1024, policy="drop_oldest")
    j.open()
    for i in range(1, 60):
        j.append(rec(i))
    got = [x for x, _ in drain(j)]
    checks.check(got[-1] == rec(59) and len(got) + j.dropped == 59, "ENOSPC from the card: oldest dropped")
    checks.check(j.dropped > 0, "the card, not the budget, was full (%d dropped)" % j.dropped)
    checks.check(j.torn > 0, "the record ENOSPC tore at a block's end is skipped (it was written again, whole)")
    checks.check(blocks_used(card) <= card.blocks, "never more than the card holds")

    # A card that reports itself full whatever is deleted: one full episode gives up at most one segment.
    card = folders.card()
    j = Journal(card, max_bytes=65536, segment_bytes=256, policy="drop_oldest")
    j.open()
    for i in range(1, 40):
        j.append(rec(i))
    card.full = True
    refused = 0
    for i in range(40, 80):
        try:
            j.append(rec(i))
        except JournalFull:
            refused += 1
    checks.check(refused > 30 and 0 < j.dropped <= 256 // len(rec(1)),
                 "a card that stays full loses at most one segment (%d dropped, %d refused)" % (j.dropped, refused))

    # --- slots ------------------------------------------------------------------------------------------------------
    card = folders.card()
    s = SlotFile(card, "x.slt", 12)
    checks.equal(s.load(), None, "no file: nothing stored")
    s.store(b"first")
    s.store(b"second")
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"second", "newest value loads")
    checks.equal(card.size("x.slt"), 2 * s.span, "two sector-aligned slots")
    checks.equal(s.span % 512, 0, "slot span is a multiple of 512")
    card = cut(card, 5, lambda: s.store(b"third"))
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"second", "a torn slot write leaves the previous value")
    s = SlotFile(card, "x.slt", 12)
    s.load()
    card = cut(card, 5, lambda: s.store(b"third"), "garbage")
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"second",
                 "a torn slot write that scrambles the rest of its sector leaves the previous value")
    s = SlotFile(card, "x.slt", 12)
    s.load()
    s.store(b"fourth")
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"fourth", "stores after a torn write")
    gens = [read_all(card, "x.slt")[off] for off in (0, s.span)]
    newest = 0 if gens[0] > gens[1] else s.span
    xor_byte(card, "x.slt", newest + 7, 0xFF)
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"second", "a corrupt newest slot falls back to the other")
    try:
        s.store(b"x" * 13)
        raise AssertionError("stored an oversized payload")
    except ValueError:
        checks.check(True, "oversized payload refused")

    # --- the boot counter -------------------------------------------------------------------------------------------
    class Nvram:
        def __init__(self):
            self.ram = bytearray(48)

        def nvram_read(self, offset, n):
            return bytes(self.ram[offset:offset + n])

        def nvram_write(self, offset, data):
            self.ram[offset:offset + len(data)] = data

    card = folders.card()
    rtc = Nvram()
    checks.equal(bootcount.next_boot(rtc, card), (1, 2), "first boot: 1, kept in two places")
    checks.equal(bootcount.next_boot(rtc, reboot(card)), (2, 2), "second boot")
    rtc2 = Nvram()
    checks.equal(bootcount.next_boot(rtc2, reboot(card)), (3, 2), "a new RTC battery: the card still knows")
    checks.equal(bootcount.next_boot(rtc2, folders.card()), (4, 2), "a new card: the NVRAM still knows")
    checks.equal(bootcount.next_boot(None, reboot(card))[0], 4, "card alone")
    checks.equal(bootcount.next_boot(), (1, 0), "nowhere to keep it: stores 0")

    checks.done()


if __name__ == "__main__":
    main()
