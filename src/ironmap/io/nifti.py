"""Load and save NIfTI images with one dtype/header policy, plus JSON sidecars."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ironmap.io.atomic import atomic_path, write_json
from ironmap.io.readers import read_json_object
from ironmap.io.sanity import HeaderError, check_header, claimed_bytes

try:  # ISA-L's gzip (the isal package): 4-6x faster than zlib's level 1, 2x in reading
    from isal import igzip as _igzip
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - isal is a dependency; zlib then
    import zlib as _inflate

    _igzip = None

#: ISA-L level of written ``.nii.gz`` images when isal is installed (0-3; 2: as fast as 1 and
#: smaller, within a few per cent of zlib's level 1; 3 is slower and no smaller on noisy maps)
ISAL_LEVEL = 2


class ImageError(ValueError):
    """A file that is not a readable NIfTI image, or whose content is unusable."""


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """The JSON sidecar's path of an image.

    Parameters
    ----------
    image_path : path-like
        ``x.nii.gz`` or ``x.nii``.

    Returns
    -------
    pathlib.Path
        ``x.json``.
    """
    p = Path(image_path)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def load_image(path: str | os.PathLike) -> nib.Nifti1Image:
    """Load a NIfTI image and check that its data can be read completely.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    nibabel.Nifti1Image
        The image (NIfTI-2 images are accepted as well).

    Raises
    ------
    ImageError
        Naming the file, when it is missing, not NIfTI, or truncated.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: file not found")
    try:
        img = nib.load(str(p))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ImageError(f"{p}: not a NIfTI image ({type(img).__name__})")
        check_header(p, img)  # before any voxel is read (claimed size, orientation)
        img = _decompressed(p, img)
        img.get_fdata(dtype=np.float32)  # forces a full read: truncated files fail here
    except ImageError:
        raise
    except HeaderError as exc:
        raise ImageError(str(exc)) from exc
    except Exception as exc:  # nibabel raises many types for broken files
        reason = " ".join(str(exc).split()) or type(exc).__name__  # one line
        raise ImageError(f"{p}: not a readable NIfTI image ({reason})") from exc
    return img


def _decompressed(path: Path, img):
    """``img`` backed by its file's bytes decompressed once, in memory, for a ``.nii.gz``.

    nibabel reads a gzipped image through a stream that it decompresses again on every
    access of ``dataobj`` (the full-read check, then each caller's read); the same bytes held
    uncompressed are read without decompressing. Only the header's claimed extent is
    decompressed (a forged stream cannot grow beyond it). When the stream holds less (truncated,
    or several gzip members) the image is returned as nibabel loaded it, so that its own
    reader decides (and names the error) as before. Header and voxel values are the file's
    either way.
    """
    if not path.name.endswith(".gz"):
        return img
    offset = getattr(img.dataobj, "offset", None)  # where the file's voxel data start
    if offset is None:
        return img
    need = int(offset) + claimed_bytes(img.header)
    try:
        raw = _inflate.decompressobj(wbits=31).decompress(path.read_bytes(), need)
    except _inflate.error:
        return img
    if len(raw) < need:
        return img
    return type(img).from_bytes(raw)


def load_array(path: str | os.PathLike, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Voxel data and affine of a NIfTI file (scaling applied).

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.
    dtype : numpy dtype, optional
        Type of the returned data (default float32).

    Returns
    -------
    data : ndarray of shape (nx, ny, nz[, nt])
        The scaled voxel values.
    affine : ndarray of shape (4, 4)
        Voxel -> world (RAS, mm) matrix.
    """
    img = load_image(path)
    return np.asarray(img.get_fdata(dtype=np.float64), dtype=dtype), img.affine.copy()


def read_sidecar(image_path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar beside an image.

    Parameters
    ----------
    image_path : path-like
        The image.

    Returns
    -------
    dict
        The sidecar, ``{}`` when absent.

    Raises
    ------
    InputError
        Naming the sidecar, when it is not a JSON object.
    """
    sc = sidecar_path(image_path)
    if not sc.exists():
        return {}
    return read_json_object(sc)


def save_image(
    data: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    *,
    dtype=None,
    sidecar: dict[str, Any] | None = None,
    zooms: tuple[float, ...] | None = None,
    compresslevel: int = 6,
) -> Path:
    """Save an array as NIfTI atomically (and its JSON sidecar, if given).

    Float data are written as float32 with NaN kept (NaN marks failed voxels, never 0);
    integer/bool data as the given or a fitting integer type. sform and qform both get code 1
    (scanner). The header is deterministic, so identical inputs give byte-identical files.

    Parameters
    ----------
    data : ndarray of shape (nx, ny, nz[, nt])
        Voxel values.
    affine : ndarray of shape (4, 4)
        Voxel -> world (RAS, mm) matrix.
    path : path-like
        The ``.nii.gz`` (or ``.nii``) file.
    dtype : numpy dtype, optional
        Stored type (default: float32 for floats, uint8 for bool, else the array's).
    sidecar : dict, optional
        Written beside the image as ``<name>.json``.
    zooms : tuple of float, optional
        Header voxel sizes (mm; and the time step) when they differ from the affine's.
    compresslevel : int, optional
        zlib's gzip level 1-9 (speed against size), used when the isal package is missing;
        with it, ``.nii.gz`` images are written by ISA-L at :data:`ISAL_LEVEL` (the same
        header and voxel bytes, a different and deterministic gzip stream).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    arr = np.asarray(data)
    if dtype is None:
        if arr.dtype == bool:
            dtype = np.uint8
        elif np.issubdtype(arr.dtype, np.floating):
            dtype = np.float32
        else:
            dtype = arr.dtype
    arr = arr.astype(dtype, copy=False)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=float))
    img.header.set_data_dtype(dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header["xyzt_units"] = 2 + 8  # mm, s
    if zooms is not None:
        img.header.set_zooms(zooms)
    p = Path(path)
    with atomic_path(p) as tmp:
        _save_deterministic(img, tmp, compresslevel)
    if sidecar is not None:
        write_json(sidecar_path(p), sidecar)
    return p


def _save_deterministic(img: nib.Nifti1Image, path: Path, compresslevel: int = 6) -> None:
    """Save without a gzip timestamp so that the same data give the same bytes."""
    import gzip

    if path.name.endswith(".gz"):
        raw = img.to_bytes()
        if _igzip is not None:
            path.write_bytes(_igzip.compress(raw, ISAL_LEVEL, mtime=0))
            return
        with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0,
                                                   filename="", compresslevel=compresslevel) as gz:
            gz.write(raw)
    else:
        img.to_filename(str(path))
