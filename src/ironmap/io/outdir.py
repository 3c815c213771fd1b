"""Where OUTPUT_DIR may be: never on, inside or around a dataset that ironmap reads.

An OUTPUT_DIR equal to a ``--masks`` derivative would have its ``dataset_description.json``
overwritten and gain ``_dseg`` files that the next run reads as rater masks; one that holds
BIDS_DIR or a mask dataset mixes ironmap's ``sub-*`` folders with the inputs'.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["output_dir_problem"]


def _relation(out: Path, other: Path) -> str | None:
    if out == other:
        return "is"
    if other in out.parents:
        return "is inside"
    if out in other.parents:
        return "contains"
    return None


def output_dir_problem(output_dir: str | os.PathLike, bids_dir: str | os.PathLike,
                       masks: Iterable[str | os.PathLike] = ()) -> str | None:
    """One-line reason why ``output_dir`` is refused, or None when it is usable.

    Refused: OUTPUT_DIR equal to, inside or containing a ``--masks`` dataset; OUTPUT_DIR
    containing BIDS_DIR. (OUTPUT_DIR equal to BIDS_DIR or inside its raw tree is checked by the
    caller, which allows ``BIDS_DIR/derivatives/<name>``.)

    Parameters
    ----------
    output_dir : path-like
        OUTPUT_DIR.
    bids_dir : path-like
        BIDS_DIR.
    masks : iterable of path-like, optional
        The ``--masks`` derivative datasets.

    Returns
    -------
    str or None
        The reason, naming both folders; None when OUTPUT_DIR is usable.
    """
    out = Path(output_dir).resolve()
    raw = Path(bids_dir).resolve()
    for mask in masks:
        root = Path(mask).resolve()
        relation = _relation(out, root)
        if relation:
            return (f"{out}: OUTPUT_DIR {relation} the --masks dataset {root}; ironmap would "
                    "overwrite or mix with the raters' files there: choose another folder")
    if raw in out.parents or out == raw:
        return None
    if _relation(out, raw) == "contains":
        return (f"{out}: OUTPUT_DIR contains the BIDS dataset {raw}; choose a folder beside it "
                f"or {raw / 'derivatives' / 'ironmap'}")
    return None
