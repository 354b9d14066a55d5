"""The SD-card cache journal: readings wait here until the gateway says they are committed.

Why this shape: the book's sketch kept one cache file, deleted it after a replay whether or not the inserts
worked (flaw F1), deleted it again at every boot (F2), never asked what happens on a full card (F6) and copied
lines into a fixed buffer without a bound (F8). This journal is append-only, never wiped, frees space only behind
an acknowledgement that the gateway sends after COMMIT, and reads through one fixed buffer (soil.records).

On-card format (all in the card's one folder; see docs/JOURNAL.md for the long version):

    j0000001.log, j0000002.log, ...   segments, numbered upwards, each capped at `segment_bytes`
    jstate.bin                        A/B SlotFile (soil.slots): ack pointer, dropped counter, drop mark

- A segment is text: one record per line, `<payload>*<crc>\n` (soil.records has the format and its bounded
  reader). `cat j0000001.log` on a PC shows the readings.
- `jstate.bin` holds 16 bytes: ack segment (u32 LE), ack offset (u32 LE), dropped (u32 LE), drop mark (u32 LE: the
  last segment given up by the full-card policy, deleted again by `open()` if a cut left it; 0: none). A card
  written before the mark existed holds 12 bytes (no mark). Everything before the ack pointer is acknowledged.
  Segment numbers never go back and are never reused.
- A record counts as cached once `append()` returned: it was written in one write and flushed.

Recovery (`open()`, once at boot; it never deletes an unacknowledged record): segments wholly before the ack pointer
are deleted (finishing a compaction a power cut interrupted); the records after the ack pointer are counted
(`pending`); if the last segment does not end with a newline it holds a torn record, and new records go to a fresh
segment so they can never be glued onto the torn bytes. While reading, a line without a newline at the end of a
segment (a torn tail: any prefix of a record, perhaps followed by zeros or garbage to the end of a block) is skipped;
a complete line that fails the checks, or that is longer than MAX_RECORD, is skipped and counted in `corrupt`.

Acknowledgement and compaction: `ack(position)` writes the new pointer to the slot file first, then deletes the
segments wholly before it. A cut between the two leaves extra files that the next `open()` deletes. A cut while the
pointer is written leaves the previous pointer (the slot store is A/B), so the records acknowledged by that ack are
read and sent again: delivery is at-least-once, and the gateway stores a reading once by its identity (F9).

Full card (`max_bytes` budget, or ENOSPC from the card), policy chosen at construction. "Full" is not "failing": a
full card works, and space comes back when readings are acknowledged; a failing card (EIO, ENODEV) fails whatever is
deleted, so nothing is ever deleted for it. A refused record raises `JournalFull` and is NOT counted: it was never
cached, the caller still holds it and decides (the collector keeps it on the board's flash or in RAM, and counts it
only if it is lost).
`dropped` counts only readings the journal deleted from the card before anyone had them: a segment whose records
were read (sent) and not yet acknowledged is never given up (the gateway may commit them), the oldest segment
after them goes instead.
- 'drop_oldest' (default; a logger would rather keep the newest readings): give up the oldest segment holding no
  sent-and-unacknowledged record, add its records to `dropped`, persist that (with the ack pointer moved past it,
  or with it as the drop mark), delete it, then write the new record. For the budget, segments are dropped until
  the record fits. After ENOSPC, one full episode (from the ENOSPC to the next append after which the card has
  free space again; a reboot starts a new one) gives up at most ONE segment with readings in it: one dropped
  segment always makes room for a record when the journal is what fills the card, so a card still full after it
  is full for other reasons (another file, a card that reports itself full), and deleting more would only eat the
  cache. The record is then refused (JournalFull).
- 'drop_newest': keep what is cached and refuse the new record (JournalFull).
`dropped` is never reset (it lives in jstate.bin), so the board can report it (F6). Card errors other than ENOSPC
(ENODEV removed, EIO) propagate as OSError and set `state` to 'error'.

Positions are opaque, comparable tuples `(segment, offset, ordinal)`: the place just after a record, and the
record's ordinal in this boot's numbering. They are valid until the next `open()`.

RAM: the journal keeps one small int per segment (1024 segments for the default 4 MiB), a record's write buffer and
the reader's (366 bytes) and its counters; it never holds records, only the one being parsed.
"""

