"""ANTsPy is imported without its unused, slow sub-modules, and they still work on demand."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import json, sys
import numpy as np
from ironmap.spatial.registration import import_ants
ants = import_ants()
heavy = sorted(m for m in ("statsmodels", "scipy.stats", "formulaic", "matplotlib.pyplot",
                           "sklearn") if m in sys.modules)
img = ants.from_numpy(np.arange(1000, dtype="float32").reshape(10, 10, 10))
print(json.dumps({"heavy_after_import": heavy, "image_quantile": float(img.quantile(0.5)),
                  "function_quantile": float(ants.quantile(img, 0.25)),
                  "rank_max": float(ants.rank_intensity(img).numpy().max()),
                  "stats_loaded_on_use": "scipy.stats" in sys.modules}))
"""


def test_deferred_ants_modules_load_on_first_use():
    pytest.importorskip("ants")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["heavy_after_import"] == []
    values = np.arange(1000, dtype=np.float32)[1:]  # nonzero=True drops the 0 voxel
    assert got["image_quantile"] == pytest.approx(float(np.quantile(values, 0.5)), rel=1e-6)
    assert got["function_quantile"] == pytest.approx(float(np.quantile(values, 0.25)), rel=1e-6)
    assert got["rank_max"] == pytest.approx(1.0)
    assert got["stats_loaded_on_use"]
