"""The parts of simboard.py that only some runs use: the emulated gateway (GATEWAY = True) and the final report
(simboard.main(), the functional tests). Kept out of simboard.py so a heap measurement (phases.mjs, GATEWAY = False)
does not intern their names before the firmware's."""

import binascii
import json
import os

import machine

from simboard import CARD_ROOT


class Gateway:
    """Just enough of the gateway to exercise acks: confirm hellos, ack R frames in order, set a clock that is not
    ok. (The real gateway, with its database, is tested in tests/test_pair.py and friends.)"""

    def __init__(self, rx, tx):
        from soil import codec
        self.codec = codec                   # the board's codec: its envelope reads every frame type
        self.rx = rx                         # gateway -> board
        self.tx = tx                         # board -> gateway
        self.split = codec.LineSplitter()
        self.expected = None
        self.clock_set = False

    def step(self):
        c = self.codec
        data = bytes(self.tx.pending)
        self.tx.pending = bytearray()
        for line in self.split.feed(data):
            try:
                kind, fields = c.envelope(line)
            except c.FrameError:
                continue
            if kind == c.HELLO:
                n_next = int(fields[3])
                self.expected = n_next
                self.rx.write(c.encode(c.ACK, (n_next - 1,)))
                if fields[5] != "ok" and not self.clock_set:
                    self.clock_set = True
                    self.rx.write(c.encode(c.SETTIME, ("2026-05-04T03:02:01Z",)))
            elif kind == c.READING and self.expected is not None:
                n = int(fields[0])
                if n == self.expected:
                    self.expected += 1
                    self.rx.write(c.encode(c.ACK, (n,)))
                elif n < self.expected:
                    self.rx.write(c.encode(c.ACK, (self.expected - 1,)))


def _hex(data):
    return binascii.hexlify(bytes(data)).decode()   # b"".hex() is b"" (bytes) in MicroPython 1.27


def report(b):
    """Print what the run did (TX, RX, BOARD, SIMSTATE lines; simboard's docstring); `b` is simboard's state."""
    sim = machine.SIM
    c = b["c"]
    hal = b["hal"]
    print("TX " + _hex(b["tx"].log))
    print("RX " + _hex(b["rx"].log))
    wdt = sim.wdt
    print("BOARD " + json.dumps({
        "boot": c.boot, "seq": c.seq, "pending": c.pending(), "dropped": c.dropped(), "card": c.card_state,
        "clock": c.clock_state, "inflight": len(c.uplink.inflight), "ignored_acks": c.uplink.ignored_acks,
        "wdt_feeds": wdt.feeds, "wdt_max_gap": wdt.max_gap, "wdt_overdue": wdt.overdue, "wdt_timeout": wdt.timeout,
        "now_ms": sim.now_ms, "role_state": c.pair.state if c.pair is not None else None,
        "led_changes": hal.led.changes if hal.led is not None else None,
        "link_in": hal.link.bytes_in, "link_out": hal.link.bytes_out}))
    card = {}
    for name in os.listdir(CARD_ROOT):
        with open(CARD_ROOT + "/" + name, "rb") as f:
            card[name] = _hex(f.read())
    print("SIMSTATE " + json.dumps({"rtc": _hex(b["chip"].regs), "card": card}))


