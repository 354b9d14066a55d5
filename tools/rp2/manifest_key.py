"""The cache key of a frozen firmware image: what the image holds, as one hash.

    python tools/rp2/manifest_key.py firmware/micropython/manifest.py [--files]

A frozen image must be rebuilt whenever any file it freezes changes, and only then. MicroPython's own manifest
tool (tools/manifestfile.py) lives in the MicroPython checkout, which a fast test or a cache lookup must not need,
so this file runs the manifest itself with the handful of functions a manifest calls, and records the files they
name. Everything under MicroPython's tree ($(PORT_DIR), $(MPY_DIR), $(BOARD_DIR), $(MPY_LIB_DIR)) and every
`require()` from micropython-lib is pinned by the MicroPython version, which the caller puts into the key beside
this hash; the manifest's own text is hashed too (it carries the opt levels).

Prints the hash (sha256 hex) on stdout; --files prints the files it covers instead, one per line.
"""

import hashlib
import os
import sys

PINNED = ("$(PORT_DIR)", "$(MPY_DIR)", "$(BOARD_DIR)", "$(MPY_LIB_DIR)")


class ManifestError(Exception):
    """A manifest that names a file that is not there, or that cannot be run: one line for the user."""


def _py_files(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files) if f.endswith(".py")]
    return out


def manifest_files(path, seen=None):
    """[absolute paths] of the manifest itself, every manifest it includes outside MicroPython's tree, and every
    file they freeze outside it, in the order the manifest names them."""
    path = os.path.abspath(path)
    seen = [] if seen is None else seen
    if path in seen:
        return seen
    if not os.path.isfile(path):
        raise ManifestError("%s: no such manifest" % path)
    seen.append(path)
    here = os.path.dirname(path)

    def local(p, base="."):
        if p.startswith(PINNED) or base.startswith(PINNED):
            return None
        return os.path.normpath(os.path.join(here, base, p))

    def need(p):
        if not os.path.exists(p):
            raise ManifestError("%s names %s, which does not exist" % (path, p))
        return p

    def include(p, **_):
        target = local(p)
        if target is not None:
            if os.path.isdir(target):
                target = os.path.join(target, "manifest.py")
            manifest_files(need(target), seen)

    def package(name, files=None, base_path=".", opt=None):
        root = local(name, base_path)
        if root is None:
            return
        if files:
            seen.extend(need(os.path.join(root, f)) for f in files)
        else:
            seen.extend(_py_files(need(root)))

    def module(name, base_path=".", opt=None):
        target = local(name, base_path)
        if target is not None:
            seen.append(need(target))

    def freeze(p, script=None, opt=None):
        root = local(p)
        if root is None:
            return
        if script is None:
            seen.extend(_py_files(need(root)))
        else:
            for s in [script] if isinstance(script, str) else script:
                seen.append(need(os.path.join(root, s)))

    def ignore(*_, **__):
        return None

    names = {"include": include, "package": package, "module": module, "freeze": freeze, "require": ignore,
             "metadata": ignore, "add_library": ignore, "freeze_as_str": ignore, "freeze_as_mpy": freeze,
             "freeze_mpy": freeze, "options": type("Options", (), {"__getattr__": lambda s, n: None})()}
    with open(path) as f:
        code = f.read()
    try:
        exec(compile(code, path, "exec"), names)
    except ManifestError:
        raise
    except Exception as e:       # a manifest is Python: any mistake in it is the user's, said in one line
        raise ManifestError("%s: %s: %s" % (path, type(e).__name__, e))
    return seen


def manifest_key(path):
    """sha256 hex over every covered file's path (relative to the manifest's folder) and bytes."""
    path = os.path.abspath(path)
    base = os.path.dirname(path)
    h = hashlib.sha256()
    for f in sorted(set(manifest_files(path))):
        h.update(os.path.relpath(f, base).encode() + b"\0")
        with open(f, "rb") as fh:
            data = fh.read()
        h.update(b"%d\0" % len(data) + data)
    return h.hexdigest()


def main(argv):
    if not argv or argv[0].startswith("-"):
        print("usage: manifest_key.py MANIFEST [--files]", file=sys.stderr)
        return 2
    try:
        if "--files" in argv[1:]:
            for f in sorted(set(manifest_files(argv[0]))):
                print(f)
        else:
            print(manifest_key(argv[0]))
    except ManifestError as e:
        print("manifest_key: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
