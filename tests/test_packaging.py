"""How the firmware gets onto boards besides `make flash`: `mpremote mip install`, a frozen image, circup.

- firmware/lib/soil/package.json lists every module of the core (mip installs exactly what is there) and carries
  soil.__version__; the real mpremote installs the package from its local path onto the virtual MicroPython board
  (tools/sim/mpboard), which then imports it. (`github:owner/repo/firmware/lib/soil` takes the same package.json from
  GitHub: relative URLs; that form needs the internet, which these machines do not have.)
- firmware/micropython/manifest.py, executed the way MicroPython's tools/manifestfile.py does (each path relative to
  the manifest's folder), freezes every core module and every adapter module but main.py, and pulls in sdcard.
- `make flash FLASH_ARGS=--frozen` deploys main.py and config.json only, removes the files a frozen image makes
  stale, and refuses a board whose firmware has no frozen soil.
- firmware/circuitpython/requirements.txt names what the CircuitPython port imports from Adafruit's bundle.
"""

import ast
import json
import os
import re

import pytest

import soil
from soil import board as soil_board
from tests.mpy import REPO, require_micropython
from tools import flash

CORE = os.path.join(REPO, "firmware", "lib", "soil")
MPY_PORT = os.path.join(REPO, "firmware", "micropython")


def core_files():
    return sorted(n for n in os.listdir(CORE) if n.endswith(".py"))


def test_mip_package_json_lists_every_core_module_and_the_version():
    with open(os.path.join(CORE, "package.json")) as f:
        pkg = json.load(f)
    assert pkg["version"] == soil.__version__
    assert sorted(pkg["urls"]) == [["soil/" + n, n] for n in core_files()]
    assert "deps" not in pkg                      # the core needs nothing; the port's sdcard is the port's business


def run_manifest(path):
    """Execute a MicroPython manifest as tools/manifestfile.py does, with its five functions recording what they
    are asked for; `$(PORT_DIR)` includes are recorded, not followed (they are MicroPython's own)."""
    frozen, required, included = [], [], []
    here = os.path.dirname(os.path.abspath(path))

    def package(name, files=None, base_path=".", opt=None):
        root = os.path.normpath(os.path.join(here, base_path, name))
        assert os.path.isdir(root), root
        for dirpath, _, names in os.walk(root):
            for n in sorted(names):
                if n.endswith(".py") and (files is None or n in files):
                    rel = os.path.relpath(os.path.join(dirpath, n), os.path.join(here, base_path))
                    frozen.append((rel.replace(os.sep, "/"), opt))

    def module(name, base_path=".", opt=None):
        assert os.path.isfile(os.path.join(here, base_path, name)), name
        frozen.append((name, opt))

    with open(path) as f:
        code = f.read()
    exec(compile(code, path, "exec"), {"package": package, "module": module, "require": required.append,
                                       "include": included.append, "options": None, "metadata": lambda **k: None})
    return frozen, required, included


def test_manifest_freezes_the_core_and_the_adapter_but_main():
    frozen, required, included = run_manifest(os.path.join(MPY_PORT, "manifest.py"))
    names = {name for name, _ in frozen}
    assert {"soil/" + n for n in core_files()} <= names
    adapter = {n for n in os.listdir(MPY_PORT) if n.endswith(".py") and n not in ("main.py", "manifest.py")}
    assert adapter <= names and "main.py" not in names
    deployed = {b for _, b in flash.firmware_files()}
    assert "manifest.py" not in deployed and {"lib/soil/" + n for n in core_files()} | adapter | {"main.py"} == deployed
    assert all(opt == flash.MPY_OPT for _, opt in frozen)          # the same -O level make flash compiles with
    assert required == ["sdcard"] and included == ["$(PORT_DIR)/boards/manifest.py"]


def test_circuitpython_requirements_name_every_bundle_import():
    """requirements.txt (circup install -r) must name each Adafruit library the port imports."""
    cp = os.path.join(REPO, "firmware", "circuitpython")
    with open(os.path.join(cp, "requirements.txt")) as f:
        wanted = {line.split("#")[0].strip() for line in f} - {""}
    imported = set()
    for name in ("code.py", "hal.py", "boot.py"):
        with open(os.path.join(cp, name)) as f:
            for node in ast.walk(ast.parse(f.read())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    imported.add(node.module.split(".")[0])
                elif isinstance(node, ast.Import):
                    imported.update(a.name.split(".")[0] for a in node.names)
    assert {m for m in imported if m.startswith("adafruit_")} == wanted


def test_stale_files_of_a_frozen_image():
    sources = [b for _, b in flash.firmware_files()]
    stale = flash.stale_files(["main.py"], sources)
    assert "main.py" not in stale and "main.mpy" in stale
    assert {"hal.py", "hal.mpy", "lib/soil/journal.py", "lib/soil/journal.mpy"} <= set(stale)
    assert flash.stale_files(["lib/soil/crc.mpy"], ["lib/soil/crc.py"]) == ["lib/soil/crc.py"]


def test_core_version_is_read_from_the_source():
    assert flash.core_version() == soil.__version__


# --- against the virtual MicroPython board, with the real mpremote ----------------------------------------------

@pytest.mark.micropython
def test_mpremote_mip_installs_the_package_from_its_path(tmp_path):
    require_micropython()
    from tests.test_mpboard import Board, mpremote
    board = Board(str(tmp_path))
    try:
        out = mpremote(board, "mip", "install", os.path.join("firmware", "lib", "soil", "package.json")).stdout
        assert out.count("Installing: /lib/soil/") == len(core_files()), out
        for n in core_files():
            with open(os.path.join(board.flash, "lib", "soil", n), "rb") as got, open(os.path.join(CORE, n), "rb") as want:
                assert got.read() == want.read(), n
        shown = mpremote(board, "exec", "import soil, soil.board, soil.collector; print(soil.__version__, "
                                        "len(soil.board.SETTINGS))").stdout.split()
        assert shown == [soil.__version__, str(len(soil_board.SETTINGS))]
    finally:
        board.stop()


@pytest.mark.micropython
def test_flash_frozen_refuses_a_board_without_the_frozen_core(tmp_path):
    require_micropython()
    from tests.test_mpboard import Board
    board = Board(str(tmp_path))
    try:
        import subprocess
        import sys
        done = subprocess.run([sys.executable, "tools/flash.py", "--board", "sim", "--port", board.tty, "--id", "f1",
                               "--frozen"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert re.search(r"^flash: --frozen: the board's firmware has no frozen soil package", done.stderr, re.M)
        assert "Traceback" not in done.stderr
        assert os.listdir(board.flash) == []                     # nothing was copied
    finally:
        board.stop()
