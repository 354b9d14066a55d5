"""The portable core keeps its shape: one owner per behaviour, plain imports, no cycles, constants defined once.

These walk the source (ast), so they hold for code not yet written: a class's state is touched only through
`self`/`cls` (no `x._private` of another object), no call is addressed by a string (`__import__`, an on-demand
loader), the core's modules import each other without a cycle, the `const` shim is written once (soil/__init__.py),
and docs/ARCHITECTURE.md names every module of the core with its job.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "firmware", "lib", "soil")
PUBLIC_UNDERSCORED = {"os._exit"}     # documented APIs whose names start with an underscore
PORTS = [os.path.join(ROOT, "firmware", p) for p in ("micropython", "circuitpython")] + [
    os.path.join(ROOT, "tools", "sim", "vboard")]


def sources(*folders):
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    yield path, ast.parse(f.read(), path)


def core_modules():
    return sorted("soil" if n == "__init__.py" else "soil." + n[:-3] for n in os.listdir(CORE) if n.endswith(".py"))


@pytest.mark.parametrize("path, tree", list(sources(CORE, *PORTS)), ids=lambda v: os.path.relpath(v, ROOT)
                         if isinstance(v, str) else "")
def test_no_module_touches_another_objects_private_attributes(path, tree):
    bad = ["%s:%d %s._%s" % (os.path.relpath(path, ROOT), node.lineno, ast.unparse(node.value), node.attr[1:])
           for node in ast.walk(tree)
           if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
           and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
           and ast.unparse(node) not in PUBLIC_UNDERSCORED]
    assert not bad, "give the caller a public method or property instead"


def test_no_call_is_addressed_by_a_string():
    bad = []
    for path, tree in sources(CORE, *PORTS):
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in ("__import__", "ondemand", "unload", "getattr_module"):
                bad.append("%s:%d %s" % (os.path.relpath(path, ROOT), node.lineno, node.id))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and \
                    node.args[0].id in ("sys", "module", "soil"):
                bad.append("%s:%d getattr on a module" % (os.path.relpath(path, ROOT), node.lineno))
    assert not bad


def imports_of(tree):
    """The soil modules a core module imports (at any depth: a function-level import is a dependency too)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "soil":
            if node.module == "soil":
                out.update("soil." + a.name for a in node.names if os.path.exists(os.path.join(CORE, a.name + ".py")))
                out.add("soil")
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "soil")
    return out


def test_the_core_has_no_import_cycle():
    graph = {}
    for path, tree in sources(CORE):
        name = os.path.basename(path)[:-3]
        graph["soil" if name == "__init__" else "soil." + name] = imports_of(tree) - {"soil"}
    done, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in done:
            return
        stack.append(m)
        for dep in sorted(graph.get(m, ())):
            visit(dep)
        stack.pop()
        done.add(m)
    for m in sorted(graph):
        visit(m)


def test_the_const_shim_is_written_once():
    """`from soil import const` everywhere; only the package defines the CPython fallback."""
    owners = []
    for path, tree in sources(CORE, *PORTS):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.Lambda)) and getattr(node, "name", None) == "const":
                owners.append(os.path.relpath(path, ROOT))
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "const" for t in node.targets):
                owners.append(os.path.relpath(path, ROOT))
    assert owners == ["firmware/lib/soil/__init__.py"]


def test_architecture_doc_names_every_core_module():
    with open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")) as f:
        doc = f.read()
    listed = set(re.findall(r"^\| `(soil(?:\.\w+)?)` \|", doc, re.M))
    assert listed == set(core_modules()), "docs/ARCHITECTURE.md's module table is out of date"
