"""Region growing with a local threshold, seed proposal, and ``ironmap lesions grow``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ironmap.cli.main import main
from ironmap.core.lesions.seeded_growing import (
    BRIGHT_LEAK,
    RIM_RULE,
    SEED_NOT_HYPERINTENSE,
    SEED_OK,
    SEED_OUTSIDE_BRAIN,
    SEED_OUTSIDE_IMAGE,
    STABLE_RULE,
    grow_lesions,
    propose_seeds,
)

CENTRES = [(20, 20, 20), (40, 22, 30), (28, 42, 18)]
RADII = [4.0, 6.0, 3.0]


def _phantom(rng, shape=(64, 64, 48)):
    """FLAIR-like image: WM 100, a brighter cortex-like band 115, lesions 160 -> 130 at the
    edge (blurred, noisy)."""
    idx = np.indices(shape).astype(float)
    truth = np.zeros(shape, dtype=bool)
    img = np.full(shape, 100.0)
    img[:, :, 40:] = 115.0  # "cortex" band
    for c, r in zip(CENTRES, RADII, strict=True):
        rel2 = ((idx - np.array(c)[:, None, None, None]) ** 2).sum(0) / r**2
        inside = rel2 <= 1.0
        truth |= inside
        img[inside] = 160.0 - 30.0 * rel2[inside]  # bright centre, 130 at the edge
    brain = np.ones(shape, dtype=bool)
    brain[:2], brain[-2:] = False, False
    img = ndimage.gaussian_filter(img, 0.7) + rng.normal(0, 3.0, shape)
    img[~brain] = 0.0
    return img, truth, brain


def _dice(a, b):
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


def test_grow_recovers_lesions(rng):
    img, truth, brain = _phantom(rng)
    res = grow_lesions(img, CENTRES, (1, 1, 1), brain_mask=brain)
    assert res.status == [SEED_OK] * 3
    assert _dice(res.mask, truth) > 0.85
    assert abs(res.mask.sum() / truth.sum() - 1) < 0.15
    assert set(np.unique(res.labels)) == {0, 1, 2, 3}


def test_bad_seeds_are_flagged_not_grown(rng):
    img, truth, brain = _phantom(rng)
    seeds = [(-5, 10, 10), (0, 30, 30), (50, 50, 10), (20, 20, 20), (21, 20, 20)]
    res = grow_lesions(img, seeds, (1, 1, 1), brain_mask=brain)
    assert res.status[:3] == [SEED_OUTSIDE_IMAGE, SEED_OUTSIDE_BRAIN, SEED_NOT_HYPERINTENSE]
    assert res.status[3] == SEED_OK and res.status[4] == "merged"
    assert res.n_voxels[:3] == [0, 0, 0]


def test_propose_seeds_finds_lesions(rng):
    img, truth, brain = _phantom(rng)
    wm = brain.copy()
    wm[:, :, 38:] = False
    seeds = propose_seeds(img, wm, (1, 1, 1))
    lab, n = ndimage.label(truth)
    hit = {int(lab[tuple(s)]) for s in seeds}
    assert hit - {0} == set(range(1, n + 1))
    assert 0 not in hit  # no false seeds in this phantom


def test_cli_grow_writes_bids_mask(rng, tmp_path):
    img, truth, brain = _phantom(rng)
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = [-32.0, -30.0, -20.0]
    flair = tmp_path / "sub-01_FLAIR.nii.gz"
    nib.Nifti1Image(img.astype(np.float32), aff).to_filename(flair)
    seeds = tmp_path / "seeds.tsv"
    world = [aff[:3, :3] @ c + aff[:3, 3] for c in CENTRES]
    seeds.write_text("x\ty\tz\n" + "".join(f"{x}\t{y}\t{z}\n" for x, y, z in world))
    out = tmp_path / "sub-01_label-lesion_mask.nii.gz"
    assert main(["lesions", "grow", str(flair), "--seeds", str(seeds), "-o", str(out)]) == 0
    mask = nib.load(out).get_fdata() > 0
    assert _dice(mask, truth) > 0.85
    side = json.loads(out.with_name("sub-01_label-lesion_mask.json").read_text())
    assert side["Type"] == "Lesion" and side["SpatialReference"] == flair.name
    assert side["LesionVolume"] == pytest.approx(mask.sum() / 1000.0)
    assert side["RimRule"] is False and side["GrowingParameters"] == {}
    rim_out = tmp_path / "sub-01_desc-rim_label-lesion_mask.nii.gz"
    assert main(["lesions", "grow", str(flair), "--seeds", str(seeds), "-o", str(rim_out),
                 "--rim-rule"]) == 0
    assert _dice(nib.load(rim_out).get_fdata() > 0, truth) > 0.85
    side = json.loads(rim_out.with_name("sub-01_desc-rim_label-lesion_mask.json").read_text())
    assert side["RimRule"] is True and side["GrowingParameters"] == RIM_RULE
    both = tmp_path / "sub-01_desc-compete_label-lesion_mask.nii.gz"
    assert main(["lesions", "grow", str(flair), "--seeds", str(seeds), "-o", str(both),
                 "--rim-rule", "--compete"]) == 0
    assert _dice(nib.load(both).get_fdata() > 0, truth) > 0.85
    side = json.loads(both.with_name("sub-01_desc-compete_label-lesion_mask.json").read_text())
    assert side["GrowingParameters"] == {**RIM_RULE, "compete": True}
    assert side["StopRule"] == "leak"


def test_cli_refuses_to_write_empty_mask(rng, tmp_path):
    img, _, _ = _phantom(rng)
    flair = tmp_path / "f.nii.gz"
    nib.Nifti1Image(img.astype(np.float32), np.eye(4)).to_filename(flair)
    seeds = tmp_path / "seeds.tsv"
    seeds.write_text("x\ty\tz\n500\t0\t0\n")
    out = tmp_path / "m.nii.gz"
    assert main(["lesions", "grow", str(flair), "--seeds", str(seeds), "-o", str(out)]) == 1
    assert not out.exists()
    bad = tmp_path / "bad.tsv"
    bad.write_text("i\tj\n1\t2\n")
    assert main(["lesions", "grow", str(flair), "--seeds", str(bad), "-o", str(out)]) == 1


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("patient, min_dice, max_load_error",
                         [("07", 0.65, 0.10), ("26", 0.62, 0.15)])
def test_open_ms_consensus(patient, min_dice, max_load_error):
    """Real MS FLAIR, one seed per consensus lesion (the voxel nearest its centroid)."""
    from conftest import require_shared

    folder = require_shared("open_ms_data", "cross_sectional", "MNI", f"patient{patient}")
    flair = nib.load(folder / "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz")
    gold = nib.load(folder / "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz")
    gold = gold.get_fdata() > 0
    lab, n = ndimage.label(gold, structure=np.ones((3, 3, 3)))
    seeds = []
    for k in range(1, n + 1):
        idx = np.argwhere(lab == k)
        seeds.append(idx[np.argmin(((idx - idx.mean(0)) ** 2).sum(1))])
    res = grow_lesions(flair.get_fdata(dtype=np.float32), seeds, (1, 1, 1))
    assert _dice(res.mask, gold) >= min_dice
    assert abs(res.mask.sum() / gold.sum() - 1) <= max_load_error


@pytest.mark.parametrize("merge_core", [False, True])
def test_rim_seeds_give_the_whole_lesion(rng, merge_core):
    """Seeds on the outer shell of each lesion (0.8-1.0 of its radius), not at its centre."""
    img, truth, brain = _phantom(rng)
    seeds = []
    for c, r in zip(CENTRES, RADII, strict=True):
        direction = rng.normal(size=3)
        seeds.append(np.rint(np.array(c) + 0.85 * r * direction / np.linalg.norm(direction)))
    assert all(truth[tuple(s.astype(int))] for s in seeds)
    res = grow_lesions(img, seeds, (1, 1, 1), brain_mask=brain, merge_core=merge_core)
    assert res.status == [SEED_OK] * 3
    assert _dice(res.mask, truth) > 0.85
    assert abs(res.mask.sum() / truth.sum() - 1) < 0.15


@pytest.mark.slow
@pytest.mark.realdata
def test_open_ms_random_seeds_patient07():
    """Real MS FLAIR, one seed per consensus lesion at a random voxel of it (two draws)."""
    from conftest import require_shared

    folder = require_shared("open_ms_data", "cross_sectional", "MNI", "patient07")
    flair = nib.load(folder / "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz")
    gold = nib.load(folder / "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz")
    gold = gold.get_fdata() > 0
    data = flair.get_fdata(dtype=np.float32)
    lab, n = ndimage.label(gold, structure=np.ones((3, 3, 3)))
    for draw in range(2):
        rng = np.random.default_rng(draw)
        seeds = [rng.permutation(np.argwhere(lab == k))[0] for k in range(1, n + 1)]
        res = grow_lesions(data, seeds, (1, 1, 1))
        assert _dice(res.mask, gold) >= 0.65
        assert abs(res.mask.sum() / gold.sum() - 1) <= 0.15


def _lobed_lesion(rng, shape=(48, 48, 48)):
    """Two plateau lobes (150, 150) joined by a slightly dimmer neck (146), a partial-volume
    rim (Gaussian blur), next to a bright cortex-like band (118) it touches."""
    idx = np.indices(shape).astype(float)
    img = np.full(shape, 100.0)
    img[:, :, 32:] = 118.0  # bright band, touching the lesion's top
    lobes = [(np.array([24, 16, 27]), 6.0), (np.array([24, 32, 27]), 6.0)]
    truth = np.zeros(shape, dtype=bool)
    for c, r in lobes:
        ball = ((idx - c[:, None, None, None]) ** 2).sum(0) <= r**2
        img[ball] = 150.0
        truth |= ball
    neck = (np.abs(idx[0] - 24) <= 2) & (np.abs(idx[2] - 27) <= 2) & (idx[1] > 20) & (idx[1] < 28)
    img[neck & ~truth] = 146.0
    truth |= neck
    img = ndimage.gaussian_filter(img, 1.0) + rng.normal(0, 1.5, shape)
    return img, truth, lobes


def test_edge_seed_in_lobed_lesion_gives_the_whole_lesion(rng):
    """A click on the rim of one lobe must give both lobes, not a fragment, and no band."""
    img, truth, lobes = _lobed_lesion(rng)
    near = ndimage.binary_dilation(truth, iterations=2)
    (c, r), _ = lobes
    seed = np.rint(c + np.array([0.0, -0.85 * r, 0.0])).astype(int)  # outer rim of lobe 1
    assert truth[tuple(seed)]
    res = grow_lesions(img, [seed], (1, 1, 1))
    assert res.status == [SEED_OK]
    assert _dice(res.mask, truth) > 0.85
    assert abs(res.mask.sum() / truth.sum() - 1) < 0.2
    assert (res.mask & ~near).sum() < 0.02 * truth.sum()  # no leak into the bright band
    rim = grow_lesions(img, [seed], (1, 1, 1), **RIM_RULE)
    assert _dice(rim.mask, truth) > 0.85
    assert abs(rim.mask.sum() / truth.sum() - 1) < 0.2
    assert (rim.mask & ~near).sum() < 0.02 * truth.sum()
    # the rule before ``free_level`` stopped at the clicked lobe (a fragment)
    old = grow_lesions(img, [seed], (1, 1, 1), free_level=2.0)
    assert old.mask.sum() < 0.7 * truth.sum()


def _core_rim_finger(shape=(40, 40, 40), c=20, radius=5, finger=12):
    """Noise-free lesion: a plateau core (150) in white matter (100), its one-voxel
    partial-volume rim (face neighbours, 117), and a finger of bright non-lesion tissue (116.5)
    running out from the core's edge through the rim (too small a step for the leak rule)."""
    idx = np.indices(shape)
    core = ((idx - c) ** 2).sum(0) <= radius**2
    rim = ndimage.binary_dilation(core) & ~core
    finger_mask = np.zeros(shape, dtype=bool)
    finger_mask[c + radius + 1:c + radius + 1 + finger, c, c] = True
    img = np.full(shape, 100.0)
    img[core], img[rim], img[finger_mask] = 150.0, 117.0, 116.5
    return img, core, rim, finger_mask


