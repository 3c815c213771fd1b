"""The participant page's slice viewer: volumes encoded for a self-contained page.

The viewer is a small canvas script (``report/static/viewer.js``, plain JavaScript, no
library, no network). This module crops and, when needed, downsamples the R2* map, the region
labels and the lesion mask, quantises R2* to 8 bits and encodes each volume as base64 of
zlib-compressed bytes (the browser inflates them with ``DecompressionStream``), so that a
participant page stays small (``docs/report.md`` lists measured sizes).

Volumes are 3-D arrays in closest-RAS voxel order, the same as the figures.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ironmap.core.regions.bounding_box import mask_box

#: most voxels a volume may have in the page (after cropping); larger ones are downsampled
MAX_VOXELS = 3_500_000
SCRIPT = Path(__file__).with_name("static") / "viewer.js"


@dataclass
class ViewerData:
    """What the page embeds: a JSON payload for the script, and its size in bytes."""

    payload: str
    n_bytes: int
    shape: tuple[int, int, int]
    step: int


try:  # ISA-L's deflate: about 50x less CPU than zlib's level 9 here, 0.4 % more bytes
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib then
    _isal_zlib = None


def _b64(arr: np.ndarray) -> str:
    raw = np.ascontiguousarray(arr, dtype=np.uint8).tobytes(order="F")
    # the same zlib stream format either way (the page inflates it with DecompressionStream)
    packed = _isal_zlib.compress(raw, 3) if _isal_zlib is not None else zlib.compress(raw, 9)
    return base64.b64encode(packed).decode("ascii")


def crop_box(mask: np.ndarray, margin: int = 2) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` with ``margin`` voxels.

    Parameters
    ----------
    mask : ndarray of bool, shape (nx, ny, nz)
        The voxels to keep.
    margin : int, optional
        Voxels added on every side (within the grid).

    Returns
    -------
    tuple of slice
        One slice per axis; the whole grid when the mask is empty.
    """
    box = mask_box(mask, margin)
    if box is None:
        return tuple(slice(0, n) for n in np.shape(mask))  # type: ignore[return-value]
    return box  # type: ignore[return-value]


def quantise(r2star: np.ndarray, vmax: float) -> tuple[np.ndarray, float]:
    """R2* -> uint8 codes: 0 = no value, 1..255 = 0..``vmax`` (clipped).

    ``value = (code - 1) * step``, ``step = vmax / 254`` s^-1.

    Parameters
    ----------
    r2star : ndarray
        R2* in s^-1 (NaN: no value).
    vmax : float
        Top of the coded range, s^-1.

    Returns
    -------
    codes : ndarray of uint8
        Shape of ``r2star``.
    step : float
        s^-1 per code.
    """
    step = float(vmax) / 254.0 if vmax > 0 else 1.0
    finite = np.isfinite(r2star)
    codes = np.zeros(r2star.shape, np.uint8)
    codes[finite] = (np.clip(np.round(r2star[finite] / step), 0, 254) + 1).astype(np.uint8)
    return codes, step


def viewer_data(r2star: np.ndarray, *, head: np.ndarray | None = None,
                labels: np.ndarray | None = None, lesion: np.ndarray | None = None,
                voxel_sizes: tuple[float, float, float] = (1.0, 1.0, 1.0),
                window: tuple[float, float] = (0.0, 100.0),
                label_colors: dict[int, str] | None = None,
                label_names: dict[int, str] | None = None,
                max_voxels: int = MAX_VOXELS) -> ViewerData:
    """Encode the volumes for the viewer.

    Parameters
    ----------
    r2star : ndarray of shape (X, Y, Z)
        s^-1, NaN where there is no value; voxels outside ``head`` are dropped.
    head : ndarray of shape (X, Y, Z) of bool, optional
        Voxels to show (the grid is cropped to their bounding box).
    labels, lesion : ndarray of shape (X, Y, Z), optional
        Region labels (int, 0 = none; values above 255 are not shown) and lesion mask.
    voxel_sizes : (float, float, float)
        mm, for the aspect ratio of the views.
    window : (float, float)
        Initial display range in s^-1 (the page states it).
    label_colors, label_names : dict, optional
        Label value -> colour (``#rrggbb``) and name (the legend).
    max_voxels : int
        Above this many voxels after cropping, every ``step``-th voxel is kept in-plane.

    Returns
    -------
    ViewerData
        The JSON payload for the script (zlib + base64 uint8 codes, legend, window), its
        size in bytes, the cropped shape and the in-plane step.
    """
    r2 = np.asarray(r2star, float)
    keep = np.isfinite(r2) if head is None else np.asarray(head, bool) & np.isfinite(r2)
    box = crop_box(keep)
    r2 = np.where(keep, r2, np.nan)[box]
    step = 1
    while r2[::step, ::step].size > max_voxels:
        step += 1
    r2 = r2[::step, ::step]
    vmax = max(float(window[1]) * 2.0, 1.0)  # room to widen the window in the page
    codes, scale = quantise(r2, vmax)
    doc = {"shape": list(codes.shape), "step": step,
           "voxel_mm": [float(voxel_sizes[0]) * step, float(voxel_sizes[1]) * step,
                        float(voxel_sizes[2])],
           "r2star": _b64(codes), "scale": scale,
           "window": [float(window[0]), float(window[1])],
           "labels": None, "lesion": None, "colors": {}, "names": {}}
    if labels is not None:
        lab = np.asarray(labels)[box][::step, ::step]
        lab = np.where((lab > 0) & (lab < 256), lab, 0).astype(np.uint8)
        doc["labels"] = _b64(lab)
        present = {int(v) for v in np.unique(lab) if v}
        doc["colors"] = {str(k): v for k, v in (label_colors or {}).items() if k in present}
        doc["names"] = {str(k): v for k, v in (label_names or {}).items() if k in present}
    if lesion is not None:
        doc["lesion"] = _b64((np.asarray(lesion)[box][::step, ::step] != 0).astype(np.uint8))
    payload = json.dumps(doc, separators=(",", ":")).replace("</", "<\\/")
    return ViewerData(payload, len(payload.encode()), tuple(codes.shape), step)


def script() -> str:
    """The viewer's JavaScript (inlined into the page).

    Returns
    -------
    str
        The content of ``report/static/viewer.js``.
    """
    return SCRIPT.read_text(encoding="utf-8")
