"""Run code a board needs only now and then without keeping it in RAM.

Why: a MicroPython board holds the bytecode of every module it imported in its heap for as long as the module stays
in `sys.modules`, and the portable core plus the MicroPython adapter must fit in 32 KB of heap after start-up
(BRIEF.md). Much of the core runs rarely: the journal's recovery (at boot, and when a card comes back), the
full-card policy, setting the clock on the gateway's word, parsing a timestamp from the gateway. That code lives in
modules of its own, and its callers reach it through `run("soil.module.function", ...)`, which imports the module
for the call and drops it again afterwards, with every module the call imported on the way. The next call imports it again (a few
milliseconds from flash on a board, on occasions that come seconds or days apart).

Rules for a module run this way: it defines functions only (no class whose identity matters, such as an exception
type: those live in the modules that stay, and it imports them from there), and it keeps no state of its own (the
state lives in the object it is handed).

The same code runs on MicroPython, CircuitPython and CPython; under CPython dropping a module only costs a
re-import.
"""

import sys


def run(path, *args):
    """Call the function `path` (qualified: "soil.ring.publish") with `args`, its module (and whatever that
    imported) loaded for this call only. Returns what the function returns; its exceptions propagate."""
    dot = path.rfind(".")
    module_name = path[:dot]
    func = path[dot + 1:]
    before = set(sys.modules)
    try:
        module = __import__(module_name, None, None, (func,))
        return getattr(module, func)(*args)
    finally:
        for loaded in [m for m in sys.modules if m not in before]:
            drop(loaded)


def drop(name):
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
