"""Partial-volume border of grown lesions (``grow_lesions(..., border_fraction=...)``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ironmap.cli.main import main
from ironmap.core.lesions.pv_border import PV_BORDER, pv_border
from ironmap.core.lesions.seeded_growing import RIM_RULE, SEED_OK, grow_lesions, local_background


def _content(shape, spheres, ss=7):
    """Lesion content of each voxel (0-1) for spheres off the voxel grid (``ss``^3 subvoxels)."""
    g = [(np.arange(n * ss) + 0.5) / ss for n in shape]
    x, y, z = np.meshgrid(*g, indexing="ij")
    inside = np.zeros(x.shape, dtype=bool)
    for centre, radius in spheres:
        inside |= (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2
    return inside.reshape(shape[0], ss, shape[1], ss, shape[2], ss).mean(axis=(1, 3, 5))


SHAPE = (48, 40, 40)  # lesions under 2 % of it: the local white-matter mode is exactly 100
BIG = ((12.3, 15.8, 16.1), 5.3)  # about 620 voxels: a plateau of about 360
SMALL = ((31.2, 16.4, 15.7), 2.2)  # about 45 voxels, no plateau
# contents are multiples of 1/343: no voxel lies at a fraction tested here


@pytest.fixture(scope="module")
def lesions():
    """Noise-free FLAIR (white matter 100, lesion 150, each voxel its lesion content)."""
    big, small = _content(SHAPE, [BIG]), _content(SHAPE, [SMALL])
    return 100.0 + 50.0 * (big + small), big, small


@pytest.mark.parametrize("fraction", [0.4, 0.45, 0.5])
def test_border_keeps_voxels_by_content_on_large_lesions_only(lesions, fraction):
    """Labels grown down to 0.3 of lesion content: the large lesion is trimmed to exactly the
    voxels holding at least ``fraction`` of lesion; the small one keeps its outline."""
    img, big, small = lesions
    labels = (1 * (big >= 0.3) + 2 * (small >= 0.3)).astype(np.int32)
    out = pv_border(img, labels, np.ones(img.shape, bool), (20, 20, 20), fraction,
                    local_background, min_voxels=250)
    assert np.array_equal(out == 1, big >= fraction)
    assert np.array_equal(out == 2, small >= 0.3)
    # no click position: any over-grown outline of the lesion gives the same border
    wider = (big >= 0.05).astype(np.int32)
    assert np.array_equal(pv_border(img, wider, img > 0, (20, 20, 20), fraction,
                                    local_background) == 1, big >= fraction)


def test_grow_with_border_from_rim_clicks(lesions):
    """Rim rule with floor 0.3 and the chosen border, clicks on each lesion's rim: exactly the
    large lesion's voxels with at least the border fraction of lesion, the small one's (under
    the border's size limit) with at least 0.3."""
    img, big, small = lesions
    rng = np.random.default_rng(11)
    for _ in range(3):
        seeds = [rng.permutation(np.argwhere((c >= 0.5) & (c < 1.0)))[0] for c in (big, small)]
        res = grow_lesions(img, seeds, (1, 1, 1), rim_level=RIM_RULE["rim_level"], level=0.3,
                           compete=True, **PV_BORDER)
        assert res.status == [SEED_OK, SEED_OK]
        assert np.array_equal(res.labels == 1, big >= PV_BORDER["border_fraction"])
        assert np.array_equal(res.labels == 2, small >= 0.3)
        assert res.n_voxels == [int((big >= PV_BORDER["border_fraction"]).sum()),
                                int((small >= 0.3).sum())]
        plain = grow_lesions(img, seeds, (1, 1, 1), rim_level=RIM_RULE["rim_level"], level=0.3,
                             compete=True)
        assert np.array_equal(plain.labels == 1, big >= 0.3)  # the shell the border removes


def test_border_keeps_brightest_voxel():
    """A lesion whose every voxel is below the level (a flat region) keeps its brightest one."""
    img = np.full((30, 30, 30), 100.0)
    img[5:15, 5:15, 5:15] = 120.0
    img[9, 9, 9] = 121.0
    labels = np.zeros(img.shape, np.int32)
    labels[5:15, 5:15, 5:15] = 1
    out = pv_border(img, labels, img > 0, (10, 10, 10), 2.0, local_background, min_voxels=1)
    assert np.argwhere(out == 1).tolist() == [[9, 9, 9]]


def test_cli_pv_border(lesions, tmp_path):
    """``ironmap lesions grow --pv-border`` records the border in the sidecar and writes the
    trimmed lesion."""
    img, big, small = lesions
    flair = tmp_path / "f.nii.gz"
    nib.Nifti1Image(img.astype(np.float32), np.eye(4)).to_filename(flair)
    seeds = tmp_path / "seeds.tsv"
    seeds.write_text("x\ty\tz\n12\t16\t16\n31\t16\t16\n")
    out = tmp_path / "m.nii.gz"
    assert main(["lesions", "grow", str(flair), "--seeds", str(seeds), "-o", str(out),
                 "--rim-rule", "--compete", "--rim-floor", "0.3", "--pv-border"]) == 0
    side = json.loads(out.with_name("m.json").read_text())
    assert side["GrowingParameters"] == {"rim_level": 0.4, "level": 0.3, "compete": True,
                                         **PV_BORDER}
    mask = nib.load(out).get_fdata() > 0
    assert np.array_equal(mask, (big >= PV_BORDER["border_fraction"]) | (small >= 0.3))
