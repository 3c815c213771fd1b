"""Erosion of automatic labels: candidates against the rater masks on simulated cohorts.

    python benchmarks/erosion_candidates_sim.py DIR [DIR ...] [--min-voxels 10]
        [--candidates NAME ...] [--rater-erosion-mm D] [--move-sn both|sides]

Each ``DIR`` is a finished ``benchmarks/automatic_anatomy_sim.py`` folder whose automatic
level ran with ``--auto-args='--erosion-space native'`` (so that its ``dseg_eroded`` holds
the labels eroded by one voxel on the T1w grid before transport; its ``dseg_r2star`` holds
the labels before erosion, identical to a run on the R2* grid). The rater masks keep the
seed's one-voxel erosion on the R2* grid (their own regional table). For every participant
the automatic regional table is recomputed with the level's own ``regional_stats`` on the
level's own R2* map and fit flags, for each candidate erosion of the automatic labels:

- ``r2star_1vox``: one step of the 6-connected cross on the R2* grid (the seed's rule);
- ``r2star_1mm``: 1 mm on the R2* grid (voxel centres within 1 mm of the outside removed);
- ``r2star_1.5mm``: 1.5 mm on the R2* grid (in-plane diagonal neighbours removed too);
- ``r2star_none``: no erosion;
- ``native_1vox``: one voxel on the T1w grid before transport (``--erosion-space native``);
- ``fallback_1mm``: the seed's one voxel, but a label (region and hemisphere) that would keep
  fewer than ``--min-voxels`` voxels is eroded by 1 mm instead (decided on the label's shape
  alone, never on R2*; the participant level's ``--erosion-fallback-mm 1``, through
  ``regional_stats(fallback_mm=...)``); ``fallback_1.5mm`` the same with 1.5 mm.

``--move-sn``: before the candidates are applied, the automatic substantia nigra is moved on
the R2* contrast with the participant level's own cross-fitted refinement
(:func:`ironmap.core.regions.nuclei_refine.refine_nuclei`, its default shift range and shell;
the white-matter reference label may be taken and is cleared from the moved label's rim as
the level does), the SN alone: ``both`` one shift for both sides, ``sides`` one per side. The
red nucleus is not moved; the dentate stays where the level's default refinement put it.

Printed and written to ``DIR/erosion_candidates.tsv`` (per participant) and, over all
folders, ``erosion_summary.tsv`` in the first folder: per candidate and region the median
and worst relative difference from the rater-mask value, participants with a value, median
Dice of the label images (before erosion) and voxel counts after erosion.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automatic_anatomy_sim import REGIONS, dice, region_mask  # noqa: E402

CANDIDATES = ("r2star_1vox", "r2star_1mm", "r2star_1.5mm", "r2star_none", "native_1vox",
              "fallback_1mm", "fallback_1.5mm")


def _bilateral(table: pd.DataFrame, region: str) -> tuple[float, int]:
    row = table[(table.region == region) & (table.hemisphere == "bilateral")]
    if not len(row):
        return float("nan"), 0
    return float(row.r2star_mean.iloc[0]), int(row.n_voxels.iloc[0])


def move_sn(labels: np.ndarray, names: dict[int, str], r2: np.ndarray, sizes,
            how: str = "both") -> np.ndarray:
    """The automatic SN alone moved on the R2* map as the level's refinement moves nuclei."""
    from ironmap.core.regions.nuclei_refine import refine_nuclei
    from ironmap.core.regions.regional_values import region_key
    from ironmap.spatial.anatomy import NAWM_INDEX
    from ironmap.workflows.nuclei import _clear_rim

    sides: dict[str | None, list[int]] = {}
    for i, n in names.items():
        region, hemi = region_key(str(n))
        if region == "substantia_nigra":
            sides.setdefault(hemi, []).append(int(i))
    groups = list(sides.values()) if how == "sides" else [sorted(sum(sides.values(), []))]
    moved, _, shifts = refine_nuclei(labels, r2, [g for g in groups if g], sizes,
                                     free=labels == NAWM_INDEX)
    _clear_rim(moved, [s.index for s in shifts if any(s.fold0) or any(s.fold1)], NAWM_INDEX)
    return moved


def _options(cand: str, la, names, sizes, native, minimum: int) -> dict:
    """``regional_stats`` keyword arguments of one candidate."""
    from ironmap.core.regions.regional_values import restrict_labels

    fixed = {"r2star_1vox": {"erosion_voxels": 1}, "r2star_1mm": {"erosion_mm": 1.0},
             "r2star_1.5mm": {"erosion_mm": 1.5}, "r2star_none": {"erosion_voxels": 0}}
    if cand in fixed:
        return fixed[cand]
    if cand == "native_1vox":
        return {"eroded_labels": restrict_labels(native, la)}
    # the participant level's own fallback (--erosion-fallback-mm)
    return {"fallback_mm": 1.5 if cand == "fallback_1.5mm" else 1.0, "min_voxels": minimum}


