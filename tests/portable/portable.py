"""Helpers shared by the portable test scripts (the common subset of MicroPython and CPython: no pytest here).

Each script counts its checks with `Checks` and ends with `checks.done()`, which prints `OK <name> <n> checks`.
A failed check raises AssertionError, so the script exits non-zero and never prints the OK line.
"""

import sys

try:
    import os
except ImportError:  # very small MicroPython ports
    import uos as os

IS_MICROPYTHON = sys.implementation.name == "micropython"


class Checks:
    def __init__(self, name):
        self.name = name
        self.n = 0

    def check(self, cond, what):
        assert cond, what
        self.n += 1

    def equal(self, got, want, what):
        assert got == want, "%s: got %r, want %r" % (what, got, want)
        self.n += 1

    def done(self):
        assert self.n > 0, "no checks ran"
        print("OK %s %d checks" % (self.name, self.n))


def _isfile(path):
    try:
        return (os.stat(path)[0] & 0o170000) == 0o100000
    except OSError:
        return False


def find_package_dir(package="soil"):
    """The folder of `package` on sys.path, found without importing it ('' and '.' mean the current folder)."""
    for entry in sys.path:
        if not isinstance(entry, str) or entry.startswith(".frozen"):
            continue
        base = entry if entry not in ("", ".") else "."
        path = base.rstrip("/") + "/" + package if base != "/" else "/" + package
        if _isfile(path + "/__init__.py"):
            return path
    raise AssertionError("package %r not found on sys.path %r" % (package, sys.path))


def package_modules(package="soil"):
    """The dotted names of every module of `package` present on disk, sorted: the package itself, its .py
    modules and, recursively, its sub-packages."""
    names = []

    def walk(path, dotted):
        names.append(dotted)
        for entry in sorted(os.listdir(path)):
            full = path + "/" + entry
            if entry.endswith(".py") and entry != "__init__.py" and not entry.startswith("."):
                names.append(dotted + "." + entry[:-3])
            elif not entry.startswith(".") and _isfile(full + "/__init__.py"):
                walk(full, dotted + "." + entry)

    walk(find_package_dir(package), package)
    return names


def module_file(dotted):
    """The path of the source file of an importable module named `dotted`, found on disk."""
    parts = dotted.split(".")
    base = find_package_dir(parts[0])
    path = base + "".join("/" + p for p in parts[1:])
    if _isfile(path + "/__init__.py"):
        return path + "/__init__.py"
    return path + ".py"


def import_module(dotted):
    """`importlib.import_module` for both interpreters: returns the module `dotted` itself, not its top package."""
    mod = __import__(dotted)
    for part in dotted.split(".")[1:]:
        mod = getattr(mod, part)
    return mod
