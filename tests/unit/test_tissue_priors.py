"""Tissue classes with template priors, and the plausibility bands, against synthetic truth."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ironmap.core.regions.tissue_volumes import PLAUSIBLE_RANGES, implausible_volumes
from ironmap.spatial.segmentation import _classify


def _phantom(rng, noise=14.0):
    """Nested spheres on a 2 mm grid: WM ball, thick GM shell, thin CSF shell (truth 3/2/1).

    Intensities CSF 30, GM 60, WM 90 with Gaussian noise; GM holds about 2.5 times the WM
    voxels, so the k-means midpoint between GM and WM is not the best boundary.
    """
    shape = (44, 44, 44)
    r = np.linalg.norm(np.indices(shape) - 21.5, axis=0)
    truth = np.select([r <= 8, r <= 14, r <= 16], [3, 2, 1], 0)
    level = np.array([0.0, 30.0, 60.0, 90.0])[truth]
    data = (level + rng.normal(0.0, noise, shape) * (truth > 0)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    priors = tuple(np.clip(ndimage.gaussian_filter((truth == k).astype(float), 1.5), 0, 1)
                   for k in (1, 2, 3))
    return img, data, truth, priors


def test_template_priors_bring_class_volumes_closer_to_the_truth(rng, tmp_path):
    img, data, truth, priors = _phantom(rng)
    brain = truth > 0
    kmeans = _classify(img, data, brain, brain, str(tmp_path))
    prior = _classify(img, data, brain, brain, str(tmp_path), priors=priors,
                      prior_weight=0.25)
    errors = {}
    for name, hard in (("kmeans", kmeans), ("priors", prior)):
        errors[name] = [abs(np.sum(hard == k) / np.sum(truth == k) - 1) for k in (1, 2, 3)]
        agree = np.mean(hard[brain] == truth[brain])
        print(name, "volume errors CSF/GM/WM", np.round(errors[name], 3), "agreement", agree)
    assert np.mean(prior[brain] == truth[brain]) >= 0.90
    assert max(errors["priors"][1:]) <= 0.05  # GM and WM within 5 % of the truth
    assert max(errors["priors"][1:]) < max(errors["kmeans"][1:])


def test_misordered_prior_classes_fall_back_to_kmeans(rng, tmp_path):
    """Priors that put the 'CSF' class on the brightest tissue give k-means' classes."""
    img, data, truth, priors = _phantom(rng)
    brain = truth > 0
    swapped = (priors[2], priors[1], priors[0])
    kmeans = _classify(img, data, brain, brain, str(tmp_path))
    fallback = _classify(img, data, brain, brain, str(tmp_path), priors=swapped,
                         prior_weight=0.9)
    np.testing.assert_array_equal(fallback, kmeans)


@pytest.mark.parametrize(("gm", "wm", "csf", "flagged"), [
    (640.0, 480.0, 250.0, set()),                      # adult, GM/WM 1.33
    (457.0, 499.0, 149.0, {"gm_wm_ratio"}),            # GM below WM (0.92)
    (625.0, 209.0, 686.0, {"wm_cm3", "gm_wm_ratio", "csf_fraction"}),
    (700.0, 340.0, 200.0, {"wm_cm3", "gm_wm_ratio"}),  # GM/WM 2.06
])
def test_gm_wm_ratio_and_csf_fraction_are_flagged(gm, wm, csf, flagged):
    problems = implausible_volumes({"gm_cm3": gm, "wm_cm3": wm, "csf_cm3": csf})
    assert {p.split()[0] for p in problems} == flagged
    low, high = PLAUSIBLE_RANGES["gm_wm_ratio"]
    assert (low <= gm / wm <= high) == ("gm_wm_ratio" not in flagged)
