"""Iron-contrast refinement of SN, RN and dentate on a finished automatic-anatomy benchmark.

    python benchmarks/nuclei_refine_sim.py DIR [--mode iron|iron-all|sn] [--max-shift-mm 2]
        [--shell-mm 2] [--split halves|parity] [--erosion-mm D] [--per-label]

``DIR`` is a folder of ``benchmarks/automatic_anatomy_sim.py`` (``sim``, ``rater``, ``auto``)
whose automatic level ran with ``--nuclei-refine none``. For each participant the automatic
labels on the R2* grid are refined with :func:`ironmap.core.regions.nuclei_refine.refine_nuclei`
(the function the participant level calls for ``--nuclei-refine``, on the same R2* map)
and the regional table is recomputed with the level's own :func:`regional_stats` (one-voxel
erosion on the R2* grid, fit flags excluded; or ``--erosion-mm``). Printed and written to
``DIR/refine.tsv``: per participant and region, automatic (before / after) vs rater-mask mean
R2*, Dice with the rater labels and with the simulator's true labels, chosen shifts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automatic_anatomy_sim import dice, region_mask, true_labels_on_gre  # noqa: E402

NUCLEI = ("substantia_nigra", "red_nucleus", "dentate_nucleus")


def _mean(table: pd.DataFrame, region: str) -> tuple[float, int]:
    row = table[(table.region == region) & (table.hemisphere == "bilateral")]
    if not len(row):
        return float("nan"), 0
    return float(row.r2star_mean.iloc[0]), int(row.n_voxels.iloc[0])


def evaluate(folder: Path, max_shift_mm: float, shell_mm: float,
             erosion_mm: float | None, per_label: bool = False,
             split: str = "halves", axis: int = 2, mode: str = "iron") -> pd.DataFrame:
    """Per participant and nucleus: before / after refinement against rater and truth."""
    from ironmap.core.regions.nuclei_refine import refine_nuclei
    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.io.outputs import derivative_path
    from ironmap.io.tables import read_tsv
    from ironmap.spatial.grid import voxel_sizes
    from ironmap.workflows.nuclei import refine_groups

    rows = []
    for sub in sorted(p.name for p in (folder / "auto").glob("sub-*") if p.is_dir()):
        auto, rater = folder / "auto", folder / "rater"
        img = nib.load(derivative_path(auto, "r2starmap", sub))
        r2 = np.asarray(img.dataobj, dtype=float)
        flags = np.asarray(nib.load(derivative_path(auto, "fitflags", sub)).dataobj)
        sizes = voxel_sizes(img.affine)
        la = np.asarray(nib.load(derivative_path(auto, "dseg_r2star", sub)).dataobj).astype(int)
        names_t = read_tsv(derivative_path(auto, "dseg_labels", sub))
        names = dict(zip(names_t["index"].astype(int), names_t["name"], strict=True))
        lr = np.asarray(nib.load(derivative_path(rater, "dseg_r2star", sub)).dataobj)
        nr = read_tsv(derivative_path(rater, "dseg_labels", sub))
        rtab = read_tsv(derivative_path(rater, "regions_table", sub))
        groups = (refine_groups(names, mode) if mode != "sn" else
                  [[i for i in names if region_mask(np.array([i]), names_t,
                                                    "substantia_nigra")[0]]])
        if per_label:
            groups = [i for g in groups for i in g]
        refined, _, shifts = refine_nuclei(la, r2, groups, sizes,
                                           max_shift_mm=max_shift_mm, shell_mm=shell_mm,
                                           free=la == 40, split=split,
                                           slice_axis=axis)
        opts = ({"erosion_mm": erosion_mm} if erosion_mm is not None else {})
        before = regional_stats(r2, la, names, flags=flags, voxel_sizes=sizes, **opts)
        after = regional_stats(r2, refined, names, flags=flags, voxel_sizes=sizes, **opts)
        if erosion_mm is not None:
            rnames = dict(zip(nr["index"].astype(int), nr["name"], strict=True))
            rtab = regional_stats(r2, lr, rnames, flags=flags, voxel_sizes=sizes, **opts)
        truth, _ = true_labels_on_gre(folder / "sim", sub)
        from ironmap.sim import anatomy

        for region in NUCLEI:
            parts = [r for r in anatomy.DSEG_REGIONS if r.startswith(region)]
            true = np.isin(truth, [i for r in parts for i in anatomy.DSEG_REGIONS[r]])
            mr, nvr = _mean(rtab, region)
            mb, nb = _mean(before, region)
            ma, na = _mean(after, region)
            rm = region_mask(lr, nr, region)
            bm, am = region_mask(la, names_t, region), region_mask(refined, names_t, region)
            idx = [i for i, n in names.items() if region_mask(np.array([i]), names_t, region)[0]]
            rows.append({"participant": sub, "region": region, "rater": mr,
                         "before": mb, "after": ma,
                         "before_pct": 100 * (mb / mr - 1), "after_pct": 100 * (ma / mr - 1),
                         "n_rater": nvr, "n_before": nb, "n_after": na,
                         "dice_rater_before": dice(bm, rm), "dice_rater_after": dice(am, rm),
                         "dice_true_before": dice(bm, true), "dice_true_after": dice(am, true),
                         "shifts_mm": ";".join(f"{s.fold0}/{s.fold1}"
                                               for s in shifts if s.index in idx)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--max-shift-mm", type=float, default=2.0)
    ap.add_argument("--shell-mm", type=float, default=2.0)
    ap.add_argument("--erosion-mm", type=float, default=None)
    ap.add_argument("--per-label", action="store_true",
                    help="one shift per label instead of the shipped groups")
    ap.add_argument("--split", default="halves", choices=["parity", "halves"])
    ap.add_argument("--axis", type=int, default=2, help="grid axis split into the two folds")
    ap.add_argument("--mode", default="iron", choices=["iron", "iron-all", "sn"],
                    help="what is moved (--nuclei-refine; sn: the substantia nigra alone, "
                         "both sides one shift)")
    args = ap.parse_args()
    table = evaluate(args.folder, args.max_shift_mm, args.shell_mm, args.erosion_mm,
                     args.per_label, args.split, args.axis, args.mode)
    table.to_csv(args.folder / "refine.tsv", sep="\t", index=False)
    with pd.option_context("display.width", 220):
        print(table.round(3).to_string())
        g = table.groupby("region", sort=False)
        summary = pd.DataFrame({
            "before_abs_pct": g["before_pct"].apply(lambda s: s.abs().median()),
            "after_abs_pct": g["after_pct"].apply(lambda s: s.abs().median()),
            "after_n_valid": g["after_pct"].count(),
            "dice_rater_before": g["dice_rater_before"].median(),
            "dice_rater_after": g["dice_rater_after"].median(),
            "dice_true_before": g["dice_true_before"].median(),
            "dice_true_after": g["dice_true_after"].median()})
        print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