def rater_reference(rater: Path, sub: str, r2, flags, sizes,
                    rater_erosion_mm: float | None = None):
    """The rater level's labels on the R2* grid, their names and regional table.

    The table is the rater level's own (the seed's one-voxel erosion), or recomputed on
    ``r2`` with ``rater_erosion_mm`` on the R2* grid.
    """
    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.io.outputs import derivative_path
    from ironmap.io.tables import read_tsv

    lr = np.asarray(nib.load(derivative_path(rater, "dseg_r2star", sub)).dataobj)
    nr = read_tsv(derivative_path(rater, "dseg_labels", sub))
    rtab = read_tsv(derivative_path(rater, "regions_table", sub))
    if rater_erosion_mm is not None:
        rnames = dict(zip(nr["index"].astype(int), nr["name"], strict=True))
        rtab = regional_stats(r2, lr, rnames, flags=flags, voxel_sizes=sizes,
                              erosion_mm=rater_erosion_mm)
    return lr, nr, rtab


def evaluate(folder: Path, minimum: int, candidates=CANDIDATES,
             rater_erosion_mm: float | None = None, sn: str | None = None) -> pd.DataFrame:
    """Per participant, candidate and region: automatic vs rater mean R2*, Dice, voxels.

    ``rater_erosion_mm``: the rater table recomputed with that erosion on the R2* grid
    instead of the rater level's own (the seed's one voxel). ``sn``: move the automatic SN
    first (:func:`move_sn`; ``native_1vox`` then keeps the unmoved natively eroded labels).
    """
    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.io.outputs import derivative_path
    from ironmap.io.tables import read_tsv
    from ironmap.spatial.grid import voxel_sizes

    rows = []
    auto, rater = folder / "auto", folder / "rater"
    for sub in sorted(p.name for p in auto.glob("sub-*") if p.is_dir()):
        if not derivative_path(auto, "regions_table", sub).exists():
            print(sub, "automatic level failed", flush=True)
            continue
        img = nib.load(derivative_path(auto, "r2starmap", sub))
        r2 = np.asarray(img.dataobj, dtype=float)
        flags = np.asarray(nib.load(derivative_path(auto, "fitflags", sub)).dataobj)
        sizes = voxel_sizes(img.affine)
        la = np.asarray(nib.load(derivative_path(auto, "dseg_r2star", sub)).dataobj).astype(int)
        native = np.asarray(nib.load(derivative_path(auto, "dseg_eroded", sub)).dataobj)
        names_t = read_tsv(derivative_path(auto, "dseg_labels", sub))
        names = dict(zip(names_t["index"].astype(int), names_t["name"], strict=True))
        if sn:
            la = move_sn(la, names, r2, sizes, sn)
        lr, nr, rtab = rater_reference(rater, sub, r2, flags, sizes, rater_erosion_mm)
        for cand in candidates:
            opts = _options(cand, la, names, sizes, native, minimum)
            tab = regional_stats(r2, la, names, flags=flags, voxel_sizes=sizes, **opts)
            for region in REGIONS:
                mr, nvr = _bilateral(rtab, region)
                ma, nva = _bilateral(tab, region)
                rows.append({"folder": folder.name, "participant": sub, "candidate": cand,
                             "region": region, "auto_r2star": ma, "rater_r2star": mr,
                             "rel_diff_pct": 100 * (ma / mr - 1), "auto_voxels": nva,
                             "rater_voxels": nvr,
                             "dice": dice(region_mask(la, names_t, region),
                                          region_mask(lr, nr, region))})
    table = pd.DataFrame(rows)
    name = "erosion_candidates" + ("" if rater_erosion_mm is None else
                                   f"_rater{rater_erosion_mm:g}mm") + (f"_sn{sn}" if sn else "")
    table.to_csv(folder / f"{name}.tsv", sep="\t", index=False)
    return table


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per candidate and region: median / worst difference, coverage, Dice, voxels."""
    def worst(s: pd.Series) -> float:
        s = s.dropna()
        return float(s.iloc[int(np.argmax(s.abs().to_numpy()))]) if len(s) else float("nan")

    g = table.groupby(["candidate", "region"], sort=False)
    return pd.DataFrame({
        "median_abs_pct": g["rel_diff_pct"].apply(lambda s: s.abs().median()),
        "median_pct": g["rel_diff_pct"].median(),
        "worst_pct": g["rel_diff_pct"].apply(worst),
        "with_value": g["rel_diff_pct"].count(),
        "participants": g["participant"].count(),
        "dice": g["dice"].median(),
        "auto_voxels": g["auto_voxels"].median(),
        "auto_voxels_min": g["auto_voxels"].min(),
        "rater_voxels": g["rater_voxels"].median()}).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--min-voxels", type=int, default=10,
                    help="fallback_1mm: labels keeping fewer voxels are eroded by 1 mm")
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    ap.add_argument("--rater-erosion-mm", type=float, default=None,
                    help="compare with the rater masks eroded by this distance on the R2* "
                         "grid instead of the seed's one voxel")
    ap.add_argument("--move-sn", choices=["both", "sides"], default=None,
                    help="move the automatic SN alone on the R2* contrast first (one shift for "
                         "both sides, or one per side)")
    args = ap.parse_args()
    table = pd.concat([evaluate(f, args.min_voxels, args.candidates, args.rater_erosion_mm,
                                args.move_sn)
                       for f in args.folders], ignore_index=True)
    summary = summarise(table)
    suffix = ("" if args.rater_erosion_mm is None else f"_rater{args.rater_erosion_mm:g}mm") \
        + (f"_sn{args.move_sn}" if args.move_sn else "")
    summary.to_csv(args.folders[0] / f"erosion_summary{suffix}.tsv", sep="\t", index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.round(2).to_string())
        print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
