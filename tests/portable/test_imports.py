"""Every module of the portable core (firmware/lib/soil) imports, and none of them pulls in a platform module.

The module list is read from the package's folder (os.listdir), so modules that teammates add are checked
without editing this file. Three views of "imports a platform module", all of which must be clean:
  1. an import statement executed by a soil module at import time names a forbidden module (seen through a
     builtins.__import__ hook: this catches `import time` even where `time` is already loaded, and guarded
     `try: import machine / except ImportError:` imports);
  2. a forbidden module appears in sys.modules after importing soil.* that was not there before;
  3. a forbidden module is named by an import line anywhere in the source (imports inside functions too).
Runs unchanged under CPython and MicroPython; prints `OK imports <n> checks` at the end.
"""

import sys

try:
    import builtins
except ImportError:  # MicroPython builds without the builtins module
    builtins = None

from portable import Checks, import_module, module_file, package_modules

# The platform modules the core must not import (docs/ARCHITECTURE.md, STYLE.md), and MicroPython's u-aliases.
FORBIDDEN = (
    "machine", "busio", "board", "os", "time", "datetime", "logging", "typing", "dataclasses", "pathlib",
    "uos", "utime",
)

checks = Checks("imports")
names = package_modules("soil")
checks.check("soil.crc" in names, "soil.crc is found on disk (found %r)" % (names,))
print("soil modules: %s" % " ".join(names))


def top(name):
    return name.split(".")[0]


# --- 1 and 2: import everything, watching import statements and sys.modules -------------------------------------
stack = []  # the modules being imported, innermost last: the top is the module running an import statement
direct = []  # (importer, imported) for import statements run by soil modules
original_import = builtins.__import__ if builtins is not None else None


def hook(name, *args):
    level = args[3] if len(args) > 3 else 0
    importer = stack[-1] if stack else None
    if level == 0 and name and importer is not None and top(importer) == "soil":
        direct.append((importer, name))
    stack.append(name if level == 0 else "soil.<relative>")
    try:
        return original_import(name, *args)
    finally:
        stack.pop()


new_modules = []  # (soil module, forbidden module it newly loaded)
failed = []
for dotted in names:
    before = set(sys.modules)
    if original_import is not None:
        builtins.__import__ = hook
    try:
        stack.append("<test>")
        mod = import_module(dotted)
    except Exception as e:  # report every module that fails, then fail
        failed.append("%s: %s: %s" % (dotted, type(e).__name__, e))
        mod = None
    finally:
        stack.pop()
        if original_import is not None:
            builtins.__import__ = original_import
    if mod is not None:
        checks.equal(mod.__name__, dotted, "imported module's __name__")
    for loaded in set(sys.modules) - before:
        if top(loaded) in FORBIDDEN:
            new_modules.append((dotted, loaded))

checks.check(not failed, "every soil module imports:\n  " + "\n  ".join(failed))
if original_import is not None:
    bad = ["%s imports %s" % pair for pair in direct if top(pair[1]) in FORBIDDEN]
    checks.check(not bad, "soil modules import platform modules at import time: " + "; ".join(bad))
checks.check(
    not new_modules,
    "importing soil loaded platform modules: " + "; ".join("%s -> %s" % pair for pair in new_modules),
)


# --- 3: import lines anywhere in the source ----------------------------------------------------------------------
def imported_names(path):
    """(line number, module) for each `import x` / `from x import y` line outside triple-quoted strings."""
    out = []
    in_string = None
    with open(path) as f:
        lineno = 0
        for line in f:
            lineno += 1
            s = line.strip()
            if in_string is None:
                code = s.split("#")[0]
                if code.startswith("import "):
                    for part in code[7:].split(","):
                        part = part.strip()
                        if part:
                            out.append((lineno, part.split(" ")[0]))
                elif code.startswith("from ") and " import " in code:
                    out.append((lineno, code[5:].split(" import ")[0].strip()))
            # Track docstrings and other triple-quoted strings (good enough for source written to STYLE.md).
            for quote in ('"""', "'''"):
                count = len(s.split(quote)) - 1
                if in_string is None and count % 2 == 1:
                    in_string = quote
                elif in_string == quote and count % 2 == 1:
                    in_string = None
    return out


offenders = []
for dotted in names:
    path = module_file(dotted)
    for lineno, name in imported_names(path):
        if not name.startswith(".") and top(name) in FORBIDDEN:
            offenders.append("%s:%d imports %s" % (path, lineno, name))
    checks.check(True, "scanned " + path)
checks.check(not offenders, "forbidden imports in the source: " + "; ".join(offenders))

checks.done()
