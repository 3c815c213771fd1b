"""The layering holds: cli -> workflows -> report -> io|spatial|parallel|sim -> core."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    res = subprocess.run([exe, "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert " 0 broken" in res.stdout
    with open(REPO / "pyproject.toml", "rb") as fh:
        contracts = tomllib.load(fh)["tool"]["importlinter"]["contracts"]
    assert {"layers", "core is pure", "public facades re-export core only"} <= {
        c["name"] for c in contracts}
    for contract in contracts:  # every contract in the configuration ran and was kept
        assert f"{contract['name']} KEPT" in res.stdout, contract["name"]


def test_core_imports_no_io_libraries():
    code = ("import sys\n"
            "import ironmap.core.r2star.relaxometry\n"
            "import ironmap.core.group.inference\n"
            "import ironmap.core.regions.regional_values\n"
            "bad = [m for m in ('nibabel', 'matplotlib', 'jinja2', 'ants') if m in sys.modules]\n"
            "print(','.join(bad))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert res.stdout.strip() == ""


@pytest.mark.parametrize("name", ["ironmap.stats", "ironmap.agecorr"])
def test_public_facades_export_core_objects(name):
    import importlib

    facade = importlib.import_module(name)
    assert "public" in facade.__doc__ and facade.__all__
    for attr in facade.__all__:
        obj = getattr(facade, attr)
        origin = getattr(obj, "__module__", None)
        if callable(obj):
            assert origin.startswith("ironmap.core."), (attr, origin)


def _import_graph() -> dict[str, set[str]]:
    """Module -> ironmap modules it imports anywhere (function-level imports included)."""
    import ast

    src = REPO / "src"
    mods = {}
    for path in src.rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[m] |= {n for n in names if n in mods and n != m
                         and mods[n].name != "__init__.py"}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Groups of modules that import each other, directly or round a loop."""
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reached = {m: reach(m) for m in graph}
    groups = {frozenset({m} | {n for n in reached[m] if m in reached[n]})
              for m in graph if m in reached[m]}
    return [set(g) for g in groups]


def test_no_new_import_cycles():
    """Function-level imports may not close a loop either; the one loop left goes through
    helpers of the participant workflow that the anatomy and brain steps borrow."""
    known = {"ironmap.workflows.anatomy", "ironmap.workflows.brain",
             "ironmap.workflows.participant"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert [c for c in _cycles(_import_graph()) if c != known] == []
