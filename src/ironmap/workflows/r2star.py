"""Single-image R2* mapping: NIfTI echoes in, R2*/S0/flag (/T2*) maps with sidecars out."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ironmap._types import R2starFit
from ironmap.core.r2star import estimators
from ironmap.core.r2star.fit_flags import FLAGS_INVALID, describe_flags, failure_fraction
from ironmap.core.r2star.relaxometry import fit_r2star

LOG = logging.getLogger(__name__)

#: estimator name -> one-line description (sidecar ``EstimationMethodDescription``), derived
#: from the table in :mod:`ironmap.core.r2star.estimators`.
METHOD_DESCRIPTIONS = {name: est.description for name, est in estimators.ESTIMATORS.items()}


class InputMismatchError(ValueError):
    """Echo images that do not share one voxel grid."""


def stack_echo_images(echo_images: Sequence, names: Sequence[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Stack echo images into one ``(X, Y, Z, n_echoes)`` float32 array (Fortran order).

    Parameters
    ----------
    echo_images : sequence of nibabel images
        One 4D image (echoes along the 4th axis) or several 3D images, one per echo.
    names : sequence of str, optional
        Labels (file names) used in error messages.

    Returns
    -------
    data : ndarray of shape (X, Y, Z, n_echoes), float32
    affine : ndarray of shape (4, 4)

    Raises
    ------
    InputMismatchError
        Echoes of different shape or affine.
    """
    imgs = list(echo_images)
    names = list(names) if names is not None else [f"echo {k + 1}" for k in range(len(imgs))]
    if len(imgs) == 1 and len(imgs[0].shape) == 4:
        return np.asarray(imgs[0].get_fdata(dtype=np.float32)), imgs[0].affine.copy()
    ref_shape, ref_aff = tuple(imgs[0].shape), imgs[0].affine
    for img, name in zip(imgs[1:], names[1:], strict=True):
        if tuple(img.shape) != ref_shape:
            raise InputMismatchError(f"{name}: shape {tuple(img.shape)} differs from "
                                     f"{names[0]} {ref_shape}")
        if not np.allclose(img.affine, ref_aff, atol=1e-3):
            raise InputMismatchError(f"{name}: affine differs from {names[0]}; echoes must "
                                     "share one voxel grid")
    if len(ref_shape) != 3:
        raise InputMismatchError(f"{names[0]}: expected 3D echo images, got shape {ref_shape}")
    data = np.empty((*ref_shape, len(imgs)), dtype=np.float32, order="F")
    for k, img in enumerate(imgs):
        data[..., k] = img.get_fdata(dtype=np.float32)
    return data, ref_aff.copy()


