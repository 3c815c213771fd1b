"""A second registration from another metric-sampling seed, as a check of the first.

The affine registration's coarsest level can settle in a wrong optimum for one seed of the
metric's point sampling and not for another; the similarity (NMI) of such a result stays far
above the QC threshold, so the threshold does not catch it. :func:`register_seed_checked`
registers with seed 1 (the result used) and checks it with seed 2, comparing the two matrices
over a brain-sized box around the fixed image's centre (:func:`check_points`).

The check is done in two steps. Seed 2 first runs only the coarse levels of the schedule
(:func:`coarse_schedule`: the finest, most expensive level left out, the metric sampled more
densely; a two-level schedule keeps its first level only). When it agrees with seed 1 within
the tolerance (:data:`SEED_CHECK_TOLERANCE_MM`), seed 1's result is kept unchanged.
Otherwise seed 2 runs the full schedule, as seed 1 did; when the two full results disagree,
the one with the higher NMI is kept and the disagreement is logged as a warning. Both steps
are recorded in ``Registration.details["seed_check"]``.
"""
from __future__ import annotations

import logging

import numpy as np

from ironmap.spatial.registration import Registration, displacement_error, register

log = logging.getLogger(__name__)

#: Mean disagreement (mm) of the two seeds' matrices above which the check fails.
SEED_CHECK_TOLERANCE_MM = 2.0

#: Half-width (mm) of the box of check points around the fixed image's centre (about a brain).
SEED_CHECK_BOX_MM = 60.0

#: Metric sampling rate (fraction of the fixed grid's voxels at each level) of the coarse check
#: run: on the 2 mm working grid of a 1 mm T1w, about 4,200 points at its finest level (8 mm),
#: against about 1,600 there and 12,500 at the finest (4 mm) level in the full schedule.
COARSE_CHECK_SAMPLING_RATE = 0.25

#: Fewest levels a schedule needs for the coarse check (it leaves the finest one out). A
#: two-level schedule (the participant level's for a T1w coarser than 1.5 mm: shrink 4/2 on the
#: 2 mm working grid) keeps its first level only, the 8 mm level the three-level schedule's
#: coarse check ends on too.
COARSE_CHECK_MIN_LEVELS = 2


def check_points(fixed) -> np.ndarray:
    """A 5x5x5 grid of world points (mm) in a box around the fixed image's centre.

    Parameters
    ----------
    fixed : nibabel image
        The fixed image (its affine and shape give the centre).

    Returns
    -------
    ndarray of shape (125, 3)
        RAS world mm.
    """
    centre = fixed.affine @ np.r_[(np.asarray(fixed.shape[:3], float) - 1) / 2, 1.0]
    axis = np.linspace(-SEED_CHECK_BOX_MM, SEED_CHECK_BOX_MM, 5)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return grid + centre[:3]


def choose_registration(first: Registration, second: Registration, points_mm,
                        tolerance_mm: float = SEED_CHECK_TOLERANCE_MM) -> Registration:
    """Keep ``first`` unless the two disagree and ``second`` is more similar.

    Parameters
    ----------
    first, second : Registration
        The same pair registered with two seeds (``first`` is the default one).
    points_mm : array-like of shape (n, 3)
        World points (fixed space, mm) where the matrices are compared.
    tolerance_mm : float
        Mean disagreement above which the check fails.

    Returns
    -------
    Registration
        The kept result (``first``'s matrix and similarity unchanged when the check passes),
        its ``details["seed_check"]`` holding both seeds, both NMIs, the mean and maximum
        disagreement (mm), ``passed`` and ``chosen_seed``.
    """
    mean, worst = displacement_error(first.matrix, second.matrix, points_mm)
    passed = bool(mean <= tolerance_mm)
    chosen = first if passed or not second.similarity > first.similarity else second
    check = {"seeds": [first.details.get("seed"), second.details.get("seed")],
             "nmi": [float(first.similarity), float(second.similarity)],
             "disagreement_mean_mm": round(mean, 3), "disagreement_max_mm": round(worst, 3),
             "tolerance_mm": float(tolerance_mm), "passed": passed,
             "chosen_seed": chosen.details.get("seed")}
    return Registration(matrix=chosen.matrix, similarity=chosen.similarity, model=chosen.model,
                        details={**chosen.details, "seed_check": check})


def describe_check(check: dict) -> str:
    """One line on a two-seed check (the warning's and the QC flag's text).

    Parameters
    ----------
    check : dict
        ``Registration.details["seed_check"]`` (see :func:`choose_registration`).

    Returns
    -------
    str
        The seeds, their mean disagreement, both NMIs and the kept seed.
    """
    return (f"seeds {check['seeds']} disagree by {check['disagreement_mean_mm']:.1f} mm (mean; "
            f"NMI {check['nmi'][0]:.3f} vs {check['nmi'][1]:.3f}); kept seed "
            f"{check['chosen_seed']}")


