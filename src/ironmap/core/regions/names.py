"""Deep grey-matter regions of the seed study and label-name parsing.

Canonical region names (lower snake case) are used in every table. Label names from rater
``dseg.tsv`` files, FreeSurfer/FastSurfer ``aseg`` or atlases are mapped onto them; names that
differ only by a hemisphere token (``Left-``/``Right-``, ``_L``/``_R``, ``lh-``/``rh-``) are
merged into one bilateral region.
"""

from __future__ import annotations

import re

#: The seed study's regions, in its Table 2 order. ``putamen`` is the union of its two parts.
REGIONS: tuple[str, ...] = (
    "caudate",
    "putamen",
    "putamen_anterior",
    "putamen_posterior",
    "globus_pallidus",
    "substantia_nigra",
    "red_nucleus",
    "dentate_nucleus",
)

#: Human-readable names for tables and figures.
REGION_TITLES: dict[str, str] = {
    "caudate": "Caudate nucleus",
    "putamen": "Putamen",
    "putamen_anterior": "Putamen, anterior",
    "putamen_posterior": "Putamen, posterior",
    "globus_pallidus": "Globus pallidus",
    "substantia_nigra": "Substantia nigra",
    "red_nucleus": "Red nucleus",
    "dentate_nucleus": "Dentate nucleus",
}

#: Regions made of other regions (computed as the union of their parts).
COMPOSITE_REGIONS: dict[str, tuple[str, ...]] = {
    "putamen": ("putamen_anterior", "putamen_posterior"),
}

#: Label-name stems (lower case, hemisphere token removed, separators normalised to "_")
#: mapped to canonical regions.
_ALIASES: dict[str, str] = {
    "caudate": "caudate",
    "caudate_nucleus": "caudate",
    "putamen": "putamen",
    "putamen_anterior": "putamen_anterior",
    "anterior_putamen": "putamen_anterior",
    "putamen_posterior": "putamen_posterior",
    "posterior_putamen": "putamen_posterior",
    "pallidum": "globus_pallidus",
    "globus_pallidus": "globus_pallidus",
    "substantia_nigra": "substantia_nigra",
    "sn": "substantia_nigra",
    "red_nucleus": "red_nucleus",
    "rn": "red_nucleus",
    "dentate": "dentate_nucleus",
    "dentate_nucleus": "dentate_nucleus",
}

#: Standard FreeSurfer aseg label numbers that ironmap understands.
ASEG_LABELS: dict[int, str] = {
    11: "Left-Caudate",
    50: "Right-Caudate",
    12: "Left-Putamen",
    51: "Right-Putamen",
    13: "Left-Pallidum",
    52: "Right-Pallidum",
}

_HEMI_PATTERNS = (
    (re.compile(r"^(left|lh|l)[-_ .]+", re.I), "left"),
    (re.compile(r"^(right|rh|r)[-_ .]+", re.I), "right"),
    (re.compile(r"[-_ .]+(left|lh|l)$", re.I), "left"),
    (re.compile(r"[-_ .]+(right|rh|r)$", re.I), "right"),
)


def split_hemisphere(label_name: str) -> tuple[str, str]:
    """Split a label name into ``(stem, hemisphere)``.

    ``hemisphere`` is ``"left"``, ``"right"`` or ``"bilateral"`` (no token found).

    Parameters
    ----------
    label_name : str
        A label name.

    Returns
    -------
    stem : str
        The name without its hemisphere token.
    hemisphere : str
        ``left``, ``right`` or ``bilateral``.

    Examples
    --------
    >>> split_hemisphere("Left-Caudate")
    ('Caudate', 'left')
    >>> split_hemisphere("Red_Nucleus_R")
    ('Red_Nucleus', 'right')
    >>> split_hemisphere("rh-putamen")
    ('putamen', 'right')
    """
    name = label_name.strip()
    for pattern, hemi in _HEMI_PATTERNS:
        if pattern.search(name):
            return pattern.sub("", name), hemi
    return name, "bilateral"


def canonical_region(label_name: str) -> tuple[str | None, str]:
    """Map a label name to ``(canonical region or None, hemisphere)``.

    Parameters
    ----------
    label_name : str
        A label name.

    Returns
    -------
    region : str or None
        Canonical region, None when the name names none.
    hemisphere : str
        ``left``, ``right`` or ``bilateral``.

    Examples
    --------
    >>> canonical_region("Left-Putamen-Anterior")
    ('putamen_anterior', 'left')
    >>> canonical_region("Right-Pallidum")
    ('globus_pallidus', 'right')
    >>> canonical_region("Left-Thalamus")
    (None, 'left')
    """
    stem, hemi = split_hemisphere(label_name)
    key = re.sub(r"[-\s.]+", "_", stem.strip().lower())
    return _ALIASES.get(key), hemi


def region_label_name(region: str, hemisphere: str) -> str:
    """FreeSurfer-style label name for a canonical region.

    Parameters
    ----------
    region : str
        Canonical region.
    hemisphere : str
        ``left`` or ``right``.

    Returns
    -------
    str
        E.g. ``Left-Putamen-Anterior``.
    """
    base = {
        "caudate": "Caudate",
        "putamen": "Putamen",
        "putamen_anterior": "Putamen-Anterior",
        "putamen_posterior": "Putamen-Posterior",
        "globus_pallidus": "Pallidum",
        "substantia_nigra": "Substantia-Nigra",
        "red_nucleus": "Red-Nucleus",
        "dentate_nucleus": "Dentate",
    }[region]
    if hemisphere == "bilateral":
        return base
    return f"{hemisphere.capitalize()}-{base}"
