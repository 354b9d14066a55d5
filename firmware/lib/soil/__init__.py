"""Portable core of the soil-moisture logger.

Pure Python that runs unchanged on MicroPython, CircuitPython and CPython. Nothing here imports a platform
module: the bus, clock, card and serial link are handed in by a port's entry point (see docs/ARCHITECTURE.md).

The package itself holds its version and the on-demand loader every module uses (`ondemand`, `unload`), so the
loader costs a board no module of its own.
"""

import sys

VERSION = "0.1.0"


def ondemand(path, *args):
    """Call the function `path` (qualified: "soil.ring.publish") with `args`, its module (and whatever that
    imported) loaded for this call only. Returns what the function returns; its exceptions propagate.

    Why: a MicroPython board holds the bytecode of every module it imported in its heap for as long as the module
    stays in `sys.modules`, and the portable core plus the MicroPython adapter must fit in 32 KB of heap after
    start-up (BRIEF.md). Much of the core runs rarely: what a board reads back at boot (soil.recovery), the
    full-card policy, setting the clock on the gateway's word, parsing a timestamp from the gateway, a standby's
    takeover. That code lives in modules of its own, reached through this function; the next call imports the
    module again (a few milliseconds from flash on a board, on occasions that come seconds or days apart).

    Rules for a module run this way: it defines functions only (no class whose identity matters, such as an
    exception type: those live in the modules that stay, and it imports them from there), and it keeps no state of
    its own (the state lives in the object it is handed). Under CPython dropping a module only costs a re-import.
    """
    dot = path.rfind(".")
    func = path[dot + 1:]
    before = set(sys.modules)
    try:
        module = __import__(path[:dot], None, None, (func,))
        return getattr(module, func)(*args)
    finally:
        for loaded in [m for m in sys.modules if m not in before]:
            unload(loaded)


def unload(name):
    """Forget module `name` (its code is freed at the next collection unless something else holds it): remove it
    from sys.modules and from its package's attributes, which refer to it too."""
    sys.modules.pop(name, None)
    dot = name.rfind(".")
    if dot > 0:
        package = sys.modules.get(name[:dot])
        if package is not None:
            try:
                delattr(package, name[dot + 1:])
            except (AttributeError, KeyError):   # MicroPython raises KeyError for a missing module attribute
                pass