def test_rim_rule_exact_on_noise_free_lesion():
    """Below ``rim_level`` (here 120) only the core's one-voxel rim may join, down to the lowest
    threshold (115), and not where it leads on into bright tissue: the result is exactly the
    lesion (core and rim, without the finger) from any click inside it; the rule before it (no
    rim rule) also took the finger."""
    img, core, rim, finger = _core_rim_finger()
    truth = core | (rim & ~finger)
    rng = np.random.default_rng(0)
    inside = np.argwhere(truth)
    for seed in inside[rng.choice(len(inside), 5, replace=False)]:
        res = grow_lesions(img, [seed], (1, 1, 1), rim_level=0.4, level=0.3)
        assert res.status == [SEED_OK]
        assert np.array_equal(res.mask, truth)
    old = grow_lesions(img, [inside[0]], (1, 1, 1), rim_level=None, level=0.3)
    assert np.array_equal(old.mask, truth | finger)


def test_rim_rule_keeps_noisy_lesions_from_random_clicks():
    """Blurred, noisy lesions next to a bright band; one click at a random voxel of each lesion
    (three draws): Dice and load within bounds with the rim rule as tuned."""
    for draw in range(3):
        rng = np.random.default_rng(100 + draw)
        img, truth, brain = _phantom(rng)
        lab, n = ndimage.label(truth)
        seeds = [rng.permutation(np.argwhere(lab == k))[0] for k in range(1, n + 1)]
        res = grow_lesions(img, seeds, (1, 1, 1), brain_mask=brain, **RIM_RULE)
        assert res.status == [SEED_OK] * n
        assert _dice(res.mask, truth) > 0.85
        assert abs(res.mask.sum() / truth.sum() - 1) < 0.15


