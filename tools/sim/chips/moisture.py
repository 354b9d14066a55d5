"""A capacitive soil-moisture probe on an ADC input, written once for CPython and MicroPython.

Why: the collector, the cache and the gateway need readings that change the way soil does (slow drying, a jump at
each watering) and that a test can predict exactly. The model is a curve of the probe's raw value over time plus
seeded noise; `read_u16()` has MicroPython's `machine.ADC.read_u16` scale (0..65535).

Capacitive probes (the common v1.2 board) read high when dry and low when wet, so the drying curve rises. Noise is
Gaussian (Box-Muller over the chips' shared Prng), drawn once per read: the n-th read of a probe built with the same
seed, curve and times is always the same number, on either interpreter, whatever else runs.
"""

import math

from . import Prng

U16_MAX = 65535


def constant(raw):
    """A curve that always reads `raw`."""

    def curve(t):
        return raw

    return curve


def drying(wet=26000, dry=52000, half_life=6 * 3600.0, water_every=None, water_at=(), start_wet=True):
    """A drying curve: after each watering the raw value climbs from `wet` towards `dry`, halving the gap every
    `half_life` seconds. Waterings happen at `t = 0` (if `start_wet`), at the times in `water_at` and every
    `water_every` seconds (t is seconds since the probe was made)."""
    events = sorted(water_at)

    def curve(t):
        last = 0.0 if start_wet else None
        for w in events:
            if w <= t:
                last = w if last is None else max(last, w)
        if water_every:
            periodic = (t // water_every) * water_every
            if periodic >= 0 and (periodic > 0 or start_wet):
                last = periodic if last is None else max(last, periodic)
        if last is None:
            return dry
        return dry - (dry - wet) * 0.5 ** ((t - last) / half_life)

    return curve


class MoistureProbe:
    """The probe and its ADC channel. `clock_ms()` is the time in milliseconds; `curve(t)` gives the noiseless raw
    value `t` seconds after the probe was made; `noise` is the standard deviation in raw counts.
    `disconnected = True` is a pulled connector: the input floats to the rail (65535)."""

    def __init__(self, clock_ms, curve=None, noise=0.0, seed=0):
        self.curve = curve if curve is not None else drying()
        self.noise = float(noise)
        self._clock_ms = clock_ms
        self._t0 = clock_ms()
        self._rng = Prng(seed)
        self.disconnected = False
        self.reads = 0

    def _uniform(self):
        """(0, 1]: three bytes of the Prng."""
        r = self._rng
        return ((r() << 16 | r() << 8 | r()) + 1) / 16777216.0

    def _gauss(self):
        return math.sqrt(-2.0 * math.log(self._uniform())) * math.cos(2.0 * math.pi * self._uniform())

    def read_u16(self):
        self.reads += 1
        if self.disconnected:
            return U16_MAX
        t = (self._clock_ms() - self._t0) / 1000.0
        v = self.curve(t if t > 0 else 0.0)  # a host clock stepping back must not run the soil backwards
        if self.noise:
            v += self._gauss() * self.noise
        v = int(round(v))
        return 0 if v < 0 else U16_MAX if v > U16_MAX else v
