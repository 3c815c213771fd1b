"""Checks of image headers before any voxel is read, and of mask values.

A NIfTI header states the image's size; nothing stops a 1 KB file from claiming 1600^3 voxels,
and nibabel allocates what the header claims before it finds out that the data are missing.
:func:`check_header` compares the claim with what the file can hold (uncompressed: its size;
gzip: its size times deflate's largest compression ratio, 1032:1), so such a file is refused in
milliseconds. :func:`check_memory` adds a per-participant ceiling on the image data held in
memory. Images without an sform or qform have no known voxel-to-world mapping; nibabel then
guesses one (1 mm, x flipped), which silently swaps left and right: they are refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["HeaderError", "DEFLATE_MAX_RATIO", "check_header", "check_orientation",
           "check_memory", "check_mask_values", "claimed_bytes"]

#: deflate (gzip) never expands data by more than this factor (zlib technical details)
DEFLATE_MAX_RATIO = 1032
_GIB = 1024.0 ** 3


class HeaderError(ValueError):
    """An image header that cannot be trusted (message names the file and the problem)."""


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", _GIB), ("MiB", 1024.0 ** 2), ("KiB", 1024.0)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def claimed_bytes(header, itemsize: int | None = None) -> int:
    """Bytes of the voxel data a header claims.

    Parameters
    ----------
    header : nibabel header
        A NIfTI (or other nibabel) header.
    itemsize : int, optional
        Bytes per voxel (default: the header's data type).

    Returns
    -------
    int
        Product of the data shape times ``itemsize``.
    """
    shape = tuple(int(s) for s in header.get_data_shape())
    size = int(np.prod(shape, dtype=np.int64)) if shape else 0
    return size * int(itemsize or header.get_data_dtype().itemsize)


def check_header(path: str | os.PathLike, img) -> None:
    """Refuse a header whose claimed size the file cannot hold, or without orientation.

    Parameters
    ----------
    path : path-like
        The image file (``.nii`` or ``.nii.gz``).
    img : nibabel.Nifti1Image or Nifti2Image
        Loaded lazily (header only; no voxel read).

    Raises
    ------
    HeaderError
        Naming the file and the problem.
    """
    p = Path(path)
    header = img.header
    shape = tuple(int(s) for s in header.get_data_shape())
    if not shape or min(shape) < 1:
        raise HeaderError(f"{p}: header claims an empty or negative image shape {shape}")
    need = claimed_bytes(header)
    dtype = header.get_data_dtype()
    claim = f"header claims {'x'.join(map(str, shape))} voxels of {dtype} = {_fmt_bytes(need)}"
    size = p.stat().st_size
    if p.name.endswith(".gz"):
        if need > size * DEFLATE_MAX_RATIO:
            raise HeaderError(f"{p}: {claim}, more than a {_fmt_bytes(size)} gzip file can "
                              f"hold (at most {_fmt_bytes(size * DEFLATE_MAX_RATIO)}): corrupt "
                              "or forged header")
    elif size < int(header.get("vox_offset", 352)) + need:
        raise HeaderError(f"{p}: {claim}, but the file holds only {_fmt_bytes(size)}: "
                          "truncated or corrupt")
    check_orientation(p, img)


def check_orientation(path: str | os.PathLike, img) -> None:
    """Refuse an image without sform/qform, or whose affine is not finite and invertible.

    Parameters
    ----------
    path : path-like
        The file (named in the error).
    img : nibabel image
        Its loaded header and affine.

    Raises
    ------
    HeaderError
        Naming the file and what is wrong.
    """
    p, header = Path(path), img.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        raise HeaderError(f"{p}: no orientation (sform_code = qform_code = 0): the voxel-to-"
                          "world mapping is unknown and left/right cannot be told apart; set "
                          "the sform or qform (e.g. from the scanner's DICOM) instead of "
                          "letting software guess")
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise HeaderError(f"{p}: its voxel-to-world affine is not finite and invertible "
                          f"(rows {np.round(affine[:3], 3).tolist()})")


def check_memory(paths: Iterable[str | os.PathLike], ceiling_gb: float, what: str) -> float:
    """Refuse images whose float32 data together exceed ``ceiling_gb`` (GiB).

    Reads headers only, each checked with :func:`check_header` first.

    Parameters
    ----------
    paths : iterable of path-like
        The images of one participant.
    ceiling_gb : float
        Most GiB of float32 voxel data allowed.
    what : str
        The owner (participant label), named in the message.

    Returns
    -------
    float
        The GiB the images need as float32.

    Raises
    ------
    HeaderError
        Naming the file, when a header is unusable.
    ValueError
        Naming the largest file, when the images together need more than ``ceiling_gb``.
    """
    import nibabel as nib

    sizes = {}
    for path in paths:
        try:
            img = nib.load(str(path))
        except Exception as exc:  # nibabel raises many types for broken headers
            raise HeaderError(f"{path}: not a readable NIfTI image header "
                              f"({' '.join(str(exc).split()) or type(exc).__name__})"
                              ) from exc
        check_header(path, img)
        sizes[Path(path)] = claimed_bytes(img.header, itemsize=4) / _GIB
    total = float(sum(sizes.values()))
    if total > ceiling_gb:
        largest = max(sizes, key=sizes.get)
        raise ValueError(f"{largest}: {what}'s images need {total:.3g} GiB as float32 (this file "
                         f"{sizes[largest]:.3g} GiB), above the {ceiling_gb:g} GiB ceiling per "
                         "participant; raise it with --max-image-gb if the machine has the "
                         "memory")
    return total


def check_mask_values(data: np.ndarray, path: str | os.PathLike, what: str = "mask") -> None:
    """Refuse a mask with negative values (a mask holds 0 = background, >0 = inside).

    Parameters
    ----------
    data : ndarray
        The mask's voxel values (NaN ignored).
    path : path-like
        The file (named in the error).
    what : str, optional
        What the mask is (named in the error).

    Raises
    ------
    ValueError
        Naming the file and the smallest value.
    """
    finite = np.asarray(data)[np.isfinite(data)]
    if finite.size and float(finite.min()) < 0:
        raise ValueError(f"{path}: {what} has negative values (min {float(finite.min()):g}); a "
                         "mask holds 0 (background) and 1 (inside): refusing to guess which "
                         "voxels are meant")
