"""Images of one simulated subject: MEGRE echoes, T1w, FLAIR and rater masks (arrays + affines)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ironmap.sim import anatomy, signal
from ironmap.sim.anatomy import DSEG_OFFSET, LESION, N_LABELS, WM, Geometry
from ironmap.sim.voxelize import PartialVolume, voxelize

SERIES: tuple[str, ...] = ("MEGRE", "T1w", "FLAIR")
#: Seed protocol echo times (s), repetition time (s) and flip angle (degrees).
SEED_ECHO_TIMES_S = (0.00492, 0.0246)
SEED_TR_S = 0.030
SEED_FLIP_DEG = 15.0
#: Gain that puts white matter at about 1000 a.u. in the first echo (vendor scale 1).
_GRE_GAIN = 12000.0
_CONTRAST_GAIN = 1000.0
#: Field of view (mm) of each series, centred on the head.
_FOV_MM = {"MEGRE": (192.0, 232.0, 160.0), "T1w": (192.0, 232.0, 192.0),
           "FLAIR": (192.0, 232.0, 180.0)}
_FOV_CENTRE_MM = (0.0, -17.0, 12.0)


@dataclass(frozen=True)
class Protocol:
    """Acquisition settings of the simulated study.

    ``voxel_size`` maps series -> (3,) mm; ``echo_times_s`` (n_echoes,) ascending s;
    ``snr`` maps series -> white-matter signal / noise SD (first echo for MEGRE);
    ``supersample`` maps series -> sub-samples per axis in boundary voxels.
    """

    voxel_size: dict[str, tuple[float, float, float]]
    echo_times_s: tuple[float, ...] = SEED_ECHO_TIMES_S
    tr_s: float = SEED_TR_S
    flip_deg: float = SEED_FLIP_DEG
    snr: dict[str, float] = field(default_factory=lambda: {"MEGRE": 60.0, "T1w": 40.0,
                                                           "FLAIR": 30.0})
    supersample: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    noise: bool = True

    def grid(self, series: str) -> tuple[tuple[int, int, int], np.ndarray]:
        """Shape and voxel -> scanner-world affine of a series.

        Parameters
        ----------
        series : str
            ``MEGRE``, ``T1w`` or ``FLAIR``.

        Returns
        -------
        shape : tuple of int
            Grid shape.
        affine : ndarray of shape (4, 4)
            Voxel -> world mm (RAS+, axis aligned).
        """
        vs = np.asarray(self.voxel_size[series], dtype=float)
        shape = tuple(int(np.ceil(f / v)) for f, v in zip(_FOV_MM[series], vs, strict=True))
        affine = np.diag([*vs, 1.0])
        affine[:3, 3] = np.asarray(_FOV_CENTRE_MM) - vs * (np.asarray(shape) - 1) / 2.0
        return shape, affine

    def subsamples(self, series: str) -> tuple[int, int, int]:
        """Sub-samples per axis for the partial-volume integration of a series.

        Parameters
        ----------
        series : str
            ``MEGRE``, ``T1w`` or ``FLAIR``.

        Returns
        -------
        tuple of int
            Per axis: about 1 mm spacing (2-3) unless set explicitly.
        """
        if series in self.supersample:
            return self.supersample[series]
        vs = self.voxel_size[series]
        return tuple(int(max(2, min(3, np.ceil(v / 1.0)))) for v in vs)


PRESETS: dict[str, dict[str, tuple[float, float, float]]] = {
    "seed": {"MEGRE": (1.0, 1.0, 2.0), "T1w": (1.0, 1.0, 1.0), "FLAIR": (1.0, 1.0, 3.0)},
    "fast": {"MEGRE": (2.0, 2.0, 3.0), "T1w": (2.0, 2.0, 2.0), "FLAIR": (2.0, 2.0, 4.0)},
    # the seed's GRE and FLAIR (small nuclei keep voxels after erosion), a coarse T1w
    "demo": {"MEGRE": (1.0, 1.0, 2.0), "T1w": (2.0, 2.0, 2.0), "FLAIR": (1.0, 1.0, 3.0)},
}


@dataclass(frozen=True)
class SubjectTruth:
    """What the images of one subject must carry.

    ``region_r2star`` maps rater label index (1..14) -> R2* (s^-1, before site bias);
    ``lesion_r2star`` (s^-1, before site bias, NaN without lesions); ``r2star_bias`` and
    ``intensity_scale`` come from the site.
    """

    region_r2star: dict[int, float]
    lesion_r2star: float
    r2star_bias: float
    intensity_scale: float


@dataclass
class SubjectImages:
    """Arrays (float32 images, integer masks) with their affines, plus T1w-grid content."""

    images: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    t1w_content: PartialVolume | None = None
    t1w_voxel_mm3: float = 1.0
    flair_content: PartialVolume | None = None


def _noise(image, series: str, protocol: Protocol, wm_level: float, rng) -> np.ndarray:
    if not protocol.noise:
        return image
    return signal.rician_noise_float32(image, wm_level / protocol.snr[series], rng)


def simulate_images(geom: Geometry, truth: SubjectTruth, protocol: Protocol,
                    poses: dict[str, np.ndarray], rng: np.random.Generator) -> SubjectImages:
    """All images of one subject.

    Parameters
    ----------
    geom : Geometry
        The subject's phantom.
    truth : SubjectTruth
        Tissue values.
    protocol : Protocol
    poses : dict
        Series -> (4, 4) scanner world mm -> head mm.
    rng : numpy.random.Generator
        Noise source.

    Returns
    -------
    SubjectImages
        ``images`` keys: ``echo-1`` ... ``echo-N`` (MEGRE), ``T1w``, ``FLAIR``, ``dseg`` and
        ``lesion`` (FLAIR grid, majority label).
    """
    out = SubjectImages()
    lesion_r2 = truth.lesion_r2star if np.isfinite(truth.lesion_r2star) else 17.0
    lut = signal.gre_lut(truth.region_r2star, lesion_r2, truth.r2star_bias,
                         protocol.echo_times_s, protocol.tr_s, protocol.flip_deg)
    lut *= _GRE_GAIN * truth.intensity_scale
    shape, affine = protocol.grid("MEGRE")
    pv = voxelize(geom, shape, affine, poses["MEGRE"], protocol.subsamples("MEGRE"))
    gre = pv.apply(lut)
    for e in range(lut.shape[1]):
        img = _noise(gre[..., e], "MEGRE", protocol, lut[WM, 0], rng)
        out.images[f"echo-{e + 1}"] = (img.astype(np.float32, copy=False), affine)
    for series in ("T1w", "FLAIR"):
        shape, affine = protocol.grid(series)
        pv = voxelize(geom, shape, affine, poses[series], protocol.subsamples(series))
        lut = signal.contrast_lut(series, getattr(geom, "nuclei_t1w_from_t1", False))
        lut = lut * _CONTRAST_GAIN * truth.intensity_scale
        img = _noise(pv.apply(lut), series, protocol, lut[WM], rng)
        out.images[series] = (img.astype(np.float32, copy=False), affine)
        if series == "T1w":
            out.t1w_content = pv
            out.t1w_voxel_mm3 = float(np.prod(protocol.voxel_size["T1w"]))
        else:
            out.flair_content = pv
            out.images["dseg"], out.images["lesion"] = _rater_masks(pv, affine)
    return out


def _rater_masks(pv: PartialVolume, affine: np.ndarray):
    """Deep-GM label map (label covering most of each voxel) and the rater's lesion mask."""
    major = pv.majority()
    dseg = np.where(major >= DSEG_OFFSET + 1, major.astype(np.int16) - DSEG_OFFSET, 0)
    lesion = lesion_outline(pv.fraction(LESION))
    return (dseg.astype(np.uint8), affine), (lesion, affine)


