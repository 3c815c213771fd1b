"""A second registration from another metric-sampling seed, as a check of the first.

The affine registration's coarsest level can settle in a wrong optimum for one seed of the
metric's point sampling and not for another; the similarity (NMI) of such a result stays far
above the QC threshold, so the threshold does not catch it. :func:`register_seed_checked`
registers twice (seeds 1 and 2) and measures how far the two matrices disagree over a
brain-sized box around the fixed image's centre. When they agree within
:data:`SEED_CHECK_TOLERANCE_MM`, the first (seed 1) result is kept unchanged; otherwise the
one with the higher NMI is kept and the disagreement is logged as a warning. Both results are
recorded in ``Registration.details["seed_check"]``.
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


def register_seed_checked(fixed, moving, *, seeds=(1, 2),
                          tolerance_mm: float = SEED_CHECK_TOLERANCE_MM,
                          label: str = "registration", **options) -> Registration:
    """Register with two metric-sampling seeds and keep the consistent or more similar result.

    Parameters
    ----------
    fixed, moving : nibabel images, 3D
        As :func:`ironmap.spatial.registration.register`.
    seeds : (int, int)
        The default seed and the check seed.
    tolerance_mm : float
        Mean disagreement (mm, over :func:`check_points`) above which the check fails; 0 or
        None runs only the first seed (no check, no ``seed_check`` in the details).
    label : str
        Names the pair in the warning.
    **options
        Passed to :func:`ironmap.spatial.registration.register` (``model``, schedule).

    Returns
    -------
    Registration
        See :func:`choose_registration`.
    """
    first = register(fixed, moving, seed=seeds[0], **options)
    if not tolerance_mm:  # the check switched off: the first seed's result, unchecked
        return first
    second = register(fixed, moving, seed=seeds[1], **options)
    reg = choose_registration(first, second, check_points(fixed), tolerance_mm)
    check = reg.details["seed_check"]
    if not check["passed"]:
        log.warning("%s: %s", label, describe_check(check))
    return reg
