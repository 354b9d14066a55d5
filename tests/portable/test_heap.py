"""MicroPython heap taken by the portable core: import every soil module, collect, read gc.mem_alloc().

A rough view of what each module costs when a board compiles it from source (the live heap of the firmware as
`make flash` deploys it, against BRIEF.md's budget, is measured by tools/sim/micropython/heap.py and judged by
tests/test_micropython_core.py). Under MicroPython the script prints

    HEAP_MODULE <module> <bytes>        one per soil module, in import order: what importing it added (a module
                                        imported earlier by another one is charged to that one)
    HEAP baseline=<bytes> after_import=<bytes> core=<bytes> modules=<n>

`baseline` is the heap in use before importing soil (the interpreter, the runner, this script and its helper),
`after_import` the heap in use after importing every soil module, `core` the difference; all after gc.collect().
Inside one script this port frees no garbage (docs/MICROPYTHON.md), so these are upper bounds that include the
compiler's temporaries; this script fails only when it cannot measure. Under CPython there is no gc.mem_alloc: it prints a SKIP line and checks only that
everything imports. Ends with `OK heap <n> checks`.
"""

import gc

from portable import IS_MICROPYTHON, Checks, import_module, package_modules

checks = Checks("heap")
names = package_modules("soil")  # read the folder before measuring (os.listdir allocates)
checks.check(len(names) > 1, "soil has modules")


def used():
    gc.collect()
    gc.collect()
    return gc.mem_alloc() if IS_MICROPYTHON else 0


baseline = used()
previous = baseline
for name in names:
    import_module(name)
    now = used()
    if IS_MICROPYTHON:
        print("HEAP_MODULE %s %d" % (name, now - previous))
    previous = now
checks.check(True, "every soil module imported")

if IS_MICROPYTHON:
    after = used()
    print("HEAP baseline=%d after_import=%d core=%d modules=%d" % (baseline, after, after - baseline, len(names)))
    checks.check(after > baseline, "importing soil allocates heap (the measurement works)")
else:
    print("SKIP heap: gc.mem_alloc() is MicroPython-only; imported %d soil modules" % len(names))

checks.done()
