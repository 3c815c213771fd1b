"""One participant's regional R2* from automatic labels beside its rater-mask values.

``ironmap demo`` processes one participant both ways (rater masks, automatic anatomy) and
reports the difference per region; this module compares the two regional tables. Pure
pandas/numpy: the tables are read and written by the caller.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ironmap.core.regions.names import REGIONS

#: Columns of the comparison table, in order (``participant_id`` first).
CHECK_COLUMNS = ("participant_id", "region", "hemisphere", "r2star_rater", "r2star_automatic",
                 "difference", "difference_pct", "n_voxels_rater", "n_voxels_automatic",
                 "dice")

#: Column dictionary of the comparison table.
CHECK_DICTIONARY: dict[str, dict[str, str]] = {
    "participant_id": {"Description": "The participant processed both ways (rater masks and "
                       "automatic anatomy)"},
    "region": {"Description": "Canonical deep grey-matter region"},
    "hemisphere": {"Description": "left, right or bilateral (left and right voxels pooled)"},
    "r2star_rater": {"Description": "Mean R2* over the eroded, quality-passed voxels of the "
                     "rater mask", "Units": "1/s"},
    "r2star_automatic": {"Description": "Mean R2* over the eroded, quality-passed voxels of "
                         "the automatic (template + atlas) label", "Units": "1/s"},
    "difference": {"Description": "r2star_automatic - r2star_rater", "Units": "1/s"},
    "difference_pct": {"Description": "100 * difference / r2star_rater", "Units": "%"},
    "n_voxels_rater": {"Description": "Voxels measured with the rater mask (after erosion and "
                       "quality exclusion)"},
    "n_voxels_automatic": {"Description": "Voxels measured with the automatic label (after "
                           "erosion and quality exclusion)"},
    "dice": {"Description": "Dice overlap of the rater and automatic labels of the region on "
             "the R2* grid, before erosion (bilateral rows; n/a for one hemisphere)"},
}


def _values(table: pd.DataFrame) -> pd.DataFrame:
    keep = table[table["region"].isin(REGIONS)]
    return keep.set_index(["region", "hemisphere"])[["r2star_mean", "n_voxels"]]


def compare_regional(rater: pd.DataFrame, automatic: pd.DataFrame, participant_id: str,
                     dice: dict[str, float] | None = None) -> pd.DataFrame:
    """Rater-mask and automatic regional R2* of one participant, row by row.

    Parameters
    ----------
    rater, automatic : pandas.DataFrame
        The participant's two regional tables (``desc-regions_r2star.tsv``: ``region``,
        ``hemisphere``, ``r2star_mean`` in s^-1, ``n_voxels``).
    participant_id : str
        The participant (written in every row).
    dice : dict, optional
        Region -> Dice of the two label sets (bilateral rows).

    Returns
    -------
    pandas.DataFrame
        :data:`CHECK_COLUMNS`; one row per seed region and hemisphere in either table, in
        the seed's region order (bilateral, left, right). A region missing from one table
        has n/a there and in the differences; 0 voxels give n/a for the mean.
    """
    r, a = _values(rater), _values(automatic)
    keys = r.index.union(a.index)
    hemis = {"bilateral": 0, "left": 1, "right": 2}
    keys = sorted(keys, key=lambda k: (REGIONS.index(k[0]), hemis.get(k[1], 3), k[1]))
    rows = []
    for region, hemi in keys:
        vr = r.loc[(region, hemi)] if (region, hemi) in r.index else None
        va = a.loc[(region, hemi)] if (region, hemi) in a.index else None
        mr = float(vr["r2star_mean"]) if vr is not None else np.nan
        ma = float(va["r2star_mean"]) if va is not None else np.nan
        diff = ma - mr
        rows.append({
            "participant_id": participant_id, "region": region, "hemisphere": hemi,
            "r2star_rater": mr, "r2star_automatic": ma, "difference": diff,
            "difference_pct": 100.0 * diff / mr if np.isfinite(mr) and mr != 0 else np.nan,
            "n_voxels_rater": int(vr["n_voxels"]) if vr is not None else 0,
            "n_voxels_automatic": int(va["n_voxels"]) if va is not None else 0,
            "dice": (dice or {}).get(region, np.nan) if hemi == "bilateral" else np.nan,
        })
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS))


def label_dice(rater_labels: np.ndarray, rater_names: dict[int, str],
               automatic_labels: np.ndarray, automatic_names: dict[int, str]) -> dict[str, float]:
    """Dice of two label images per seed region (hemispheres pooled).

    Parameters
    ----------
    rater_labels, automatic_labels : numpy.ndarray
        Integer label images on the same grid.
    rater_names, automatic_names : dict
        Label index -> label name of each image (``dseg.tsv``); names are mapped to regions
        with :func:`ironmap.core.regions.regional_values.region_key`; a composite region
        (``putamen``) is the union of its parts.

    Returns
    -------
    dict
        Region -> Dice (NaN when neither image has the region).
    """
    from ironmap.core.regions.names import COMPOSITE_REGIONS
    from ironmap.core.regions.regional_values import region_key

    if rater_labels.shape != automatic_labels.shape:
        raise ValueError(f"label images differ in shape: {rater_labels.shape} vs "
                         f"{automatic_labels.shape}")

    def mask(labels: np.ndarray, names: dict[int, str], region: str) -> np.ndarray:
        parts = COMPOSITE_REGIONS.get(region, ()) + (region,)
        keep = [i for i, n in names.items() if region_key(str(n))[0] in parts]
        return np.isin(labels, keep)

    out = {}
    for region in REGIONS:
        m_r = mask(rater_labels, rater_names, region)
        m_a = mask(automatic_labels, automatic_names, region)
        total = int(m_r.sum()) + int(m_a.sum())
        out[region] = 2.0 * float((m_r & m_a).sum()) / total if total else float("nan")
    return out
