"""Pool finished ``automatic_anatomy_sim.py`` folders and score them per region (by hand).

    python benchmarks/automatic_anatomy_pool.py DIR [DIR ...]

Each ``DIR`` is a finished ``benchmarks/automatic_anatomy_sim.py`` folder (``sim``, ``rater``,
``auto``). Per participant and region (both hemispheres pooled): automatic vs rater-mask mean
R2* (the benchmark's own ``compare``), Dice, valid voxels, and both against the simulator's
true tissue R2* (``sim/truth/regions.tsv``). Per region, over all participants of all folders:
the median |automatic - rater| over the participants whose rater region keeps a voxel after its
erosion (a participant without a rater value has no reference), the worst signed difference,
how many participants have a reference and an automatic value, and whether the issue's goal
(3 % caudate/putamen/pallidum, 5 % SN/RN/dentate) is met. Written: ``pooled.tsv`` (per
participant) in the first folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automatic_anatomy_sim import GOALS_PCT, compare  # noqa: E402


def pooled(folders: list[Path]) -> pd.DataFrame:
    """Per participant and region of every folder, with the true tissue R2*."""
    parts = []
    for folder in folders:
        table = compare(folder / "auto", folder / "rater")
        truth = pd.read_csv(folder / "sim" / "truth" / "regions.tsv", sep="\t")
        truth = truth[truth["hemisphere"] == "bilateral"].rename(
            columns={"participant_id": "participant"})
        table = table.merge(truth[["participant", "region", "r2star_true"]], how="left",
                            on=["participant", "region"])
        table.insert(0, "folder", folder.name)
        parts.append(table)
    out = pd.concat(parts, ignore_index=True)
    for kind in ("auto", "rater"):
        out[f"{kind}_vs_true_pct"] = 100 * (out[f"{kind}_r2star"] / out["r2star_true"] - 1)
    return out


def score(table: pd.DataFrame) -> pd.DataFrame:
    """Per region: medians over the participants with a rater value, goal met or not."""
    rows = []
    for region, g in table.groupby("region", sort=False):
        ref = g[g["rater_r2star"].notna()]
        diff = ref["rel_diff_pct"].dropna()
        rows.append({
            "region": region, "median_abs_diff_pct": diff.abs().median(),
            "median_diff_pct": diff.median(),
            "worst_diff_pct": diff.loc[diff.abs().idxmax()] if len(diff) else float("nan"),
            "n_reference": len(ref), "n_automatic": len(diff),
            "median_dice": g["dice"].median(), "min_dice": g["dice"].min(),
            "max_dice": g["dice"].max(),
            "median_auto_voxels": g["auto_voxels"].median(),
            "median_rater_voxels": g["rater_voxels"].median(),
            "median_abs_auto_vs_true_pct": g["auto_vs_true_pct"].abs().median(),
            "median_abs_rater_vs_true_pct": g["rater_vs_true_pct"].abs().median(),
            "goal_pct": GOALS_PCT[region]})
    out = pd.DataFrame(rows)
    out["met"] = (out["median_abs_diff_pct"] <= out["goal_pct"]) & (
        out["n_automatic"] == out["n_reference"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    args = ap.parse_args()
    table = pooled(args.folders)
    table.to_csv(args.folders[0] / "pooled.tsv", sep="\t", index=False)
    summary = score(table)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(f"{table.groupby(['folder', 'participant']).ngroups} participants")
        print(summary.round(2).to_string())
        for column in ("rel_diff_pct", "dice", "auto_vs_true_pct", "rater_vs_true_pct"):
            print(column)
            print(table.pivot_table(index=["folder", "participant"], columns="region",
                                    values=column).round(2).to_string())
        print(table.pivot_table(index=["folder", "participant"], columns="region",
                                values=["auto_voxels", "rater_voxels"]).to_string())


if __name__ == "__main__":
    main()