def select_echoes(data: np.ndarray, echo_times, numbers: Sequence[int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Keep the echoes numbered ``numbers`` (1-based, in the order given).

    Parameters
    ----------
    data : ndarray of shape (X, Y, Z, n_echoes)
        Stacked echoes.
    echo_times : sequence of float, length n_echoes
        Echo times in s.
    numbers : sequence of int
        1-based echo numbers to keep; at least two, each at most ``n_echoes``.

    Returns
    -------
    data : ndarray of shape (X, Y, Z, len(numbers))
    echo_times : ndarray of shape (len(numbers),), s

    Raises
    ------
    ValueError
        Fewer than two numbers, repeated numbers, or a number outside 1..n_echoes.
    """
    n = data.shape[-1]
    idx = [int(k) for k in numbers]
    if len(idx) < 2:
        raise ValueError(f"--echoes selects {len(idx)} echo; R2* needs at least two")
    if len(set(idx)) != len(idx):
        raise ValueError(f"--echoes repeats an echo: {idx}")
    bad = [k for k in idx if not 1 <= k <= n]
    if bad:
        raise ValueError(f"--echoes {bad} outside 1..{n} (the input has {n} echoes)")
    pick = [k - 1 for k in idx]
    return data[..., pick], np.asarray(echo_times, dtype=float)[pick]


def fit_images(echo_images, echo_times, method: str = "auto", mask_image=None,
               **opts) -> tuple[R2starFit, np.ndarray]:
    """Fit R2* on nibabel echo images.

    Parameters
    ----------
    echo_images : nibabel image or sequence of images
        A 4D image or one 3D image per echo (same shape and affine).
    echo_times : sequence of float
        Echo times in s.
    method : str
        Estimator, see :func:`ironmap.core.r2star.relaxometry.fit_r2star`.
    mask_image : nibabel image, optional
        Voxels to fit (non-zero), on the echoes' grid.
    **opts
        Passed to :func:`~ironmap.core.r2star.relaxometry.fit_r2star`; ``echo_select`` (1-based
        echo numbers) fits a subset of the echoes, see :func:`select_echoes`.

    Returns
    -------
    (R2starFit, affine)
    """
    if hasattr(echo_images, "affine"):
        echo_images = [echo_images]
    select = opts.pop("echo_select", None)
    data, affine = stack_echo_images(echo_images, opts.pop("names", None))
    if select is not None:
        data, echo_times = select_echoes(data, echo_times, select)
    mask = None
    if mask_image is not None:
        if tuple(mask_image.shape[:3]) != data.shape[:3] or not np.allclose(
                mask_image.affine, affine, atol=1e-3):
            raise InputMismatchError("mask: shape or affine differs from the echoes")
        mask = np.asanyarray(mask_image.dataobj).reshape(data.shape[:3]) > 0
    fit = fit_r2star(data, echo_times, method, mask=mask, **opts)
    LOG.info("R2* (%s): %d voxels, %.1f%% without a value", fit.method,
             fit.r2star.size, 100 * failure_fraction(fit.flags))
    return fit, affine


def r2star_sidecar(fit: R2starFit, extra: dict[str, Any] | None = None,
                   units: str = "1/s") -> dict[str, Any]:
    """JSON sidecar of an R2* (or derived) map: units, estimator, echo times, provenance.

    Parameters
    ----------
    fit : R2starFit
        The fit.
    extra : dict, optional
        Further keys.
    units : str, optional
        Units of the map.

    Returns
    -------
    dict
        The sidecar.
    """
    from ironmap import __version__
    from ironmap.io.outputs import command_line

    side: dict[str, Any] = {
        "Units": units,
        "EstimationMethod": fit.method,
        "EstimationMethodDescription": estimators.description(fit.method),
        "EchoTime": [float(t) for t in fit.echo_times],
        "EchoTimeUnits": "s",
        "InvalidValue": "NaN (see the fit-flags map)",
        "GeneratedBy": [{"Name": "ironmap", "Version": __version__,
                         "Command": command_line()}],
    }
    if fit.sigma is not None:
        side["NoiseSigma"] = float(fit.sigma)
    if extra:
        side.update(extra)
    return side


def write_r2star_outputs(fit: R2starFit, affine, r2star_path, *, s0_path=None,
                         flags_path=None, t2star_path=None, rmse_path=None,
                         sidecar_extra: dict[str, Any] | None = None,
                         overwrite: bool = True) -> list[Path]:
    """Write the maps of a fit atomically, each with a JSON sidecar.

    Parameters
    ----------
    fit : R2starFit
    affine : ndarray of shape (4, 4)
    r2star_path : path
        ``*_R2starmap.nii.gz`` (float32, 1/s, NaN where invalid).
    s0_path, flags_path, t2star_path, rmse_path : path, optional
        S0 map (signal units), flag map (uint16 bit field), T2* (s), RMS residual.
    sidecar_extra : dict, optional
        Added to every sidecar.
    overwrite : bool
        When False, refuse (before writing anything) if any output exists.

    Returns
    -------
    list of Path
        The image paths written.
    """
    from ironmap.io.atomic import check_writable
    from ironmap.io.nifti import save_image

    items = [(r2star_path, fit.r2star, "1/s"), (s0_path, fit.s0, "arbitrary"),
             (flags_path, fit.flags, None), (t2star_path, None, "s"),
             (rmse_path, fit.rmse, "arbitrary")]
    items = [it for it in items if it[0] is not None]
    for path, *_ in items:
        check_writable(path, overwrite)
    written = []
    for path, arr, units in items:
        extra = dict(sidecar_extra or {})
        if path == flags_path:
            extra["Levels"] = {str(b): f"{n}: {d}" for b, (n, d) in describe_flags().items()}
            extra["InvalidBits"] = int(FLAGS_INVALID)
            side = r2star_sidecar(fit, extra, units="bit field")
        else:
            if path == t2star_path:
                arr = fit.t2star
            side = r2star_sidecar(fit, extra, units=units)
        if arr is None:
            continue
        # gzip level 1 (nibabel's default): 2-3x faster than 6 for 2-4 % more bytes on the
        # noise-like float maps; the flag map is 9x faster (0.04 against 0.32 CPU-s at the
        # seed protocol) and 1.5x larger (0.8 MiB)
        save_image(arr, affine, os.fspath(path), sidecar=side, compresslevel=1)
        written.append(Path(path))
    return written


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """Paths of the single-image outputs for ``-o OUT``.

    ``OUT`` is the R2* map (``..._R2starmap.nii.gz``) or a prefix to which ``_R2starmap.nii.gz``
    is added; the other maps share its stem (``_S0map``, ``_desc-fitflags_mask``,
    ``_desc-rmse_R2starmap``, ``_T2starmap``).

    Parameters
    ----------
    out : path-like
        ``-o OUT``.

    Returns
    -------
    dict of str to pathlib.Path
        ``r2star``, ``s0``, ``flags``, ``rmse``, ``t2star`` -> path.
    """
    from ironmap.io.outputs import OUTPUTS

    text = os.fspath(out)
    for ext in (".nii.gz", ".nii"):
        if text.endswith(ext):
            text = text[: -len(ext)]
            break
    stem = text[: -len("_R2starmap")] if text.endswith("_R2starmap") else text
    names = {"r2star": "r2starmap", "s0": "s0map", "flags": "fitflags", "rmse": "fitrmse",
             "t2star": "t2starmap"}
    return {key: Path(f"{stem}_{OUTPUTS[reg][1]}") for key, reg in names.items()}


def resolve_echo_times(echo_paths: Sequence, te=None, te_unit: str | None = None,
                       n_echoes: int | None = None) -> list[float]:
    """Echo times in s from ``te`` (with its unit) or the BIDS sidecars' ``EchoTime``.

    Values given without a unit that look like milliseconds (any > 0.5) are converted with a
    warning; with ``te_unit="s"`` they are refused. Sidecar values must be in seconds (BIDS).

    Parameters
    ----------
    echo_paths : sequence of path-like
        The echo images.
    te : sequence of float, optional
        Echo times given on the command line.
    te_unit : str, optional
        ``s`` or ``ms``.
    n_echoes : int, optional
        Echoes in the data.

    Returns
    -------
    list of float
        Echo times in s.

    Raises
    ------
    ValueError
        Naming the file or values, for missing or implausible echo times.
    """
    from ironmap.io.nifti import read_sidecar
    from ironmap.units import looks_like_milliseconds, ms_to_s

    if te is not None:
        values = [float(v) for v in te]
        if te_unit == "ms":
            return ms_to_s(values).tolist()
        if looks_like_milliseconds(values):
            if te_unit == "s":
                raise ValueError(f"--te {values} with --te-unit s: values above 0.5 s are not "
                                 "plausible GRE echo times (milliseconds?)")
            LOG.warning("echo times %s look like milliseconds; converted to seconds", values)
            return ms_to_s(values).tolist()
        return values
    values = []
    for path in echo_paths:
        side = read_sidecar(path)
        if "EchoTime" not in side:
            raise ValueError(f"{path}: no EchoTime in its JSON sidecar; pass --te")
        et = side["EchoTime"]
        values.extend(et if isinstance(et, list) else [et])
    values = [float(v) for v in values]
    if looks_like_milliseconds(values):
        raise ValueError(f"EchoTime {values} in the sidecars look like milliseconds; BIDS "
                         "requires seconds (fix the sidecars or pass --te with --te-unit)")
    return values


def run_r2star(echo_paths: Sequence, out, *, method: str = "auto", te=None,
               te_unit: str | None = None, mask_path=None, t2star: bool = False,
               overwrite: bool = False, **fit_opts) -> list[Path]:
    """Read echo NIfTI files, fit R2*, write the maps. Returns the written image paths.

    ``echo_select`` in ``fit_opts`` (1-based echo numbers) fits a subset of the echoes; the
    sidecar then lists the selected echoes' times and numbers.

    Parameters
    ----------
    echo_paths : sequence of path-like
        One 3-D image per echo, or one 4-D image.
    out : path-like
        ``-o OUT`` (:func:`output_paths`).
    method : str, optional
        Estimator name or ``auto``.
    te, te_unit
        As for :func:`resolve_echo_times`.
    mask_path : path-like, optional
        Voxels to fit.
    t2star : bool, optional
        Also write T2* (s).
    overwrite : bool, optional
        Replace existing maps.
    **fit_opts
        Estimator options.

    Returns
    -------
    list of pathlib.Path
        The written images.
    """
    from ironmap.io.atomic import check_writable
    from ironmap.io.nifti import load_image

    paths = output_paths(out)
    if not t2star:
        paths.pop("t2star")
    if not fit_opts.get("rmse", True):
        paths.pop("rmse")
    for p in paths.values():  # refuse before any work
        check_writable(p, overwrite)
    images = [load_image(p) for p in echo_paths]
    n_echoes = images[0].shape[3] if len(images) == 1 and len(images[0].shape) == 4 \
        else len(images)
    if n_echoes < 2:
        raise ValueError(f"{echo_paths[0]}: a single echo; R2* needs at least two")
    times = resolve_echo_times(echo_paths, te, te_unit)
    if len(times) != n_echoes:
        raise ValueError(f"{len(times)} echo times for {n_echoes} echoes")
    mask_img = load_image(mask_path) if mask_path is not None else None
    fit, affine = fit_images(images, times, method, mask_img,
                             names=[str(p) for p in echo_paths], **fit_opts)
    return write_r2star_outputs(
        fit, affine, paths["r2star"], s0_path=paths["s0"], flags_path=paths["flags"],
        t2star_path=paths.get("t2star"), rmse_path=paths.get("rmse"), overwrite=overwrite,
        sidecar_extra=_sources(echo_paths, fit_opts.get("echo_select")))


def _sources(echo_paths: Sequence, select: Sequence[int] | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"Sources": [os.fspath(p) for p in echo_paths]}
    if select is not None:
        extra["EchoNumbersUsed"] = [int(k) for k in select]
    return extra
