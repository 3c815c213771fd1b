"""Iron-contrast placement of small nuclei: known shifts recovered, no selection bias."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.core.regions.nuclei_refine import (
    best_shift,
    candidate_shifts,
    contrast_profile,
    cross_fitted,
    refine_nuclei,
    shift_mask,
    slice_folds,
)

SIZES = np.array([1.0, 1.0, 2.0])  # the seed protocol's GRE voxels (mm)
SHAPE = (40, 40, 24)


def ellipsoid(centre_mm, radii_mm, shape=SHAPE, sizes=SIZES) -> np.ndarray:
    """A boolean ellipsoid on the grid (centre and radii in mm)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, sizes, strict=True)],
                                indexing="ij"), axis=-1)
    return (((grid - np.asarray(centre_mm)) / np.asarray(radii_mm)) ** 2).sum(-1) <= 1.0


def test_candidate_shifts_bounded_and_smallest_first():
    shifts = candidate_shifts(SIZES, 3.0)
    assert tuple(shifts[0]) == (0, 0, 0)
    assert np.abs(shifts[:, :2]).max() == 3 and np.abs(shifts[:, 2]).max() == 1
    lengths = np.linalg.norm(shifts * SIZES, axis=1)
    assert np.all(np.diff(lengths) >= -1e-12) and len(shifts) == 7 * 7 * 3


def test_shift_mask_and_cross_fit_assemble_the_label():
    mask = ellipsoid((20, 20, 24), (4, 3, 6))
    moved = shift_mask(mask, (2, -1, 1))
    assert moved.sum() == mask.sum()
    assert np.array_equal(np.argwhere(moved), np.argwhere(mask) + [2, -1, 1])
    same = cross_fitted(mask, (2, -1, 1), (2, -1, 1))
    assert np.array_equal(same, moved)
    # even slices take the odd-slice estimate, odd slices the even-slice estimate
    mixed = cross_fitted(mask, (1, 0, 0), (0, 0, 0))
    assert np.array_equal(mixed[:, :, 0::2], mask[:, :, 0::2])
    assert np.array_equal(mixed[:, :, 1::2], shift_mask(mask, (1, 0, 0))[:, :, 1::2])
    folds = slice_folds(mask, 2, "halves")
    assert set(folds) == {0, 1} and np.all(np.diff(folds) >= 0)


@pytest.mark.parametrize("shift", [(2, -1, 1), (-3, 2, 0), (0, 0, -1), (1, 3, 1)])
def test_known_shift_recovered(shift):
    """A bright nucleus displaced by a known shift from its label: shift found exactly."""
    rng = np.random.default_rng(sum(3 ** i * (s + 3) for i, s in enumerate(shift)))
    label = ellipsoid((20, 19, 24), (4, 3, 5))
    truth = shift_mask(label, shift)
    # R2*-like image: 20 s^-1 background, nucleus 35 s^-1, noise 3 s^-1 per voxel, a gradient
    x = np.arange(SHAPE[0])[:, None, None]
    image = 20.0 + 0.05 * x + 15.0 * truth + rng.normal(0, 3.0, SHAPE)
    labels = label.astype(np.int16) * 7
    out, _, shifts = refine_nuclei(labels, image, [[7]], SIZES, max_shift_mm=3.0)
    assert len(shifts) == 1
    assert shifts[0].fold0 == shift and shifts[0].fold1 == shift
    assert np.array_equal(out == 7, truth)
    # the contrast profile peaks at the true shift on all slices together too
    cands = candidate_shifts(SIZES, 3.0)
    assert best_shift(contrast_profile(image, label, cands, SIZES, parity=None), cands) == shift


def test_shift_beyond_reach_not_invented_and_other_labels_kept():
    label = ellipsoid((20, 20, 24), (4, 3, 5))
    image = np.full(SHAPE, 20.0)
    image[label] = 35.0  # already in place
    labels = label.astype(np.int16) * 7
    other = ellipsoid((30, 20, 24), (3, 3, 4)) & ~label
    labels[other] = 3
    out, _, shifts = refine_nuclei(labels, image, [[7]], SIZES)
    assert shifts[0].fold0 == (0, 0, 0) and shifts[0].fold1 == (0, 0, 0)
    assert np.array_equal(out, labels)
    # moving toward another label never takes its voxels
    image2 = np.full(SHAPE, 20.0)
    image2[shift_mask(label, (3, 0, 0))] = 35.0
    out2, _, _ = refine_nuclei(labels, image2, [[7]], SIZES)
    assert np.array_equal(out2 == 3, other)


def noise_bias(split: str | None, draws: int, seed: int) -> tuple[float, float]:
    """Mean (over draws) of the refined label's mean on pure noise (sd 1), and its SE.

    ``split=None`` is the naive estimate (one shift from all slices, applied to all).
    """
    rng = np.random.default_rng(seed)
    label = ellipsoid((20, 20, 24), (4, 3, 4))  # 99 voxels, an SN/RN-sized label
    cands = candidate_shifts(SIZES)
    means = []
    for _ in range(draws):
        image = rng.normal(0.0, 1.0, SHAPE)
        if split is None:
            t = best_shift(contrast_profile(image, label, cands, SIZES, parity=None), cands)
            means.append(image[shift_mask(label, t)].mean())
        else:
            out, _, _ = refine_nuclei(label.astype(np.int16), image, [[1]], SIZES, split=split)
            means.append(image[out == 1].mean())
    means = np.asarray(means)
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(draws))


