"""soil.journal, soil.slots and soil.bootcount over an in-script SD card, under CPython and real MicroPython.

The card (`MemCard`) is the `card` interface of docs/ARCHITECTURE.md written at byte level in the common subset: a
dict of bytearrays, files with read/readinto/write/seek/tell/flush/close, OSError with the Linux errno numbers
(ENOENT 2, ENOSPC 28) that a board's card gives, a capacity, and a one-shot power cut that keeps only a prefix of
the write in progress (a torn record). test_collector_portable.py imports MemCard from here; the checks run only
when this file is the main script. Prints `OK journal_portable <n> checks` at the end.
"""

_ENOENT = 2
_EBADF = 9
_ENOSPC = 28


class PowerCut(BaseException):
    """The board lost power in the middle of a write. Not an Exception: the firmware must not swallow it."""


class MemCard:
    """A flat folder of files held as bytearrays. `capacity` bounds the bytes of all files together."""

    def __init__(self, capacity=1 << 20):
        self.files = {}
        self.capacity = capacity
        self.cut_after = None   # a power cut after this many more written bytes
        self.writes = 0

    def _used(self):
        n = 0
        for name in self.files:
            n += len(self.files[name])
        return n

    def open(self, name, mode="rb"):
        if mode not in ("rb", "wb", "ab", "r+b"):
            raise ValueError("mode")
        if mode in ("rb", "r+b") and name not in self.files:
            raise OSError(_ENOENT, "no such file: " + name)
        if mode == "wb" or name not in self.files:
            self.files[name] = bytearray()
        return MemFile(self, name, mode)

    def remove(self, name):
        if name not in self.files:
            raise OSError(_ENOENT, "no such file: " + name)
        del self.files[name]

    def listdir(self):
        return sorted(self.files)

    def size(self, name):
        if name not in self.files:
            raise OSError(_ENOENT, "no such file: " + name)
        return len(self.files[name])

    def free_bytes(self):
        return max(0, self.capacity - self._used())


