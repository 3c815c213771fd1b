"""The demo's automatic anatomy check: comparison table and report text from the table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ironmap.core.regions.anatomy_check import CHECK_COLUMNS, compare_regional, label_dice


def _regional(values: dict[str, tuple[float, int]]) -> pd.DataFrame:
    rows = []
    for region, (mean, n) in values.items():
        for hemi in ("left", "right", "bilateral"):
            rows.append({"region": region, "hemisphere": hemi,
                         "r2star_mean": mean if n else np.nan, "n_voxels": n})
    rows.append({"region": "nawm", "hemisphere": "bilateral", "r2star_mean": 20.0,
                 "n_voxels": 900})
    return pd.DataFrame(rows)


RATER = _regional({"caudate": (20.0, 100), "putamen": (25.0, 200),
                   "substantia_nigra": (32.0, 10), "dentate_nucleus": (26.0, 50)})
AUTO = _regional({"caudate": (19.0, 120), "putamen": (25.5, 180),
                  "substantia_nigra": (0.0, 0), "dentate_nucleus": (20.8, 40)})


def test_comparison_rows_differences_and_order():
    t = compare_regional(RATER, AUTO, "sub-001", {"caudate": 0.8})
    assert list(t.columns) == list(CHECK_COLUMNS)
    assert set(t["participant_id"]) == {"sub-001"}
    assert "nawm" not in set(t["region"])  # reference regions are not seed regions
    assert list(t["region"].unique()) == ["caudate", "putamen", "substantia_nigra",
                                          "dentate_nucleus"]
    bil = t[t["hemisphere"] == "bilateral"].set_index("region")
    assert bil.loc["caudate", "difference"] == pytest.approx(-1.0)
    assert bil.loc["caudate", "difference_pct"] == pytest.approx(-5.0)
    assert bil.loc["dentate_nucleus", "difference_pct"] == pytest.approx(-20.0)
    assert bil.loc["caudate", "dice"] == 0.8 and np.isnan(bil.loc["putamen", "dice"])
    assert np.isnan(bil.loc["substantia_nigra", "difference"])  # no automatic voxel left
    assert bil.loc["substantia_nigra", "n_voxels_automatic"] == 0
    assert t[t["hemisphere"] == "left"]["dice"].isna().all()


def test_label_dice_pools_putamen_parts():
    rater = np.zeros((4, 4, 4), int)
    auto = np.zeros_like(rater)
    rater[0, :2] = 1   # caudate, 8 voxels
    auto[0, :1] = 1    # caudate, 4 voxels inside it
    rater[2] = 2       # putamen, 16 voxels, whole label
    auto[2, :2] = 3    # anterior part
    auto[2, 2:] = 4    # posterior part
    d = label_dice(rater, {1: "Left-Caudate", 2: "Left-Putamen"}, auto,
                   {1: "Left-Caudate", 3: "Left-Putamen-Anterior",
                    4: "Left-Putamen-Posterior"})
    assert d["caudate"] == pytest.approx(2 * 4 / 12)
    assert d["putamen"] == pytest.approx(1.0)
    assert np.isnan(d["red_nucleus"])
    with pytest.raises(ValueError, match="shape"):
        label_dice(rater, {}, auto[:2], {})


def test_report_text_agrees_with_the_table():
    from ironmap.report.study import anatomy_check_text, anatomy_check_view

    t = compare_regional(RATER, AUTO, "sub-001")
    record = {"ParticipantId": "sub-001", "Cohort": "autocheck/cohort"}
    text = anatomy_check_text(t, record)
    both = t[(t["hemisphere"] == "bilateral") & t["difference"].notna()]
    pct = both["difference_pct"].to_numpy()
    assert "sub-001 of autocheck/cohort" in text
    assert f"Over the {len(both)} regions" in text
    assert f"median of {np.median(np.abs(pct)):.1f} %" in text
    assert f"from {pct.min():+.1f} % to {pct.max():+.1f} %" in text
    assert "dentate nucleus, -5.20 s⁻¹ (-20.0 %)" in text
    assert re.search(r"no voxel left .*: substantia nigra\.", text)
    view = anatomy_check_view(t, {"AutomaticAnatomyCheck": record})
    assert view["text"] == text
    assert len(view["table"].rows) == len(t[t["hemisphere"] == "bilateral"])
    assert anatomy_check_view(None, {}) is None
