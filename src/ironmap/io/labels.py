"""The BIDS label rule (``sub-<label>``, ``ses-<label>``: letters and digits only), in one place.

Used by ``import-dicom`` and by the BIDS-App's ``--participant-label``/``--session-label`` at
parse time, so that a label one command refuses is refused by the other too. Light on purpose
(no numpy/nibabel): the command-line parser imports it.
"""

from __future__ import annotations

import re

__all__ = ["bids_label"]

_LABEL = re.compile(r"[A-Za-z0-9]+")


def bids_label(value: str, prefix: str) -> str:
    """The label of a BIDS entity value without its prefix, checked.

    Parameters
    ----------
    value : str
        ``sub-01`` or ``01``.
    prefix : str
        The entity (``"sub"``, ``"ses"``).

    Returns
    -------
    str
        The label (``01``).

    Raises
    ------
    ValueError
        For a label that is not letters and digits only.

    Examples
    --------
    >>> bids_label("sub-01", "sub")
    '01'
    """
    label = str(value)
    if label.startswith(prefix + "-"):
        label = label[len(prefix) + 1:]
    if not _LABEL.fullmatch(label):
        raise ValueError(f"invalid {prefix} label {value!r}: letters and digits only (BIDS)")
    return label
