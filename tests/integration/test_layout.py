"""The derivative layout names every output file, and its column dictionaries match the tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ironmap.io import layout
from ironmap.io.layout import (
    LAYOUT,
    column_dictionary,
    file_name,
    find_output,
    output_path,
    relative_path,
)
from ironmap.io.outputs import OUTPUTS, derivative_path
from ironmap.io.tables import read_dictionary, read_tsv


def test_paths_follow_bids_entities_with_and_without_sessions():
    assert relative_path("r2starmap", "01") == "sub-01/anat/sub-01_R2starmap.nii.gz"
    assert relative_path("r2starmap", "sub-01", "ses-2") == \
        "sub-01/ses-2/anat/sub-01_ses-2_R2starmap.nii.gz"
    assert relative_path("manifest", "01", "2") == "logs/manifests/sub-01_ses-2.json"
    assert relative_path("subject_page", "01", "2") == "sub-01_ses-2.html"
    assert relative_path("group_regional") == "group/regional_r2star.tsv"
    assert relative_path("config_participant_run", stamp="20261207T010000Z-42") == \
        "logs/config-participant-20261207T010000Z-42.json"
    assert output_path("/out", "table1") == Path("/out/group/table1.tsv")
    assert file_name("regions_table", "01") == "sub-01_desc-regions_r2star.tsv"
    assert file_name("page_key") == "page-key.json"


def test_participant_output_needs_a_participant():
    with pytest.raises(ValueError, match="participant_id"):
        relative_path("r2starmap")
    with pytest.raises(KeyError):
        relative_path("no_such_output")


def test_legacy_registry_is_the_layouts_participant_part():
    assert OUTPUTS["r2starmap"] == ("anat", "R2starmap.nii.gz")
    assert OUTPUTS["figure_dir"] == ("figures", "")
    assert "page_key" not in OUTPUTS and "group_regional" not in OUTPUTS
    for key in OUTPUTS:
        assert derivative_path("/o", key, "01", "1") == output_path("/o", key, "01", "1")


def test_patterns_are_unique_and_levels_known():
    patterns = [o.pattern for o in LAYOUT.values()]
    assert len(patterns) == len(set(patterns))
    assert {o.level for o in LAYOUT.values()} <= set(layout.LEVELS)


def test_find_output_inverts_relative_path():
    for key, out in LAYOUT.items():
        rel = relative_path(key, "01", "2", stamp="20261207T010000Z-1")
        assert find_output(rel) == key, key
        if out.pattern.endswith(".nii.gz") or (out.is_table and out.columns is not None):
            sidecar = rel.rsplit(".tsv", 1)[0] if rel.endswith(".tsv") else rel[:-7]
            assert find_output(sidecar + ".json") == key
    assert find_output("sub-01/figures/sub-01_desc-r2star_overview.svg") == "figure_dir"
    assert find_output("group/notes.tsv") is None
    assert find_output("sub-01/anat/sub-01_unknown.nii.gz") is None


def test_every_table_has_a_column_dictionary():
    without = [k for k, o in LAYOUT.items() if o.is_table and o.columns is None]
    assert without == ["dseg_labels"]  # a BIDS dseg look-up table, written without sidecar


def test_group_dictionaries_describe_the_columns_the_group_level_writes(tmp_path):
    """Run the group level on a small fake study; every column of its tables is described
    by the layout's dictionary (the JSON sidecars written equal what the layout builds)."""
    import numpy as np

    from _group_fixtures import write_study
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.group_level import run_group_level

    bids, out, _ = write_study(tmp_path, np.random.default_rng(3),
                               {"HC": 8, "RRMS": 5, "SPMS": 3, "PPMS": 3})
    cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="group", report=False)
    assert run_group_level(cfg) == 0
    for key in ("table1", "table2", "agefit"):
        table = read_tsv(output_path(out, key))
        written = read_dictionary(output_path(out, key))
        assert set(written) == set(table.columns), key
        assert all(entry["Description"] for entry in written.values()), key
    t1 = read_tsv(output_path(out, "table1"))
    assert read_dictionary(output_path(out, "table1")) == column_dictionary("table1", t1)


def test_every_file_of_a_participant_run_is_named_by_the_layout(reference_run):
    out = reference_run.output_dir
    files = [p.relative_to(out).as_posix() for p in sorted(out.rglob("*")) if p.is_file()]
    assert files
    assert [f for f in files if find_output(f) is None] == []
    keys = {find_output(f) for f in files}
    assert {"r2starmap", "regions_table", "group_regional", "group_lesions", "manifest",
            "subject_log", "failures", "dataset_description", "config_participant"} <= keys
    # the cohort table carries the layout's dictionary for every column it has
    table = read_tsv(output_path(out, "group_regional"))
    written = read_dictionary(output_path(out, "group_regional"))
    assert written == column_dictionary("group_regional", table.columns[2:])
    failures = read_tsv(output_path(out, "failures"))
    assert list(failures.columns) == list(column_dictionary("failures"))
    assert isinstance(failures, pd.DataFrame)


def test_every_output_is_listed_in_the_docs():
    text = (Path(__file__).resolve().parents[2] / "docs" / "outputs.md").read_text()
    assert [k for k, o in LAYOUT.items() if f"| `{k}` | `{o.pattern}` |" not in text] == []
