"""soil.ondemand and soil.unload (the package's on-demand loader) under CPython and real MicroPython: a module run on demand is gone after the call, with whatever it
imported, also when the call raises; modules loaded before the call stay. Prints `OK ondemand_portable <n> checks`."""

import sys

from portable import Checks

checks = Checks("ondemand_portable")

import soil  # noqa: E402
from soil import ondemand, unload  # noqa: E402

for name in ("soil.timeparse", "soil.timefmt", "soil.clockset"):
    unload(name)
checks.check("soil.timeparse" not in sys.modules, "unload() of a module that is not loaded does not complain")

# A call that imports timeparse, which imports timefmt: both are dropped after it.
got = ondemand("soil.timeparse.epoch_or_none", "2026-01-02T03:04:05Z")
checks.equal(got, 1767323045, "the function's answer comes back")
checks.check("soil.timeparse" not in sys.modules, "the module run on demand is dropped from sys.modules")
checks.check("soil.timefmt" not in sys.modules, "what it imported on the way is dropped too")
checks.check(not hasattr(soil, "timeparse"), "and from the package's attributes")
checks.equal(ondemand("soil.timeparse.epoch_or_none", "-"), None, "it loads again for the next call")

# A module that was loaded before the call stays loaded.
from soil import timefmt  # noqa: E402
ondemand("soil.timeparse.epoch_or_none", "2026-01-02T03:04:05Z")
checks.check("soil.timefmt" in sys.modules and sys.modules["soil.timefmt"] is timefmt,
             "a module loaded before the call is left alone")

# An exception from the called function propagates, and the module is dropped all the same.
try:
    ondemand("soil.timeparse.parse_iso", "2026-02-30T00:00:00Z")
    checks.check(False, "parse_iso refuses Feb 30")
except ValueError:
    checks.check(True, "the function's exception reaches the caller")
checks.check("soil.timeparse" not in sys.modules, "dropped after an exception too")

checks.done()
