"""The memory-mode I2C target (tools/sim/chips/i2ctarget.py) on a host: its handler timed on the host's monotonic
clock (flaw F11's measuring stick), a failing handler's traceback on stderr."""

import sys
import time
import traceback

from tools.sim.chips.i2ctarget import (  # noqa: F401 - re-exported
    IRQ_ADDR_MATCH_READ, IRQ_ADDR_MATCH_WRITE, IRQ_END_READ, IRQ_END_WRITE, IRQ_READ_REQ, IRQ_WRITE_REQ, TargetIRQ)
from tools.sim.chips.i2ctarget import MemTarget as _Model

__all__ = ["MemTarget", "TargetIRQ"]


class MemTarget(_Model):
    def __init__(self, mem, mem_addrsize=8, clock=time.perf_counter):
        _Model.__init__(self, mem, mem_addrsize, clock)

    def handler_failed(self, exc):
        print("I2CTarget: uncaught exception in IRQ handler; handler disabled", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