@pytest.mark.parametrize("split", ["parity", "halves"])
def test_no_selection_bias_on_noise(split):
    """Flat image + noise: the cross-fitted label's mean is unbiased.

    Bound: |bias| <= 0.03 sd of one voxel (a 99-voxel label's own mean has sd 0.10), and
    within 3 standard errors of 0. The naive estimate (shift chosen and applied on the same
    slices) is biased by about +0.17 sd here, which the test also shows, so it can detect
    the effect it guards against.
    """
    bias, se = noise_bias(split, draws=150, seed=11)
    assert abs(bias) <= max(3 * se, 1e-9) and abs(bias) <= 0.03, (bias, se)
    naive, se_naive = noise_bias(None, draws=60, seed=12)
    assert naive > 0.10 and naive > 5 * se_naive, (naive, se_naive)


def test_workflow_step_moves_the_automatic_nuclei_and_records_it():
    import nibabel as nib

    from ironmap.spatial.anatomy import NAWM_INDEX, output_index, output_name
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.nuclei import refine, refine_groups

    dl, dr = output_index("dentate_nucleus", "left"), output_index("dentate_nucleus", "right")
    sn = output_index("substantia_nigra", "left")
    cau = output_index("caudate", "left")
    names = {i: output_name(i) for i in (dl, dr, sn, cau, NAWM_INDEX)}
    assert refine_groups(names) == [[dl], [dr]]
    assert refine_groups(names, "iron-all") == [[sn], [dl], [dr]]
    labels = np.zeros(SHAPE, np.int16)
    labels[ellipsoid((12, 20, 24), (4, 3, 5))] = dl
    labels[ellipsoid((28, 20, 24), (4, 3, 5))] = dr
    labels[ellipsoid((20, 32, 24), (2, 2, 4))] = sn
    labels[ellipsoid((20, 8, 24), (3, 3, 4))] = cau
    nawm = (labels == 0) & ellipsoid((20, 20, 24), (19, 19, 20))
    labels[nawm] = NAWM_INDEX
    truth_dl = shift_mask(labels == dl, (2, 1, 0))
    image = np.full(SHAPE, 22.0)
    image[truth_dl] = 40.0
    image[labels == dr] = 40.0  # already in place
    image[labels == sn] = 40.0
    image[labels == cau] = 40.0
    image[shift_mask(labels == cau, (2, 0, 0))] = 60.0  # bright, but the caudate is never moved
    r2img = nib.Nifti1Image(image.astype(np.float32), np.diag([*SIZES, 1.0]))
    eroded = labels.copy()
    cfg = RunConfig(bids_dir=".", output_dir=".", analysis_level="participant")
    out, out_eroded, prov = refine(labels, eroded, r2img, names, cfg, "sub-01")
    assert prov["Method"] == "iron" and prov["MaxShiftMM"] == 2.0
    assert set(prov["Labels"]) == {"Left-Dentate", "Right-Dentate"}
    assert prov["Labels"]["Left-Dentate"]["ShiftFold0Voxels"] == [2, 1, 0]
    assert prov["Labels"]["Right-Dentate"]["ShiftFold1MM"] == 0.0
    assert np.array_equal(out == dl, truth_dl) and np.array_equal(out_eroded == dl, truth_dl)
    assert np.array_equal(out == cau, labels == cau)
    assert np.array_equal(out == sn, labels == sn)  # the default moves the dentate only
    # NAWM gave its voxels to the moved dentate and keeps none on its new rim
    from scipy import ndimage

    rim = ndimage.binary_dilation(out == dl, ndimage.generate_binary_structure(3, 1))
    assert not (rim & (out == NAWM_INDEX)).any()
    cfg = RunConfig(bids_dir=".", output_dir=".", analysis_level="participant",
                    nuclei_refine="none")
    same, _, none = refine(labels, None, r2img, names, cfg, "sub-01")
    assert none == {"Method": "none"} and np.array_equal(same, labels)


def test_coarse_grid_cannot_move_and_changes_nothing():
    """At voxels larger than the 2 mm reach (clinical 3-3.4 mm GRE) no label moves."""
    import nibabel as nib

    from ironmap.spatial.anatomy import NAWM_INDEX, output_index, output_name
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.nuclei import refine

    assert candidate_shifts((3.4, 3.4, 3.4)).tolist() == [[0, 0, 0]]
    dl = output_index("dentate_nucleus", "left")
    labels = np.full((20, 20, 12), NAWM_INDEX, np.int16)
    labels[8:11, 8:11, 5:7] = dl  # NAWM touches it: the route's rim is on the T1w grid
    image = np.full(labels.shape, 22.0)
    image[9:12, 8:11, 5:7] = 40.0
    r2img = nib.Nifti1Image(image.astype(np.float32), np.diag([3.4, 3.4, 3.4, 1.0]))
    cfg = RunConfig(bids_dir=".", output_dir=".", analysis_level="participant")
    out, _, prov = refine(labels, None, r2img, {dl: output_name(dl), NAWM_INDEX: "NAWM"},
                          cfg, "sub-01")
    assert np.array_equal(out, labels)
    assert prov["Labels"]["Left-Dentate"]["ShiftFold0MM"] == 0.0


def test_cli_option_reaches_config_record_and_methods(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args
    from ironmap.report.methods import methods_record, nuclei_phrase
    from ironmap.workflows.provenance import PARTICIPANT_KEYS

    assert "nuclei_refine" in PARTICIPANT_KEYS
    base = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    for given, expected in (([], "iron"), (["--nuclei-refine", "none"], "none"),
                            (["--nuclei-refine", "iron-all"], "iron-all")):
        cfg = config_from_args(build_parser().parse_args([*base, *given]))
        assert cfg.nuclei_refine == expected
        record = methods_record(cfg.to_json())
        assert record["nuclei_refine"] == expected
        assert ("cross-fitting" in nuclei_phrase(record)) == (expected != "none")