def test_cli_refuses_seed_outside_brain_mask(rng, tmp_path):
    """A seed inside the image but outside the given brain mask: error, nothing written."""
    img, _, brain = _phantom(rng)
    flair = tmp_path / "f.nii.gz"
    nib.Nifti1Image(img.astype(np.float32), np.eye(4)).to_filename(flair)
    mask = tmp_path / "brain.nii.gz"
    nib.Nifti1Image(brain.astype(np.uint8), np.eye(4)).to_filename(mask)
    seeds = tmp_path / "seeds.tsv"
    seeds.write_text("x\ty\tz\n0\t30\t30\n")  # slice 0 is outside the brain
    out = tmp_path / "m.nii.gz"
    assert main(["lesions", "grow", str(flair), "--seeds", str(seeds), "--brain-mask",
                 str(mask), "-o", str(out)]) == 1
    assert not out.exists()


def _neighbours(shape=(48, 48, 40)):
    """Noise-free pair: a large bright lesion (160, radius 7) and a small dimmer one (135,
    radius 3.5) in white matter (100), joined by a thin bridge of bright tissue (125)."""
    idx = np.indices(shape).astype(float)
    img = np.full(shape, 100.0)
    big = ((idx - np.array([24, 18, 20])[:, None, None, None]) ** 2).sum(0) <= 7**2
    small = ((idx - np.array([24, 31, 20])[:, None, None, None]) ** 2).sum(0) <= 3.5**2
    img[big], img[small] = 160.0, 135.0
    bridge = (np.abs(idx[0] - 24) <= 1) & (np.abs(idx[2] - 20) <= 1) & (idx[1] > 24) & \
        (idx[1] < 29) & ~big & ~small
    img[bridge] = 125.0
    return img, big, small, bridge


