"""Model-based test of the whole reliability protocol (docs/PROTOCOL.md) in one process, under a lossy link.

The board is the real thing on simulated chips: `soil.collector.Collector` with the real `soil.journal.Journal` on a
`tools.sim.host.sdcard.SimCard` (a folder under tmp_path), the real portable DS1307 driver over `tools.sim.host.i2c` and
`tools.sim.host.ds1307.DS1307Sim`, an ADC from `tools.sim.host.adc`, and ticks the test advances by hand (starting near
the 2**30 wrap). The gateway side is the real `gateway.protocol.BoardProtocol`, fed the bytes that arrive, with
its real `gateway.clock.ClockKeeper` on a timer the model fires at simulated time. Between them an
in-process channel can DROP, CORRUPT (flip a byte), DELAY (deliver late; like a serial line it never reorders, so
everything behind a delayed frame waits too) or SPLIT (deliver the second half of a frame late) every frame, in
both directions, as hypothesis chooses; bytes on their way to a board that resets are lost. The "database"
is a dict keyed by identity (board, boot, seq); the writer model commits accepted readings in batches, then calls
`protocol.committed_through(epoch, n)`, and while the database is down (`writer_ok()` is False) it throws the batch
away and calls `protocol.rollback(epoch)`. The board is reset at random points (a new Collector over the same
card folder and the same DS1307, a new boot from `soil.bootcount.next_boot`).

Property (flaws F1 and F9): after the faults stop and the system runs to quiescence, every reading the board
sampled (whose journal append completed) is in the database exactly once with the (time, raw) it was sampled
with, the board's journal has nothing pending, and the board never acknowledged (deleted) a reading on its card
that was not committed in the database at that moment.
"""

import os
import random
import time
import types

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clock import ClockKeeper
from gateway.protocol import BoardProtocol
from soil import bootcount, utc
from soil.collector import Collector
from soil.ds1307 import DS1307
from soil.journal import Journal
from tools.sim.host.adc import MoistureSensor, drying
from tools.sim.host.ds1307 import DS1307Sim
from tools.sim.host.i2c import I2CBus, MachineI2C
from tools.sim.host.sdcard import SimCard

BOARD = "model-1"
EPOCH0 = 1795000000                     # 2026-11-18T...Z, in the DS1307's range
TICKS_PERIOD = 1 << 30
TICKS_START = TICKS_PERIOD - 7000       # the tick counter wraps 7 s into every example
STEP_MS = 50
LATENCY_MS = 10
FAULT_STEPS = 500                       # 25 s of sampling and faults
DRAIN_STEPS = 8000                      # at most 400 s more to quiesce (retransmit timeouts back off to 30 s)
FAULTS = ("ok", "drop", "corrupt", "delay", "split")


def ticks_diff(a, b):
    half = TICKS_PERIOD // 2
    return ((a - b + half) & (TICKS_PERIOD - 1)) - half


class Channel:
    """One direction of the serial line. Every frame written is looked up in the fault list (then 'ok' once the
    list is used up, or when `clean`), and lands in the receiver's buffer at its delivery time."""

    def __init__(self, world, faults, rate=0.0, seed=0):
        self.world = world
        self.faults = list(faults)    # hypothesis's explicit choices for the first frames
        self.rate = rate              # then each frame is hit with this probability, kind and argument seeded
        self.rng = random.Random(seed)
        self.queue = []               # (deliver_at_ms, order, bytes)
        self.order = 0
        self.last_at = 0
        self.clean = False
        self.counts = dict.fromkeys(FAULTS, 0)

    def _put(self, at, data):
        # A serial line delays but never reorders: nothing overtakes a byte that is held up.
        at = max(at, self.last_at)
        self.last_at = at
        self.order += 1
        self.queue.append((at, self.order, data))

    def flush(self):
        """What was on its way to a board that resets is lost (its UART was not listening)."""
        self.queue = []

    def send(self, data):
        now = self.world.t_ms
        for piece in data.splitlines(keepends=True):
            kind, arg = ("ok", 0)
            if not self.clean and self.faults:
                kind, arg = self.faults.pop(0)
            elif not self.clean and self.rng.random() < self.rate:
                kind, arg = self.rng.choice(FAULTS[1:]), self.rng.randrange(1 << 20)
            self.counts[kind] += 1
            if kind == "drop":
                continue
            if kind == "corrupt":
                b = bytearray(piece)
                b[arg % len(b)] ^= 1 << (arg % 7)
                piece = bytes(b)
            if kind == "split" and len(piece) > 1:
                cut = 1 + arg % (len(piece) - 1)
                self._put(now + LATENCY_MS, piece[:cut])
                self._put(now + LATENCY_MS + 100 + arg % 3000, piece[cut:])
                continue
            delay = 100 + arg % 4000 if kind == "delay" else 0
            self._put(now + LATENCY_MS + delay, piece)

    def due(self):
        now = self.world.t_ms
        ready = sorted(e for e in self.queue if e[0] <= now)
        if not ready:
            return b""
        self.queue = [e for e in self.queue if e[0] > now]
        return b"".join(e[2] for e in ready)


