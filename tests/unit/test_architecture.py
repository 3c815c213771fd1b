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
