"""The chip models of tools/sim/chips (the package `chips`), under CPython and real MicroPython: the DS1307 from its
datasheet and the SD card's filesystem, each driven the way its users drive it (the DS1307 byte by byte as an I2C
target, the card through the `card` interface of docs/ARCHITECTURE.md).

The DS1307's calendar is checked against a reference written here the slow way, one second at a time (the model
counts by arithmetic on days and seconds), and as a property: for pseudo-random starts and durations, one long
advance gives the same registers as the same time in smaller pieces. Prints `OK chips <n> checks` at the end.
"""

import os

from portable import Checks

from chips import Prng
from chips.ds1307 import DS1307
from chips.sdcard import Card, PowerCut

checks = Checks("chips")


class Clock:
    """Host time in milliseconds that moves only when the test says so."""

    def __init__(self, t=5000):
        self.t = t

    def __call__(self):
        return self.t


class Lcg:
    """The test's own pseudo-random numbers (not the models' Prng): starts, durations, pieces."""

    def __init__(self, seed):
        self.x = seed

    def below(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n


# --- a controller that speaks to the target byte by byte: START, address phase, bytes, STOP -------------------------
def bus_write(chip, reg, data):
    checks.check(chip.on_start(False) is not False, "the chip ACKs its address for a write")
    chip.on_write(reg)
    for b in data:
        chip.on_write(b)
    chip.on_stop()


def bus_read(chip, reg, n):
    chip.on_start(False)
    chip.on_write(reg)
    chip.on_start(True)                      # repeated START, no STOP in between
    out = bytearray(n)
    for i in range(n):
        out[i] = chip.on_read()
    chip.on_stop()
    return bytes(out)


def set_regs(chip, regs):
    """A gateway's clock set: registers 0x00.. in one write (seconds with CH clear start the oscillator)."""
    bus_write(chip, 0x00, regs)


# --- the reference calendar: one second at a time ------------------------------------------------------------------
MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def dec(b):
    return (b >> 4) * 10 + (b & 0x0F)


def bcd(v):
    return (v // 10) << 4 | v % 10


def decode(r):
    """[year 0..99, month, day, hour 0..23, minute, second, weekday, 12-hour mode] of registers 0x00..0x06."""
    if r[2] & 0x40:
        hour = dec(r[2] & 0x1F) % 12 + (12 if r[2] & 0x20 else 0)
    else:
        hour = dec(r[2] & 0x3F)
    return [dec(r[6]), dec(r[5]), dec(r[4]), hour, dec(r[1]), dec(r[0] & 0x7F), r[3], bool(r[2] & 0x40)]


def tick(t):
    t[5] += 1
    if t[5] < 60:
        return
    t[5] = 0
    t[4] += 1
    if t[4] < 60:
        return
    t[4] = 0
    t[3] += 1
    if t[3] < 24:
        return
    t[3] = 0
    t[6] = t[6] % 7 + 1
    t[2] += 1
    last = 29 if t[1] == 2 and t[0] % 4 == 0 else MDAYS[t[1] - 1]
    if t[2] <= last:
        return
    t[2] = 1
    t[1] += 1
    if t[1] <= 12:
        return
    t[1] = 1
    t[0] = (t[0] + 1) % 100


def regs(chip):
    return bytes(chip.regs[0:7])


# ==== DS1307 ========================================================================================================

# --- first power-up -------------------------------------------------------------------------------------------------
clock = Clock()
chip = DS1307(clock)
checks.equal(regs(chip), b"\x80\x00\x00\x01\x01\x01\x00", "first power-up: CH set, 2000-01-01 (day 1) 00:00:00")
checks.equal(chip.regs[7], 0x03, "first power-up: control 0x03")
checks.check(chip.halted, "a new chip is halted")
clock.t += 3600 * 1000
checks.equal(bus_read(chip, 0, 7), b"\x80\x00\x00\x01\x01\x01\x00", "a halted oscillator does not count")
checks.equal(bytes(DS1307(clock, seed=7).regs), bytes(DS1307(clock, seed=7).regs), "undefined RAM: same seed, same")
checks.check(bytes(DS1307(clock, seed=7).regs[8:]) != bytes(DS1307(clock, seed=8).regs[8:]),
             "undefined RAM differs with the seed")
g = DS1307(clock, cold_time="garbage", seed=3)
checks.check(g.regs[0] & 0x80 and not g.regs[1] & 0x80 and not g.regs[3] & 0xF8 and not g.regs[5] & 0xE0,
             "a garbage first power-up has CH set and the always-zero bits clear")
checks.equal(g.time_register_writes, 0, "a first power-up is not a bus write")
try:
    DS1307(clock, cold_time="random")
    checks.check(False, "cold_time is 'zeros' or 'garbage'")
except ValueError:
    checks.check(True, "cold_time is 'zeros' or 'garbage'")

# --- a clock set over the bus, BCD counting and every rollover ------------------------------------------------------
ROLLOVERS = (
    # registers before (s, min, h, dow, date, month, year), seconds to run, registers after
    (b"\x58\x59\x09\x06\x21\x11\x26", 2, b"\x00\x00\x10\x06\x21\x11\x26", "minute and hour, BCD 09 -> 10"),
    (b"\x59\x59\x23\x06\x21\x11\x26", 1, b"\x00\x00\x00\x07\x22\x11\x26", "midnight: date and day of week"),
    (b"\x59\x59\x23\x07\x22\x11\x26", 1, b"\x00\x00\x00\x01\x23\x11\x26", "day of week 7 -> 1"),
    (b"\x59\x59\x23\x04\x30\x04\x26", 1, b"\x00\x00\x00\x05\x01\x05\x26", "30 April -> 1 May"),
    (b"\x59\x59\x23\x04\x31\x12\x26", 1, b"\x00\x00\x00\x05\x01\x01\x27", "new year"),
    (b"\x59\x59\x23\x02\x28\x02\x28", 1, b"\x00\x00\x00\x03\x29\x02\x28", "2028 is a leap year: 29 February"),
    (b"\x59\x59\x23\x03\x29\x02\x28", 1, b"\x00\x00\x00\x04\x01\x03\x28", "29 February -> 1 March"),
    (b"\x59\x59\x23\x06\x28\x02\x27", 1, b"\x00\x00\x00\x07\x01\x03\x27", "2027 is not: 28 February -> 1 March"),
    (b"\x59\x59\x23\x05\x28\x02\x00", 1, b"\x00\x00\x00\x06\x29\x02\x00", "2000 is a leap year on the chip"),
    (b"\x59\x59\x23\x04\x31\x12\x99", 1, b"\x00\x00\x00\x05\x01\x01\x00", "the century: 2099 -> 2000"),
    (b"\x30\x00\x00\x01\x01\x01\x00", 86400 * 366 + 30, b"\x00\x01\x00\x03\x01\x01\x01", "all of 2000 at once"),
)
for before, seconds, after, what in ROLLOVERS:
    clock = Clock()
    chip = DS1307(clock)
    set_regs(chip, before)
    clock.t += seconds * 1000
    checks.equal(bus_read(chip, 0, 7), after, what)

# --- 12-hour mode ---------------------------------------------------------------------------------------------------
TWELVE = (
    (0x40 | 0x11, 0x40 | 0x20 | 0x12, False, "11 AM -> 12 PM"),
    (0x40 | 0x20 | 0x12, 0x40 | 0x20 | 0x01, False, "12 PM -> 1 PM"),
    (0x40 | 0x20 | 0x11, 0x40 | 0x12, True, "11 PM -> 12 AM, the next day"),
    (0x40 | 0x12, 0x40 | 0x01, False, "12 AM -> 1 AM"),
    (0x40 | 0x09, 0x40 | 0x10, False, "9 AM -> 10 AM, BCD"),
)
for hour_before, hour_after, next_day, what in TWELVE:
    clock = Clock()
    chip = DS1307(clock)
    set_regs(chip, bytes((0x59, 0x59, hour_before, 0x03, 0x14, 0x07, 0x26)))
    clock.t += 1000
    got = bus_read(chip, 0, 7)
    checks.equal(got[2], hour_after, "12-hour mode: " + what)
    checks.equal(got[4], 0x15 if next_day else 0x14, "12-hour mode: " + what + " (date)")
clock = Clock()
chip = DS1307(clock)
chip.set_time((2026, 5, 17, 21, 4, 5), hour12=True)
checks.equal(chip.regs[2], 0x40 | 0x20 | 0x09, "set_time in 12-hour mode: 21 h is 9 PM")
checks.equal(chip.time(), (2026, 5, 17, 21, 4, 5), "time() decodes 12-hour mode")
checks.equal(chip.regs[3], 7, "set_time: the ISO weekday (2026-05-17 is a Sunday)")

# --- CH halts, the countdown chain, the secondary buffer ------------------------------------------------------------
clock = Clock()
chip = DS1307(clock)
clock.t += 900
set_regs(chip, b"\x04\x55\x09\x06\x21\x11\x26")
checks.check(not chip.halted, "writing seconds with CH clear starts the oscillator")
clock.t += 900
checks.equal(bus_read(chip, 0, 1), b"\x04", "a full second after the write, not 0.1 s")
clock.t += 100
checks.equal(bus_read(chip, 0, 1), b"\x05", "then it ticks")
clock.t += 700
bus_write(chip, 0x00, b"\x30")
clock.t += 999
checks.equal(bus_read(chip, 0, 1), b"\x30", "writing seconds again restarts the countdown")
clock.t += 1
checks.equal(bus_read(chip, 0, 2), b"\x31\x55", "one second after that write")
bus_write(chip, 0x00, b"\xb1")
clock.t += 5000
checks.equal(bus_read(chip, 0, 2), b"\xb1\x55", "CH set: the time freezes")
checks.check(chip.halted, "CH set: halted")
bus_write(chip, 0x00, b"\x31")
clock.t += 2000
checks.equal(bus_read(chip, 0, 1), b"\x33", "CH cleared: it runs again")
chip.on_start(False)
chip.on_write(0x00)
chip.on_start(True)
first = chip.on_read()
clock.t += 1500                              # a second passes between the bytes of one read
rest = bytes((chip.on_read(), chip.on_read()))
chip.on_stop()
checks.equal(bytes((first,)) + rest, b"\x33\x55\x09", "a read is latched at START (the secondary buffer)")
checks.equal(bus_read(chip, 0, 1), b"\x34", "the next START sees the second that passed")

# --- register pointer, masks, NVRAM, counters ----------------------------------------------------------------------
clock = Clock()
chip = DS1307(clock)
set_regs(chip, b"\x04\x55\x09\x06\x21\x11\x26")
bus_write(chip, 0x08, bytes(range(1, 57)))
checks.equal(bus_read(chip, 0x08, 56), bytes(range(1, 57)), "56 bytes of RAM at 0x08..0x3F")
checks.equal(bus_read(chip, 0x3A, 10), bytes((51, 52, 53, 54, 55, 56, 0x04, 0x55, 0x09, 0x06)),
             "the pointer wraps from 0x3F to 0x00 on reads")
chip.on_start(True)
checks.equal(chip.on_read(), 0x21, "a read without a pointer write goes on where the last access stopped")
chip.on_stop()
bus_write(chip, 0x3F, b"\x5a\x80")
checks.equal(chip.regs[0x3F], 0x5A, "a write across the end: 0x3F")
checks.check(chip.halted, "... then 0x00 (CH set)")
bus_write(chip, 0x01, b"\xff" * 7)
checks.equal(bytes(chip.regs[1:8]), b"\x7f\x7f\x07\x3f\x1f\xff\x93", "bits that always read 0 are masked on write")
before = chip.write_transactions
bus_write(chip, 0x00, b"\x00\x00\x00")
checks.equal(chip.write_transactions - before, 1, "one write transaction")
bus_read(chip, 0x00, 7)
checks.equal(chip.write_transactions - before, 1, "a read is no write transaction (its pointer byte is no write)")
checks.equal(chip.byte_writes[0:3], [3, 3, 3], "bytes written per register (the pointer byte is none)")
checks.equal(chip.time_register_writes, sum(chip.byte_writes[0:7]), "time_register_writes counts 0x00..0x06")
chip.poke(0x05, 0x13)
checks.equal(chip.time(), None, "month 13 is impossible")
snapshot = regs(chip)
clock.t += 10 * 86400 * 1000
checks.equal(regs(chip), snapshot, "impossible registers are left alone (peek does not move them either)")
checks.equal(chip.peek(0x05), 0x13, "peek: the register as the bus reads it")

# --- power, battery, resume ----------------------------------------------------------------------------------------
clock = Clock()
chip = DS1307(clock)
chip.set_time((2026, 11, 21, 9, 55, 4))
bus_write(chip, 0x08, b"boot")
chip.power_off()
checks.check(chip.on_start(False) is False, "no VCC: the chip NACKs its address")
clock.t += 7200 * 1000
chip.power_on()
checks.equal(chip.time(), (2026, 11, 21, 11, 55, 4), "on battery the clock ran on while VCC was off")
checks.equal(bus_read(chip, 0x08, 4), b"boot", "on battery the RAM is kept")
cold = DS1307(clock, battery=False, seed=5)
cold.set_time((2026, 11, 21, 9, 55, 4))
bus_write(cold, 0x08, b"boot")
cold.power_off()
cold.power_on()
checks.check(cold.halted and regs(cold) == b"\x80\x00\x00\x01\x01\x01\x00", "no battery: a first power-up again")
checks.check(bus_read(cold, 0x08, 4) != b"boot", "no battery: the RAM is lost")
year = 365 * 86400 * 1000
kept = DS1307(Clock(clock.t))
kept.resume(bytes(chip.regs), clock.t - year)
checks.equal(kept.time(), (2027, 11, 21, 11, 55, 4), "resume: a year on its battery")
checks.equal(bus_read(kept, 0x08, 4), b"boot", "resume: the RAM")
lost = DS1307(Clock(clock.t), battery=False)
lost.resume(bytes(chip.regs), clock.t - year)
checks.check(lost.halted, "resume without a battery: a first power-up")

# --- drift ---------------------------------------------------------------------------------------------------------
for ppm, want in ((20, (2026, 1, 2, 0, 0, 1)), (-20, (2026, 1, 1, 23, 59, 58)), (0, (2026, 1, 2, 0, 0, 0))):
    clock = Clock()
    chip = DS1307(clock, drift_ppm=ppm)
    chip.set_time((2026, 1, 1, 0, 0, 0))
    for _ in range(24):
        clock.t += 3600 * 1000
        chip.sync()
    checks.equal(chip.time(), want, "%+d ppm over a day (1.728 s), looked at every hour" % ppm)

# --- the calendar against the reference, one second at a time -------------------------------------------------------
rnd = Lcg(2026)
for case in range(48):
    clock = Clock()
    chip = DS1307(clock)
    y = rnd.below(100)
    mo = 1 + rnd.below(12)
    last = 29 if mo == 2 and y % 4 == 0 else MDAYS[mo - 1]
    d = last - rnd.below(2)                   # near the end of a month: the rollovers
    h = 22 + rnd.below(2)
    hour12 = case % 3 == 0
    if hour12:
        hb = 0x40 | (0x20 if h >= 12 else 0) | bcd(h % 12 or 12)
    else:
        hb = bcd(h)
    set_regs(chip, bytes((bcd(rnd.below(60)), bcd(rnd.below(60)), hb, 1 + rnd.below(7), bcd(d), bcd(mo), bcd(y))))
    ref = decode(chip.regs)
    start = list(ref)
    seconds = 1 + rnd.below(3 * 3600)
    for _ in range(seconds):
        tick(ref)
    clock.t += seconds * 1000
    checks.equal(decode(bus_read(chip, 0, 7)), ref,
                 "case %d: %d s from %r by arithmetic = one second at a time" % (case, seconds, start))

# --- property: one long advance = the same time in pieces -----------------------------------------------------------
rnd = Lcg(1307)
for case in range(60):
    start = (2000 + rnd.below(100), 1 + rnd.below(12), 1 + rnd.below(28), rnd.below(24), rnd.below(60), rnd.below(60))
    ppm = (0, 0, 35, -12)[case % 4]
    hour12 = case % 5 == 0
    total = rnd.below(5 * 365 * 86400) * 1000 + rnd.below(1000)
    whole_clock = Clock()
    whole = DS1307(whole_clock, drift_ppm=ppm)
    whole.set_time(start, hour12=hour12)
    piece_clock = Clock()
    pieces = DS1307(piece_clock, drift_ppm=ppm)
    pieces.set_time(start, hour12=hour12)
    whole_clock.t += total
    left = total
    n = 0
    while left > 0:
        step = left if n == 8 else min(left, rnd.below(total // 4 + 2) + rnd.below(1500))
        piece_clock.t += step
        pieces.sync()
        left -= step
        n += 1
    checks.equal(bus_read(pieces, 0, 7), bus_read(whole, 0, 7),
                 "case %d: %r + %d ms (%d ppm) in %d pieces = at once" % (case, start, total, ppm, n))

# ==== SD card ======================================================================================================
BS = 512

try:
    import tempfile
    ROOT = tempfile.mkdtemp(prefix="chips-")
except ImportError:                          # MicroPython: the in-memory filesystem
    ROOT = "/tmp/chips"
    os.mkdir(ROOT)
_folders = [0]


def folder():
    _folders[0] += 1
    return ROOT + "/card%d" % _folders[0]


def errno_of(call):
    try:
        call()
    except OSError as e:
        return e.args[0]
    return None


def write_file(card, name, data, mode="wb"):
    with card.open(name, mode) as f:
        f.write(data)
        f.flush()


def read_file(card, name):
    with card.open(name, "rb") as f:
        return f.read()


# --- block accounting -----------------------------------------------------------------------------------------------
path = folder()
card = Card(path, 16 * BS, block_size=BS)
checks.equal((card.free_bytes(), card.listdir()), (16 * BS, []), "an empty card")
write_file(card, "a.log", b"")
checks.equal(card.free_bytes(), 15 * BS, "an empty file takes its directory block")
write_file(card, "a.log", b"x", "ab")
checks.equal(card.free_bytes(), 14 * BS, "one byte takes a data block")
write_file(card, "a.log", b"y" * (BS - 1), "ab")
checks.equal(card.free_bytes(), 14 * BS, "... up to a full block")
write_file(card, "a.log", b"z", "ab")
checks.equal((card.free_bytes(), card.size("a.log")), (13 * BS, BS + 1), "the next byte takes the next block")
write_file(card, "a.log", b"w")
checks.equal(card.free_bytes(), 14 * BS, "'wb' truncates and gives the blocks back")
card.remove("a.log")
checks.equal((card.free_bytes(), card.listdir()), (16 * BS, []), "remove gives everything back")
write_file(card, "b.bin", b"0123456789")
with card.open("b.bin", "rb") as f:
    f.seek(4)
    buf = bytearray(3)
    checks.equal((f.tell(), f.readinto(buf), bytes(buf), f.read()), (4, 3, b"456", b"789"), "seek, readinto, read")
    f.seek(-2, 2)
    checks.equal(f.read(5), b"89", "seek from the end")
checks.equal(card.largest_read, 10, "largest_read: an unbounded read asks for the whole file")
with card.open("b.bin", "r+b") as f:
    f.seek(2)
    f.write(memoryview(b"AB"))
checks.equal(read_file(card, "b.bin"), b"01AB456789", "an in-place write with 'r+b'")
again = Card(path, 16 * BS, block_size=BS)
checks.equal((again.listdir(), read_file(again, "b.bin")), (["b.bin"], b"01AB456789"),
             "a new Card on the same folder is the same card (a reboot)")

# --- errors: Linux numbers, whatever the interpreter's filesystem says -----------------------------------------------
for what, call in (("open rb", lambda: card.open("nope", "rb")), ("open r+b", lambda: card.open("nope", "r+b")),
                   ("size", lambda: card.size("nope")), ("remove", lambda: card.remove("nope"))):
    checks.equal(errno_of(call), 2, "a missing file is ENOENT (2), never WASI's 44: " + what)
for bad in ("", "a/b", ".", ".."):
    checks.equal(errno_of(lambda: card.open(bad, "wb")), 22, "a bad name is EINVAL: %r" % bad)
with card.open("b.bin", "rb") as f:
    checks.equal(errno_of(lambda: f.write(b"x")), 9, "writing a file opened 'rb' is EBADF")
try:
    card.open("b.bin", "w")
    checks.check(False, "modes are rb, wb, ab, r+b")
except ValueError:
    checks.check(True, "modes are rb, wb, ab, r+b")

# --- full card: ENOSPC after a partial write -----------------------------------------------------------------------
card = Card(folder(), 4 * BS, block_size=BS)
with card.open("a.log", "wb") as f:
    checks.equal(errno_of(lambda: f.write(b"q" * (4 * BS))), 28, "a write past the capacity is ENOSPC")
checks.equal((card.size("a.log"), card.free_bytes()), (3 * BS, 0), "... after writing what fits (as FAT does)")
checks.equal(errno_of(lambda: card.open("b.log", "ab")), 28, "creating a file on a full card is ENOSPC")
checks.equal(card.listdir(), ["a.log"], "... and creates nothing")
with card.open("a.log", "r+b") as f:
    f.seek(100)
    f.write(b"hello")
checks.equal(read_file(card, "a.log")[100:105], b"hello", "an in-place rewrite on a full card needs no block")

# --- faults ---------------------------------------------------------------------------------------------------------
card = Card(folder(), 16 * BS, block_size=BS)
write_file(card, "a.log", b"x" * 10)
card.full = True
checks.equal(card.free_bytes(), 0, "full: no free space")
write_file(card, "a.log", b"y" * 10, "ab")
checks.equal(card.size("a.log"), 20, "full: a write inside the file's block still works")
checks.equal(errno_of(lambda: write_file(card, "a.log", b"z" * BS, "ab")), 28, "full: a new block is ENOSPC")
checks.equal(card.size("a.log"), BS, "full: ... after filling the block the file owns")
card.full = False
f = card.open("a.log", "rb")
card.removed = True
for what, call in (("open", lambda: card.open("a.log", "rb")), ("listdir", card.listdir),
                   ("free_bytes", card.free_bytes), ("size", lambda: card.size("a.log")),
                   ("remove", lambda: card.remove("a.log")), ("read on an open file", f.read),
                   ("seek on an open file", lambda: f.seek(0))):
    checks.equal(errno_of(call), 19, "removed: ENODEV: " + what)
f.close()
checks.check(True, "closing a file of a removed card does not raise")
card.removed = False
f = card.open("a.log", "ab")
card.write_error = True
checks.equal(errno_of(lambda: f.write(b"more")), 5, "write_error: a write is EIO")
f.close()
checks.equal(errno_of(lambda: card.open("b.log", "wb")), 5, "write_error: creating is EIO")
checks.equal(errno_of(lambda: card.remove("a.log")), 5, "write_error: remove is EIO")
checks.equal(len(read_file(card, "a.log")), BS, "write_error: reads still work, nothing changed")
card.write_error = False

# --- power cuts -----------------------------------------------------------------------------------------------------
checks.check(issubclass(PowerCut, BaseException) and not issubclass(PowerCut, Exception),
             "PowerCut is not an Exception: firmware cannot swallow it")
for tail in ("prefix", "zeros", "garbage"):
    path = folder()
    card = Card(path, 16 * BS, block_size=BS, seed=7)
    write_file(card, "a.log", b"A" * 100)
    card.power_cut_after(30, tail)
    checks.check(card.power_cut_armed, "armed")
    cut = False
    with card.open("a.log", "ab") as f:
        f.write(b"B" * 20)
        try:
            f.write(b"C" * 50)
        except PowerCut:
            cut = True
    checks.check(cut, tail + ": the write in progress is cut after 30 bytes in all")
    try:
        card.listdir()
        checks.check(False, tail + ": the card is dead after the cut")
    except PowerCut:
        checks.check(True, tail + ": the card is dead after the cut")
    data = read_file(Card(path, 16 * BS, block_size=BS), "a.log")
    checks.equal(data[:130], b"A" * 100 + b"B" * 20 + b"C" * 10, tail + ": the prefix up to the cut is kept")
    if tail == "prefix":
        checks.equal(len(data), 130, "prefix: nothing after it")
    else:
        checks.equal(len(data), BS, tail + ": the rest of that block is filled")
        checks.check((data[130:] == bytes(BS - 130)) == (tail == "zeros"), tail + ": zeros, or garbage")
out = []
for _ in range(2):
    path = folder()
    card = Card(path, 16 * BS, block_size=BS, seed=3)
    card.power_cut_after(5, "garbage")
    try:
        write_file(card, "a.log", b"x" * 50)
    except PowerCut:
        pass
    out.append(read_file(Card(path, 16 * BS, block_size=BS), "a.log"))
checks.check(out[0] == out[1] and len(out[0]) == BS, "garbage is reproducible from the seed")
path = folder()
card = Card(path, 16 * BS, block_size=BS)
write_file(card, "s.bin", b"1" * BS + b"2" * BS)
card.power_cut_after(4, "zeros")
try:
    with card.open("s.bin", "r+b") as f:
        f.seek(10)
        f.write(b"N" * 20)
except PowerCut:
    pass
data = read_file(Card(path, 16 * BS, block_size=BS), "s.bin")
checks.equal((data[:14], data[14:BS], data[BS:]), (b"1" * 10 + b"NNNN", bytes(BS - 14), b"2" * BS),
             "a cut in an in-place write scrambles only to the end of that block")
path = folder()
card = Card(path, 16 * BS, block_size=BS)
card.power_cut_after(100)
write_file(card, "a.log", b"x" * 60)
checks.check(card.power_cut_armed, "60 of 100 bytes: not yet")
try:
    write_file(card, "a.log", b"y" * 60, "ab")
except PowerCut:
    pass
checks.equal(read_file(Card(path, 16 * BS, block_size=BS), "a.log"), b"x" * 60 + b"y" * 40,
             "the cut counts bytes across writes")
path = folder()
card = Card(path, 16 * BS, block_size=BS)
write_file(card, "a.log", b"x")
card.power_cut_before_remove()
try:
    card.remove("a.log")
    checks.check(False, "a cut before remove")
except PowerCut:
    checks.check(True, "a cut before remove")
checks.equal(Card(path, 16 * BS, block_size=BS).listdir(), ["a.log"], "... removes nothing")
card = Card(folder(), 16 * BS, block_size=BS)
card.power_cut_before_remove()
card.power_cut_before_remove(False)
card.power_cut_after(10)
card.power_cut_after(None)
checks.check(not card.power_cut_armed, "both cuts can be disarmed")
rng = Prng(1)
checks.check(0 <= rng() <= 255 and [Prng(9)() for _ in range(3)] == [Prng(9)() for _ in range(3)],
             "Prng: bytes, the same for the same seed")


def rmtree(path):
    for name in os.listdir(path):
        full = path + "/" + name
        if os.stat(full)[0] & 0o170000 == 0o040000:
            rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)


rmtree(ROOT)
checks.done()