def coarse_schedule(options: dict) -> dict | None:
    """The coarse check run's schedule: the full schedule without its finest level.

    The kept levels have the full schedule's shrink factors and iterations; the finest kept
    level is smoothed like the full schedule's finest (so that it still resolves the head's
    edges) and the metric samples :data:`COARSE_CHECK_SAMPLING_RATE` of the voxels.

    Parameters
    ----------
    options : dict
        Keywords of :func:`ironmap.spatial.registration.register` (``shrink_factors``,
        ``smoothing_sigmas``, ``iterations``, ...), as the participant level passes them.

    Returns
    -------
    dict or None
        The options of the check run; ``None`` when the schedule is not given explicitly or
        has fewer than :data:`COARSE_CHECK_MIN_LEVELS` levels (the check then runs the full
        schedule).
    """
    shrink, sigmas = options.get("shrink_factors"), options.get("smoothing_sigmas")
    if shrink is None or sigmas is None or len(shrink) < COARSE_CHECK_MIN_LEVELS:
        return None
    coarse = {**options, "shrink_factors": tuple(shrink[:-1]),
              "smoothing_sigmas": (*tuple(sigmas)[:-2], tuple(sigmas)[-1]),
              "sampling_rate": COARSE_CHECK_SAMPLING_RATE}
    if options.get("iterations") is not None:
        coarse["iterations"] = tuple(options["iterations"])[: len(shrink) - 1]
    return coarse


def _coarse_check(first: Registration, coarse: Registration, points_mm,
                  tolerance_mm: float) -> dict:
    """The coarse step's record: its disagreement with ``first`` and whether it passed."""
    mean, worst = displacement_error(first.matrix, coarse.matrix, points_mm)
    return {"seed": coarse.details.get("seed"), "disagreement_mean_mm": round(mean, 3),
            "disagreement_max_mm": round(worst, 3), "passed": bool(mean <= tolerance_mm),
            "shrink_factors": coarse.details.get("shrink_factors"),
            "sampling_rate": coarse.details.get("sampling_rate")}


def register_seed_checked(fixed, moving, *, seeds=(1, 2),
                          tolerance_mm: float = SEED_CHECK_TOLERANCE_MM,
                          label: str = "registration", coarse_first: bool = True,
                          **options) -> Registration:
    """Register with seed 1; check it with seed 2 (coarse levels first, all levels if needed).

    Parameters
    ----------
    fixed, moving : nibabel images, 3D
        As :func:`ironmap.spatial.registration.register`.
    seeds : (int, int)
        The default seed and the check seed.
    tolerance_mm : float
        Mean disagreement (mm, over :func:`check_points`) above which a step of the check
        fails; 0 or None runs only the first seed (no check, no ``seed_check`` in the details).
    label : str
        Names the pair in the warning.
    coarse_first : bool
        Run the coarse check (:func:`coarse_schedule`) first and the full second seed only
        when it fails; ``False`` always runs the full second seed.
    **options
        Passed to :func:`ironmap.spatial.registration.register` (``model``, schedule).

    Returns
    -------
    Registration
        The first seed's result when the coarse check passes (``details["seed_check"]``:
        ``passed``, ``chosen_seed`` 1, the coarse run's disagreement as
        ``disagreement_mean_mm`` / ``disagreement_max_mm``, ``nmi`` [seed 1's, None],
        ``second_run`` "coarse"); otherwise as :func:`choose_registration` on the two full
        runs, with ``second_run`` "full" and the coarse step's record under ``coarse``.
    """
    first = register(fixed, moving, seed=seeds[0], **options)
    if not tolerance_mm:  # the check switched off: the first seed's result, unchecked
        return first
    points = check_points(fixed)
    coarse_options = coarse_schedule(options) if coarse_first else None
    coarse = None
    if coarse_options is not None:
        quick = register(fixed, moving, seed=seeds[1], measure_similarity=False,
                         **coarse_options)
        coarse = _coarse_check(first, quick, points, tolerance_mm)
        if coarse["passed"]:  # seed 1's result, unchanged
            check = {"seeds": [first.details.get("seed"), coarse["seed"]],
                     "nmi": [float(first.similarity), None],
                     "disagreement_mean_mm": coarse["disagreement_mean_mm"],
                     "disagreement_max_mm": coarse["disagreement_max_mm"],
                     "tolerance_mm": float(tolerance_mm), "passed": True, "chosen_seed":
                     first.details.get("seed"), "second_run": "coarse"}
            return Registration(matrix=first.matrix, similarity=first.similarity,
                                model=first.model, details={**first.details, "seed_check": check})
    second = register(fixed, moving, seed=seeds[1], **options)
    reg = choose_registration(first, second, points, tolerance_mm)
    check = reg.details["seed_check"]
    check["second_run"] = "full"
    if coarse is not None:
        check["coarse"] = coarse
    if not check["passed"]:
        log.warning("%s: %s", label, describe_check(check))
    return reg
