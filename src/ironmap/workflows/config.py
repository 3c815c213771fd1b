"""Frozen run configuration, mapped 1:1 from the BIDS-App command line.

Written to ``OUTPUT_DIR/logs/`` for provenance. Add fields at the end, always with defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunConfig:
    """Everything an analysis level needs to know (no globals elsewhere)."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str  # "participant" | "group"
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    # participant level ------------------------------------------------------------------
    masks: tuple[Path, ...] = ()  # derivative datasets with _dseg / _label-lesion_mask
    method: str = "auto"  # R2* estimator, see ironmap.core.r2star.relaxometry
    registration: str = "affine"  # "rigid" | "affine"
    erosion_voxels: int = 1
    write_t2star: bool = False
    volumes: bool = False  # tissue volumes from the T1w (issue: volumes)
    atlas: Path | tuple[Path, ...] | None = None  # atlas folder(s) for automatic labels
    landmarks: Path | None = None  # AC/PC table (participant_id, landmark, x, y, z)
    putamen_split: bool = True  # split whole-putamen labels at the AC plane
    nprocs: int = 1
    dask_scheduler: str | None = None
    work_dir: Path | None = None
    overwrite: bool = False
    # group level ------------------------------------------------------------------------
    control_label: str = "HC"
    group_column: str = "group"
    reference_age: float | None = None  # default: controls' mean age
    study_config: Path | None = None  # study.toml
    fdr: bool = False
    per_site_agecorr: bool = False
    age_model: str | None = None  # auto | seed | prior | linear | none (default: study.toml, auto)
    report: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    max_image_gb: float = 2.0  # ceiling on a participant's images as float32 (GiB)
    harmonise: str = "none"  # "none" | "combat" | "combat-gam" (ironmap.core.group.harmonise)
    auto_anatomy: bool = True  # atlas labels when a participant has no rater deep-GM labels
    # participant level: lesion masks ("auto" | "none" | "masks"), see
    # workflows.participant_lesions
    lesions: str = "auto"
    lesions_controls: bool = False
    # automatic lesion method: "ironmap" (built in) | "samseg" (SAMSEG's lesion mode in its own
    # environment, found through samseg_cmd, $SAMSEG_CMD or PATH)
    lesion_method: str = "ironmap"
    samseg_cmd: str | None = None
    # region erosion and size check (ironmap.workflows.erosion) ----------------------------
    erosion_mm: float | None = None  # erode by a distance in mm instead of voxel steps
    # "r2star" | "native" (label grid, before transport) | "auto" (R2* grid on seed-protocol
    # GRE voxels, every edge <= 2 mm; else 1.5 mm on the native grid)
    erosion_space: str = "r2star"
    min_region_voxels: int = 10  # fewer voxels left: QC flag small_region
    # a region the voxel erosion leaves below min_region_voxels is eroded by this many mm
    erosion_fallback_mm: float | None = None
    # automatic SN/RN/dentate moved onto the R2* contrast (ironmap.workflows.nuclei)
    nuclei_refine: str = "iron"  # "iron" (dentate) | "iron-all" (+ SN/RN) | "none"
    # automatic SN/RN through a local 1 mm SyN around the midbrain (ironmap.spatial.midbrain)
    midbrain_refine: str = "local"  # "local" | "none"
    # automatic SN/RN carried with genericLabel's winner or volume-preserving
    # (ironmap.core.regions.volume_assign); also the SN label of --sn-core on the R2* grid
    midbrain_transport: str = "volume-sn"  # "winner" | "volume" | "volume-sn"
    # automatic SN valued over the voxels its carried atlas label covers >= this fraction
    # (ironmap.workflows.sn_core); None = eroded like every region
    sn_core: float | None = 0.9
    # FLAIR/GRE -> T1w checked with a second metric-sampling seed (coarse levels first, all
    # levels when the disagreement is above this, mean mm); full runs that disagree keep the
    # more similar one and raise a QC flag; 0 = one seed, unchecked (ironmap.spatial.seedcheck)
    registration_check_mm: float = 2.0
    # brain extraction of the T1w (ironmap.workflows.brain) --------------------------------
    brain_mask: bool = False  # desc-brain_mask on the R2* grid (always with --volumes)
    # sessions registered to each other (ironmap.workflows.withinsubject) -------------------
    longitudinal_template: bool = False  # lesion and volume change between sessions

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings).

        Returns
        -------
        dict
            Field -> JSON value.
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            out[f.name] = value
        return out

    def dumps(self) -> str:
        """The configuration as indented JSON with sorted keys (as written to ``logs/``).

        Returns
        -------
        str
            The JSON text.
        """
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


def setting_choice(cfg: RunConfig, name: str, choices: tuple[str, ...], default: str, *,
                   empty: str | None = None, label: str | None = None) -> str:
    """A run setting that takes one of a fixed set of words, checked.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration (a missing attribute reads as ``default``).
    name : str
        The attribute of ``cfg``.
    choices : tuple of str
        The allowed values.
    default : str
        The value when ``cfg`` has no such attribute.
    empty : str, optional
        The value when the attribute is empty (None or ""); ``default`` when not given.
    label : str, optional
        What the error message calls the setting; ``name`` when not given.

    Returns
    -------
    str
        The setting.

    Raises
    ------
    ValueError
        A value outside ``choices``.
    """
    value = str(getattr(cfg, name, default) or (default if empty is None else empty))
    if value not in choices:
        raise ValueError(f"{label or name} {value!r} is not one of {', '.join(choices)}")
    return value
