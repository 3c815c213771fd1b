"""Output registry: logical output name -> BIDS-derivative file name, and dataset metadata.

Workflows never concatenate file names; they ask :func:`derivative_path`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ironmap.io.atomic import write_json

#: logical name -> (sub-folder under sub-X[/ses-Y], entity suffix and extension)
OUTPUTS: dict[str, tuple[str, str]] = {
    "r2starmap": ("anat", "R2starmap.nii.gz"),
    "t2starmap": ("anat", "T2starmap.nii.gz"),
    "s0map": ("anat", "S0map.nii.gz"),
    "fitflags": ("anat", "desc-fitflags_mask.nii.gz"),
    "fitrmse": ("anat", "desc-rmse_R2starmap.nii.gz"),
    "dseg_r2star": ("anat", "space-R2starmap_desc-deepgm_dseg.nii.gz"),
    "dseg_eroded": ("anat", "space-R2starmap_desc-deepgmeroded_dseg.nii.gz"),
    "dseg_labels": ("anat", "space-R2starmap_desc-deepgm_dseg.tsv"),
    "lesion_r2star": ("anat", "space-R2starmap_label-lesion_mask.nii.gz"),
    "lesion_auto": ("anat", "space-FLAIR_desc-auto_label-lesion_mask.nii.gz"),
    "lesion_auto_prob": ("anat", "space-FLAIR_desc-auto_label-lesion_probseg.nii.gz"),
    "lesion_auto_core": ("anat", "space-FLAIR_desc-autocore_label-lesion_mask.nii.gz"),
    "xfm_flair_to_t1w": ("anat", "from-FLAIR_to-T1w_mode-image_xfm.mat"),
    "xfm_megre_to_t1w": ("anat", "from-MEGRE_to-T1w_mode-image_xfm.mat"),
    "regions_table": ("anat", "desc-regions_r2star.tsv"),
    "lesions_table": ("anat", "desc-lesions_r2star.tsv"),
    "volumes_table": ("anat", "desc-volumes.tsv"),
    "brain_mask_r2star": ("anat", "space-R2starmap_desc-brain_mask.nii.gz"),
    "brain_mask_t1w": ("anat", "space-T1w_desc-brain_mask.nii.gz"),
    "figure_dir": ("figures", ""),
}


def subject_prefix(participant_id: str, session_id: str | None = None) -> str:
    """``sub-01`` or ``sub-01_ses-1`` (ids accepted with or without their prefix)."""
    sub = participant_id if participant_id.startswith("sub-") else f"sub-{participant_id}"
    if session_id:
        ses = session_id if session_id.startswith("ses-") else f"ses-{session_id}"
        return f"{sub}_{ses}"
    return sub


def subject_dir(root: str | os.PathLike, participant_id: str,
                session_id: str | None = None) -> Path:
    """``root/sub-X[/ses-Y]``."""
    prefix = subject_prefix(participant_id, session_id).split("_")
    return Path(root, *prefix)


def derivative_path(root: str | os.PathLike, name: str, participant_id: str,
                    session_id: str | None = None) -> Path:
    """Path of a registered per-subject output."""
    folder, tail = OUTPUTS[name]
    base = subject_dir(root, participant_id, session_id) / folder
    if not tail:
        return base
    return base / f"{subject_prefix(participant_id, session_id)}_{tail}"


def command_line() -> str:
    """The command that is running, for provenance."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def write_dataset_description(root: str | os.PathLike, name: str = "ironmap",
                              source_datasets: list[str] | None = None,
                              extra: dict[str, Any] | None = None) -> Path:
    """Write ``dataset_description.json`` of an ironmap derivative dataset."""
    from ironmap import __version__

    desc: dict[str, Any] = {
        "Name": name,
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "ironmap",
            "Version": __version__,
            "Description": command_line(),
        }],
    }
    if source_datasets:
        desc["SourceDatasets"] = [{"URL": s} for s in source_datasets]
    if extra:
        desc.update(extra)
    return write_json(Path(root) / "dataset_description.json", desc)
