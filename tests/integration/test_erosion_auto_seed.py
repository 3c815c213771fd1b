"""``--erosion-space auto`` on the seed protocol's GRE (1 x 1 x 2 mm) is the seed's erosion.

The shared reference run (seed GRE and FLAIR voxels, rater masks, default erosion: one voxel
on the R2* grid) and a run with ``erosion_space="auto"`` must hold the same participant
outputs, byte for byte, except the eroded label image's sidecar, which names the rule.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_auto_erosion_on_the_seed_grid_equals_the_seed_erosion(reference_run, tmp_path):
    from _participant_fixtures import SUBJECTS, make_config, subject_files
    from ironmap.workflows.participant_level import run_participant_level

    assert reference_run.exit_code == 0
    out = tmp_path / "auto"
    cfg = make_config(reference_run.bids_dir, out, reference_run.masks_dir,
                      erosion_space="auto")
    assert run_participant_level(cfg) == 0
    for label in SUBJECTS:
        seed, auto = subject_files(reference_run.output_dir, label), subject_files(out, label)
        assert sorted(seed) == sorted(auto), label
        for rel, path in seed.items():
            if not rel.endswith(".json"):
                assert path.read_bytes() == auto[rel].read_bytes(), f"{rel} differs"
                continue
            a, b = json.loads(path.read_text()), json.loads(auto[rel].read_text())
            a.pop("GeneratedBy", None)
            b.pop("GeneratedBy", None)
            if "desc-deepgmeroded_dseg" in rel:
                assert b.pop("ErosionSpaceSetting") == "auto"
                assert "2 mm" in b.pop("ErosionSpaceRule")
                assert b.pop("ErosionSpaceVoxelSize") == pytest.approx([1.0, 1.0, 2.0])
                assert b.pop("ErosionSpaceVoxelSizeUnits") == "mm"
                assert a["ErosionSpace"] == "R2* grid" and a["ErosionVoxels"] == 1
            assert a == b, rel
