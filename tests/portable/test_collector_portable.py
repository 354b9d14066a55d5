"""soil.collector (with soil.uplink, soil.journal and soil.ds1307) under CPython and the real MicroPython interpreter.

Everything the collector is handed is built here in the common subset, at the level the real parts work at:
- an I2C controller with machine.I2C's readfrom_mem/writeto_mem/writeto, byte by byte, over the DS1307 chip model
  (tools/sim/chips/ds1307.py, the `chips` package: the same model the virtual boards run), on the script's clock;
- an ADC returning fixed values; the SD card chip model (tools/sim/chips/sdcard.py) on a fresh folder of
  test_journal_portable.py's `CardFolders`, removed at the end; a link that records the bytes the board writes and
  hands it the bytes the script queues; ticks that wrap at 2**30 like MicroPython's.
The script samples, reads the R frames off the link, feeds A, T, W, N, Q frames back and checks the behaviour
docs/PROTOCOL.md gives each, across the tick wrap. Prints `OK collector_portable <n> checks` at the end.
"""

from boardkit import TICKS_PERIOD, ChipI2C, FixedADC, RecordingLink, Ticks, gateway_frame, of_kind, ticks_diff
from portable import Checks
from test_journal_portable import CardFolders, reboot

from chips.ds1307 import DS1307 as Chip
from soil import bootcount, codec, utc
from soil.collector import Collector
from soil.ds1307 import DS1307
from soil.journal import Journal

checks = Checks("collector_portable")

ticks = Ticks(TICKS_PERIOD - 2500)          # 2.5 s before the tick counter wraps
chip = Chip(ticks.clock_ms)                 # a new DS1307: it comes up halted at 2000-01-01 00:00:00
i2c = ChipI2C()
i2c.targets[0x68] = chip
folders = CardFolders("ccard")
card = folders.card()
adc = FixedADC((512, 40000, 65535, 0))
link = RecordingLink()
rtc = DS1307(i2c)
try:
    DS1307(ChipI2C())
    raise AssertionError("found a DS1307 on an empty bus")
except OSError as e:
    checks.check("0x68" in str(e), "a missing chip is reported with its address")

boot, stores = bootcount.next_boot(rtc, card)
checks.equal((boot, stores), (1, 2), "first boot, kept in NVRAM and on the card")
journal = Journal(card, max_bytes=16384, segment_bytes=512)
c = Collector("bench-1", boot, rtc, adc, journal, link, ticks.ticks_ms, ticks_diff, interval_ms=1000, window=4,
              status_interval_ms=10000, uid="e660383b13572a2f")


def run(ms, step_ms=100):
    """Let the board run for `ms` milliseconds of ticks (and the chip's oscillator alongside)."""
    left = ms
    while left > 0:
        d = step_ms if left > step_ms else left
        ticks.advance(d)
        c.step()
        left -= d


c.uplink.rto = c.uplink.rto_ms = 60000   # no retransmit timeouts until the part that tests them
c.start()
out = link.take()
hello = of_kind(out, "H")
checks.equal(len(hello), 1, "one hello at start")
checks.equal(hello[0][1:4], ("bench-1", 1, 1), "hello: board, boot, n_next=1")
checks.equal(hello[0][5], "halted", "a new chip's clock is reported halted")
checks.equal(chip.time_register_writes, 0, "start-up never writes the clock (F3)")

# --- sample: journal first, then an R frame, flagged Q while the clock is not ok --------------------------------
link.inbox = gateway_frame(codec.ACK, 7, c.boot)
c.step()
checks.equal(c.uplink.acks_beyond_sent, 1, "an ack of a frame the board never sent is ignored and counted")
out = link.take()
r = of_kind(out, "R")
checks.equal(len(r), 1, "first step samples and sends")
checks.equal(r[0][:3], (1, 1, 1), "R: n=1, boot 1, seq 1")
checks.equal(r[0][4], 512, "raw value from the ADC")
checks.equal(sorted(r[0][5]), ["L", "Q"], "live, and Q: the clock was halted")
checks.equal(r[0][3], "2000-01-01T00:00:00Z", "the halted chip's time, as read")
checks.equal(journal.pending, 1, "the reading is on the card before it is acknowledged")
checks.equal(c.pending(), 1, "pending 1")
status = of_kind(out, "S")
checks.equal(len(status), 1, "a status frame at start")

