"""The harness that runs the firmware under the real MicroPython interpreter (its WebAssembly port, from npm).

    package.json, run.mjs   the interpreter (npm) and the runner: a script under MicroPython, libraries in /lib
    phases.mjs              live heap per phase: the firmware's start-up and loop as separate top-level calls
    features.py             what this port lacks beside CPython (docs/MICROPYTHON.md's list is its output)
    board/                  a simulated board for the interpreter: its `machine`, its SD driver, the script that
                            boots firmware/micropython/main.py on them (simboard.py) and the gateway it talks to
    heap.py                 (CPython) the heap of each role as `make flash` deploys it, for the tests and the bench
"""
