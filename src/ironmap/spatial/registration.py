"""Linear (rigid/affine) registration with ANTs (ITK), and ITK transform files.

Conventions
-----------
``Registration.matrix`` is a 4x4 matrix in **RAS+ world mm** that maps a point of the FIXED
image's world to the corresponding point of the MOVING image's world. This is the ITK/ANTs
"fixed-to-moving" point convention (the transform a resampler needs to pull the moving image
onto the fixed grid); only the axes differ: ITK works in LPS+, so
``M_ras = F @ M_lps @ F`` with ``F = diag(-1, -1, 1, 1)``.

Transform files are ITK text files (``.txt``, ``AffineTransform_double_3_3``, LPS, as read by
ITK and ``antsApplyTransforms``) or ITK MATLAB files (``.mat``); both hold the LPS
fixed-to-moving matrix, so ``antsApplyTransforms -t file`` pulls the moving image onto the
fixed grid exactly as :func:`ironmap.spatial.grid.resample_image` does with ``.matrix``.

Reproducibility: the ITK thread count must be set before ANTs is first imported; this module
sets ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1`` when it is unset, and passes ``--random-seed``
to ``antsRegistration`` so that metric sampling is the same on every run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ironmap.spatial.grid import resample_image

log = logging.getLogger(__name__)

#: RAS <-> LPS flip of the first two world axes (its own inverse).
LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])

MODELS = ("rigid", "affine")

#: Default number of metric sample points at the finest level (bounds the cost per iteration).
METRIC_SAMPLES = 100_000

#: Voxel size (mm) both images are block-averaged to before registration (see ``register``).
WORKING_VOXEL_MM = 2.0

#: Head box of the fixed image (see :func:`head_box`): voxels above this fraction of the
#: image's 99th percentile are the head.
HEAD_BOX_THRESHOLD = 0.1


@dataclass(frozen=True, eq=False)
class Registration:
    """Result of a linear registration.

    Attributes
    ----------
    matrix : ndarray of shape (4, 4)
        Maps FIXED world mm -> MOVING world mm (RAS+).
    similarity : float
        Normalised mutual information (Studholme, range 1-2; higher is better) between the
        fixed image and the moving image resampled onto it, over their common field of view.
        NaN when unknown (e.g. a transform loaded from a file).
    model : str
        ``"rigid"`` or ``"affine"``.
    details : dict
        Settings used (levels, iterations, sampling, seed), for provenance.
    """

    matrix: np.ndarray
    similarity: float = float("nan")
    model: str = "affine"
    details: dict = field(default_factory=dict)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.matrix, dtype=dtype)

    def __matmul__(self, other):
        return self.matrix @ np.asarray(other)

    def __rmatmul__(self, other):
        return np.asarray(other) @ self.matrix

    @property
    def inverse(self) -> np.ndarray:
        """MOVING world mm -> FIXED world mm (RAS+), shape (4, 4)."""
        return np.linalg.inv(self.matrix)


#: ANTsPy sub-packages ironmap does not use; ``import ants`` imports them all, and with them
#: matplotlib.pyplot, statsmodels and scikit-learn (about 1.2 CPU-s per process)
_UNUSED_ANTS = ("ants.plotting", "ants.learn", "ants.contrib", "ants.deeplearn")

#: ANTsPy modules loaded on first use instead of with ``ants``: module -> the names ANTsPy
#: imports from it. ``ants.math.quantile`` imports statsmodels (with formulaic) and
#: scipy.stats for functions ironmap never calls (about 0.5 CPU-s per process).
_DEFERRED_ANTS = {"ants.math.quantile": ("ilr", "rank_intensity", "quantile", "regress_poly",
                                         "regress_components", "get_average_of_timeseries",
                                         "compcor", "bandpass_filter_matrix")}


def _deferred_module(name: str, names: tuple[str, ...]):
    """A stand-in for module ``name`` whose functions import the real module when called.

    The stand-in is in ``sys.modules`` only while ``ants`` loads. The first call imports the
    real module and puts its functions into the ``ants`` namespaces in place of the
    forwarders, so later calls (and ``ANTsImage.quantile``) go straight to it.
    """
    import importlib
    import types

    stub = types.ModuleType(name)

    def load():
        if sys.modules.get(name) is stub:
            del sys.modules[name]
        real = importlib.import_module(name)  # its decorators re-register image methods
        for space in (sys.modules.get(name.rpartition(".")[0]), sys.modules.get("ants")):
            for attr in names:
                if space is not None and getattr(space, attr, None) is getattr(stub, attr):
                    setattr(space, attr, getattr(real, attr))
        return real

    def forward(attr):
        def call(*args, **kwargs):
            return getattr(load(), attr)(*args, **kwargs)

        call.__name__ = call.__qualname__ = attr
        call.__doc__ = f"``{name}.{attr}``, imported on first call."
        return call

    for attr in names:
        setattr(stub, attr, forward(attr))
    stub.load_real = load
    return stub


def import_ants():
    """Import ANTsPy lazily, with a single ITK thread unless the caller chose otherwise.

    The first import skips :data:`_UNUSED_ANTS` (empty placeholders while ``ants`` loads,
    removed afterwards, so ``import ants.plotting`` still works later, on demand) and defers
    :data:`_DEFERRED_ANTS` (their functions load the real module when first called). Every
    module of :mod:`ironmap.spatial` gets ANTsPy through here.

    Returns
    -------
    module
        The ``ants`` package.
    """
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    if "ants" not in sys.modules:
        import types

        placeholders = {n: types.ModuleType(n) for n in _UNUSED_ANTS if n not in sys.modules}
        deferred = {n: _deferred_module(n, names) for n, names in _DEFERRED_ANTS.items()
                    if n not in sys.modules}
        sys.modules.update(placeholders)
        sys.modules.update(deferred)
        try:
            import ants  # noqa: F401
        finally:
            for name, module in {**placeholders, **deferred}.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
        quantile = deferred.get("ants.math.quantile")
        if quantile is not None and not hasattr(ants.ANTsImage, "quantile"):
            # the one image method of that module; loading it installs the real one
            def image_quantile(self, *args, **kwargs):
                return quantile.load_real().quantile(self, *args, **kwargs)

            ants.ANTsImage.quantile = image_quantile
    import ants

    return ants


def ras_to_lps(matrix: np.ndarray) -> np.ndarray:
    """Convert a 4x4 world-to-world matrix between RAS+ and LPS+ (the operation is symmetric).

    Parameters
    ----------
    matrix : ndarray of shape (4, 4)
        World mm -> world mm.

    Returns
    -------
    ndarray of shape (4, 4)
        The same map in the other convention.
    """
    return LPS_FLIP @ np.asarray(matrix, dtype=float) @ LPS_FLIP


lps_to_ras = ras_to_lps


@contextlib.contextmanager
def ants_random_seed(seed: int):
    """Make ``ants.registration`` calls inside the block pass ``--random-seed seed``.

    Without a seed, ANTs jitters its metric sampling from the clock, so two runs of the same
    registration differ.

    Parameters
    ----------
    seed : int
        The seed passed to ANTs.

    Yields
    ------
    None
        ANTs calls in the block are seeded.
    """
    import ants.config as ants_config

    previous = ants_config._random_seed
    ants_config._random_seed = int(seed)
    try:
        yield
    finally:
        ants_config._random_seed = previous


def to_ants(img, data=None, *, ants=None):
    """A nibabel image (or ``data`` on its grid) -> ANTsImage (float32), affine RAS -> LPS.

    NaN and Inf become 0.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        The image (its grid).
    data : ndarray, optional
        Voxel values on that grid instead of the image's.
    ants : module, optional
        The imported ``ants`` module (imported here when None).

    Returns
    -------
    ANTsImage
        3-D float32 image with origin, spacing and direction from the affine.

    Raises
    ------
    ValueError
        When the image is not 3D or its affine has shear (ITK needs orthonormal directions).
    """
    ants = ants or import_ants()
    data = np.asanyarray(img.dataobj) if data is None else np.asanyarray(data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"registration needs 3D images, got shape {data.shape}")
    q = LPS_FLIP @ np.asarray(img.affine, dtype=float)
    spacing = np.sqrt((q[:3, :3] ** 2).sum(axis=0))
    direction = q[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError("image affine has shear; ITK images need orthonormal axes")
    arr = np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return ants.from_numpy(
        np.ascontiguousarray(arr),
        origin=q[:3, 3].tolist(),
        spacing=spacing.tolist(),
        direction=direction,
    )


def downsample(img, working_voxel_mm: float | None):
    """Block-average an image to voxels of about ``working_voxel_mm`` (integer factors per axis).

    Voxel centres stay in place in world mm (the new affine is the old one scaled by the
    factors and shifted to block centres); incomplete blocks at the far edges are dropped.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        3-D image.
    working_voxel_mm : float or None
        Target voxel size in mm; None or 0 returns the image unchanged.

    Returns
    -------
    nibabel.Nifti1Image
        The averaged image (float32).
    """
    if not working_voxel_mm:
        return img
    sizes = np.sqrt((np.asarray(img.affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    f = np.maximum(1, np.floor(working_voxel_mm / sizes + 0.5)).astype(int)
    if np.all(f == 1):
        return img
    data = np.asarray(np.asanyarray(img.dataobj), dtype=np.float32).reshape(img.shape[:3])
    cut = [s // k * k for s, k in zip(data.shape, f, strict=True)]
    data = np.nan_to_num(data[: cut[0], : cut[1], : cut[2]])
    blocks = data.reshape(cut[0] // f[0], f[0], cut[1] // f[1], f[1], cut[2] // f[2], f[2])
    aff = np.asarray(img.affine, dtype=float).copy()
    aff[:3, 3] = aff[:3, :3] @ ((f - 1) / 2.0) + aff[:3, 3]
    aff[:3, :3] = aff[:3, :3] * f
    return nib.Nifti1Image(blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32), aff)


def head_box(img, margin_mm: float | None):
    """The image cropped to the box around its head, widened by ``margin_mm`` on every side.

    The head is every voxel above :data:`HEAD_BOX_THRESHOLD` times the image's 99th
    percentile; the crop keeps the grid (a sub-block of the voxels, same world positions).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        3-D image.
    margin_mm : float or None
        Margin (mm) kept around the head's bounding box; None returns the image unchanged.

    Returns
    -------
    nibabel.Nifti1Image
        The cropped image (the image itself when nothing is cut off or no voxel is above the
        threshold).
    """
    if margin_mm is None:
        return img
    data = np.asanyarray(img.dataobj).reshape(img.shape[:3])
    finite = np.nan_to_num(np.asarray(data, dtype=np.float32))
    level = HEAD_BOX_THRESHOLD * float(np.percentile(finite, 99))
    head = np.argwhere(finite > level) if level > 0 else np.empty((0, 3), int)
    if not len(head):
        return img
    sizes = np.sqrt((np.asarray(img.affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    pad = np.ceil(float(margin_mm) / sizes).astype(int)
    lo = np.maximum(head.min(axis=0) - pad, 0)
    hi = np.minimum(head.max(axis=0) + pad + 1, img.shape[:3])
    if np.all(lo == 0) and np.all(hi == np.asarray(img.shape[:3])):
        return img
    return img.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]


def _levels(shape, shrink_factors, smoothing_sigmas):
    """Multi-resolution schedule; shrink factors capped so every level keeps >= 8 voxels/axis."""
    if shrink_factors is None:
        shrink_factors = (4, 2, 1)
    if smoothing_sigmas is None:
        smoothing_sigmas = tuple(max(0.0, np.log2(f)) for f in shrink_factors)
    if len(shrink_factors) != len(smoothing_sigmas):
        raise ValueError("shrink_factors and smoothing_sigmas need the same length")
    cap = max(1, min(shape) // 8)
    shrink = tuple(int(min(f, cap)) for f in shrink_factors)
    return shrink, tuple(float(s) for s in smoothing_sigmas)


#: Default convergence test of every level: stop when the metric's slope over this many
#: iterations (the window) falls below the threshold
CONVERGENCE = (1e-6, 10)

#: Default gradient step of both stages (ANTs ``Rigid[step]``, ``Affine[step]``)
GRADIENT_STEP = 0.1


def _stage(kind, fixed_str, moving_str, shrink, sigmas, iterations, sampling_rate, bins,
           convergence=CONVERGENCE, step=GRADIENT_STEP):
    threshold, window = convergence
    return [
        "--transform", f"{kind}[{step:g}]",
        "--metric", f"MI[{fixed_str},{moving_str},1,{bins},Regular,{sampling_rate}]",
        "--convergence",
        f"[{'x'.join(str(int(i)) for i in iterations)},{threshold:g},{int(window)}]",
        "--shrink-factors", "x".join(str(f) for f in shrink),
        "--smoothing-sigmas", "x".join(f"{s:g}" for s in sigmas) + "vox",
    ]


def _run_ants(ants, fixed_a, moving_a, model, seed, schedule, prefix) -> np.ndarray:
    """Run antsRegistration through the ANTsPy library; return the LPS 4x4 matrix."""
    from ants.internal import get_lib_fn, get_pointer_string, process_arguments

    shrink, sigmas, iterations, sampling_rate, bins, convergence, rigid_levels, step = schedule
    f_str, m_str = get_pointer_string(fixed_a), get_pointer_string(moving_a)
    args = [
        "--dimensionality", "3", "--float", "1", "--collapse-output-transforms", "1",
        "--output", f"[{prefix}]", "--interpolation", "Linear",
        "--use-histogram-matching", "0", "--winsorize-image-intensities", "[0.005,0.995]",
        "--initial-moving-transform", f"[{f_str},{m_str},1]",
        "--random-seed", str(int(seed)),
    ]
    if model == "affine" and rigid_levels is not None:  # the rigid stage only starts it
        n = max(1, min(int(rigid_levels), len(shrink)))
        args += _stage("Rigid", f_str, m_str, shrink[:n], sigmas[:n], iterations[:n],
                       sampling_rate, bins, convergence, step)
    else:
        args += _stage("Rigid", f_str, m_str, shrink, sigmas, iterations, sampling_rate, bins,
                       convergence, step)
    if model == "affine":
        args += _stage("Affine", f_str, m_str, shrink, sigmas, iterations, sampling_rate, bins,
                       convergence, step)
    code = get_lib_fn("antsRegistration")(process_arguments(args))
    if code != 0:
        raise RuntimeError(f"antsRegistration failed with exit code {code}")
    tx = ants.read_transform(f"{prefix}0GenericAffine.mat")
    return _itk_params_to_matrix(tx.parameters, tx.fixed_parameters)


def register(
    fixed,
    moving,
    model: str = "affine",
    *,
    seed: int = 1,
    shrink_factors=None,
    smoothing_sigmas=None,
    iterations=None,
    sampling_rate: float | None = None,
    bins: int = 32,
    working_voxel_mm: float | None = WORKING_VOXEL_MM,
    convergence: tuple[float, int] = CONVERGENCE,
    rigid_levels: int | None = None,
    measure_similarity: bool = True,
    head_box_mm: float | None = None,
    gradient_step: float = GRADIENT_STEP,
) -> Registration:
    """Register ``moving`` to ``fixed`` (rigid or affine, Mattes mutual information, ANTs).

    A rigid stage is always run first; ``model="affine"`` adds an affine stage. Each stage is
    multi-resolution (default shrink factors 4x2x1 voxels, Gaussian smoothing 2x1x0 voxels),
    initialised by aligning the centres of mass. Mutual information is used because the
    contrasts differ (GRE, FLAIR, T1w).

    Parameters
    ----------
    fixed, moving : nibabel images, 3D
        Intensities in any unit; NaN is treated as 0.
    model : {"affine", "rigid"}
    seed : int
        Seed of the metric's point sampling; with one ITK thread, same inputs give the same
        matrix bit for bit.
    shrink_factors, smoothing_sigmas : sequence of int / float, optional
        Per-level shrink factors and smoothing sigmas (voxels); factors are capped so that
        every level keeps at least 8 voxels along each axis.
    iterations : sequence of int, optional
        Maximum iterations per level (default 200, 100, 50, ...; a level also stops when the
        metric has changed by less than 1e-6 over 10 iterations).
    sampling_rate : float, optional
        Fraction of fixed-image voxels sampled (regular grid, seeded jitter) by the metric;
        by default about :data:`METRIC_SAMPLES` points at the finest level (rate <= 1).
    bins : int
        Histogram bins of the mutual-information metric.
    working_voxel_mm : float or None
        Both images are first block-averaged to voxels of about this size (mm, integer factor
        per axis; see :func:`downsample`), which bounds the cost for 1 mm images; ``None``
        registers at the native resolution. The matrix is in world mm either way.
    convergence : (float, int)
        Convergence test of every level: threshold on the metric's slope and window
        (iterations), default :data:`CONVERGENCE`.
    rigid_levels : int, optional
        With ``model="affine"``: run the rigid stage only on the first (coarsest) this many
        levels, as the affine stage's start; default: every level.
    measure_similarity : bool
        Compute the NMI of the result (``False``: ``similarity`` is NaN, which saves resampling
        the moving image, e.g. for a check run whose NMI is not used).
    head_box_mm : float or None
        Register on the fixed image cropped to its head's bounding box widened by this margin
        (mm, :func:`head_box`), with the metric sampling the same fraction of the voxels as on
        the uncropped grid (the background outside the box is not sampled); ``None``: the whole
        fixed image. The NMI is computed on the whole fixed grid either way.
    gradient_step : float
        Gradient step of both stages (ANTs ``Rigid[step]``/``Affine[step]``), default
        :data:`GRADIENT_STEP`.

    Returns
    -------
    Registration
        ``.matrix`` maps FIXED world mm -> MOVING world mm (RAS+).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    ants = import_ants()
    fixed, moving = downsample(fixed, working_voxel_mm), downsample(moving, working_voxel_mm)
    box = head_box(fixed, head_box_mm)
    fixed_a, moving_a = to_ants(box, ants=ants), to_ants(moving, ants=ants)
    shrink, sigmas = _levels(  # the whole grid's schedule and sampling, cropped or not
        tuple(fixed.shape[:3]) + tuple(moving.shape[:3]), shrink_factors, smoothing_sigmas
    )
    if iterations is None:
        iterations = tuple(int(200 / 2**i) for i in range(len(shrink)))
    if sampling_rate is None:
        sampling_rate = min(1.0, max(0.01, METRIC_SAMPLES / float(np.prod(fixed.shape[:3]))))
    convergence = (float(convergence[0]), int(convergence[1]))
    schedule = (shrink, sigmas, tuple(iterations), round(float(sampling_rate), 6), int(bins),
                convergence, rigid_levels, float(gradient_step))
    workdir = tempfile.mkdtemp(prefix="ironmap-reg-")
    try:
        lps = _run_ants(ants, fixed_a, moving_a, model, seed, schedule, str(Path(workdir) / "x"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    matrix = ras_to_lps(lps)
    similarity = (normalized_mutual_information(fixed, moving, matrix, bins=bins)
                  if measure_similarity else float("nan"))
    log.debug("registration %s: NMI %.4f", model, similarity)
    details = {"shrink_factors": list(shrink), "smoothing_sigmas_vox": list(sigmas),
               "iterations": list(iterations), "metric": "MattesMI", "bins": int(bins),
               "sampling_rate": schedule[3], "seed": int(seed),
               "working_voxel_mm": working_voxel_mm}
    if convergence != CONVERGENCE:
        details["convergence"] = list(convergence)
    if model == "affine" and rigid_levels is not None:
        details["rigid_levels"] = int(rigid_levels)
    if head_box_mm is not None:
        details["head_box_mm"] = float(head_box_mm)
    if float(gradient_step) != GRADIENT_STEP:
        details["gradient_step"] = float(gradient_step)
    return Registration(matrix=matrix, similarity=similarity, model=model, details=details)


def normalized_mutual_information(fixed, moving, matrix=None, bins: int = 32) -> float:
    """NMI = (H(F) + H(M)) / H(F, M) of ``fixed`` and ``moving`` pulled onto the fixed grid.

    Computed over fixed voxels inside the moving field of view where either image is above
    its 1st-percentile intensity (excludes empty background).

    Parameters
    ----------
    fixed, moving : nibabel.Nifti1Image
        The two images.
    matrix : ndarray of shape (4, 4), optional
        Fixed world mm -> moving world mm (identity when None).
    bins : int, optional
        Histogram bins per image.

    Returns
    -------
    float
        From 1 (independent) to 2 (identical); NaN with fewer than 10 usable voxels or a
        constant image.
    """
    f = np.asarray(np.asanyarray(fixed.dataobj), dtype=np.float64).reshape(fixed.shape[:3])
    m = resample_image(moving, fixed, matrix, order=1)
    ok = np.isfinite(f) & np.isfinite(m)
    if ok.sum() < 10:
        return float("nan")
    fv, mv = f[ok], m[ok]
    fg = (fv > np.percentile(fv, 1)) | (mv > np.percentile(mv, 1))
    fv, mv = fv[fg], mv[fg]
    if fv.size < 10 or np.ptp(fv) == 0 or np.ptp(mv) == 0:
        return float("nan")
    joint, _, _ = np.histogram2d(fv, mv, bins=bins)
    p = joint / joint.sum()

    def entropy(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (entropy(p.sum(axis=1)) + entropy(p.sum(axis=0))) / entropy(p.ravel())


def displacement_error(matrix, reference, points_mm) -> tuple[float, float]:
    """Mean and maximum distance (mm) between two transforms applied to the same points.

    Parameters
    ----------
    matrix, reference : ndarray of shape (4, 4)
        World-to-world matrices (estimated, true).
    points_mm : ndarray of shape (n, 3)
        World points (e.g. brain voxel centres of the fixed image), mm.

    Returns
    -------
    mean, max : float
        Distances in mm.
    """
    pts = np.c_[np.asarray(points_mm, dtype=float), np.ones(len(points_mm))]
    diff = (pts @ np.asarray(matrix, float).T - pts @ np.asarray(reference, float).T)[:, :3]
    dist = np.linalg.norm(diff, axis=1)
    return float(dist.mean()), float(dist.max())


def _itk_params_to_matrix(parameters, fixed_parameters) -> np.ndarray:
    """ITK MatrixOffsetTransformBase parameters (A row-major, translation; centre) -> 4x4."""
    p = np.asarray(parameters, dtype=float)
    c = np.asarray(fixed_parameters, dtype=float)[:3] if len(fixed_parameters) else np.zeros(3)
    if p.size != 12:
        raise ValueError(f"expected 12 affine parameters, got {p.size}")
    a = p[:9].reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = p[9:12] + c - a @ c
    return m


def _matrix_of(reg) -> np.ndarray:
    m = np.asarray(reg.matrix if isinstance(reg, Registration) else reg, dtype=float)
    if m.shape != (4, 4) or not np.allclose(m[3], [0, 0, 0, 1]):
        raise ValueError("a transform must be a 4x4 affine matrix with last row 0 0 0 1")
    return m


def format_itk_text(matrix: np.ndarray) -> str:
    """ITK text (``#Insight Transform File V1.0``) of a RAS fixed-to-moving 4x4 matrix.

    Parameters
    ----------
    matrix : ndarray of shape (4, 4)
        Fixed world mm -> moving world mm, RAS+.

    Returns
    -------
    str
        One ``AffineTransform_double_3_3`` (LPS, as ITK stores it).
    """
    lps = ras_to_lps(_matrix_of(matrix))
    params = list(lps[:3, :3].ravel()) + list(lps[:3, 3])
    return (
        "#Insight Transform File V1.0\n#Transform 0\n"
        "Transform: AffineTransform_double_3_3\n"
        f"Parameters: {' '.join(repr(float(v)) for v in params)}\n"
        "FixedParameters: 0 0 0\n"
    )


def parse_itk_text(text: str, source: str = "transform") -> np.ndarray:
    """RAS fixed-to-moving 4x4 matrix from ITK text holding one affine transform.

    Parameters
    ----------
    text : str
        The file's text.
    source : str, optional
        What it is, named in errors.

    Returns
    -------
    ndarray of shape (4, 4)
        Fixed world mm -> moving world mm, RAS+.

    Raises
    ------
    ValueError
        Naming ``source``, when the text holds no single affine transform.
    """
    params = fixed = None
    kinds = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Transform":
            kinds.append(value.strip())
        elif key.strip() == "Parameters":
            params = [float(v) for v in value.split()]
        elif key.strip() == "FixedParameters":
            fixed = [float(v) for v in value.split()]
    if len(kinds) != 1 or params is None:
        raise ValueError(f"{source}: expected exactly one affine ITK transform, found {kinds}")
    if not kinds[0].endswith("_3_3") or len(params) != 12:
        raise ValueError(f"{source}: unsupported transform {kinds[0]!r} (need a 3D affine)")
    return lps_to_ras(_itk_params_to_matrix(params, fixed or [0.0, 0.0, 0.0]))


def save_transform(reg, path) -> Path:
    """Write a transform as an ITK file, atomically.

    ``.txt`` (recommended, BIDS ``_xfm.txt``): ITK text, byte-identical for identical input;
    ``.mat``: ITK MATLAB binary written by ANTs. Both hold the LPS fixed-to-moving matrix.

    Parameters
    ----------
    reg : Registration or ndarray of shape (4, 4)
        RAS fixed-to-moving matrix.
    path : path-like

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    p = Path(path)
    matrix = _matrix_of(reg)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    try:
        if p.suffix == ".mat":
            ants = import_ants()
            lps = ras_to_lps(matrix)
            tx = ants.create_ants_transform(
                transform_type="AffineTransform", precision="double", dimension=3,
                matrix=lps[:3, :3], offset=lps[:3, 3],
            )
            ants.write_transform(tx, tmp)
        else:
            Path(tmp).write_text(format_itk_text(matrix), encoding="ascii")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; same mode as every other output
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def load_transform(path) -> Registration:
    """Read an ITK affine transform file (``.txt`` text or ``.mat``) as a :class:`Registration`.

    Parameters
    ----------
    path : path-like
        The transform file.

    Returns
    -------
    Registration
        ``.matrix`` is RAS fixed-to-moving; ``similarity`` is NaN. ``np.asarray(result)``
        also gives the matrix.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: transform file not found")
    if p.suffix == ".mat":
        ants = import_ants()
        tx = ants.read_transform(str(p), precision="double")
        matrix = lps_to_ras(_itk_params_to_matrix(tx.parameters, tx.fixed_parameters))
    else:
        matrix = parse_itk_text(p.read_text(encoding="ascii", errors="replace"), str(p))
    return Registration(matrix=matrix, model="affine")
