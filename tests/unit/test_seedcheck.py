"""The two-seed registration check (``ironmap.spatial.seedcheck``)."""
from __future__ import annotations

import numpy as np
from test_registration import TRUE_POSE, head_phantom, moved_copy, rigid

from ironmap.spatial.registration import Registration, register
from ironmap.spatial.seedcheck import (
    SEED_CHECK_TOLERANCE_MM,
    check_points,
    choose_registration,
    register_seed_checked,
)


def _reg(matrix, nmi, seed):
    return Registration(matrix=np.asarray(matrix, float), similarity=nmi, model="affine",
                        details={"seed": seed})


def test_agreeing_seeds_keep_the_first_result_unchanged():
    # 0.5 mm apart: the check passes and seed 1 is kept even though seed 2's NMI is higher
    first, second = _reg(np.eye(4), 1.40, 1), _reg(rigid(0, 0, 0, [0.5, 0, 0]), 1.45, 2)
    points = np.random.default_rng(0).uniform(-60, 60, (50, 3))
    kept = choose_registration(first, second, points)
    assert np.array_equal(kept.matrix, first.matrix) and kept.similarity == 1.40
    check = kept.details["seed_check"]
    assert check["passed"] and check["chosen_seed"] == 1
    assert abs(check["disagreement_mean_mm"] - 0.5) < 1e-9


def test_disagreeing_seeds_keep_the_more_similar_result():
    points = np.random.default_rng(0).uniform(-60, 60, (50, 3))
    wrong, right = _reg(rigid(0, 0, 20, [10, 0, 0]), 1.36, 1), _reg(np.eye(4), 1.48, 2)
    kept = choose_registration(wrong, right, points)
    check = kept.details["seed_check"]
    assert not check["passed"] and check["disagreement_mean_mm"] > SEED_CHECK_TOLERANCE_MM
    assert check["chosen_seed"] == 2 and np.array_equal(kept.matrix, right.matrix)
    assert check["nmi"] == [1.36, 1.48] and kept.details["seed"] == 2
    # a disagreeing second seed with the lower NMI does not replace the first
    kept = choose_registration(right, wrong, points)
    assert kept.details["seed_check"]["chosen_seed"] == 2 and kept.similarity == 1.48


def test_check_points_surround_the_image_centre():
    fixed = head_phantom(np.random.default_rng(7))
    pts = check_points(fixed)
    centre = fixed.affine @ np.r_[(np.array(fixed.shape) - 1) / 2, 1]
    assert pts.shape == (125, 3) and np.allclose(pts.mean(0), centre[:3])


def test_real_registration_with_agreeing_seeds_is_seed_ones_result():
    # real ANTs: on a well-posed pair both seeds agree, so the output is bit for bit seed 1's
    fixed = head_phantom(np.random.default_rng(7))
    moving = moved_copy(fixed, TRUE_POSE)
    checked = register_seed_checked(fixed, moving, model="rigid")
    plain = register(fixed, moving, model="rigid", seed=1)
    assert checked.details["seed_check"]["passed"]
    assert np.array_equal(checked.matrix, plain.matrix)
    assert checked.similarity == plain.similarity


def test_failed_seed_check_is_a_registration_qc_flag():
    from ironmap.core.qc.run_flags import evaluate

    flags = evaluate("sub-004", similarities={"FLAIR": 1.477},
                     segmentation_errors={"registration_seeds_FLAIR": "seeds [1, 2] disagree by "
                                          "16.7 mm (NMI 1.365 vs 1.477); kept seed 2"})
    assert [(f.rule, f.item) for f in flags] == [("registration", "FLAIR->T1w seeds")]
    assert "16.7 mm" in flags[0].message and "kept seed 2" in flags[0].message
