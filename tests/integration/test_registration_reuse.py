"""A second run of the same images reuses the first run's registrations (the demo's check).

Against the session's reference run (real ANTs): a run into another folder with
``extra["reuse_registrations"]`` gives byte-identical results (the registrations being
deterministic) and records the same similarity and two-seed check; a run whose registration
options differ registers anew.
"""

from __future__ import annotations

import json
import logging

import pytest

from _participant_fixtures import make_config, subject_files
from ironmap.io.layout import output_path

pytestmark = pytest.mark.slow


def _summary(root, pid):
    path = output_path(root, "manifest", pid)
    return json.loads(path.read_text(encoding="utf-8"))["summary"]


def test_reused_registrations_give_identical_outputs(reference_run, tmp_path, caplog):
    from ironmap.workflows.participant_level import run_participant_level
    from ironmap.workflows.registration_reuse import REUSE_KEY

    out = tmp_path / "second"
    cfg = make_config(reference_run.bids_dir, out, reference_run.masks_dir,
                      participant_label=("001",),
                      extra={REUSE_KEY: str(reference_run.output_dir)})
    with caplog.at_level(logging.INFO, logger="ironmap.workflows.registration_reuse"):
        assert run_participant_level(cfg) == 0
    assert sum("registration reused from" in r.getMessage() for r in caplog.records) == 2
    ref = subject_files(reference_run.output_dir, "sub-001")
    new = subject_files(out, "sub-001")
    assert sorted(new) == sorted(ref)
    for rel, path in ref.items():
        assert new[rel].read_bytes() == path.read_bytes(), rel
    old, now = _summary(reference_run.output_dir, "sub-001"), _summary(out, "sub-001")
    for key in ("registration_nmi", "registration_seed_check"):
        assert now[key] == old[key]


def test_what_stops_the_reuse(reference_run, tmp_path):
    from ironmap.io.bids import discover
    from ironmap.workflows.registration_reuse import reuse_problem

    manifest = json.loads(output_path(reference_run.output_dir, "manifest", "sub-001")
                          .read_text(encoding="utf-8"))
    cfg = make_config(reference_run.bids_dir, tmp_path, reference_run.masks_dir)
    subject = discover(cfg.bids_dir, participant_label=("001",), masks=cfg.masks)[0]
    series = {"MEGRE": subject.echoes[0].path, "FLAIR": subject.flair}
    earlier = reference_run.output_dir
    assert reuse_problem(manifest, subject, cfg, earlier, series) is None
    other = make_config(reference_run.bids_dir, tmp_path, reference_run.masks_dir,
                        registration="rigid")
    assert "options" in reuse_problem(manifest, subject, other, earlier, series)
    looser = make_config(reference_run.bids_dir, tmp_path, reference_run.masks_dir,
                         registration_check_mm=3.0)
    assert "tolerance" in reuse_problem(manifest, subject, looser, earlier, series)
    changed = {**manifest, "inputs": {k: "0" * 64 for k in manifest["inputs"]}}
    assert "image files" in reuse_problem(changed, subject, cfg, earlier, series)
    assert "no successful run" in reuse_problem(None, subject, cfg, earlier, series)


def test_failed_seed_checks_are_recorded_under_their_own_key(sim_cohort, tmp_path):
    # a tolerance no two seeds meet: both checks fail; the manifest holds each check's flag
    # text under registration_check_flags (not among the T1w steps' segmentation_errors)
    from ironmap.core.qc.run_flags import evaluate
    from ironmap.workflows.participant_level import run_participant_level

    out = tmp_path / "strict"
    cfg = make_config(sim_cohort.bids_dir, out, sim_cohort.masks_dir,
                      participant_label=("001",), registration_check_mm=1e-6)
    assert run_participant_level(cfg) == 0
    summary = _summary(out, "sub-001")
    checks = summary["registration_seed_check"]
    assert sorted(summary["registration_check_flags"]) == sorted(checks) == ["FLAIR", "MEGRE"]
    assert not any(c["passed"] for c in checks.values())
    assert not any(k.startswith("registration_seeds_")
                   for k in summary.get("segmentation_errors") or {})
    flags = evaluate("sub-001", registration_checks=summary["registration_check_flags"])
    assert [(f.rule, f.item) for f in flags] == [("registration", "FLAIR->T1w seeds"),
                                                ("registration", "MEGRE->T1w seeds")]