# --- T: the gateway sets the clock; the board answers with S ------------------------------------------------------
link.inbox = gateway_frame(codec.ACK, 0, c.boot) + gateway_frame(codec.SETTIME, "2026-03-01T12:00:00Z")
c.step()
checks.check(c.uplink.synced, "A,n_next-1 confirms the hello")
out = link.take()
checks.equal(chip.peek(0) & 0x80, 0, "CH cleared: the oscillator runs")
checks.equal(bytes(chip.peek(i) for i in range(7)), bytes((0x00, 0x00, 0x12, utc.weekday(2026, 3, 1), 0x01, 0x03, 0x26)),
             "registers hold the gateway's time in BCD, 24-hour mode")
checks.equal(rtc.read(), ((2026, 3, 1, 12, 0, 0), "ok"), "the driver now says ok")
st = of_kind(out, "S")
checks.equal(len(st), 1, "T is answered with S")
checks.equal(st[0][:3], ("2026-03-01T12:00:00Z", "ok", 1), "S: new time, clock ok, 1 pending")
link.inbox = gateway_frame(codec.SETTIME, "2026-02-30T12:00:00Z")
c.step()
checks.equal(rtc.read()[0], (2026, 3, 1, 12, 0, 0), "an impossible T time is ignored")
checks.equal(c.uplink.rx_errors, 1, "an impossible T time fails the frame's field checks")
link.take()

# --- sample across the tick wrap ------------------------------------------------------------------------------------
run(3000)
out = link.take()
r = of_kind(out, "R")
checks.check(ticks.now < 5000, "the tick counter wrapped (now %d)" % ticks.now)
checks.equal([f[0] for f in r], [2, 3, 4], "one sample a second across the wrap, numbered on")
checks.equal([f[2] for f in r], [2, 3, 4], "seq continues")
checks.equal([f[4] for f in r], [40000, 65535, 0], "raw values in order")
checks.equal([f[5] for f in r], ["L", "L", "L"], "clock ok: no Q flag")
for f in r:
    checks.check(f[3] >= "2026-03-01T12:00:00Z" and f[3] <= "2026-03-01T12:00:04Z", "RTC time of the sample: " + f[3])
checks.equal(len(c.uplink.inflight), 4, "four frames in flight (the window)")

# A full window: the next sample goes to the card only.
run(1000)
checks.equal(of_kind(link.take(), "R"), [], "window full: nothing sent")
checks.equal(journal.pending, 5, "but the reading is cached")

# --- A: acknowledged readings leave the card, and the window moves ------------------------------------------------
link.inbox = gateway_frame(codec.ACK, 2, c.boot)
c.step()
checks.equal(journal.pending, 3, "A,2 acknowledges two readings on the card")
r = of_kind(link.take(), "R")
checks.equal([(f[0], f[2], f[5]) for f in r], [(5, 5, "C")], "the cached 5th goes out from the card")
link.inbox = gateway_frame(codec.ACK, 1, c.boot)
c.step()
checks.equal(journal.pending, 3, "a stale A changes nothing")
link.inbox = b"$A,4*00000000\n" + b"\x00garbage\n"
c.step()
checks.equal(journal.pending, 3, "a damaged A acknowledges nothing")
checks.equal(c.uplink.rx_errors, 3, "and is counted")
link.take()

# --- N: resend from n ----------------------------------------------------------------------------------------------
link.inbox = gateway_frame(codec.RESEND, 4)
c.step()
r = of_kind(link.take(), "R")
checks.equal([(f[0], f[2]) for f in r], [(4, 4), (5, 5)], "N,4 resends 4 and 5 with their numbers")
checks.equal([f[5] for f in r], ["C", "C"], "resends are flagged C")

