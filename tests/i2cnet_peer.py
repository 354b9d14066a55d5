"""The far end of the heartbeat wire for tests/test_i2cnet.py: a second OS process, like the standby's vboard.

    python tests/i2cnet_peer.py --path /tmp/x/wire.sock [--addr 8] [--size 32] [--sleep 0.3]

It builds an `I2CBus` with a `MemTarget` at `--addr`, serves it with `BusServer` at `--path` and registers an IRQ
handler for END_WRITE and END_READ that records each event (flags, memaddr, a copy of the memory, the thread it
ran on). `--sleep S` makes the END_WRITE handler sleep S seconds: the book's heartbeat handler, which blinks an LED
with `delay(1000)` inside the receive interrupt (flaw F11).

It prints `ready` once the socket accepts connections, then answers commands on stdin, one per line (the sync
point of a two-instance test, like micropython-lib's multitests):

    stats   one JSON line: events, handler_calls, handler_max_s, handler_total_s, transactions, cut_nacks, mem
    quit    stop serving and exit 0

End of stdin also ends it, so a peer never outlives the test that started it.
"""

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.sim.host.i2c import I2CBus  # noqa: E402
from tools.sim.host.i2cnet import BusServer  # noqa: E402
from tools.sim.host.i2ctarget import MemTarget  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="i2cnet_peer")
    p.add_argument("--path", required=True)
    p.add_argument("--addr", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--mem-addrsize", type=int, default=8)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds the END_WRITE handler blocks (flaw F11)")
    args = p.parse_args(argv)

    mem = bytearray(args.size)
    target = MemTarget(mem, mem_addrsize=args.mem_addrsize)
    events = []
    lock = threading.Lock()

    def handler(t):
        flags = t.irq().flags()
        with lock:
            events.append({"flags": flags, "memaddr": t.memaddr, "mem": bytes(mem).hex(),
                           "thread": threading.current_thread().name})
        if args.sleep and flags & MemTarget.IRQ_END_WRITE:
            time.sleep(args.sleep)

    target.irq(handler, trigger=MemTarget.IRQ_END_WRITE | MemTarget.IRQ_END_READ)
    bus = I2CBus()
    bus.attach(args.addr, target)
    server = BusServer(bus, args.path).start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stats":
                with lock:
                    snap = list(events)
                print(json.dumps({"events": snap, "handler_calls": target.handler_calls,
                                  "handler_max_s": target.handler_max_s, "handler_total_s": target.handler_total_s,
                                  "transactions": server.transactions, "cut_nacks": server.cut_nacks,
                                  "mem": bytes(mem).hex()}), flush=True)
            elif cmd == "quit":
                break
            elif cmd:
                print(json.dumps({"error": "unknown command %r" % cmd}), flush=True)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