def test_compete_exact_on_noise_free_neighbours():
    """With competition each click keeps exactly its own lesion (the bridge, above both
    lowest thresholds, goes to one of them), whatever the seed order or where in the lesion
    the click lies. Without it the large lesion's click takes both."""
    img, big, small, bridge = _neighbours()
    for big_seed, small_seed in [((24, 18, 20), (24, 31, 20)), ((20, 15, 18), (24, 34, 20))]:
        for order in (1, -1):
            seeds = [big_seed, small_seed][::order]
            res = grow_lesions(img, seeds, (1, 1, 1), compete=True)
            assert res.status == [SEED_OK, SEED_OK]
            n_big, n_small = (1, 2) if order == 1 else (2, 1)
            got_big, got_small = res.labels == n_big, res.labels == n_small
            assert np.array_equal(got_big & ~bridge, big)  # the bridge may go to either
            assert np.array_equal(got_small & ~bridge, small)
            assert np.array_equal(res.mask, big | small | bridge)
    old = grow_lesions(img, [(24, 18, 20), (24, 31, 20)], (1, 1, 1))
    assert old.status == [SEED_OK, "merged"]
    assert np.array_equal(old.mask, big | small | bridge)


def _touching_pair(shape=(48, 48, 40)):
    """Noise-free pair in white matter (100): a large bright lesion (160, radius 7) and a
    small dimmer one (135, radius 3.5) whose faces touch."""
    idx = np.indices(shape).astype(float)
    img = np.full(shape, 100.0)
    big = ((idx - np.array([24, 18, 20])[:, None, None, None]) ** 2).sum(0) <= 7**2
    small = ((idx - np.array([24, 29, 20])[:, None, None, None]) ** 2).sum(0) <= 3.5**2
    assert not (big & small).any() and (ndimage.binary_dilation(big) & small).any()
    img[big], img[small] = 160.0, 135.0
    return img, big, small


@pytest.mark.parametrize("opts", [{}, RIM_RULE])
def test_compete_peak_not_in_other_click_region(opts):
    """A click on the small lesion next to the large one: its brightest voxel within 2 mm is
    in the large lesion, which the large lesion's click holds. The peak is searched among free
    voxels only, so the small lesion is grown exactly (it was one closed voxel, 0 voxels of
    its own, before) and the large one is unchanged."""
    img, big, small = _touching_pair()
    small_seed = (24, 27, 20)  # a voxel of the small lesion two voxels from the large one
    assert small[small_seed] and big[24, 25, 20]
    res = grow_lesions(img, [(24, 18, 20), small_seed], (1, 1, 1), compete=True, **opts)
    assert res.status == [SEED_OK, SEED_OK]
    assert np.array_equal(res.labels == 1, big)
    assert np.array_equal(res.labels == 2, small)
    assert res.n_voxels == [int(big.sum()), int(small.sum())]


