"""The simulated chips, one model per chip, written once in the common subset of CPython and MicroPython.

    chips.ds1307.DS1307     the real-time clock, register by register, behind a byte-level I2C target interface
    chips.sdcard.Card       the SD card's filesystem as the firmware sees it, with block accounting and faults
    chips.moisture          the capacitive soil probe on an ADC input: drying curves, waterings, seeded noise

The same files run under CPython (as `tools.sim.chips`; tools/sim/host wraps them with what only a host process has:
a JSON state file, a lock, a fault control file) and under MicroPython (as `chips`, copied into /lib by
`run.mjs --package chips=tools/sim/chips`), where tools/sim/micropython/board drives them from the simulated `machine`.

`Prng` is here because the chips need bytes the datasheet leaves undefined (a DS1307's RAM at first power-up, an
SD block half written when the power went) and both must give the same bytes for the same seed on both
interpreters: `random.Random` does not exist on MicroPython and its `random` module differs.
"""


try:
    from micropython import const  # noqa: F401 - re-exported: `from . import const` in the models
except ImportError:  # CPython
    def const(x):
        """MicroPython's `const()`: folded by its compiler, the value itself elsewhere."""
        return x


class Prng:
    """Marsaglia's xorshift32: a small deterministic generator, the same sequence on every interpreter.
    `rng()` is the next pseudo-random byte, 0..255."""

    def __init__(self, seed=0):
        self.state = (seed * 0x9E3779B1 ^ 0x2545F491) & 0xFFFFFFFF or 1

    def __call__(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x >> 24
