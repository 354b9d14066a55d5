"""The soil-moisture probe for a CPython process: the portable model (tools/sim/chips/moisture.py) on host seconds.

`time_source()` returns host seconds (default `time.monotonic`); `value` mirrors CircuitPython's
`analogio.AnalogIn.value` for the CircuitPython port's tests.
"""

import time

from tools.sim.chips.moisture import U16_MAX, MoistureProbe, constant, drying  # noqa: F401 - re-exported

__all__ = ["MoistureSensor", "constant", "drying"]


class MoistureSensor(MoistureProbe):
    """MoistureProbe on a host clock in seconds."""

    def __init__(self, curve=None, noise=0.0, seed=0, time_source=None):
        source = time_source or time.monotonic
        MoistureProbe.__init__(self, lambda: int(source() * 1000), curve=curve, noise=noise, seed=seed)

    @property
    def value(self):
        return self.read_u16()