def test_compete_noisy_neighbours_random_clicks():
    """Blurred, noisy pair, one click at a random voxel of each lesion (three draws): each
    lesion is recovered by its own click (per-lesion Dice bounds)."""
    for draw in range(3):
        rng = np.random.default_rng(draw)
        img, big, small, _ = _neighbours()
        img = ndimage.gaussian_filter(img + rng.normal(0, 3.0, img.shape), 0.7) + \
            rng.normal(0, 2.0, img.shape)
        seeds = [rng.permutation(np.argwhere(big))[0], rng.permutation(np.argwhere(small))[0]]
        res = grow_lesions(img, seeds, (1, 1, 1), compete=True)
        assert res.status == [SEED_OK, SEED_OK]
        assert _dice(res.labels == 1, big) > 0.93
        assert _dice(res.labels == 2, small) > 0.8
        assert _dice(res.mask, big | small) > 0.9


def test_compete_keeps_noisy_lesions_from_random_clicks():
    """The three-lesion phantom, random clicks (three draws), competition with the rim rule."""
    for draw in range(3):
        rng = np.random.default_rng(200 + draw)
        img, truth, brain = _phantom(rng)
        lab, n = ndimage.label(truth)
        seeds = [rng.permutation(np.argwhere(lab == k))[0] for k in range(1, n + 1)]
        res = grow_lesions(img, seeds, (1, 1, 1), brain_mask=brain, compete=True, **RIM_RULE)
        assert res.status == [SEED_OK] * n
        assert _dice(res.mask, truth) > 0.85
        assert abs(res.mask.sum() / truth.sum() - 1) < 0.15



def _partial_volume_sphere(radius, shape=(32, 32, 32), centre=(16.3, 15.8, 16.1), ss=5):
    """Lesion content of each voxel (0-1) for a sphere off the voxel grid (``ss``^3 subvoxels)."""
    g = (np.arange(shape[0] * ss) + 0.5) / ss
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2
    return inside.reshape(shape[0], ss, shape[1], ss, shape[2], ss).mean(axis=(1, 3, 5))


@pytest.mark.parametrize("radius", [2.2, 3.2, 4.5])
@pytest.mark.parametrize("floor", [0.35, 0.3])
def test_rim_floor_takes_partial_volume_voxels_by_content(radius, floor):
    """Noise-free lesion with a true partial-volume edge (white matter 100, lesion 150, each
    voxel its lesion content): with the rim rule and rim floor F, clicks on the lesion's rim
    (voxels 50-99 % lesion) give exactly the voxels holding at least F of lesion."""
    content = _partial_volume_sphere(radius)
    img = 100.0 + 50.0 * content
    truth = content >= floor
    rim = np.argwhere((content >= 0.5) & (content < 1.0))
    rng = np.random.default_rng(7)
    for seed in rim[rng.choice(len(rim), 4, replace=False)]:
        res = grow_lesions(img, [seed], (1, 1, 1), rim_level=RIM_RULE["rim_level"], level=floor)
        assert res.status == [SEED_OK]
        assert np.array_equal(res.mask, truth)


def test_cli_rim_floor(rng, tmp_path):
    """--rim-floor is recorded in the sidecar; without --rim-rule it is refused (nothing
    written)."""
    img, _, _ = _phantom(rng)
    flair = tmp_path / "f.nii.gz"
    nib.Nifti1Image(img.astype(np.float32), np.eye(4)).to_filename(flair)
    seeds = tmp_path / "seeds.tsv"
    seeds.write_text("x\ty\tz\n" + "".join(f"{x}\t{y}\t{z}\n" for x, y, z in CENTRES))
    out = tmp_path / "m.nii.gz"
    base = ["lesions", "grow", str(flair), "--seeds", str(seeds), "-o", str(out)]
    assert main(base + ["--rim-floor", "0.3"]) == 2
    assert main(base + ["--rim-rule", "--rim-floor", "0.45"]) == 2
    assert not out.exists()
    assert main(base + ["--rim-rule", "--compete", "--rim-floor", "0.3"]) == 0
    side = json.loads(out.with_name("m.json").read_text())
    assert side["GrowingParameters"] == {"rim_level": 0.4, "level": 0.3, "compete": True}
    assert side["RimRule"] is True


def _plateau_step_lesion(shape=(48, 40, 40), length=20):
    """Noise-free elongated lesion (``length`` x 5 x 5 voxels) in white matter (100): a plateau
    (150) with, at one end, a 3x5x5 part (75 voxels) one threshold step brighter (151.5) around
    a peak voxel (165)."""
    img = np.full(shape, 100.0)
    lesion = np.zeros(shape, dtype=bool)
    lesion[14:14 + length, 18:23, 18:23] = True
    img[lesion] = 150.0
    img[14:17, 18:23, 18:23] = 151.5
    img[15, 20, 20] = 165.0
    return img, lesion