from soil import const, records
from soil.card import ENOENT, ENOSPC, errno_of
from soil.records import BAD, EOF, MAX_RECORD, VALID, segment_name, segment_number
from soil.slots import SlotFile

STATE_FILE = "jstate.bin"
DEFAULT_MAX_BYTES = const(4 << 20)   # about a day of one reading per second
DROP_OLDEST = const("drop_oldest")
DROP_NEWEST = const("drop_newest")
POLICIES = (DROP_OLDEST, DROP_NEWEST)
_NL = const(0x0A)
_STATE_BYTES = const(16)


class JournalFull(Exception):
    """The new record was refused (policy 'drop_newest', or 'drop_oldest' could not make room). It is not counted in
    `dropped`: it was never cached, and the caller still holds it. Not an OSError: the card itself works, and space
    comes back when readings are acknowledged."""


class Journal:
    """Append-only, acknowledged, crash-safe cache of readings on the card (see the module docstring)."""

    def __init__(self, card, max_bytes=DEFAULT_MAX_BYTES, segment_bytes=4096, policy=DROP_OLDEST):
        if policy not in POLICIES:
            raise ValueError("policy must be 'drop_oldest' or 'drop_newest'")
        if segment_bytes < MAX_RECORD or max_bytes < segment_bytes:
            raise ValueError("need max_bytes >= segment_bytes >= MAX_RECORD")
        self._card = card
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.policy = policy
        self._slot = SlotFile(card, STATE_FILE, _STATE_BYTES)
        self._reader = records.RecordReader(card)
        self._wbuf = bytearray(MAX_RECORD)
        self._opened = False
        self.state = "ok"
        self.dropped = 0
        self.corrupt = 0
        self.torn = 0
        self._reset_ram()

    def _reset_ram(self):
        self._segs = []  # existing segment numbers, ascending
        self._total = 0  # bytes in those segments
        self._wseg = None  # last segment written (or found at open)
        self._wsize = 0
        self._wsealed = False  # the last segment must not be appended to (torn tail)
        self._ack_seg = 0
        self._ack_off = 0
        self._ack_idx = 0
        self._mark_seg = 0  # the last segment the full-card policy gave up (deleted again at open if still there)
        self._episode = False  # a full episode: ENOSPC seen, and the card has not had free space again since
        self._spent = False  # this episode has given up its one segment with readings in it
        self._rseg = 0
        self._roff = 0
        self._ridx = 0
        self.pending = 0
        self._mark = (0, 0)  # skipped lines before this place are already counted
        self._reader.forget()

    # --- what the collector reads ------------------------------------------------------------------------------
    # Plain attributes, not properties, on purpose: on a board every property is a function and an object in RAM.
    # Read them; only the journal writes them.
    #   pending   records appended and not yet acknowledged (counted once at open, then maintained)
    #   dropped   records the full-card policy deleted before they were sent; persisted, never reset
    #   corrupt   complete lines skipped because their CRC or format was wrong or they were longer than MAX_RECORD
    #   torn      unterminated tails skipped (left by a power cut or a short write; not readings that were cached)
    #   state     'ok', 'full' (the last record was refused: the card works, it has no room) or 'error' (the card
    #             failed: EIO, ENODEV)

    @property
    def pending_bytes(self):
        """Bytes on the card from the ack pointer to the end of the journal (torn and corrupt bytes included)."""
        if self._segs and self._segs[0] == self._ack_seg:
            return self._total - self._ack_off
        return self._total

    # --- persistence --------------------------------------------------------------------------------------------
    def _persist(self, seg, off, dropped):
        b = bytearray(_STATE_BYTES)
        b[0:4] = seg.to_bytes(4, "little")
        b[4:8] = off.to_bytes(4, "little")
        b[8:12] = dropped.to_bytes(4, "little")
        b[12:16] = self._mark_seg.to_bytes(4, "little")
        self._slot.store(b)

    # --- recovery -----------------------------------------------------------------------------------------------
    def open(self):
        """Recover after a boot: read the ack pointer, finish compaction, count pending records, find a torn tail.
        Never deletes an unacknowledged record (flaw F2). Raises OSError when the card fails."""
        self._opened = False
        self._reset_ram()
        try:
            self._recover()
        except OSError:
            self.state = "error"
            raise
        self._opened = True
        self.state = "ok"

    def _recover(self):
        card = self._card
        raw = self._slot.load()
        if raw is not None and (len(raw) == 12 or len(raw) == _STATE_BYTES):
            self._ack_seg = int.from_bytes(raw[0:4], "little")
            self._ack_off = int.from_bytes(raw[4:8], "little")
            self.dropped = int.from_bytes(raw[8:12], "little")
            if len(raw) == _STATE_BYTES:
                self._mark_seg = int.from_bytes(raw[12:16], "little")
        else:
            self.dropped = 0
            self._persist(0, 0, 0)  # reserve the state file's blocks while there is room
        segs = []
        for name in card.listdir():
            n = segment_number(name)
            if n is not None:
                segs.append(n)
        segs.sort()
        while segs and segs[0] < self._ack_seg:
            self._remove(segs.pop(0))
        if self._mark_seg in segs:    # a cut between counting a dropped segment and deleting it
            segs.remove(self._mark_seg)
            self._remove(self._mark_seg)
        total = 0
        size = 0
        for s in segs:
            size = card.size(segment_name(s))
            total += size
        self._segs = segs
        self._total = total
        if segs:
            self._wseg = segs[-1]
            self._wsize = size
            self._wsealed = size > 0 and self._last_byte(segs[-1], size) != _NL
        self._rseg = self._ack_seg
        self._roff = self._ack_off
        seg, off = self._ack_seg, self._ack_off
        count = 0
        while True:
            kind, seg, off = self._step(seg, off)
            if kind != VALID:
                break
            count += 1
        self.pending = count

    def _last_byte(self, seg, size):
        f = self._card.open(segment_name(seg), "rb")
        try:
            f.seek(size - 1)
            b = f.read(1)
        finally:
            f.close()
        return b[0] if b else -1

    def _remove(self, seg):
        try:
            self._card.remove(segment_name(seg))
        except OSError as e:
            if errno_of(e) != ENOENT:
                raise
        self._reader.forget(seg)

    def _next_seg(self, seg):
        for s in self._segs:
            if s > seg:
                return s
        return None

    def _step(self, seg, off):
        """The next valid record from (seg, off): (VALID, seg, end) with the payload in the read buffer, or
        (_END, seg, off) at the end of the journal. Skipped lines are counted once."""
        while True:
            if seg not in self._segs:
                nxt = self._next_seg(seg)
                if nxt is None:
                    return EOF, seg, off
                seg, off = nxt, 0
            kind, end = self._reader.parse(seg, off)
            if kind == VALID:
                return VALID, seg, end
            if kind == EOF:
                nxt = self._next_seg(seg)
                if nxt is None:
                    return EOF, seg, off
                seg, off = nxt, 0
                continue
            if (seg, end) > self._mark:
                self._mark = (seg, end)
                if kind == BAD:
                    self.corrupt += 1
                else:
                    self.torn += 1
            off = end

    # --- the API the collector uses -----------------------------------------------------------------------------
    def append(self, payload):
        """Cache one record; returns its position once it is flushed to the card.
        Raises ValueError for a payload that is not 1..100 printable ASCII bytes without '*', JournalFull when
        the full-card policy refuses it, OSError for card failures (ENODEV removed, EIO)."""
        if not self._opened:
            self.open()
        size = records.encode(payload, self._wbuf)
        try:
            return self._append(size)
        except OSError:
            self.state = "error"
            raise

    def _append(self, size):
        if self._total + size > self.max_bytes:
            self._make_room(size)    # or JournalFull
        try:
            position = self._write(size)
        except OSError as e:
            if errno_of(e) != ENOSPC:
                raise
            position = self._after_enospc(size)
        if self._episode and self._card.free_bytes() > 0:
            self._episode = self._spent = False   # the card has room again: the full episode is over
        return position

    def _newsegment_number(self):
        n = self._ack_seg if self._ack_off == 0 else self._ack_seg + 1
        if self._segs and self._segs[-1] + 1 > n:
            n = self._segs[-1] + 1
        if self._wseg is not None and self._wseg + 1 > n:
            n = self._wseg + 1
        if self._mark_seg + 1 > n:
            n = self._mark_seg + 1   # never the drop mark's number: the next open() would delete it
        return n if n > 0 else 1

    def _write(self, size):
        segs = self._segs
        fresh = (not segs or self._wsealed or segs[-1] != self._wseg
                 or (self._wsize > 0 and self._wsize + size > self.segment_bytes))
        seg = self._newsegment_number() if fresh else self._wseg
        name = segment_name(seg)
        f = self._card.open(name, "ab")
        if fresh:
            segs.append(seg)
            self._wseg = seg
            self._wsize = 0
            self._wsealed = False
        try:
            n = f.write(memoryview(self._wbuf)[:size])
            if n is not None and n != size:
                raise OSError(ENOSPC, "short write")
            f.flush()
        except OSError:
            self._close_quietly(f)
            self._after_failed_write(seg, name)
            raise
        self._close_quietly(f)
        self._wsize += size
        self._total += size
        self.pending += 1
        self.state = "ok"
        return (seg, self._wsize, self._ack_idx + self.pending)

    def _close_quietly(self, f):
        try:
            f.close()
        except OSError:
            pass  # after a flush the record is durable; after a failure the write's error is the one to report

    def _after_failed_write(self, seg, name):
        """Whatever part of the record reached the card is a torn tail: never append behind it."""
        try:
            size = self._card.size(name)
        except OSError:
            self._wsealed = True  # unknown: assume the worst
            return
        if size != self._wsize:
            self._wsealed = True  # part of the record landed
        self._total += size - self._wsize
        self._wsize = size
        self._reader.forget(seg)

    # --- the full-card policy (flaw F6) -------------------------------------------------------------------------
    def _make_room(self, size):
        """Before a write of `size` bytes that would pass `max_bytes`: drop the oldest segments ('drop_oldest')
        until it fits, or refuse the record (JournalFull)."""
        if self.policy == DROP_OLDEST:
            while self._total + size > self.max_bytes and self._drop_one() is not None:
                pass
        if self._total + size > self.max_bytes:
            self._refuse()

    def _after_enospc(self, size):
        """The card answered ENOSPC to a write of `size` bytes: a full episode. 'drop_oldest': give up the oldest
        droppable segment and retry, at most one segment with readings per episode (empty ones, which cost
        nothing, as long as there are any: dropping the record's own empty new segment frees the block the retry
        takes again, so the loop is bounded by the segments there were). Stop when a drop gave no space back.
        Returns the record's position, or raises JournalFull."""
        self._episode = True
        if self.policy == DROP_OLDEST:
            for _ in range(len(self._segs)):
                if self._spent:
                    break
                lost = self._drop_one()
                if lost is None:
                    break
                if lost:
                    self._spent = True
                if self._card.free_bytes() <= 0:
                    break
                try:
                    return self._write(size)
                except OSError as e:
                    if errno_of(e) != ENOSPC:
                        raise
        self._refuse()

    def _refuse(self):
        """The record does not fit: not counted (never cached; the caller still holds it)."""
        self.state = "full"
        raise JournalFull("journal full: record refused (the card has no room; %d dropped so far)" % self.dropped)

    def _droppable(self):
        """The oldest segment with no record that was read (sent) and not acknowledged, or None."""
        inflight = (self._ack_seg, self._ack_off) < (self._rseg, self._roff)
        for s in self._segs:
            if not inflight or (s, 0) >= (self._rseg, self._roff):
                return s
        return None

    def _drop_one(self):
        """Give up the oldest droppable segment (policy 'drop_oldest'): its records are counted in `dropped`.
        Returns how many, or None if no segment may go."""
        seg = self._droppable()
        if seg is None:
            return None
        first = seg == self._segs[0]
        off = self._ack_off if seg == self._ack_seg else 0
        count = 0
        while True:
            kind, off = self._reader.parse(seg, off)
            if kind == EOF:
                break
            if kind == VALID:
                count += 1
        size = self._card.size(segment_name(seg))
        if first:
            # The oldest: the ack pointer moves past it (open() deletes what lies before the pointer).
            self._persist(seg + 1, 0, self.dropped + count)
            self._ack_idx += count
            self._ack_seg = seg + 1
            self._ack_off = 0
            if (self._rseg, self._roff) < (self._ack_seg, 0):
                self._rseg, self._roff, self._ridx = self._ack_seg, 0, self._ack_idx
        else:
            # Behind records in flight: it becomes the drop mark (open() deletes it if a cut leaves it). Nobody
            # holds a position after it (it is past the read cursor), so the ordinals after it simply close up.
            self._mark_seg = seg
            self._persist(self._ack_seg, self._ack_off, self.dropped + count)
        self.dropped += count
        self.pending -= count
        self._segs.remove(seg)
        self._total -= size
        self._remove(seg)
        return count

    def read_next(self):
        """The next record after the read cursor as (payload, position), or None when everything is read."""
        if not self._opened:
            self.open()
        segs = self._segs
        if segs and self._rseg == self._wseg == segs[-1] and self._roff >= self._wsize:
            # At the write position nothing is new: say so without opening the store. The collector asks at
            # every wake (every 20 ms while frames are in flight); on a Pico, parsing the end of a LittleFS file
            # each time took 2.8 ms a call, most of a sample step's cycles (tools/bench/rp2.py).
            return None
        kind, seg, off = self._step(self._rseg, self._roff)
        self._rseg, self._roff = seg, off
        if kind != VALID:
            return None
        self._ridx += 1
        return self._reader.payload(), (seg, off, self._ridx)

    def ack(self, position):
        """Everything up to `position` (from read_next or append) is committed by the gateway: persist the
        pointer, then delete the segments wholly before it. A stale or repeated ack is ignored."""
        if not self._opened:
            self.open()
        seg, off, idx = position
        if (seg, off) <= (self._ack_seg, self._ack_off):
            return
        if self._segs and (seg != self._segs[-1] or self._wsealed):
            try:
                if off >= self._card.size(segment_name(seg)):
                    seg, off = seg + 1, 0  # a closed segment fully acknowledged: it can go now
            except OSError as e:
                if errno_of(e) != ENOENT:
                    self.state = "error"
                    raise
        try:
            self._persist(seg, off, self.dropped)
        except OSError:
            self.state = "error"
            raise
        if idx > self._ack_idx:
            self.pending -= idx - self._ack_idx
            if self.pending < 0:
                self.pending = 0
            self._ack_idx = idx
        self._ack_seg, self._ack_off = seg, off
        if (self._rseg, self._roff) < (seg, off):
            self._rseg, self._roff, self._ridx = seg, off, self._ack_idx
        try:
            while self._segs and self._segs[0] < seg:
                s = self._segs[0]
                size = self._card.size(segment_name(s))
                self._remove(s)
                self._segs.pop(0)
                self._total -= size
        except OSError:
            self.state = "error"
            raise  # the pointer is persisted: the next ack or open() finishes the deletion

    def rewind(self):
        """Move the read cursor back to the ack pointer: after a resync or reset of the link, everything not
        acknowledged is read (and sent) again."""
        self._rseg, self._roff, self._ridx = self._ack_seg, self._ack_off, self._ack_idx
