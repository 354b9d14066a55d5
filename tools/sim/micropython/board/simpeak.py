"""The peak run of the heap budget: the moments RAM is tightest, in chunks of simulated time (tools/sim/micropython/heap.py).

Timeline, in simulated seconds from the end of start-up (a chunk is CHUNK_MS; phases.mjs collects and measures after
each):

    0     the gateway answers (simgateway.Gateway); a standby hears its master beat every 3 s on the pair's wire, a
          master finds a standby answering at 0x08
    20    the beats stop (standby: it asks the gateway, which does not answer, and takes over with its ring);
          the standby is pulled (master: standby_missing)
    40    the gateway goes away: readings pile up on the card; the standby comes back (master: standby_back)
    ~400  the journal (16 KB in this run) is full: the full-card policy drops the oldest segment, again and again
    460   the gateway is back: the backlog is replayed in windows of 24 frames in flight
    560   the master beats again (standby: after 9 s of beats it picks a hand-back time 7 s ahead, and hands back)

What the run went through is recorded as it happens (`seen`), and `report()` prints it as `EVENT` lines, so the test
can tell a peak measured over these moments from one measured over a quiet run.
"""

import machine
from simgateway import Gateway, seal

CHUNK_MS = 10000
BEAT_MS = 3000
_STANDBY_STATUS = b"S1,watching,0,0"     # a standby's status record that says it only watches (soil.heartbeat)


class PeakRun:
    def __init__(self, rx, tx, role, hb_bus):
        self.gateway = Gateway(rx, tx)
        self.role = role
        self.hb_bus = hb_bus
        self.seen = []
        self.t0 = None
        self.next_beat = 0
        self.stand_in = None
        self.max_inflight = 0
        self.max_pending = 0
        self.state = None

    def start(self, now_ms):
        self.t0 = now_ms
        if self.role == "master":
            self._standby_present(True)

    def _standby_present(self, present):
        """A standby at 0x08 on the pair's wire that reports it only watches (for a master)."""
        if present:
            mem = bytearray(144)
            rec = seal(_STANDBY_STATUS)
            mem[96:96 + len(rec)] = rec
            self.stand_in = machine.I2CTarget(self.hb_bus, 8, mem=mem)
        elif self.stand_in is not None:
            self.stand_in.deinit()
            self.stand_in = None

    def _beat(self, now_ms):
        """The master's beat, written to the standby's target as the master's controller writes it."""
        body = b"B1,pair-a,1,%d,0,1,active" % ((now_ms - self.t0) // 1000)
        machine.I2C(self.hb_bus).writeto_mem(8, 0, seal(body))

    def _note(self, what, t):
        if what not in [w for w, _ in self.seen]:
            self.seen.append((what, t))

    def step(self, board, hal, c, now_ms):
        t = (now_ms - self.t0) // 1000
        online = t < 40 or t >= 460
        if online:
            self.gateway.step()
        else:
            self.gateway.tx.pending = bytearray()   # nobody reads the line: what the board sends is lost on it
        if self.role == "standby" and (t < 20 or t >= 560) and now_ms >= self.next_beat:
            self._beat(now_ms)
            self.next_beat = now_ms + BEAT_MS
        if self.role == "master":
            if t == 20 and self.stand_in is not None:
                self._standby_present(False)
            elif t == 40 and self.stand_in is None:
                self._standby_present(True)
        board.loop(hal, c, 1)
        pending = c.pending()
        inflight = len(c.uplink.inflight)
        self.max_pending = max(self.max_pending, pending)
        self.max_inflight = max(self.max_inflight, inflight)
        if c.pair is not None and c.pair.state != self.state:
            self.state = c.pair.state
            self.seen.append(("state " + self.state, t))          # every transition, in order
        if self.role == "master" and c.pair.standby_present is False:
            self._note("standby missing", t)
        if self.role == "master" and c.pair.standby_present and t >= 40:
            self._note("standby back", t)
        if c.journal.dropped:
            self._note("card full (the journal dropped its oldest readings)", t)
        if online and t >= 460 and inflight >= c.uplink.window and pending > c.uplink.window:
            self._note("replay window (%d frames in flight, a backlog behind them)" % inflight, t)
        if t >= 460 and self.max_pending > 100 and pending == 0:
            self._note("backlog replayed", t)

    def chunk(self, board, hal, c, i):
        end = self.t0 + (i + 1) * CHUNK_MS
        while machine.SIM.now_ms < end:
            self.step(board, hal, c, machine.SIM.now_ms)

    def report(self, c):
        for what, t in self.seen:
            print("EVENT %s at %d s" % (what, t))
        print("EVENT max pending %d, max in flight %d, dropped %d, card %s, seq %d" % (
            self.max_pending, self.max_inflight, c.dropped(), c.card_state, c.seq))
