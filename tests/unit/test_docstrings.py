"""Every public function documents its parameters and return value (numpydoc sections).

ruff's pydocstyle rules (``[tool.ruff.lint]`` selects ``D``, numpy convention) check the form of
the docstrings but not that the sections exist; this test does, with the standard library only,
so that it also runs where ruff is not installed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "ironmap"


def _public_functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def visit(nodes, owner=""):
        for node in nodes:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                yield from visit(node.body, f"{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    not node.name.startswith("_"):
                if any(getattr(d, "id", None) == "property" for d in node.decorator_list):
                    continue
                yield f"{owner}{node.name}", node

    yield from visit(tree.body)


def _missing_sections(node) -> list[str]:
    doc = ast.get_docstring(node) or ""
    args = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)
            if a.arg not in ("self", "cls")]
    if node.args.vararg or node.args.kwarg:
        args.append("*")
    missing = []
    if args and "Parameters\n----------" not in doc:
        missing.append("Parameters")
    body = list(ast.walk(node))
    returns = any(isinstance(n, ast.Return) and n.value is not None for n in body)
    yields = any(isinstance(n, ast.Yield | ast.YieldFrom) for n in body)
    if returns and "Returns\n-------" not in doc and "Yields\n------" not in doc:
        missing.append("Returns")
    if yields and not returns and "Yields\n------" not in doc:
        missing.append("Yields")
    return missing


def test_every_public_function_has_numpydoc_sections():
    problems = []
    n_functions = 0
    for path in sorted(SRC.rglob("*.py")):
        if path.name.startswith("_") and path.name not in ("__init__.py", "_types.py"):
            continue
        for name, node in _public_functions(path):
            n_functions += 1
            missing = _missing_sections(node)
            if missing:
                problems.append(f"{path.relative_to(SRC)}:{node.lineno} {name}: "
                                f"{', '.join(missing)}")
    assert n_functions > 500  # the walk found the package
    assert problems == []


def test_the_check_finds_a_missing_section():
    node = ast.parse('def f(x):\n    """Summary."""\n    return x\n').body[0]
    assert _missing_sections(node) == ["Parameters", "Returns"]


def test_ruff_passes_on_src():
    """``ruff check src`` (pyproject.toml: pydocstyle with the numpy convention) where ruff is
    installed."""
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.skip("ruff is not installed (it is in the dev extra, not the test extra)")
    res = subprocess.run([exe, "check", "src"], capture_output=True, text=True,
                         cwd=SRC.parents[1])
    assert res.returncode == 0, res.stdout[-3000:]
