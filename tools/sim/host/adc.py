"""A soil-moisture probe on an ADC input, for virtual boards.

Why: the collector, the cache and the gateway need readings that change the way soil does (slow drying, a jump at
each watering) and that a test can predict exactly. The model is a curve of the probe's raw value over host time
plus seeded noise; `read_u16()` has MicroPython's `machine.ADC.read_u16` scale (0..65535) and `value` mirrors
CircuitPython's `analogio.AnalogIn.value`.

Capacitive probes (the common v1.2 board) read high when dry and low when wet, so the drying curve rises.
Noise is a seeded Gaussian drawn once per read: the n-th read of a sensor built with the same seed, curve and
times is always the same number, whatever else runs in the process.
"""

import random
import time

__all__ = ["MoistureSensor", "constant", "drying"]

U16_MAX = 65535


def constant(raw):
    """A curve that always reads `raw`."""

    def curve(t):
        return raw

    return curve


def drying(wet=26000, dry=52000, half_life=6 * 3600.0, water_every=None, water_at=(), start_wet=True):
    """A drying curve: after each watering the raw value climbs from `wet` towards `dry`, halving the gap every
    `half_life` seconds. Waterings happen at `t = 0` (if `start_wet`), at the times in `water_at` and every
    `water_every` seconds (t is seconds since the sensor was created).
    """
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


class MoistureSensor:
    """The probe plus its ADC channel.

    `curve(t)` gives the noiseless raw value at `t` seconds after construction; `noise` is the standard deviation
    in raw counts; `time_source()` returns host seconds (default `time.monotonic`). `disconnected = True` models a
    pulled connector: the input floats to the rail (65535), which the firmware must not store as a reading.
    """

    def __init__(self, curve=None, noise=0.0, seed=0, time_source=None):
        self.curve = curve if curve is not None else drying()
        self.noise = float(noise)
        self.time_source = time_source or time.monotonic
        self._t0 = self.time_source()
        self._rng = random.Random(seed)
        self.disconnected = False
        self.reads = 0

    def read_u16(self):
        self.reads += 1
        if self.disconnected:
            return U16_MAX
        t = self.time_source() - self._t0
        v = self.curve(t if t > 0 else 0.0)  # a host clock stepping back must not run the soil backwards
        if self.noise:
            v += self._rng.gauss(0.0, self.noise)
        v = int(round(v))
        return 0 if v < 0 else U16_MAX if v > U16_MAX else v

    @property
    def value(self):
        return self.read_u16()
