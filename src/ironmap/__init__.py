"""ironmap: brain iron (R2*) mapping for multicenter MRI studies.

Public Python API (mirrors the command line):

- :func:`fit_r2star` -- R2* estimators on magnitude echo stacks (arrays in, result out).
- :mod:`ironmap.stats` and :mod:`ironmap.agecorr` -- the group-level statistics and age model.

Heavy modules are imported lazily so that ``import ironmap`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

try:  # written by hatch-vcs at build time
    from ironmap._version import __version__
except ImportError:  # pragma: no cover - source tree without a build
    __version__ = "0.1.0.dev0"

__all__ = ["__version__", "fit_r2star", "stats", "agecorr"]

_LAZY = {
    "fit_r2star": ("ironmap.core.r2star.relaxometry", "fit_r2star"),
    "stats": ("ironmap.stats", None),
    "agecorr": ("ironmap.agecorr", None),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'ironmap' has no attribute {name!r}")
