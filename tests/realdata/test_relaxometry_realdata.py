"""R2* estimators on a real 12-echo brain GRE (mricourse_12echo); skipped when absent."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared
from ironmap import fit_r2star
from ironmap.core.r2star.noise import estimate_sigma

pytestmark = pytest.mark.realdata

FILE = "20191121_150829T2StarMap2D234FOVs007a1001.nii.gz"
#: PROVENANCE.md of the data set (course notebook, microseconds)
TE_S = 1e-6 * np.array([2890, 6420, 10360, 14310, 18250, 22200, 26140, 30090, 34030, 37980,
                        41920, 45870])


@pytest.fixture(scope="module")
def gre():
    import nibabel as nib

    path = require_shared("mricourse_12echo", FILE)
    data = np.asarray(nib.load(str(path)).dataobj)[:, :, 2:5]  # 3 of 7 slices keep it fast
    head = data[..., 0] > 0.2 * np.percentile(data[..., 0], 99)
    return data, head


@pytest.fixture(scope="module")
def fits(gre):
    data, head = gre
    sigma = estimate_sigma(data, head)
    out = {m: fit_r2star(data, TE_S, m, mask=head, sigma=sigma).r2star
           for m in ("loglinear", "wls", "nonlinear", "rician")}
    out["two_point"] = fit_r2star(data, TE_S, "two_point", mask=head, echo_pair=(0, 5)).r2star
    # echoes 2-12 are evenly spaced (3.94-3.95 ms); echo 1 is 3.53 ms before echo 2
    out["arlo"] = fit_r2star(data[..., 1:], TE_S[1:], "arlo", mask=head).r2star
    out["nonlinear_2to12"] = fit_r2star(data[..., 1:], TE_S[1:], "nonlinear", mask=head).r2star
    return out, sigma


def test_real_data_noise_and_failures(gre, fits):
    data, head = gre
    maps, sigma = fits
    snr = np.median(data[..., 0][head]) / sigma
    assert 50 < snr < 1000, snr
    for name, r2 in maps.items():
        assert np.mean(np.isnan(r2[head])) < 0.02, name  # < 2% of head voxels without a value
        assert np.all(np.isnan(r2[~head])), name
        assert np.all(r2[np.isfinite(r2)] > 0), name


def test_real_data_estimators_agree(fits):
    """Median |relative difference| to the nonlinear fit in brain-range voxels (5-60 s^-1)."""
    maps, _ = fits
    ref = maps["nonlinear"]
    ok = np.all([np.isfinite(m) for m in maps.values()], axis=0)
    brain = ok & (ref > 5) & (ref < 60)
    assert brain.sum() > 10_000
    assert 15 < np.median(ref[brain]) < 35  # 3 T grey/white matter
    bounds = {"rician": 0.002, "wls": 0.01, "loglinear": 0.05, "arlo": 0.03,
              "nonlinear_2to12": 0.05, "two_point": 0.15}
    for name, bound in bounds.items():
        rel = np.median(np.abs(maps[name][brain] / ref[brain] - 1.0))
        assert rel <= bound, f"{name}: median relative difference {rel:.4f} > {bound}"


def test_real_data_arlo_refuses_uneven_train(gre):
    data, head = gre
    with pytest.raises(ValueError, match="evenly spaced"):
        fit_r2star(data, TE_S, "arlo", mask=head)