# --- retransmit timeout: no A for 3 s resends everything in flight -----------------------------------------------
c.uplink.rto = c.uplink.rto_ms = 3000
link.inbox = gateway_frame(codec.ACK, 5, c.boot)
c.step()
checks.equal(journal.pending, 0, "A,5: everything acknowledged")
link.take()
run(1000)
r = of_kind(link.take(), "R")
checks.equal([(f[0], f[2]) for f in r], [(6, 6)], "next live reading")
waited = 0
r = []
while waited < 5000 and not [f for f in r if f[2] == 6]:
    run(50)
    waited += 50
    r = of_kind(link.take(), "R")
checks.check(2000 < waited <= 3100, "frame 6 is resent after the 3 s timeout (%d ms later)" % waited)
checks.equal([f[5] for f in r if f[2] == 6], ["C"], "resent once, flagged C")
checks.equal(c.uplink.rto, 6000, "the retransmit timeout doubles")
link.inbox = gateway_frame(codec.ACK, r[-1][0], c.boot)
c.step()
checks.equal(journal.pending, 0, "acknowledged")
link.take()

# --- W: hold sending for ms, keep caching, then resend everything unacknowledged ----------------------------------
link.inbox = gateway_frame(codec.WAIT, 2000)
c.step()
run(1500)
checks.equal(of_kind(link.take(), "R"), [], "nothing is sent while waiting")
held = journal.pending
checks.check(held >= 1, "readings are cached meanwhile (%d)" % held)
run(1000)
r = of_kind(link.take(), "R")
checks.check(len(r) >= held, "after the wait the cached readings go out (%d frames)" % len(r))
checks.equal(sorted(set(f[2] for f in r))[-1], c.seq, "up to the newest reading")
link.inbox = gateway_frame(codec.ACK, max(f[0] for f in r), c.boot)
c.step()
checks.equal(journal.pending, 0, "and are acknowledged")
link.take()

# --- Q: send H again with the oldest unacknowledged number, then resend -------------------------------------------
run(1000)
r1 = of_kind(link.take(), "R")
link.inbox = gateway_frame(codec.QUERY)
c.step()
out = link.take()
h = of_kind(out, "H")
checks.equal(len(h), 1, "Q is answered with H")
checks.equal(h[0][3], r1[0][0], "n_next is the oldest unacknowledged frame")
checks.equal(h[0][5], "ok", "clock ok in the hello")
checks.equal([f[0] for f in of_kind(out, "R")], [f[0] for f in r1], "and the frames in flight are resent")

# --- a reset: nothing cached is lost, the new boot numbers frames from 1 ------------------------------------------
run(2000)
link.take()
unacked = journal.pending
checks.check(unacked >= 2, "some readings unacknowledged at the reset (%d)" % unacked)
card = reboot(card)                         # the board restarts: the card keeps what reached it
boot2, _ = bootcount.next_boot(rtc, card)
checks.equal(boot2, 2, "the next boot")
journal = Journal(card, max_bytes=16384, segment_bytes=512)
link = RecordingLink()
c = Collector("bench-1", boot2, rtc, adc, journal, link, ticks.ticks_ms, ticks_diff, interval_ms=1000, window=8,
              status_interval_ms=10000, uid="e660383b13572a2f")
c.start()
out = link.take()
checks.equal(of_kind(out, "H")[0][2:4], (2, 1), "hello: boot 2, n_next 1")
c.step()
r = of_kind(link.take(), "R")
link.inbox = gateway_frame(codec.ACK, len(r), c.boot)
c.step()
checks.equal(journal.pending, unacked + 1, "an A before the hello is confirmed deletes nothing")
link.inbox = gateway_frame(codec.ACK, 0, c.boot)
c.step()
checks.equal([f[0] for f in r], list(range(1, len(r) + 1)), "frames numbered from 1 again")
old = [f for f in r if f[1] == 1]
checks.equal(len(old), unacked, "every reading cached before the reset is sent again")
checks.check(all(f[5] == "C" for f in old), "from the cache")
checks.check(r[-1][1] == 2 and r[-1][2] == 1 and r[-1][5] == "L", "then the new boot's first live reading")
link.inbox = gateway_frame(codec.ACK, r[-1][0], c.boot)
c.step()
checks.equal((journal.pending, c.pending()), (0, 0), "all acknowledged after the reset")
checks.equal(chip.time_register_writes, 7, "the clock was written once, by the T frame (F3)")

folders.remove()
checks.done()
