"""Run Python code under the real MicroPython interpreter (the WebAssembly port from npm) and under CPython.

    from tests.mpy import run_micropython, run_cpython, require_micropython

    require_micropython()                                # skip or fail, see below
    proc = run_micropython("import soil.crc\nprint(soil.crc.crc32(b'a'))\n")
    assert proc.returncode == 0, proc.stderr

`run_micropython` takes the text of a script or the path of a .py file and returns a `subprocess.CompletedProcess`
with text `stdout` / `stderr` and the script's exit status: 0 when it finished, 1 when it raised (MicroPython's
traceback is in `stderr`), n for `sys.exit(n)`, 2 when the runner itself failed. The interpreter is
`tools/sim/micropython/run.mjs` on node; see docs/MICROPYTHON.md.

Skip or fail: when the runtime is missing, `require_micropython()` skips the test with a reason that says to run
`make micropython`, except where the runtime is supposed to be there, where it fails instead: under CI (env CI set),
when `tools/sim/micropython/node_modules` exists (`make test` installs it first, so a broken install must not pass
as "skipped"), or when SOIL_REQUIRE_MICROPYTHON=1. SOIL_REQUIRE_MICROPYTHON=0 forces the skip.
"""

import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_DIR = os.path.join(REPO, "tools", "sim", "micropython")
RUNNER = os.path.join(NODE_DIR, "run.mjs")
NODE_MODULES = os.path.join(NODE_DIR, "node_modules")
PACKAGE = os.path.join(NODE_MODULES, "@micropython", "micropython-webassembly-pyscript")
DEFAULT_LIBS = ("firmware/lib",)
CHIPS = {"chips": "tools/sim/chips"}  # the simulated chips as the package `chips` (tools/sim/chips/__init__.py)
DEFAULT_HEAP = 256 * 1024

__all__ = [
    "micropython_available",
    "micropython_required",
    "require_micropython",
    "run_micropython",
    "run_cpython",
    "REPO",
    "CHIPS",
]


def _node():
    return shutil.which("node")


def _missing():
    """Why the runtime cannot run here, or None when it can."""
    if _node() is None:
        return "node is not on PATH"
    if not os.path.isfile(RUNNER):
        return "%s is missing" % os.path.relpath(RUNNER, REPO)
    for name in ("micropython.mjs", "micropython.wasm"):
        if not os.path.isfile(os.path.join(PACKAGE, name)):
            return "the npm package is not installed (%s missing)" % os.path.relpath(
                os.path.join(PACKAGE, name), REPO
            )
    return None


def micropython_available():
    """True when node and the MicroPython WebAssembly package are installed."""
    return _missing() is None


def micropython_required():
    """True where a missing runtime is a failure rather than a reason to skip."""
    forced = os.environ.get("SOIL_REQUIRE_MICROPYTHON")
    if forced is not None and forced.strip() != "":
        return forced.strip() not in ("0", "no", "false")
    return bool(os.environ.get("CI")) or os.path.isdir(NODE_MODULES)


def require_micropython():
    """Skip the calling test when the runtime is missing, or fail it where it must be present."""
    import pytest

    why = _missing()
    if why is None:
        return
    message = "MicroPython (WebAssembly) is not available: %s; run `make micropython`" % why
    if micropython_required():
        pytest.fail(message + " (required here: CI is set or tools/sim/micropython/node_modules exists)", pytrace=False)
    pytest.skip(message)


def _abs_libs(libs):
    out = []
    for lib in libs:
        path = lib if os.path.isabs(lib) else os.path.join(REPO, lib)
        if not os.path.isdir(path):
            raise FileNotFoundError("library folder %s does not exist" % path)
        out.append(path)
    return out


def _abs_packages(packages):
    """{name: folder} -> [(name, absolute folder)], sorted by name (the order they are copied in)."""
    out = []
    for name in sorted(packages or {}):
        if not name.isidentifier():
            raise ValueError("package name %r is not an identifier" % (name,))
        out.append((name, _abs_libs((packages[name],))[0]))
    return out


def _is_path(script):
    if isinstance(script, os.PathLike):
        return True
    return "\n" not in script and script.endswith(".py") and os.path.isfile(
        script if os.path.isabs(script) else os.path.join(REPO, script)
    )


class _Script:
    """A script given as text is written to a private temporary folder (the runner copies the script's folder)."""

    def __init__(self, script):
        self.tmp = None
        if _is_path(script):
            path = os.fspath(script)
            self.path = path if os.path.isabs(path) else os.path.join(REPO, path)
        else:
            self.tmp = tempfile.mkdtemp(prefix="mpy-")
            self.path = os.path.join(self.tmp, "script.py")
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(script)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def run_micropython(script_text_or_path, libs=DEFAULT_LIBS, timeout=60, heap=DEFAULT_HEAP, args=(), packages=None):
    """Run a script under MicroPython; returns a CompletedProcess (text stdout/stderr, returncode).

    script_text_or_path: the source text, or the path of a .py file (absolute, or relative to the repository).
    libs: folders whose .py files go to /lib in the interpreter, keeping packages (firmware/lib -> /lib/soil/...).
    packages: {name: folder}, each folder's .py files go to /lib/<name>, the package `name` (CHIPS: the simulated
    chips as `chips`, run.mjs --package chips=tools/sim/chips).
    heap: the GC heap at start-up, in bytes. args: extra sys.argv entries.
    Raises subprocess.TimeoutExpired after `timeout` seconds, RuntimeError when node/the package is missing.
    """
    why = _missing()
    if why is not None:
        raise RuntimeError("MicroPython (WebAssembly) is not available: %s; run `make micropython`" % why)
    cmd = [_node(), RUNNER]
    for lib in _abs_libs(libs):
        cmd += ["--lib", lib]
    for name, folder in _abs_packages(packages):
        cmd += ["--package", "%s=%s" % (name, folder)]
    cmd += ["--heap", str(int(heap))]
    with _Script(script_text_or_path) as path:
        cmd += ["--", path] + [str(a) for a in args]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def run_cpython(script_text_or_path, libs=DEFAULT_LIBS, timeout=60, args=(), packages=None):
    """Run the same script under this CPython (the virtualenv's), in a fresh working folder (as MicroPython's /app),
    with PYTHONPATH set to `libs` only, and the
    `packages` ({name: folder}) importable under their names, as in run_micropython (a temporary folder of
    symbolic links, name -> folder, comes first on PYTHONPATH)."""
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep __pycache__ out of firmware/lib
    links = tempfile.mkdtemp(prefix="mpypkg-") if packages else None
    try:
        paths = _abs_libs(libs)
        if links is not None:
            for name, folder in _abs_packages(packages):
                os.symlink(folder, os.path.join(links, name))
            paths.insert(0, links)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        work = tempfile.mkdtemp(prefix="cpy-")   # what a script writes in its working folder goes nowhere else
        try:
            with _Script(script_text_or_path) as path:
                cmd = [sys.executable, path] + [str(a) for a in args]
                return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if links is not None:
            shutil.rmtree(links, ignore_errors=True)