class MemFile:
    def __init__(self, card, name, mode):
        self.card = card
        self.name = name
        self.mode = mode
        self.pos = len(card.files[name]) if mode == "ab" else 0
        self.closed = False

    def _data(self):
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self.card.files[self.name]

    def read(self, n=-1):
        data = self._data()
        end = len(data) if n is None or n < 0 else min(len(data), self.pos + n)
        out = bytes(data[self.pos:end])
        self.pos = max(self.pos, end)
        return out

    def readinto(self, buf):
        data = self._data()
        n = min(len(buf), max(0, len(data) - self.pos))
        buf[0:n] = data[self.pos:self.pos + n]
        self.pos += n
        return n

    def write(self, buf):
        data = self._data()
        if self.mode == "rb":
            raise OSError(_EBADF, "file opened for reading")
        if self.mode == "ab":
            self.pos = len(data)
        buf = bytes(buf)
        n = len(buf)
        grow = max(0, self.pos + n - len(data))
        allowed = n
        if grow > self.card.free_bytes():
            allowed = n - (grow - self.card.free_bytes())
        cut = self.card.cut_after
        if cut is not None and cut < allowed:
            self.card.cut_after = None
            self._put(buf[:cut])
            raise PowerCut("power cut after %d bytes" % cut)
        if cut is not None:
            self.card.cut_after = cut - allowed
        self._put(buf[:allowed])
        self.card.writes += 1
        if allowed < n:
            raise OSError(_ENOSPC, "card full")
        return n

    def _put(self, chunk):
        data = self.card.files[self.name]
        end = self.pos + len(chunk)
        if end > len(data):
            data.extend(bytes(end - len(data)))
        data[self.pos:end] = chunk
        self.pos = end

    def seek(self, offset, whence=0):
        base = 0 if whence == 0 else (self.pos if whence == 1 else len(self._data()))
        self.pos = base + offset
        return self.pos

    def tell(self):
        return self.pos

    def flush(self):
        self._data()

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def main():
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

    # --- the card itself (the fake must behave like the interface it stands for) ------------------------------------
    card = MemCard(capacity=100)
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
    checks.equal(bytes(card.files["f"]), b"Hello world", "in-place rewrite")
    checks.equal(card.free_bytes(), 89, "free bytes")
    try:
        card.open("g", "wb").write(b"x" * 95)
        raise AssertionError("overfilled the card")
    except OSError as e:
        checks.equal(e.args[0], _ENOSPC, "ENOSPC")
    checks.equal(card.size("g"), 89, "a full card keeps the prefix that fit")

    # --- append, read, ack, reopen ------------------------------------------------------------------------------
    card = MemCard()
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
        for line in bytes(card.files[name]).split(b"\n")[:-1]:
            checks.check(line[-9:-8] == b"*" and len(line) <= 109, "record is payload*crc on one line")
    j.ack(positions[3])
    checks.equal(j.pending, 6, "ack of the 4th leaves 6")
    j.ack(positions[1])
    checks.equal(j.pending, 6, "a stale ack changes nothing")

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
    j3 = Journal(card, max_bytes=8192, segment_bytes=256)
    j3.open()
    checks.equal((j3.pending, j3.read_next()), (0, None), "after a full ack a reboot finds nothing pending")
    p = j3.append(rec(11))
    checks.equal(j3.read_next(), (rec(11), p), "new records after the acked ones")

    # --- a torn tail: a power cut in the middle of an append -----------------------------------------------------
    card = MemCard()
    j = Journal(card, max_bytes=8192, segment_bytes=4096)
    j.open()
    for i in range(1, 4):
        j.append(rec(i))
    card.cut_after = 7
    try:
        j.append(rec(4))
        raise AssertionError("the power cut did not happen")
    except PowerCut:
        checks.check(True, "power cut during the 4th append")
    tail = bytes(card.files[segments(card)[-1]])
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

    # garbage glued to the tail at byte level (zeros left by FAT after a cut), and a corrupt complete line
    card = MemCard()
    j = Journal(card, max_bytes=8192, segment_bytes=4096)
    j.open()
    for i in range(1, 4):
        j.append(rec(i))
    seg = card.files[segments(card)[0]]
    seg[3] = seg[3] ^ 0x04   # flip a bit in the first record's payload: its CRC no longer matches
    seg.extend(b"1,99,2026\x00\x00\x00\x00")
    j = Journal(card, max_bytes=8192, segment_bytes=4096)
    j.open()
    checks.equal(j.pending, 2, "corrupt line and garbage tail are not pending readings")
    checks.equal([x for x, _ in drain(j)], [rec(2), rec(3)], "only the intact records are read")
    checks.equal(j.corrupt, 1, "the bad line is counted as corrupt")
    p = j.append(rec(4))
    checks.equal(j.read_next(), (rec(4), p), "appending after a garbage tail works")

    # --- full card ------------------------------------------------------------------------------------------------
    card = MemCard()
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
    checks.equal(j.dropped, refused, "refused records are counted (F6)")
    checks.equal(j.state, "full", "state full")
    j = Journal(card, max_bytes=256, segment_bytes=128, policy="drop_newest")
    j.open()
    checks.equal((j.dropped, j.pending), (refused, stored), "the dropped count survives a reboot")

    card = MemCard()
    j = Journal(card, max_bytes=512, segment_bytes=128, policy="drop_oldest")
    j.open()
    for i in range(1, 21):
        j.append(rec(i))
    got = [x for x, _ in drain(j)]
    checks.check(got and got[-1] == rec(20) and len(got) + j.dropped == 20,
                 "drop_oldest keeps the newest and counts the rest (%d kept, %d dropped)" % (len(got), j.dropped))

    card = MemCard(capacity=2000)
    j = Journal(card, max_bytes=65536, segment_bytes=256, policy="drop_oldest")
    j.open()
    kept = []
    for i in range(1, 60):
        j.append(rec(i))
    got = [x for x, _ in drain(j)]
    checks.check(got[-1] == rec(59) and len(got) + j.dropped == 59, "ENOSPC from the card: oldest dropped")
    checks.check(card._used() <= card.capacity, "never more than the card holds")

    # --- slots ------------------------------------------------------------------------------------------------------
    card = MemCard()
    s = SlotFile(card, "x.slt", 12)
    checks.equal(s.load(), None, "no file: nothing stored")
    s.store(b"first")
    s.store(b"second")
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"second", "newest value loads")
    checks.equal(card.size("x.slt"), 2 * s.span, "two sector-aligned slots")
    checks.equal(s.span % 512, 0, "slot span is a multiple of 512")
    card.cut_after = 5
    try:
        s.store(b"third")
        raise AssertionError("no power cut")
    except PowerCut:
        pass
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"second", "a torn slot write leaves the previous value")
    s = SlotFile(card, "x.slt", 12)
    s.load()
    s.store(b"fourth")
    checks.equal(SlotFile(card, "x.slt", 12).load(), b"fourth", "stores after a torn write")
    data = card.files["x.slt"]
    newest = 0 if data[0] > data[s.span] else s.span
    data[newest + 7] ^= 0xFF
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

    card = MemCard()
    rtc = Nvram()
    checks.equal(bootcount.next_boot(rtc, card), (1, 2), "first boot: 1, kept in two places")
    checks.equal(bootcount.next_boot(rtc, card), (2, 2), "second boot")
    rtc2 = Nvram()
    checks.equal(bootcount.next_boot(rtc2, card), (3, 2), "a new RTC battery: the card still knows")
    checks.equal(bootcount.next_boot(rtc2, MemCard()), (4, 2), "a new card: the NVRAM still knows")
    checks.equal(bootcount.next_boot(None, card)[0], 4, "card alone")
    checks.equal(bootcount.next_boot(), (1, 0), "nowhere to keep it: stores 0")

    checks.done()


if __name__ == "__main__":
    main()
