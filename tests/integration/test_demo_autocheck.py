"""``ironmap demo``'s automatic anatomy check on a tiny demo-like cohort.

One extra simulated participant (template-built head) is processed with its rater masks and
with automatic anatomy (real ANTs registration); the comparison table must agree with both
participant-level outputs, the report must state what the table holds, and the study's group
tables must not change because of the check.
"""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.io.layout import output_path
from ironmap.io.tables import read_dictionary, read_tsv

# a 5-participant demo plus real ANTs SyN on one participant: about 160 CPU-s; 24 min wall
# on the shared 2-core machine at load average 20
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from ironmap.workflows.demo import run_demo_stages

    out = tmp_path_factory.mktemp("demo-autocheck")
    return run_demo_stages(out, subjects_per_group={"HC": 2, "RRMS": 1, "SPMS": 1, "PPMS": 1},
                           nprocs=2, progress=False, preset="fast", auto_check=True)


def test_check_table_matches_both_runs_and_records_the_participant(demo):
    deriv = demo.out_dir / "ironmap"
    assert "automatic anatomy check" in demo.timings
    assert demo.exit_codes["automatic anatomy check"] == 0
    assert demo.cpu_seconds["automatic anatomy check"] > 1  # measured in its process
    table = read_tsv(output_path(deriv, "autoanatomy_check"))
    record = read_dictionary(output_path(deriv, "autoanatomy_check"))["AutomaticAnatomyCheck"]
    pid = record["ParticipantId"]
    assert set(table["participant_id"]) == {pid}
    assert record["InGroupStatistics"] is False
    assert record["AutomaticMasksSource"] == "automatic"
    rater = read_tsv(output_path(demo.out_dir / record["RaterDerivatives"], "regions_table", pid))
    auto = read_tsv(output_path(demo.out_dir / record["AutomaticDerivatives"], "regions_table",
                                pid))
    bil = table[table["hemisphere"] == "bilateral"].set_index("region")
    for src, col in ((rater, "r2star_rater"), (auto, "r2star_automatic")):
        ref = src[src["hemisphere"] == "bilateral"].set_index("region")["r2star_mean"]
        for region, value in bil[col].items():
            assert value == pytest.approx(ref[region], abs=1e-3, nan_ok=True), region
    diff = bil["r2star_automatic"] - bil["r2star_rater"]
    assert np.allclose(bil["difference"], diff, atol=2e-4, equal_nan=True)
    assert np.allclose(bil["difference_pct"], 100 * diff / bil["r2star_rater"], atol=2e-3,
                       equal_nan=True)
    # the automatic route on a template-built head: basal ganglia close to the rater masks
    # (regression bound, wider than the 3 % goal at the seed's resolution: 2x2x3 mm here)
    for region in ("caudate", "putamen"):
        assert abs(bil.loc[region, "difference_pct"]) < 10, region
        assert bil.loc[region, "dice"] > 0.5, region


def test_report_section_states_the_table(demo):
    from ironmap.report.study import anatomy_check_text

    deriv = demo.out_dir / "ironmap"
    html = demo.report.read_text(encoding="utf-8")
    table = read_tsv(output_path(deriv, "autoanatomy_check"))
    record = read_dictionary(output_path(deriv, "autoanatomy_check"))["AutomaticAnatomyCheck"]
    assert '<section id="autoanatomy">' in html
    text = anatomy_check_text(table, record)
    assert text in html.replace("&#39;", "'")
    both = table[(table["hemisphere"] == "bilateral") & table["difference"].notna()]
    assert f"median of {np.median(np.abs(both['difference_pct'])):.1f} %" in text


def test_group_tables_do_not_count_the_check(demo):
    """The check's participant is no group member; the group level gives the same tables
    after the check as before it."""
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.group_level import run_group_level

    deriv = demo.out_dir / "ironmap"
    parts = read_tsv(demo.out_dir / "cohort" / "bids" / "participants.tsv")
    regional = read_tsv(output_path(deriv, "group_regional"))
    assert sorted(regional["participant_id"].unique()) == sorted(parts["participant_id"])
    assert not regional.duplicated(["participant_id", "region", "hemisphere"]).any()
    keys = ("group_regional", "table1", "table2", "agefit", "group_lesions")
    before = {k: output_path(deriv, k).read_bytes() for k in keys}
    cohort = demo.out_dir / "cohort" / "bids"
    cfg = RunConfig(bids_dir=cohort, output_dir=deriv, analysis_level="group",
                    masks=(cohort / "derivatives" / "raters",), report=False, overwrite=True)
    # rerun without the check's table: nothing the group level writes depends on it
    check = output_path(deriv, "autoanatomy_check")
    check.rename(check.with_suffix(".moved"))
    try:
        assert run_group_level(cfg) == 0
    finally:
        check.with_suffix(".moved").rename(check)
    after = {k: output_path(deriv, k).read_bytes() for k in keys}
    assert after == before
    n = read_tsv(output_path(deriv, "table1")).set_index("group")["n"]
    counts = parts["group"].value_counts()
    assert {g: int(n[g]) for g in counts.index} == counts.to_dict()  # the check's HC not added
