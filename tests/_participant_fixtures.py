"""One small simulated cohort and one serial participant-level run, shared by the tests.

The cohort comes from ``ironmap simulate`` (preset ``fast``: T1w at 2 mm, the registration
target): two RRMS patients at two sites. The GRE and the FLAIR (where the raters outline) use
the seed study's voxel sizes (1x1x2 mm and 1x1x3 mm): at the fast preset's 2x2x3 mm GRE the
substantia nigra and red nucleus keep 0-3 voxels after the one-voxel erosion. Registration
costs seconds per subject on a shared 2-core machine, so the cohort is kept tiny and run once
per test session; tests that need their own run (Dask cluster, SIGKILL/resume, bad input)
compare against this reference run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SUBJECTS = ("sub-001", "sub-002")


@dataclass(frozen=True)
class ReferenceRun:
    """The simulated cohort and the output of an uninterrupted serial run over it."""

    bids_dir: Path
    masks_dir: Path
    truth_dir: Path
    output_dir: Path
    exit_code: int


def make_config(bids_dir, output_dir, masks_dir, **kwargs):
    """A participant-level :class:`RunConfig` for the test cohort."""
    from ironmap.workflows.config import RunConfig

    return RunConfig(bids_dir=Path(bids_dir).resolve(), output_dir=Path(output_dir).resolve(),
                     analysis_level="participant", masks=(Path(masks_dir).resolve(),), **kwargs)


@pytest.fixture(scope="session")
def sim_cohort(tmp_path_factory):
    """``ironmap simulate`` cohort (fast preset, seed GRE/FLAIR voxels): RRMS sub-001, 002."""
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    from ironmap.workflows.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("cohort")
    return simulate_cohort(root / "sim", subjects_per_group={"RRMS": 2}, sites=2,
                           preset="fast", seed=7, nprocs=2,
                           voxel_size={"MEGRE": (1.0, 1.0, 2.0), "FLAIR": (1.0, 1.0, 3.0)})


@pytest.fixture(scope="session")
def reference_run(sim_cohort, tmp_path_factory) -> ReferenceRun:
    """An uninterrupted serial participant-level run over the whole cohort."""
    from ironmap.workflows.participant_level import run_participant_level

    out = tmp_path_factory.mktemp("reference") / "out"
    cfg = make_config(sim_cohort.bids_dir, out, sim_cohort.masks_dir)
    code = run_participant_level(cfg)
    return ReferenceRun(Path(sim_cohort.bids_dir).resolve(),
                        Path(sim_cohort.masks_dir).resolve(),
                        Path(sim_cohort.truth_dir).resolve(), out, code)


def subject_files(output_dir: Path, label: str) -> dict[str, Path]:
    """Every result file of one participant, by path relative to ``output_dir``.

    Its QC page's figures (``figures/``) are left out: a report output, made after the
    participant's results and manifest (a run killed in between leaves it to the report),
    checked by the report tests.
    """
    root = Path(output_dir) / label
    return {str(p.relative_to(output_dir)): p for p in sorted(root.rglob("*"))
            if p.is_file() and "figures" not in p.relative_to(root).parts}


def _json_without_provenance(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("GeneratedBy", None)
    return data


def assert_same_subject_outputs(out_a: Path, out_b: Path, label: str) -> int:
    """Participant outputs are identical: image/table/transform bytes, JSON minus provenance."""
    files_a, files_b = subject_files(out_a, label), subject_files(out_b, label)
    assert sorted(files_a) == sorted(files_b), label
    assert files_a, f"no outputs for {label}"
    for rel, pa in files_a.items():
        pb = files_b[rel]
        if rel.endswith(".json"):
            assert _json_without_provenance(pa) == _json_without_provenance(pb), rel
        else:
            assert pa.read_bytes() == pb.read_bytes(), f"{rel} differs"
    return len(files_a)


def group_rows(output_dir: Path, table: str, labels) -> list[list[str]]:
    """Rows (as text) of a cohort table for the given participants."""
    lines = (Path(output_dir) / "group" / table).read_text().splitlines()
    return [lines[0].split("\t")] + [ln.split("\t") for ln in lines[1:]
                                     if ln.split("\t")[0] in labels]


def pose_matrix(poses, participant_id: str, series: str) -> np.ndarray:
    """4x4 series-world -> phantom-head matrix from ``truth/poses.tsv``."""
    row = poses[(poses.participant_id == participant_id) & (poses.series == series)].iloc[0]
    return np.array([[row[f"m{i}{j}"] for j in range(4)] for i in range(4)], dtype=float)


def clone_subject(roots, src: str, dst: str) -> None:
    """Copy participant ``src``'s ``anat`` files under each root (raw BIDS, rater masks) to
    participant ``dst``, renaming the label in file names and in JSON/TSV text."""
    import shutil

    for root in roots:
        for path in sorted((Path(root) / src / "anat").iterdir()):
            target = Path(root) / dst / "anat" / path.name.replace(src, dst)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix in (".json", ".tsv"):
                target.write_text(path.read_text().replace(src, dst))
            else:
                shutil.copyfile(path, target)