@pytest.mark.parametrize("opts", [{}, RIM_RULE, {**RIM_RULE, "compete": True}])
def test_stable_rule_grows_lesion_with_plateau_step_whole(opts):
    """A click in the brighter end of a plateau-shaped lesion: its part forms one step above
    the plateau and the plateau joins on the next step, a jump the leak rule reads as a leak.
    The part had just formed (not stable), so with the stability rule the whole lesion is
    grown, exactly; the leak rule alone keeps the 75-voxel part. A plateau more than
    ``join_max`` times the part is not joined (the part, as with the leak rule)."""
    img, lesion = _plateau_step_lesion()
    for seed in [(14, 19, 21), (16, 21, 19), (15, 20, 20)]:
        res = grow_lesions(img, [seed], (1, 1, 1), **STABLE_RULE, **opts)
        assert res.status == [SEED_OK]
        assert np.array_equal(res.mask, lesion)
        old = grow_lesions(img, [seed], (1, 1, 1), **opts)
        assert old.n_voxels == [75]
    long, _ = _plateau_step_lesion(shape=(96, 40, 40), length=64)  # 21.3 times the part
    res = grow_lesions(long, [(15, 20, 20)], (1, 1, 1), **STABLE_RULE, **opts)
    assert res.n_voxels == [75]


def test_stable_rule_refuses_join_that_keeps_growing():
    """The plateau-step lesion's bright part (a fragment that has just formed) touching, instead
    of its plateau, a structure that goes on growing as the threshold falls (a slab whose face
    layer joins first and eight more layers one step later): the join is not confirmed stable,
    so growing stops before it, at the 75-voxel part, as with the leak rule alone."""
    img, _ = _plateau_step_lesion()
    img[img == 150.0] = 100.0  # keep only the bright part (x 14-16) and its peak voxel
    img[17, :, :] = 150.0  # the slab's face layer, touching the part
    img[18:, :, :] = 148.5 - 0.2 * (np.arange(18, img.shape[0]) - 18)[:, None, None]
    for opts in ({}, RIM_RULE):
        res = grow_lesions(img, [(15, 20, 20)], (1, 1, 1), **STABLE_RULE, **opts)
        assert res.status == [SEED_OK]
        assert res.n_voxels == [75]


def _lesion_bridge_bright(shape=(48, 40, 40)):
    """Noise-free lesion (149, radius 4, peak voxel 160) in white matter (100), joined by a
    one-voxel bridge (135) to a brighter structure (a slab, 170) four voxels away."""
    idx = np.indices(shape).astype(float)
    img = np.full(shape, 100.0)
    centre = np.array([20, 20, 20])
    lesion = ((idx - centre[:, None, None, None]) ** 2).sum(0) <= 4**2
    img[lesion] = 149.0
    img[tuple(centre)] = 160.0
    img[29:, :, :] = 170.0
    bridge = np.zeros(shape, dtype=bool)
    bridge[25:29, 20, 20] = True
    img[bridge] = 135.0
    return img, lesion


@pytest.mark.parametrize("opts", [{}, RIM_RULE, {**RIM_RULE, "compete": True}])
def test_stable_rule_refuses_bridge_into_brighter_structure(opts):
    """Clicks anywhere in a lesion that reaches a brighter structure through a thin bridge: the
    lesion has been stable for several steps when the bridge joins, so the jump is refused and
    the lesion is grown exactly, as with the leak rule alone."""
    img, lesion = _lesion_bridge_bright()
    inside = np.argwhere(lesion)
    rng = np.random.default_rng(3)
    for seed in inside[rng.choice(len(inside), 5, replace=False)]:
        res = grow_lesions(img, [seed], (1, 1, 1), **STABLE_RULE, **opts)
        assert res.status == [SEED_OK]
        assert np.array_equal(res.mask, lesion)


@pytest.mark.parametrize("radius", [2.2, 4.5])
def test_stable_rule_rim_click_gives_partial_volume_lesion(radius):
    """Clicks in the partial-volume rim of a noise-free lesion (voxels 50-99 % lesion): with the
    stability rule and the rim floor 0.3 the result is exactly the voxels holding at least 0.3
    of lesion, as without it."""
    content = _partial_volume_sphere(radius)
    img = 100.0 + 50.0 * content
    rim = np.argwhere((content >= 0.5) & (content < 1.0))
    rng = np.random.default_rng(11)
    for seed in rim[rng.choice(len(rim), 4, replace=False)]:
        res = grow_lesions(img, [seed], (1, 1, 1), rim_level=RIM_RULE["rim_level"], level=0.3,
                           **STABLE_RULE)
        assert res.status == [SEED_OK]
        assert np.array_equal(res.mask, content >= 0.3)


