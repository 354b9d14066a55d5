"""The gateway's modules depend on each other one way only.

A cycle (gateway/db.py importing gateway/primary.py inside functions while primary imported db) hides which module
owns what, and a lazy import that dodges one fails at run time, not at start-up. This reads the imports from the
source: no module may reach itself through imports of other gateway modules, and only the CLI imports gateway
modules inside functions (per sub-command, so `soil-gateway monitor` and `--help` load no database driver).
"""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gateway")
LAZY_IMPORTS_ALLOWED = {"cli"}


def _gateway_imports(nodes):
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gateway":
            if node.module == "gateway":
                out |= {alias.name for alias in node.names}
            else:
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("gateway.")}
    return out


def _modules():
    mods = {}
    for name in sorted(os.listdir(ROOT)):
        if name.endswith(".py"):
            with open(os.path.join(ROOT, name)) as f:
                mods[name[:-3]] = ast.parse(f.read(), name)
    return mods


def test_module_imports_have_no_cycle():
    mods = _modules()
    graph = {name: _gateway_imports(tree.body) & set(mods) for name, tree in mods.items()}
    done, path = set(), []

    def visit(name):
        assert name not in path, "import cycle: %s" % " -> ".join(path[path.index(name):] + [name])
        if name in done:
            return
        path.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        path.pop()
        done.add(name)

    for name in graph:
        visit(name)
    assert "primary" not in graph["dbconn"] and "db" not in graph["primary"]


def test_no_gateway_import_inside_functions_outside_the_cli():
    for name, tree in _modules().items():
        if name in LAZY_IMPORTS_ALLOWED:
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy = _gateway_imports(ast.walk(fn))
                assert not lazy, "gateway/%s.py imports %s inside %s()" % (name, sorted(lazy), fn.name)
