"""The DS1307 model (tools/sim/chips/ds1307.py) with what only a host process has: a state file and a lock.

The chip itself, register by register, is the portable model, the same file the MicroPython harness runs. This
subclass adds:

- `time_source`: host seconds (float or int) instead of the model's integer milliseconds; the default `time.time`
  is wall time, so a saved state means the same instant to the next process. Tests pass a fake clock.
- `state_file`: the registers and the host time they were valid at go to a JSON file after every write, so a
  virtual board process restarted with the same file finds its clock still running (on battery), or coming up
  cold (without one). A new process on the same file is a power cycle.
- a lock: the bus serialises transactions, but a board's control thread may poke the chip meanwhile.
- `cold_time="zero"` (the default) or `"garbage"`: the time a first power-up shows (the model says "zeros").

Attach it with `bus.attach(0x68, chip)` (tools/sim/host/i2c.py).
"""

import json
import os
import threading
import time

from tools.sim.chips.ds1307 import DS1307

__all__ = ["DS1307Sim", "ADDRESS"]

ADDRESS = DS1307.ADDRESS


class DS1307Sim(DS1307):
    """The chip on the virtual I2C bus, persisted in `state_file` when one is given (see the module docstring)."""

    def __init__(self, time_source=None, drift_ppm=0.0, battery=True, state_file=None, cold_time="zero", seed=0):
        self.time_source = time_source or time.time
        self.state_file = None  # no saving while the model comes up
        self._lock = threading.RLock()
        if cold_time not in ("zero", "garbage"):
            raise ValueError("cold_time must be 'zero' or 'garbage'")
        DS1307.__init__(self, self._ms, drift_ppm=drift_ppm, battery=battery,
                        cold_time="zeros" if cold_time == "zero" else cold_time, seed=seed)
        if state_file and os.path.exists(state_file):
            self._load(state_file)
        self.state_file = state_file
        if state_file:
            self.save()  # the next process finds this very chip, RAM garbage included

    def _ms(self):
        return int(round(self.time_source() * 1000))

    # ---- locked: the bus thread and a control thread may both be here --------------------------------------
    def sync(self):
        with self._lock:
            DS1307.sync(self)

    def poke(self, reg, value):
        with self._lock:
            DS1307.poke(self, reg, value)

    def set_time(self, tm, hour12=False):
        with self._lock:
            DS1307.set_time(self, tm, hour12)

    # ---- the state file ----------------------------------------------------------------------------------------
    def store(self):
        if self.state_file:
            self.save()

    def save(self, path=None):
        """Write the registers and the host time they were true at, atomically (tmp file + rename)."""
        path = path or self.state_file
        with self._lock:
            self.sync()
            state = {"version": 1, "chip": "DS1307", "regs": self.regs.hex(), "anchor": self._last / 1000.0,
                     "frac": self._sub / 1000.0}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _load(self, path):
        """A new process is a power cycle: on battery the saved clock ran on meanwhile, without one it is lost."""
        with open(path) as f:
            state = json.load(f)
        if state.get("version") != 1 or state.get("chip") != "DS1307":
            raise ValueError("%s is not a saved DS1307 state" % path)
        regs = bytes.fromhex(state["regs"])
        if len(regs) != len(self.regs):
            raise ValueError("%s: expected %d registers" % (path, len(self.regs)))
        with self._lock:
            self.resume(regs, int(round(float(state["anchor"]) * 1000)), int(round(float(state["frac"]) * 1000)))