def test_stable_rule_keeps_noisy_lesions_from_random_clicks():
    """The three-lesion phantom (blurred, noisy, bright band), random clicks (three draws),
    stability rule with competition and the rim rule: Dice and load within bounds."""
    for draw in range(3):
        rng = np.random.default_rng(300 + draw)
        img, truth, brain = _phantom(rng)
        lab, n = ndimage.label(truth)
        seeds = [rng.permutation(np.argwhere(lab == k))[0] for k in range(1, n + 1)]
        res = grow_lesions(img, seeds, (1, 1, 1), brain_mask=brain, compete=True,
                           **STABLE_RULE, **RIM_RULE)
        assert res.status == [SEED_OK] * n
        assert _dice(res.mask, truth) > 0.85
        assert abs(res.mask.sum() / truth.sum() - 1) < 0.15


def test_cli_stop_rule_stable_recorded(tmp_path):
    """--stop-rule stable grows the plateau-step lesion whole and is recorded in the sidecar
    (``StopRule`` and ``GrowingParameters``); the default is the leak rule (the fragment)."""
    img, lesion = _plateau_step_lesion()
    flair = tmp_path / "f.nii.gz"
    nib.Nifti1Image(img.astype(np.float32), np.eye(4)).to_filename(flair)
    seeds = tmp_path / "seeds.tsv"
    seeds.write_text("x\ty\tz\n14\t19\t21\n")
    base = ["lesions", "grow", str(flair), "--seeds", str(seeds), "--rim-rule", "--compete",
            "--rim-floor", "0.3", "-o"]
    out = tmp_path / "stable.nii.gz"
    assert main(base + [str(out), "--stop-rule", "stable"]) == 0
    assert np.array_equal(nib.load(out).get_fdata() > 0, lesion)
    side = json.loads(out.with_name("stable.json").read_text())
    assert side["StopRule"] == "stable"
    assert side["GrowingParameters"] == {"rim_level": 0.4, "level": 0.3, "compete": True,
                                         **STABLE_RULE}
    leak = tmp_path / "leak.nii.gz"
    assert main(base + [str(leak)]) == 0
    assert int((nib.load(leak).get_fdata() > 0).sum()) == 75
    assert json.loads(leak.with_name("leak.json").read_text())["StopRule"] == "leak"


def _small_lesion_by_bright_structure(shape=(48, 40, 40)):
    """Noise-free 4-voxel lesion of low contrast (136, peak voxel 140) in white matter (100),
    joined by a one-voxel bridge (120, half its profile) to a much brighter slab (170)."""
    img = np.full(shape, 100.0)
    lesion = np.zeros(shape, dtype=bool)
    lesion[20:22, 20:22, 20] = True
    img[lesion] = 136.0
    img[20, 20, 20] = 140.0
    img[22:26, 20, 20] = 120.0  # the bridge
    img[26:32, :, :] = 170.0
    return img, lesion


@pytest.mark.parametrize("opts", [{}, RIM_RULE, {**RIM_RULE, "compete": True, **STABLE_RULE}])
def test_bright_leak_stops_small_lesion_at_its_own_voxels(opts):
    """A click on a lesion of fewer than 10 voxels whose region, half way down its profile,
    jumps through a bridge into a structure far brighter than its own peak: the leak rule
    exempts regions under 10 voxels, so the click takes the slab; with ``bright_leak`` the
    jump is a leak and the lesion is grown exactly."""
    img, lesion = _small_lesion_by_bright_structure()
    for seed in np.argwhere(lesion):
        old = grow_lesions(img, [seed], (1, 1, 1), **opts)
        assert old.n_voxels[0] > 1000
        res = grow_lesions(img, [seed], (1, 1, 1), **BRIGHT_LEAK, **opts)
        assert res.status == [SEED_OK]
        assert np.array_equal(res.mask, lesion)


def _bump_on_plateau(shape=(40, 40, 40)):
    """Noise-free lesion: a plateau (130, 7 x 7 x 7 voxels) in white matter (100) with, on one
    face, a 3-voxel bump (140): a click there starts from the bump, whose profile's free level
    (0.8) lies above the plateau, so the plateau joins a 3-voxel region in one jump."""
    img = np.full(shape, 100.0)
    lesion = np.zeros(shape, dtype=bool)
    lesion[16:23, 16:23, 16:23] = True
    lesion[23, 19, 18:21] = True
    img[lesion] = 130.0
    img[23, 19, 18:21] = 140.0
    return img, lesion


