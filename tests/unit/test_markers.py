"""Test tiers: every test that reads ../shared/data carries the ``realdata`` marker.

``pytest -m "not realdata"`` must then run nothing that skips for want of the real data, and
``pytest -m realdata`` everything that needs it. Test modules may sit in tier folders
(``tests/unit``, ``tests/integration``, ``tests/realdata``); every test in a ``realdata``
folder carries the marker. The check reads the test modules' syntax
trees: a test reads the real data when its body, or a fixture it requests (transitively,
within its module), calls ``require_shared`` or requests the ``shared_data`` fixture.
"""

from __future__ import annotations

import ast
from pathlib import Path

# the folder of conftest.py, wherever this module sits below it
TESTS = next(p for p in Path(__file__).resolve().parents if (p / "conftest.py").is_file())
READERS = {"require_shared", "shared_data"}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _marks(decorators) -> set[str]:
    return {n.attr for d in decorators for n in ast.walk(d) if isinstance(n, ast.Attribute)}


def _unmarked_readers(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    module_marks = set()
    funcs = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            module_marks |= _marks([node.value])
        if isinstance(node, ast.FunctionDef):
            funcs[node.name] = node
    reads = {name for name, f in funcs.items()
             if READERS & (_names(f) | {a.arg for a in f.args.args})}
    changed = True
    while changed:  # fixtures that request a reading fixture read too
        changed = False
        for name, f in funcs.items():
            if name not in reads and {a.arg for a in f.args.args} & reads:
                reads.add(name)
                changed = True
    if path.parent.name == "realdata":  # a module in the realdata folder: every test
        reads = set(funcs)
    return [f"{path.name}::{name}" for name in sorted(reads) if name.startswith("test_")
            and "realdata" not in module_marks | _marks(funcs[name].decorator_list)]


def test_tests_reading_shared_data_are_marked_realdata():
    missing = [m for p in sorted(TESTS.rglob("test_*.py")) for m in _unmarked_readers(p)]
    assert not missing, f"add @pytest.mark.realdata to: {missing}"
