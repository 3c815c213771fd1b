"""The two-seed registration check (``ironmap.spatial.seedcheck``)."""
from __future__ import annotations

import numpy as np
import pytest
from test_registration import TRUE_POSE, head_phantom, moved_copy, rigid

from ironmap.spatial.registration import Registration, displacement_error, register
from ironmap.spatial.seedcheck import (
    COARSE_CHECK_SAMPLING_RATE,
    SEED_CHECK_TOLERANCE_MM,
    check_points,
    choose_registration,
    coarse_schedule,
    register_seed_checked,
)

#: a three-level schedule (the participant level's for a 1 mm T1w has three levels)
THREE_LEVELS = {"shrink_factors": (4, 2, 1), "smoothing_sigmas": (2.0, 1.0, 0.0),
                "iterations": (200, 100, 50)}
#: a two-level schedule (the participant level's for a T1w of 1.5 mm or coarser)
TWO_LEVELS = {"shrink_factors": (2, 1), "smoothing_sigmas": (1.0, 0.0), "iterations": (200, 100)}


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

    message = "seeds [1, 2] disagree by 16.7 mm (NMI 1.365 vs 1.477); kept seed 2"
    flags = evaluate("sub-004", similarities={"FLAIR": 1.477},
                     registration_checks={"FLAIR": message})
    assert [(f.rule, f.item) for f in flags] == [("registration", "FLAIR->T1w seeds")]
    assert "16.7 mm" in flags[0].message and "kept seed 2" in flags[0].message
    # a manifest written before the flags had their own key: the same flag
    old = evaluate("sub-004", similarities={"FLAIR": 1.477},
                   segmentation_errors={"registration_seeds_FLAIR": message})
    assert old == flags


def test_coarse_schedule_leaves_out_the_finest_level():
    options = {"shrink_factors": (8, 4, 2), "smoothing_sigmas": (3.0, 2.0, 1.0),
               "iterations": (200, 100, 50), "bins": 32}
    coarse = coarse_schedule(options)
    assert coarse == {"shrink_factors": (8, 4), "smoothing_sigmas": (3.0, 1.0),
                      "iterations": (200, 100), "bins": 32,
                      "sampling_rate": COARSE_CHECK_SAMPLING_RATE}
    assert options["shrink_factors"] == (8, 4, 2)  # the full schedule is not changed
    # two levels (a T1w of 1.5 mm or coarser): the first level alone, smoothed like the finest
    two = {"shrink_factors": (4, 2), "smoothing_sigmas": (2.0, 1.0), "iterations": (200, 100)}
    assert coarse_schedule(two) == {"shrink_factors": (4,), "smoothing_sigmas": (1.0,),
                                    "iterations": (200,),
                                    "sampling_rate": COARSE_CHECK_SAMPLING_RATE}
    # one level, or no explicit schedule: no coarse step (the full second seed runs)
    assert coarse_schedule({"shrink_factors": (4,), "smoothing_sigmas": (1.0,)}) is None
    assert coarse_schedule({}) is None


@pytest.mark.parametrize("schedule", [THREE_LEVELS, TWO_LEVELS], ids=["three", "two"])
def test_coarse_check_keeps_seed_one_bit_for_bit_and_skips_the_full_second_seed(schedule):
    # real ANTs on a pair with a known pose: the coarse seed-2 run agrees, seed 1 is kept
    fixed = head_phantom(np.random.default_rng(7))
    moving = moved_copy(fixed, TRUE_POSE)
    checked = register_seed_checked(fixed, moving, model="rigid", **schedule)
    plain = register(fixed, moving, model="rigid", seed=1, **schedule)
    assert np.array_equal(checked.matrix, plain.matrix)
    assert checked.similarity == plain.similarity
    check = checked.details["seed_check"]
    assert check["second_run"] == "coarse" and check["passed"] and check["chosen_seed"] == 1
    assert check["nmi"] == [plain.similarity, None] and "coarse" not in check
    # the coarse run lands near seed 1, and seed 1 on the true pose
    assert check["disagreement_mean_mm"] < SEED_CHECK_TOLERANCE_MM / 2
    points = check_points(fixed)
    assert displacement_error(checked.matrix, TRUE_POSE, points)[0] < 1.0


@pytest.mark.slow
def test_failed_coarse_check_runs_the_full_second_seed():
    # a tolerance no two runs meet: the coarse step fails, the full seed 2 is run and the
    # more similar of the two full results is kept, as without the coarse step
    fixed = head_phantom(np.random.default_rng(7))
    moving = moved_copy(fixed, TRUE_POSE)
    checked = register_seed_checked(fixed, moving, model="rigid", tolerance_mm=1e-9,
                                    **THREE_LEVELS)
    check = checked.details["seed_check"]
    assert check["second_run"] == "full" and not check["coarse"]["passed"]
    assert check["coarse"]["disagreement_mean_mm"] > 0 and check["coarse"]["seed"] == 2
    first = register(fixed, moving, model="rigid", seed=1, **THREE_LEVELS)
    second = register(fixed, moving, model="rigid", seed=2, **THREE_LEVELS)
    expected = choose_registration(first, second, check_points(fixed), 1e-9)
    assert np.array_equal(checked.matrix, expected.matrix)
    assert check["nmi"] == [first.similarity, second.similarity]
    # the same with the coarse step switched off: no coarse record, same choice
    full = register_seed_checked(fixed, moving, model="rigid", tolerance_mm=1e-9,
                                 coarse_first=False, **THREE_LEVELS)
    assert "coarse" not in full.details["seed_check"]
    assert np.array_equal(full.matrix, expected.matrix)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [THREE_LEVELS, TWO_LEVELS], ids=["three", "two"])
def test_coarse_check_flags_a_wrong_first_seed_and_keeps_the_true_pose(monkeypatch, schedule):
    # ground truth: seed 1's result is made deliberately wrong (the true pose turned by 12
    # degrees and shifted by 6 mm, with the honest NMI of that wrong matrix); the real coarse
    # seed-2 run must disagree, the full seed 2 run, and the kept result lie on the true pose
    from ironmap.spatial import seedcheck
    from ironmap.spatial.registration import normalized_mutual_information

    fixed = head_phantom(np.random.default_rng(7))
    moving = moved_copy(fixed, TRUE_POSE)
    wrong = TRUE_POSE @ rigid(0, 0, 12, [6.0, 0.0, 0.0])
    real_register = seedcheck.register

    def register_with_bad_seed_one(fixed_img, moving_img, *, seed, **options):
        result = real_register(fixed_img, moving_img, seed=seed, **options)
        if seed != 1:
            return result
        nmi = normalized_mutual_information(fixed_img, moving_img, wrong)
        return Registration(matrix=wrong, similarity=nmi, model=result.model,
                            details=result.details)

    monkeypatch.setattr(seedcheck, "register", register_with_bad_seed_one)
    checked = register_seed_checked(fixed, moving, model="rigid", **schedule)
    check = checked.details["seed_check"]
    points = check_points(fixed)
    assert displacement_error(wrong, TRUE_POSE, points)[0] > 3 * SEED_CHECK_TOLERANCE_MM
    assert check["coarse"]["disagreement_mean_mm"] > SEED_CHECK_TOLERANCE_MM
    assert check["second_run"] == "full" and not check["passed"]
    assert check["chosen_seed"] == 2 and check["nmi"][1] > check["nmi"][0]
    assert displacement_error(checked.matrix, TRUE_POSE, points)[0] < 1.0
