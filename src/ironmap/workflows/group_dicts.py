"""The ``stats.json`` document of the group level.

The column dictionaries of the group tables live in :mod:`ironmap.io.dictionaries` (beside the
derivative layout); they are re-exported here for existing callers.
"""

from __future__ import annotations

import math
import platform
from typing import Any

import numpy as np
import pandas as pd

from ironmap.io.dictionaries import (  # noqa: F401 - re-exported
    AGECORR_COLUMN,
    AGECORR_SD_COLUMN,
    agefit_dictionary,
    table1_dictionary,
    table2_dictionary,
)


def clean_json(obj: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python numbers, recursively.

    Parameters
    ----------
    obj : object
        A JSON-like structure.

    Returns
    -------
    object
        The cleaned copy.
    """
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def stats_document(*, settings, reference_age, subjects, sources, records, lesions,
                   multicenter, exclusions, fits, participants_meta) -> dict:
    """The machine-readable summary written to ``stats.json``.

    Parameters
    ----------
    settings : GroupSettings
        The group settings.
    reference_age : float
        Years.
    subjects : pandas.DataFrame
        The analysed participants.
    sources : dict
        Where lesion and volume values came from.
    records : list of dict
        Test records.
    lesions : dict
        Lesion analysis.
    multicenter : dict
        Region -> multicenter details.
    exclusions : dict
        Excluded participants and notes.
    fits : pandas.DataFrame
        ``agefit.tsv``.
    participants_meta : dict
        ``participants.json``.

    Returns
    -------
    dict
        The document (JSON-clean).
    """
    import scipy
    import statsmodels

    from ironmap import __version__

    counts = subjects.groupby("group").size().to_dict()
    doc = {
        "GeneratedBy": {"Name": "ironmap", "Version": __version__},
        "software": {"python": platform.python_version(), "scipy": scipy.__version__,
                     "statsmodels": statsmodels.__version__, "pandas": pd.__version__},
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "reference_age_years": reference_age,
        "reference_age": reference_age,
        "n_participants": int(len(subjects)), "n_per_group": counts,
        "sources": sources,
        "conventions": {
            "age_correction": f"age model '{settings.age_model}' fitted on controls per region "
            "and hemisphere (see age_model and agefit); adjusted = y - f(age) + f(reference "
            "age); lesion R2* not age-corrected",
            "mann_whitney": "U of the first group; exact p without ties and n < 50, else "
            "normal approximation with tie and continuity correction; two-sided",
            "correlation": f"{settings.correlation_method}: Pearson when Shapiro-Wilk does not "
            f"reject normality of both variables at {settings.normality_alpha}, else Spearman",
            "stepwise": f"forward stepwise OLS, enter p < {settings.p_enter}, remove p > "
            f"{settings.p_remove}; candidates: variables correlated at p < {settings.alpha}",
            "ttest": "F minus M; Student's (pooled) and Welch's t, two-sided",
            "fdr": "Benjamini-Hochberg across regions, per comparison" if settings.fdr
            else "none",
        },
        "exclusions": exclusions,
        "agefit": fits.to_dict(orient="records"),
        "tests": records,
        "lesions": lesions,
        "multicenter": multicenter,
        "participants_dictionary": participants_meta,
    }
    return clean_json(doc)