class BoardLink:
    """The board's `link`: writes go onto the up channel, reads take what the down channel delivered."""

    def __init__(self, up, down):
        self.up = up
        self.down = down

    def write(self, data):
        self.up.send(bytes(data))
        return len(data)

    def read(self):
        return self.down.due()


class GatewayPort:
    """The protocol's transport: what it writes goes onto the down channel."""

    def __init__(self, down):
        self.down = down

    def write(self, data):
        self.down.send(bytes(data))
        return len(data)


class FakeTimer:
    """threading.Timer for the clock keeper's T frame, fired by the model's loop at simulated time."""

    def __init__(self, world, delay, fn, args=()):
        self.world = world
        self.at = world.t_ms + int(delay * 1000)
        self.fn = fn
        self.args = args
        self.fired = False
        self.daemon = True

    def start(self):
        self.world.timers.append(self)

    def is_alive(self):
        return not self.fired


class CheckedJournal(Journal):
    """The real journal, watched: what was appended, and at every ack that the readings it frees are committed."""

    def __init__(self, world, card):
        super().__init__(card, max_bytes=1 << 20, segment_bytes=1024)
        self.world = world
        self.at = {}                  # position -> payload, for records appended or read in this boot

    def append(self, payload):
        position = super().append(payload)
        self.world.sampled_record(payload)
        self.at[position[:2]] = payload
        return position

    def read_next(self):
        item = super().read_next()
        if item is not None:
            self.at[item[1][:2]] = item[0]
        return item

    def ack(self, position):
        for pos, payload in self.at.items():
            if pos <= position[:2]:
                key, _ = parse_record(payload)
                assert key in self.world.db, (
                    "the board deleted reading %r from its card, but it is not committed" % (key,))
        super().ack(position)


def parse_record(payload):
    boot, seq, iso, raw, _flags = payload.decode().split(",")
    return (BOARD, int(boot), int(seq)), (utc.sql(utc.parse_iso(iso)), int(raw))


class World:
    def __init__(self, tmp, up_faults, down_faults, seed, rate=0.0):
        self.t_ms = 0
        self.timers = []
        self.db = {}                  # (board, boot, seq) -> (sample_time, raw): the committed rows
        self.inserts = {}             # identity -> how many times an insert of it was attempted and committed
        self.sampled = {}             # identity -> (sample_time, raw) for every completed journal append
        self.pending = []             # (epoch, n, reading) accepted by the session, not yet committed
        self.db_up = True
        self.card_dir = os.path.join(str(tmp), "sd")
        self.chip = DS1307Sim(time_source=self.host_time)
        self.bus = I2CBus()
        self.bus.attach(0x68, self.chip)
        self.i2c = MachineI2C(self.bus)
        DS1307(self.i2c).set_datetime(time.gmtime(EPOCH0)[:6])   # a gateway set it on the bench earlier
        self.adc = MoistureSensor(curve=drying(half_life=60.0), noise=200.0, seed=seed, time_source=self.host_time)
        self.up = Channel(self, up_faults, rate, seed)
        self.down = Channel(self, down_faults, rate, seed + 1)
        cfg = types.SimpleNamespace(name=BOARD, url="loop://", baudrate=115200)
        self.session = BoardProtocol(cfg, self.submit, lambda: self.db_up, now=self.host_time,
                                     clock=ClockKeeper(now=self.host_time, timer=self.timer))
        self.session.connection_made(GatewayPort(self.down))
        self.boots = []
        self.collector = None
        self.boot_board()

    def host_time(self):
        return EPOCH0 + self.t_ms / 1000.0

    def timer(self, delay, fn, args=()):
        return FakeTimer(self, delay, fn, args)

    def ticks_ms(self):
        return (TICKS_START + self.t_ms) & (TICKS_PERIOD - 1)

    def boot_board(self):
        """Power up (or reset) the board: the same card folder and RTC chip, fresh RAM, the next boot number."""
        card = SimCard(self.card_dir, 8 << 20)
        rtc = DS1307(self.i2c)
        boot, stores = bootcount.next_boot(rtc, card)
        assert stores == 2
        assert boot not in self.boots, "a boot number was reused"
        self.boots.append(boot)
        self.journal = CheckedJournal(self, card)
        self.collector = Collector(BOARD, boot, rtc, self.adc, self.journal, BoardLink(self.up, self.down),
                                   self.ticks_ms, ticks_diff, interval_ms=1000, window=8,
                                   uid="0badc0de")
        self.collector.start()

    def sampled_record(self, payload):
        key, value = parse_record(payload)
        assert key not in self.sampled, "identity %r sampled twice" % (key,)
        self.sampled[key] = value
        board_time = utc.to_epoch(utc.parse_iso(payload.decode().split(",")[2]))
        assert abs(board_time - self.host_time()) < 15, "sample time %s far from the true time" % (payload,)

    # --- the gateway's writer ---------------------------------------------------------------------------------------
    def submit(self, session, epoch, n, reading):
        assert reading.board == BOARD
        self.pending.append((epoch, n, reading))

    def commit(self):
        batch, self.pending = self.pending, []
        if not batch:
            return
        epochs = []
        for epoch, _, _ in batch:
            if epoch not in epochs:
                epochs.append(epoch)
        if not self.db_up:
            for epoch in epochs:
                self.session.rollback(epoch)
            return
        for _, _, r in batch:
            key = (r.board, r.boot, r.seq)
            value = (r.sample_time, r.raw)
            if key in self.db:
                assert self.db[key] == value, "identity %r stored with %r, offered again as %r" % (
                    key, self.db[key], value)
            else:
                self.db[key] = value
            self.inserts[key] = self.inserts.get(key, 0) + 1
        for epoch in epochs:
            self.session.committed_through(epoch, max(n for e, n, _ in batch if e == epoch))

    # --- one simulated step --------------------------------------------------------------------------------------
    def step(self, commit_now):
        self.t_ms += STEP_MS
        for timer in [t for t in self.timers if t.at <= self.t_ms]:
            self.timers.remove(timer)
            timer.fired = True
            timer.fn(*timer.args)
        data = self.up.due()
        if data:
            self.session.data_received(data)
        self.collector.step()
        if commit_now:
            self.commit()

    def quiet(self):
        c = self.collector
        return (not self.up.queue and not self.down.queue and not self.pending and not c.uplink.inflight
                and self.journal.pending == 0 and c.pending() == 0)


