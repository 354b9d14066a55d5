"""Issue 12's nine cases on the virtual board: a board sampling through a database outage while its simulated card
is full, fills by itself, is pulled or fails (tools/sim/host/sdcard.py faults through sd/faults.json,
`--card-capacity`), a private MariaDB and the gateway as its own process.

In every case, once everything has drained: the readings missing from the database (every (boot, seq) the board
sampled and the database does not hold) are exactly as many as the board reports dropped. A card that is full for
2 s loses at most the policy's bound (docs/JOURNAL.md, "A full card": one segment per full episode).

Fault durations are counted in samples (waits on the board's counters, no fixed sleeps): at 50 ms, 40 samples are
2 s and 240 are 12 s.
"""

import time

import pytest

from tools.demo.stack import wait_for

pytestmark = pytest.mark.integration

INTERVAL_MS = 50
SEGMENT_BYTES = 4096          # soil.journal's default segment
SHORTEST_READING = 37         # bytes of the shortest reading record: `1,1,<20-byte time>,0,` + '*' + crc + '\n'

ONE_SEGMENT = SEGMENT_BYTES // SHORTEST_READING


class Case:
    """One board, its gateway, and the books: what it sampled per boot (its seq before every reset, and at the end)."""

    def __init__(self, stack, name, **options):
        opts = {"interval_ms": INTERVAL_MS, "status_interval_ms": 500, "seed": 12}
        opts.update(options)
        self.stack = stack
        self.board = stack.start_board(name, **opts)
        self.name = name
        self.sampled = {}
        stack.start_gateway()
        wait_for(lambda: len(stack.readings(name)) >= 5, 30, "live readings")

    def status(self):
        return self.board.status()

    def samples(self, n, what):
        """Wait until the board has taken `n` more samples."""
        start = self.status()["seq"]
        wait_for(lambda: self.status()["seq"] >= start + n, 30 + n * INTERVAL_MS / 250.0, what)

    def outage(self, cached):
        self.stack.db.stop()
        wait_for(lambda: self.status()["pending"] >= cached, 60, "%d readings cached" % cached)

    def faults(self, **faults):
        self.board.set_card_faults(**faults)

    def fault_for(self, n, state, **faults):
        """Set `faults`, wait until the board reports the card `state`, then let `n` samples pass under them."""
        self.faults(**faults)
        wait_for(lambda: self.status()["card"] == state, 30, "the board to notice: card %s" % state)
        self.samples(n, "%d samples with the card %s" % (n, state))

    def power_cut(self):
        st = self.status()
        self.sampled[st["boot"]] = st["seq"]
        self.board.kill()
        self.board.start()

    def drain(self, stall_s=60, limit_s=600):
        """Wait until nothing is pending or in flight, as long as the backlog keeps shrinking: a board moving its
        flash fallback to a small card drains slower than one with a card alone (records of both stores in one
        window are acknowledged for one store and resent for the other), and that is no loss."""
        best, best_at, start = None, time.monotonic(), time.monotonic()
        while True:
            st = self.status()
            left = st["pending"] + st["inflight"]
            if left == 0:
                return
            now = time.monotonic()
            if best is None or left < best:
                best, best_at = left, now
            if now - best_at > stall_s or now - start > limit_s:
                raise TimeoutError("the backlog stopped draining at %d pending, %d in flight: %r" % (
                    st["pending"], st["inflight"], st))
            time.sleep(0.2)

    def finish(self):
        """Database back, sampling stopped, everything drained: (missing, reported dropped)."""
        if not self.stack.db.running:
            self.stack.db.start()
        self.faults(full=False, removed=False, write_error=False)
        wait_for(lambda: self.status()["card"] == "ok", 30, "the card back in use")
        self.board.stop_sampling()
        self.drain()
        st = self.status()
        self.sampled[st["boot"]] = st["seq"]
        rows = self.stack.readings(self.name)
        ids = [(r[1], r[2]) for r in rows]
        assert len(ids) == len(set(ids)), "a reading was stored twice"
        stored = set(ids)
        missing = sum(1 for boot, last in self.sampled.items() for seq in range(1, last + 1)
                      if (boot, seq) not in stored)
        reported = st["dropped"]
        wait_for(lambda: self.stack.query("SELECT dropped FROM boards WHERE board=%s", (self.name,)) ==
                 ((reported,),), 30, "the board's dropped count in the database")
        return missing, reported


def test_card_full_for_2s_drop_oldest_loses_at_most_one_segment(stack):
    c = Case(stack, "full-2s")
    c.outage(150)
    c.faults(full=True)
    c.samples(40, "2 s of a full card")
    c.faults(full=False)
    missing, reported = c.finish()
    assert missing == reported
    assert reported <= ONE_SEGMENT, "a 2 s full card dropped %d readings (bound: one segment)" % reported


def test_card_full_for_12s_drop_oldest_missing_equals_dropped(stack):
    c = Case(stack, "full-12s-old")
    c.outage(150)
    c.faults(full=True)
    c.samples(240, "12 s of a full card")
    c.faults(full=False)
    missing, reported = c.finish()
    assert missing == reported


def test_card_full_for_12s_drop_newest_missing_equals_dropped(stack):
    c = Case(stack, "full-12s-new", full_policy="drop_newest")
    c.outage(150)
    c.faults(full=True)
    c.samples(240, "12 s of a full card")
    c.faults(full=False)
    missing, reported = c.finish()
    assert missing == reported


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_small_card_that_fills_by_itself_missing_equals_dropped(stack, policy):
    c = Case(stack, "small-" + policy.split("_")[1], full_policy=policy, card_capacity=24 * 1024)
    c.stack.db.stop()
    wait_for(lambda: c.status()["card"] == "full" or c.status()["dropped"] > 0, 90, "the small card full")
    c.samples(120, "6 s more of a full card")
    missing, reported = c.finish()
    assert missing == reported


def test_card_pulled_readings_wait_and_every_loss_is_counted(stack):
    c = Case(stack, "pulled")
    c.outage(30)
    c.fault_for(120, "absent", removed=True)
    c.faults(removed=False)
    missing, reported = c.finish()
    assert missing == reported


def test_card_write_errors_readings_wait_and_every_loss_is_counted(stack):
    c = Case(stack, "eio")
    c.outage(30)
    c.fault_for(120, "error", write_error=True)
    c.faults(write_error=False)
    missing, reported = c.finish()
    assert missing == reported


def test_card_pulled_then_a_power_cut_missing_equals_dropped(stack):
    c = Case(stack, "pulled-cut")
    c.outage(30)
    c.fault_for(40, "absent", removed=True)
    c.power_cut()
    c.faults(removed=False)
    missing, reported = c.finish()
    assert missing == reported


def test_card_pulled_twice_with_a_reboot_between_missing_equals_dropped(stack):
    c = Case(stack, "pulled-twice")
    for episode in range(2):
        c.outage(30)
        c.fault_for(120, "absent", removed=True)
        c.faults(removed=False)
        wait_for(lambda: c.status()["card"] == "ok", 30, "the card back in use")
        c.stack.db.start()
        wait_for(lambda: c.status()["pending"] == 0 and c.status()["inflight"] == 0, 120, "the backlog drained")
        if episode == 0:
            c.power_cut()           # nothing waits in RAM now: only the count can be lost
    missing, reported = c.finish()
    assert missing == reported
