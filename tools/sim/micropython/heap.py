"""The MicroPython heap the firmware takes, per role, as `make flash` deploys it: what the budget test and `make bench`
both measure (CPython side; the measuring itself is phases.mjs and board/simboard.py under the interpreter).

BRIEF.md's budget, per role, as `.mpy` on stock firmware: at most AFTER_START_BUDGET of heap after start-up and at
most PEAK_BUDGET at the peak of a run that includes a takeover, a hand-back, a full card and a replay window.

How: the firmware as deployed (tools/flash.py's build_deployment: the core and the port as .mpy, main.py as source)
runs main.start() and then its loop on the simulated board, each phase a separate top-level call of the
interpreter with collecting calls between them (this port frees garbage only between top-level calls: phases.mjs
says why). Live bytes after each phase, minus what the simulation itself holds after it was set up ("prepared"),
are the firmware's. The peak is the largest of those figures over a run in chunks of simulated time (PEAK_RUN): a
collection after every chunk, so it is the live heap at chunk boundaries, not counting garbage a collection would
free, nor a transient allocation inside a chunk.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HERE = os.path.dirname(os.path.abspath(__file__))
PHASES = os.path.join(HERE, "phases.mjs")
BOARD = os.path.join(HERE, "board")                          # the simulated board's MicroPython modules
PACKAGES = {"chips": os.path.join(REPO, "tools", "sim", "chips")}
LIBS = (os.path.join(REPO, "firmware", "lib"), os.path.join(REPO, "firmware", "micropython"), BOARD)

AFTER_START_BUDGET = 48 * 1024
PEAK_BUDGET = 64 * 1024
ROLES = ("single", "master", "standby")
CONFIG = {"board": "bed1", "board_type": "pico", "interval_ms": 1000}
# The peak run: the card's journal bounded so a gateway outage fills it within minutes of simulated time.
PEAK_CONFIG = dict(CONFIG, journal_max=16384)
PEAK_CHUNKS = 64            # chunks of PEAK_CHUNK_S simulated seconds (board/simpeak.py has the timeline)
PEAK_CHUNK_S = 10


def simstate(config, steps, state=None, gateway=True, off_s=0, scenario=None):
    """The text of the `_simstate.py` simboard reads (board/simboard.py's docstring)."""
    return "STATE = %r\n" % json.dumps({"cfg": config, "steps": steps, "state": state, "gateway": gateway,
                                        "off": off_s, "scenario": scenario})


def compile_firmware(dest):
    """What tools/flash.py deploys (its build_deployment: the core and the port's modules as .mpy with the same short
    `-s` names, main.py as source), laid out with dest as the board's /lib: lib/soil/* -> dest/soil, the top level
    -> dest."""
    from tools import flash
    tmp = tempfile.mkdtemp(prefix="mpydeploy-")
    try:
        for host, board in flash.build_deployment(tmp, mpy=True):
            target = os.path.join(dest, board[len("lib/"):] if board.startswith("lib/") else board)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(host, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compile_sim(dest):
    """The simulation's own modules as .mpy, compiled as the firmware is (mpy-cross -O3, the import name as source
    name), laid out with dest as /lib: board/*.py -> dest, each package of PACKAGES -> dest/<name>.

    Why: the simulation's names go into the same qstr table as the firmware's, before them, and that table grows in
    pools that double (docs/MICROPYTHON.md), so how many names the simulation interns moves the pool steps the
    firmware is charged for. From source the compiler interns every identifier, locals and private constants
    included; as .mpy a module interns only the names its bytecode needs."""
    from tools import flash
    cmd = flash.mpy_cross_command()
    trees = [(BOARD, dest, "")] + [(PACKAGES[n], os.path.join(dest, n), n) for n in sorted(PACKAGES)]
    for src_dir, out_dir, package in trees:
        os.makedirs(out_dir, exist_ok=True)
        for name in sorted(os.listdir(src_dir)):
            if not name.endswith(".py"):
                continue
            module = name[:-3]
            source_name = package if module == "__init__" else (package + "." + module if package else module)
            subprocess.run(cmd + ["-O%d" % flash.MPY_OPT, "-s", source_name, "-o",
                                  os.path.join(out_dir, module + ".mpy"), os.path.join(src_dir, name)],
                           check=True, capture_output=True, timeout=60)


def measure(role, mpy=True, steps=200, peak=False):
    """Live heap bytes taken by the firmware of `role` (the simulation's own set-up subtracted), as a dict:
    start (after main.start()), loop (after `steps` loop steps without a gateway), names (names interned in the
    interpreter after start-up, the simulation's included) and, with peak=True, peak (the largest figure over the
    run of board/simpeak.py: for a standby a takeover and a hand-back, for every role a full card and the replay of
    its backlog in windows) and chunks (each chunk's figure). mpy: the firmware as `make flash` deploys it and the
    simulation compiled alike (compile_sim); else both from source."""
    d = tempfile.mkdtemp(prefix="mpyheap-")
    try:
        app = os.path.join(d, "app")
        os.makedirs(app)
        config = dict(PEAK_CONFIG if peak else CONFIG, role=role)
        with open(os.path.join(app, "_simstate.py"), "w") as f:
            f.write(simstate(config, steps, gateway=False, scenario="peak" if peak else None))
        cmd = ["node", PHASES, "--app", app]
        if peak:
            cmd += ["--chunks", str(PEAK_CHUNKS)]
        if mpy:
            compile_firmware(os.path.join(d, "lib"))
            compile_sim(os.path.join(d, "sim"))
            cmd += ["--lib", os.path.join(d, "lib"), "--lib", os.path.join(d, "sim")]
        else:
            for lib in LIBS:
                cmd += ["--lib", lib]
            for name in sorted(PACKAGES):
                cmd += ["--package", "%s=%s" % (name, PACKAGES[name])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError("phases.mjs failed: %s" % (proc.stderr.strip()[-2000:] or proc.returncode))
    h = dict((m[0], int(m[1])) for m in re.findall(r"^HEAP (\w+) (\d+)$", proc.stdout, re.M))
    base = h["prepared"]
    out = {"start": h["start"] - base, "loop": h["loop"] - base,
           "names": int(re.search(r"^QSTRS start\nqstr pool: n_pool=\d+, n_qstr=(\d+)", proc.stdout, re.M).group(1))}
    if peak:
        chunks = [h["chunk%d" % i] - base for i in range(PEAK_CHUNKS)]
        out["chunks"] = chunks
        out["peak"] = max([out["start"]] + chunks)
        out["events"] = re.findall(r"^EVENT (.*)$", proc.stdout, re.M)
    return out


def budget_figures(role):
    """(after start-up, peak, names, events) for `role` as BRIEF.md's budget counts them.

    After start-up: the quiet run's. Peak: the larger of the quiet run after 200 loop steps without a gateway (a
    standby that took over, 24 frames in flight and their records in RAM) and the peak run's highest figure above
    its own start-up added to the quiet start-up. Why not the peak run's raw figure: its harness (simpeak.py, the
    emulated gateway) interns its names before the firmware's, which moves where the qstr table's pool doubling
    falls (docs/MICROPYTHON.md), so its figures all sit a few KB apart from the quiet run's; its growth over its own
    start-up is what the run's moments cost."""
    quiet = measure(role)
    run = measure(role, steps=0, peak=True)
    peak = max(quiet["loop"], quiet["start"] + run["peak"] - run["start"])
    return quiet["start"], peak, quiet["names"], run["events"]


def mpy_cross_available():
    from tools import flash
    try:
        flash.mpy_cross_version()
    except flash.FlashError:
        return False
    return True