@pytest.mark.parametrize("opts", [{}, RIM_RULE, {**RIM_RULE, "compete": True, **STABLE_RULE}])
def test_bright_leak_keeps_jump_into_own_plateau(opts):
    """The jump from a click's small region into the rest of its own lesion (no brighter than
    the click's peak) is not a bright leak: the whole lesion is grown, with and without
    ``bright_leak``; and the partial-volume sphere's rim clicks give the same lesion with it."""
    img, lesion = _bump_on_plateau()
    for seed in [(23, 19, 18), (23, 19, 20)]:
        for extra in ({}, BRIGHT_LEAK):
            res = grow_lesions(img, [seed], (1, 1, 1), **extra, **opts)
            assert res.status == [SEED_OK]
            assert np.array_equal(res.mask, lesion)
    content = _partial_volume_sphere(4.5)
    img = 100.0 + 50.0 * content
    rim = np.argwhere((content >= 0.5) & (content < 1.0))
    for seed in rim[np.random.default_rng(12).choice(len(rim), 4, replace=False)]:
        res = grow_lesions(img, [seed], (1, 1, 1), rim_level=RIM_RULE["rim_level"], level=0.3,
                           **STABLE_RULE, **BRIGHT_LEAK)
        assert np.array_equal(res.mask, content >= 0.3)



def _clicks_in_one_lesion(rng, n=4):
    """The noise-free core/rim lesion (no finger) and ``n`` random clicks in its core."""
    img, core, rim, _ = _core_rim_finger(finger=0)
    inside = np.argwhere(core)
    return img, core, rim, inside[rng.choice(len(inside), n, replace=False)]


@pytest.mark.parametrize("extra", [{}, STABLE_RULE])
def test_rim_at_seed_gives_rim_when_clicks_meet(extra):
    """Several clicks in one lesion with a partial-volume rim: with ``compete`` the first
    click's region stops before the next step (still the core) would take another click's
    seed, so the lesion loses its rim; ``rim_at_seed`` adds the rim there and the lesion is
    grown exactly. One click alone is unchanged by the option."""
    img, core, rim, seeds = _clicks_in_one_lesion(np.random.default_rng(3))
    opts = {"rim_level": 0.4, "level": 0.3, "compete": True, **extra}
    old = grow_lesions(img, seeds, (1, 1, 1), **opts)
    assert np.array_equal(old.mask, core)
    res = grow_lesions(img, seeds, (1, 1, 1), rim_at_seed=True, **opts)
    assert np.array_equal(res.mask, core | rim)
    assert res.status[0] == SEED_OK and res.n_voxels[0] == int((core | rim).sum())
    for seed in seeds[:2]:
        one = grow_lesions(img, [seed], (1, 1, 1), rim_at_seed=True, **opts)
        assert np.array_equal(one.mask, core | rim)


@pytest.mark.parametrize("extra", [{}, STABLE_RULE])
def test_rim_at_seed_keeps_touching_lesions_apart(extra):
    """Two touching lesions (a large bright one and a small dimmer one), one click each: with
    ``rim_at_seed`` each click still keeps exactly its own lesion (the rim added where the
    large lesion's region meets the other click's seed never enters the other lesion)."""
    img, big, small = _touching_pair()
    res = grow_lesions(img, [(24, 18, 20), (24, 29, 20)], (1, 1, 1), compete=True,
                       rim_at_seed=True, **RIM_RULE, **extra)
    assert res.status == [SEED_OK, SEED_OK]
    assert np.array_equal(res.labels == 1, big)
    assert np.array_equal(res.labels == 2, small)


def test_cli_rim_at_seed_and_bright_leak(tmp_path):
    """Two clicks in one lesion: ``--rim-at-seed`` (with ``--rim-rule --compete``) gives the
    lesion with its rim, exactly, and the sidecar records it and ``--bright-leak``; without
    ``--compete`` the option is refused and nothing is written."""
    img, core, rim, seeds = _clicks_in_one_lesion(np.random.default_rng(3), n=2)
    flair = tmp_path / "f.nii.gz"
    nib.Nifti1Image(img.astype(np.float32), np.eye(4)).to_filename(flair)
    table = tmp_path / "seeds.tsv"
    table.write_text("x\ty\tz\n" + "".join(f"{i}\t{j}\t{k}\n" for i, j, k in seeds))
    base = ["lesions", "grow", str(flair), "--seeds", str(table), "--rim-rule", "--rim-floor",
            "0.3", "--stop-rule", "stable", "--rim-at-seed", "--bright-leak", "-o"]
    out = tmp_path / "m.nii.gz"
    assert main(base + [str(out), "--compete"]) == 0
    assert np.array_equal(nib.load(out).get_fdata() > 0, core | rim)
    side = json.loads(out.with_name("m.json").read_text())
    assert side["GrowingParameters"] == {"rim_level": 0.4, "level": 0.3, "compete": True,
                                         **STABLE_RULE, "rim_at_seed": True, **BRIGHT_LEAK}
    refused = tmp_path / "r.nii.gz"
    assert main(base + [str(refused)]) == 2
    assert not refused.exists()