def lesion_outline(fraction: np.ndarray) -> np.ndarray:
    """Binary lesion mask from lesion volume fractions, as a locally thresholding rater draws it.

    Within each connected lesion (26-connected voxels with any lesion content) the threshold is
    set locally so that the outline keeps the lesion's partial-volume content: the voxels with
    the largest fractions are taken until their count equals the summed fraction (rounded).
    A fixed 50 % threshold instead over-states small lesions on thick slices by about 10 %.

    Parameters
    ----------
    fraction : ndarray of shape (X, Y, Z)
        Lesion volume fraction per voxel, 0-1.

    Returns
    -------
    ndarray of shape (X, Y, Z), uint8
    """
    from scipy import ndimage

    comp, n = ndimage.label(fraction > 0, structure=np.ones((3, 3, 3), dtype=bool))
    out = np.zeros(fraction.shape, dtype=np.uint8)
    if n == 0:
        return out
    idx = np.flatnonzero(comp)
    labels = comp.reshape(-1)[idx]
    frac = fraction.reshape(-1)[idx]
    order = np.lexsort((-frac, labels))  # by lesion, then by decreasing fraction
    idx, labels, frac = idx[order], labels[order], frac[order]
    starts = np.searchsorted(labels, np.arange(1, n + 1))
    keep_n = np.rint(np.bincount(labels, weights=frac, minlength=n + 1)[1:]).astype(int)
    rank = np.arange(idx.size) - np.repeat(starts, np.diff(np.append(starts, idx.size)))
    out.reshape(-1)[idx[rank < keep_n[labels - 1]]] = 1
    return out


def tissue_volumes_cm3(pv: PartialVolume, voxel_mm3: float) -> dict[str, float]:
    """Truth volumes of the phantom content of a grid (partial volume included).

    Parameters
    ----------
    pv : PartialVolume
        Tissue content of the grid.
    voxel_mm3 : float
        Voxel volume in mm^3.

    Returns
    -------
    dict of str to float
        Tissue -> volume in cm^3.
    """
    v = pv.volumes_mm3(voxel_mm3) / 1000.0
    deep = float(v[anatomy.THALAMUS] + v[DSEG_OFFSET + 1:N_LABELS].sum())
    cortex = float(v[anatomy.CORTEX])
    wm = float(v[WM] + v[LESION])
    csf = float(v[anatomy.CSF] + v[anatomy.VENTRICLE])
    gm = cortex + deep
    return {"gm_cm3": gm, "cortical_gm_cm3": cortex, "deep_gm_cm3": deep, "wm_cm3": wm,
            "csf_cm3": csf, "brain_cm3": gm + wm, "icv_cm3": gm + wm + csf,
            "lesion_cm3": float(v[LESION])}
