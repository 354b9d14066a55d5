"""The virtual MicroPython board (tools/mpboard) under the REAL mpremote, and tools/flash.py (what `make flash
BOARD=sim` runs) against it: full, then incremental.

The board is the real MicroPython 1.27 interpreter (WebAssembly) behind a pseudo-terminal; mpremote talks to it
exactly as to /dev/ttyACM0. Timings are printed (`pytest -s`), never asserted.
"""

import os
import subprocess
import sys
import time

import pytest

from tests.mpy import REPO, require_micropython

pytestmark = pytest.mark.micropython

PY = sys.executable


class Board:
    def __init__(self, root, paths=()):
        self.flash = os.path.join(root, "flash")
        self.tty = os.path.join(root, "tty")
        os.makedirs(self.flash, exist_ok=True)
        cmd = [PY, "-m", "tools.mpboard", "--flash", self.flash]
        for p in paths:
            cmd += ["--path", p]
        self.log = open(os.path.join(root, "board.log"), "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        assert "mpboard: MicroPython" in line and os.path.islink(self.tty), (line, self.logtext())

    def logtext(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def mpremote(board, *args, check=True, timeout=120):
    proc = subprocess.run([PY, "-m", "mpremote", "connect", board.tty] + list(args), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr, board.logtext())
    return proc


@pytest.fixture
def board(tmp_path):
    require_micropython()
    b = Board(str(tmp_path))
    yield b
    b.stop()


def test_mpremote_ls_cp_exec_run_reset(board, tmp_path):
    assert mpremote(board, "ls").stdout.strip() == "ls :"          # an empty flash; /tmp /dev ... are not flash
    src = tmp_path / "hello.py"
    src.write_text("import sys\nprint('hello from', sys.implementation.name, 6 * 7)\n")
    mpremote(board, "cp", str(src), ":hello.py")
    with open(os.path.join(board.flash, "hello.py")) as f:           # written back to the host folder
        assert f.read() == src.read_text()
    assert "hello.py" in mpremote(board, "ls").stdout
    assert mpremote(board, "exec", "import hello").stdout.strip() == "hello from micropython 42"
    assert mpremote(board, "run", str(src)).stdout.strip() == "hello from micropython 42"
    # A second cp of the same file: mpremote compares sha256 on the board (hashlib there) and skips it.
    assert "Up to date" in mpremote(board, "cp", str(src), ":hello.py").stdout
    # errno: the port's WASI numbers (ENOENT 44, EEXIST 20) reach mpremote as a board's (2, 17).
    miss = mpremote(board, "cat", ":missing.txt", check=False)
    assert miss.returncode == 1 and "No such file or directory" in miss.stderr, miss.stderr
    mpremote(board, "mkdir", ":lib")
    again = mpremote(board, "mkdir", ":lib", check=False)
    assert again.returncode == 1 and "File exists" in again.stderr, again.stderr
    assert os.path.isdir(os.path.join(board.flash, "lib"))
    mpremote(board, "rm", "-r", ":lib")
    assert not os.path.exists(os.path.join(board.flash, "lib"))
    # Soft reset: a fresh interpreter on the same flash (RAM state gone, files kept).
    out = mpremote(board, "exec", "import builtins; builtins.marker = 1", "soft-reset", "exec",
                   "import builtins, machine; print(hasattr(builtins, 'marker'), machine.reset_cause())").stdout
    assert out.strip().endswith("False 5"), out
    # Hard reset (mpremote reset = machine.reset()), then the board answers again with its flash intact.
    mpremote(board, "reset")
    time.sleep(0.3)
    assert "hello.py" in mpremote(board, "ls").stdout


def test_board_flash_survives_restart(tmp_path):
    require_micropython()
    b = Board(str(tmp_path))
    try:
        mpremote(b, "exec", "f = open('state.txt', 'w'); f.write('kept'); f.close()")
    finally:
        b.stop()
    b = Board(str(tmp_path))
    try:
        assert mpremote(b, "exec", "print(open('state.txt').read())").stdout.strip() == "kept"
    finally:
        b.stop()


def _flash(board, *extra):
    t0 = time.monotonic()
    proc = subprocess.run([PY, "tools/flash.py", "--board", "sim", "--role", "single", "--port", board.tty,
                           "--id", "sim-1"] + list(extra), capture_output=True, text=True, timeout=300, cwd=REPO)
    dt = time.monotonic() - t0
    assert proc.returncode == 0, (proc.stdout, proc.stderr, board.logtext())
    return proc.stderr, dt


def test_flash_sim_full_then_incremental(board):
    log1, full = _flash(board)
    assert "copying" in log1, log1
    expect = ["main.py", "hal.py", "boards.py", "config.json"] + [
        "lib/soil/" + n for n in os.listdir(os.path.join(REPO, "firmware", "lib", "soil")) if n.endswith(".py")]
    for rel in expect:
        assert os.path.isfile(os.path.join(board.flash, rel)), rel
    with open(os.path.join(REPO, "firmware", "micropython", "main.py"), "rb") as f:
        with open(os.path.join(board.flash, "main.py"), "rb") as g:
            assert f.read() == g.read()
    import json
    with open(os.path.join(board.flash, "config.json")) as f:
        cfg = json.load(f)
    assert (cfg["board"], cfg["role"], cfg["board_type"]) == ("sim-1", "single", "pico")

    log2, incr = _flash(board)
    assert "nothing copied" in log2 and ": 0 copied" in log2, log2
    # A changed config (another role) copies exactly that file.
    proc = subprocess.run([PY, "tools/flash.py", "--board", "sim", "--role", "master", "--port", board.tty],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0 and "copying 1 file(s): config.json" in proc.stderr, proc.stderr
    with open(os.path.join(board.flash, "config.json")) as f:
        cfg = json.load(f)
    assert (cfg["board"], cfg["role"]) == ("sim-1", "master")        # the id on the board is kept
    print("\nflash BOARD=sim: full %.2f s, incremental %.2f s" % (full, incr))


SIM_BOOT = """# The simulated board's hardware (tests/mpy_machine on sys.path): a DS1307 on I2C 0, the SD card stand-in.
import os
import time
import machine
import sdcard
from ds1307_chip import DS1307Chip
if not hasattr(os, "VfsFat"):
    os.VfsFat = sdcard.SimFat
try:
    os.mkdir("/simcard")
except OSError:
    pass
machine.SIM.bus(0)[DS1307Chip.ADDRESS] = DS1307Chip(time.ticks_ms)
"""


def test_flashed_firmware_starts_and_speaks_frames(tmp_path):
    """Stretch: after `make flash BOARD=sim` the soft reset starts main.py (step mode, simulated machine) and
    `soil-gateway monitor` decodes its hello and readings from the pty."""
    require_micropython()
    os.makedirs(str(tmp_path / "flash"))
    (tmp_path / "flash" / "boot.py").write_text(SIM_BOOT)
    b = Board(str(tmp_path), paths=[os.path.join(REPO, "tests", "mpy_machine")])
    try:
        _flash(b)
        mon = subprocess.run([os.path.join(os.path.dirname(PY), "soil-gateway"), "monitor", b.tty, "--query",
                              "--seconds", "3"], capture_output=True, text=True, timeout=60, cwd=REPO)
        kinds = [line.split()[1] for line in mon.stdout.splitlines() if len(line.split()) > 2]
        assert "H" in kinds, (mon.stdout, mon.stderr, b.logtext())
        hello = [line for line in mon.stdout.splitlines() if line.split()[1] == "H"][0].split()
        assert hello[3] == "sim-1" and hello[8] == "single", hello
        assert "R" in kinds, mon.stdout
        # The running firmware gives the line back to mpremote (Ctrl-C stops it, as on a board).
        assert "main.py" in mpremote(b, "ls").stdout
    finally:
        b.stop()
