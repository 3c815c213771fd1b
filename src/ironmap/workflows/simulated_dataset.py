"""The files of a simulated cohort: its folder, the raw BIDS dataset, rater masks, ``truth.json``.

Shared by the single-scan cohort (:mod:`ironmap.workflows.simulate`) and the repeated-scan
cohorts (:mod:`ironmap.workflows.simulate_sessions`); the images and truth tables themselves are
drawn by :mod:`ironmap.sim`. Layout: docs/file-formats.md.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap import __version__
from ironmap.io.atomic import OutputExistsError, write_json, write_text
from ironmap.io.nifti import save_image
from ironmap.io.tables import write_tsv
from ironmap.sim import anatomy
from ironmap.sim import truth as truth_tables
from ironmap.sim.images import Protocol

SITE_MODELS = {"Siemens": "TimTrio", "GE": "DiscoveryMR750", "Philips": "Achieva"}
_BIDS_VERSION = "1.9.0"
#: gzip level of the raw images: noisy magnitudes barely compress, so favour speed.
_GZIP_LEVEL = 1


@dataclass(frozen=True)
class SimulatedCohort:
    """Where a simulated cohort was written (``masks_dir`` = ``bids_dir/derivatives/raters``)."""

    out_dir: Path
    bids_dir: Path
    truth_dir: Path
    masks_dir: Path
    n_subjects: int
    seconds: float


#: written by :func:`prepare_out_dir` into every folder ``ironmap simulate`` writes; only a
#: folder that has it is ever cleared by ``--overwrite``
MARKER = ".ironmap-simulate.json"
_REPLACED = ("bids", "truth")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out_dir`` unless ``overwrite``; then replace only what we wrote.

    ``bids/`` and ``truth/`` are removed only when ``out_dir`` holds the :data:`MARKER` that an
    earlier ``ironmap simulate`` left there; a folder without it is never cleared.

    Parameters
    ----------
    out_dir : pathlib.Path
        The simulation's folder.
    overwrite : bool
        Replace an earlier simulation.

    Raises
    ------
    OutputExistsError
        When the folder holds files and ``overwrite`` is false, or holds no marker.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out_dir}: folder is not empty; pass --overwrite to "
                                    "replace a simulated cohort there")
        present = [name for name in _REPLACED if (out_dir / name).exists()]
        if present and not (out_dir / MARKER).is_file():
            raise OutputExistsError(
                f"{out_dir}: holds {' and '.join(n + '/' for n in present)} but no {MARKER} "
                "marker, so it was not written by `ironmap simulate`; --overwrite replaces "
                "only a simulated cohort: nothing was removed, choose a new or empty folder")
        for name in present:
            if (out_dir / name).is_dir() and not (out_dir / name).is_symlink():
                shutil.rmtree(out_dir / name)
            else:
                (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / MARKER, {"GeneratedBy": [{"Name": "ironmap simulate",
                                                   "Version": __version__}],
                                  "Replaces": [f"{n}/" for n in _REPLACED]})


def _anat(bids: Path, sub: str, ses: str | None = None) -> Path:
    return bids / sub / ses / "anat" if ses else bids / sub / "anat"


def write_subject(bids: Path, sub: str, imgs, protocol: Protocol, site: dict,
                  ses: str | None = None) -> None:
    """Write one scan's raw images with their sidecars, and its rater masks.

    Parameters
    ----------
    bids : pathlib.Path
        The raw BIDS folder.
    sub : str
        Participant (``sub-...``).
    imgs : SimulatedImages
        The scan's images (:func:`ironmap.sim.images.simulate_images`).
    protocol : Protocol
        The acquisition protocol (echo times in s).
    site : dict
        The site's row of the cohort plan (``manufacturer``).
    ses : str, optional
        Session (``ses-...``); None for a cohort without sessions.
    """
    common = {"MagneticFieldStrength": 3, "Manufacturer": site["manufacturer"],
              "ManufacturersModelName": SITE_MODELS[site["manufacturer"]],
              "InstitutionName": "ironmap simulated site", "MRAcquisitionType": "3D"}
    anat = _anat(bids, sub, ses)
    name = f"{sub}_{ses}" if ses else sub
    n_echo = len(protocol.echo_times_s)
    for e, te in enumerate(protocol.echo_times_s):
        data, affine = imgs.images[f"echo-{e + 1}"]
        meta = {**common, "EchoTime": te, "RepetitionTime": protocol.tr_s,
                "FlipAngle": protocol.flip_deg, "ScanningSequence": "GR",
                "SequenceVariant": "SP", "EchoNumber": e + 1, "EchoTrainLength": n_echo,
                "SliceThickness": protocol.voxel_size["MEGRE"][2]}
        save_image(_scanner_int(data), affine,
                   anat / f"{name}_echo-{e + 1}_part-mag_MEGRE.nii.gz", sidecar=meta,
                   compresslevel=_GZIP_LEVEL)
    for series, extra in (("T1w", {"ScanningSequence": "GR\\IR", "InversionTime": 0.9}),
                          ("FLAIR", {"ScanningSequence": "SE\\IR", "InversionTime": 2.5})):
        data, affine = imgs.images[series]
        save_image(_scanner_int(data), affine, anat / f"{name}_{series}.nii.gz",
                   sidecar={**common, **extra,
                            "SliceThickness": protocol.voxel_size[series][2]},
                   compresslevel=_GZIP_LEVEL)
    _write_masks(bids, sub, imgs, ses)


def _scanner_int(data: np.ndarray) -> np.ndarray:
    """Magnitude as stored by scanners: rounded, non-negative int16."""
    return np.clip(np.rint(data), 0, np.iinfo(np.int16).max).astype(np.int16)


def _write_masks(bids: Path, sub: str, imgs, ses: str | None = None) -> None:
    out = _anat(bids / "derivatives" / "raters", sub, ses)
    name = f"{sub}_{ses}" if ses else sub
    rel = f"{sub}/{ses}/anat" if ses else f"{sub}/anat"
    ref = f"bids:raw:{rel}/{name}_FLAIR.nii.gz"
    data, affine = imgs.images["dseg"]
    save_image(data, affine, out / f"{name}_desc-deepgm_dseg.nii.gz",
               sidecar={"SpatialReference": ref, "Description":
                        "Deep grey-matter outlines on the FLAIR (simulated rater)"})
    write_tsv(dseg_table(), out / f"{name}_desc-deepgm_dseg.tsv")
    data, affine = imgs.images["lesion"]
    save_image(data, affine, out / f"{name}_label-lesion_mask.nii.gz",
               sidecar={"SpatialReference": ref, "Description":
                        "T2 lesion outlines on the FLAIR (simulated rater)"})


def dseg_table() -> pd.DataFrame:
    """``index``/``name`` of the rater labels (docs/file-formats.md).

    Returns
    -------
    pandas.DataFrame
        One row per rater label.
    """
    return pd.DataFrame({"index": list(anatomy.DSEG_LABELS),
                         "name": list(anatomy.DSEG_LABELS.values())})


def write_dataset_files(bids: Path, masks: Path, participants: pd.DataFrame,
                        preset: str) -> None:
    """Write the dataset description, README and ``participants.tsv`` of the raw and mask folders.

    Parameters
    ----------
    bids : pathlib.Path
        The raw BIDS folder.
    masks : pathlib.Path
        The rater-mask derivative folder.
    participants : pandas.DataFrame
        The cohort plan's participants.
    preset : str
        The resolution preset (named in the README).
    """
    generated = [{"Name": "ironmap simulate", "Version": __version__}]
    write_json(bids / "dataset_description.json",
               {"Name": "ironmap simulated multicenter MS cohort", "BIDSVersion": _BIDS_VERSION,
                "DatasetType": "raw", "License": "CC0", "GeneratedBy": generated})
    write_text(bids / "README", _README.format(preset=preset))
    write_tsv(participants[list(truth_tables.PARTICIPANT_COLUMNS)],
              bids / "participants.tsv", truth_tables.PARTICIPANTS_JSON, float_format="%.10g")
    write_json(masks / "dataset_description.json",
               {"Name": "ironmap simulated rater masks", "BIDSVersion": _BIDS_VERSION,
                "DatasetType": "derivative", "GeneratedBy": generated,
                "DatasetLinks": {"raw": "../../"}})


def write_truth_json(truth_dir: Path, plan, protocol: Protocol, settings: dict,
                     extra: dict, notes: str) -> None:
    """Write ``truth.json``: the generator, the settings and the protocol of a simulation.

    Parameters
    ----------
    truth_dir : pathlib.Path
        The truth folder.
    plan : CohortPlan
        The drawn cohort (reference age, putamen split).
    protocol : Protocol
        The acquisition protocol (echo and repetition times in s, voxel sizes in mm).
    settings : dict
        The simulation's settings (preset, seed, sites, ...), written after the reference age.
    extra : dict
        Further entries of the design, written after the protocol.
    notes : str
        How to read the truth tables.
    """
    write_json(truth_dir / "truth.json", {
        "GeneratedBy": {"Name": "ironmap simulate", "Version": __version__},
        "reference_age": plan.reference_age, **settings,
        "echo_times_s": list(protocol.echo_times_s), "repetition_time_s": protocol.tr_s,
        "voxel_size_mm": {k: list(v) for k, v in protocol.voxel_size.items()},
        "putamen_anterior_fraction": plan.putamen_anterior_fraction, **extra, "notes": notes})


_README = """ironmap simulated multicenter MS cohort
========================================

A synthetic study modelled on a published multicenter R2* study of multiple sclerosis
(healthy controls and RRMS, SPMS, PPMS patients at several 3 T sites). Every image is
generated from an analytic head phantom; the ground truth is stored outside this dataset
(../truth). Protocol preset: {preset}.

derivatives/raters holds deep grey-matter label maps and lesion masks on the FLAIR grid.
"""