fault = st.tuples(st.sampled_from(FAULTS), st.integers(0, 1 << 20))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    up_faults=st.lists(fault, max_size=40),
    down_faults=st.lists(fault, max_size=20),
    rate=st.sampled_from((0.0, 0.1, 0.3, 0.5)),
    resets=st.lists(st.integers(1, FAULT_STEPS), max_size=4),
    outages=st.lists(st.tuples(st.integers(0, FAULT_STEPS), st.integers(1, 120)), max_size=3),
    commit_every=st.integers(1, 8),
    seed=st.integers(0, 1000),
)
def test_f1_f9_lossy_link_never_loses_or_duplicates(tmp_path_factory, up_faults, down_faults, rate, resets, outages,
                                                    commit_every, seed):
    world = World(tmp_path_factory.mktemp("link"), up_faults, down_faults, seed, rate)
    for i in range(1, FAULT_STEPS + 1):
        world.db_up = not any(start <= i < start + length for start, length in outages)
        world.step(i % commit_every == 0)
        if i in resets:
            world.down.flush()
            world.boot_board()
    # The faults stop: a clean line, the database up, no more resets, no more samples; run to quiescence.
    world.up.clean = world.down.clean = True
    world.db_up = True
    world.collector.interval_ms = 1 << 28
    for i in range(DRAIN_STEPS):
        world.step(i % commit_every == 0)
        if i > 200 and world.quiet():
            break
    c = world.collector
    detail = "boots %r, faults up %r down %r, pending %d, inflight %r, db %d, sampled %d" % (
        world.boots, world.up.counts, world.down.counts, world.journal.pending, c.uplink.inflight, len(world.db),
        len(world.sampled))
    assert world.sampled, detail
    missing = sorted(set(world.sampled) - set(world.db))
    assert not missing, "readings lost: %r (%s)" % (missing[:5], detail)
    extra = sorted(set(world.db) - set(world.sampled))
    assert not extra, "rows that were never sampled: %r" % (extra[:5],)
    for key, value in world.sampled.items():
        assert world.db[key] == value, "%r stored as %r, sampled as %r" % (key, world.db[key], value)
    assert world.journal.pending == 0, detail
    assert c.pending() == 0 and not c.uplink.inflight, detail
    assert c.dropped() == 0, detail


def test_model_without_faults_stores_every_reading_once(tmp_path):
    """The model's plumbing on a clean line: the same property, and every reading inserted exactly once."""
    world = World(tmp_path, [], [], 0)
    for i in range(1, 201):
        world.step(i % 2 == 0)
    world.collector.interval_ms = 1 << 28
    for i in range(400):
        world.step(True)
    assert len(world.sampled) >= 10
    assert world.db == world.sampled
    assert set(world.inserts.values()) == {1}
    assert world.journal.pending == 0 and world.quiet()
