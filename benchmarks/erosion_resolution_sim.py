"""Erosion at clinical GRE voxels against the simulator's truth (rater masks, by hand).

    python benchmarks/erosion_resolution_sim.py DIR --seed S --voxel 3.4 [--hc 2 --rrms 2]
        [--candidates NAME ...]
    python benchmarks/erosion_resolution_sim.py --summary DIR [DIR ...]

1. ``simulate_cohort(DIR/sim, {"HC": hc, "RRMS": rrms}, sites=2, preset="fast", seed=S,
   anatomy="template")`` with the GRE at ``voxel`` mm isotropic (the XA30 field map: 3.4 mm,
   the Philips FFE: 3 mm) and the FLAIR, where the raters outline, at 1 x 1 x 3 mm; skipped
   when ``DIR/sim`` exists;
2. the participant level with the rater masks (``--masks``) once per level candidate, into
   ``DIR/<candidate>`` (skipped when its regional tables exist):

   - ``r2star_1vox``: the seed's one voxel (6-connected cross) on the R2* grid;
   - ``native_1vox``: one voxel on the rater masks' own grid before transport
     (``--erosion-space native``);
   - ``native_1mm``: 1 mm on that grid (``--erosion-space native --erosion-mm 1``);
     ``native_1.5mm``, ``native_2mm`` the same with 1.5 and 2 mm;
   - ``auto``: ``--erosion-space auto`` (the seed's voxel on the R2* grid up to 2 mm voxel
     edges, else 1.5 mm on the native grid; measured, not adopted as the default);

   and ``fallback_1mm`` recomputed from the ``r2star_1vox`` level's own labels, R2* map and
   fit flags with ``regional_stats(fallback_mm=1, min_voxels=10)`` (the level's
   ``--erosion-fallback-mm 1``);
3. per participant, candidate and region (both hemispheres pooled): mean R2*, voxels used,
   and the difference from ``truth/regions.tsv`` ``r2star_true``.

No candidate looks at R2* to choose voxels. Written: ``DIR/erosion_resolution.tsv``; with
``--summary``, per candidate and region over all folders: participants with a value, median
and worst |difference| (%), median voxels (``erosion_resolution_summary.tsv`` in the first
folder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REGIONS = ("caudate", "putamen", "globus_pallidus", "substantia_nigra", "red_nucleus",
           "dentate_nucleus")
LEVEL_ARGS = {"r2star_1vox": ["--erosion-space", "r2star"],
              "native_1vox": ["--erosion-space", "native"],
              "native_1mm": ["--erosion-space", "native", "--erosion-mm", "1"],
              "native_1.5mm": ["--erosion-space", "native", "--erosion-mm", "1.5"],
              "native_2mm": ["--erosion-space", "native", "--erosion-mm", "2"],
              "auto": ["--erosion-space", "auto"]}
CANDIDATES = ("r2star_1vox", "native_1vox", "native_1mm", "native_1.5mm", "native_2mm",
              "fallback_1mm", "auto")


def simulate(folder: Path, seed: int, voxel: float, hc: int, rrms: int) -> Path:
    """The template-built cohort with its GRE at ``voxel`` mm (kept when it exists)."""
    from ironmap.workflows.simulate import simulate_cohort

    sim = folder / "sim"
    if not (sim / "truth" / "regions.tsv").exists():
        simulate_cohort(sim, subjects_per_group={"HC": hc, "RRMS": rrms}, sites=2,
                        preset="fast", seed=seed, anatomy="template",
                        voxel_size={"MEGRE": (voxel,) * 3, "FLAIR": (1.0, 1.0, 3.0)})
    return sim


def run_level(sim: Path, out: Path, extra) -> float:
    """The participant level with the rater masks; its CPU seconds (0 when already done)."""
    from ironmap.cli.main import main

    if (out / "group" / "regional_r2star.tsv").exists():
        return 0.0
    start = time.process_time()
    code = main([str(sim / "bids"), str(out), "participant", "--masks",
                 str(sim / "bids" / "derivatives" / "raters"), *extra])
    if code != 0:
        raise SystemExit(f"participant level failed ({code}) into {out}")
    return time.process_time() - start


def _tables(folder: Path, cand: str) -> dict[str, pd.DataFrame]:
    """Per participant, the regional table of one candidate."""
    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.io.outputs import derivative_path
    from ironmap.io.tables import read_tsv
    from ironmap.spatial.grid import voxel_sizes

    level = folder / ("r2star_1vox" if cand == "fallback_1mm" else cand)
    out = {}
    for sub in sorted(p.name for p in level.glob("sub-*") if p.is_dir()):
        if cand != "fallback_1mm":
            out[sub] = read_tsv(derivative_path(level, "regions_table", sub))
            continue
        img = nib.load(derivative_path(level, "r2starmap", sub))
        labels = np.asarray(nib.load(derivative_path(level, "dseg_r2star", sub)).dataobj)
        flags = np.asarray(nib.load(derivative_path(level, "fitflags", sub)).dataobj)
        names_t = read_tsv(derivative_path(level, "dseg_labels", sub))
        names = dict(zip(names_t["index"].astype(int), names_t["name"], strict=True))
        out[sub] = regional_stats(np.asarray(img.dataobj, float), labels.astype(int), names,
                                  flags=flags, voxel_sizes=voxel_sizes(img.affine),
                                  fallback_mm=1.0, min_voxels=10)
    return out


def evaluate(folder: Path, candidates) -> pd.DataFrame:
    """Per participant, candidate and region: R2* vs truth and voxels used."""
    from ironmap.io.tables import read_tsv

    truth = read_tsv(folder / "sim" / "truth" / "regions.tsv")
    truth = truth[truth.hemisphere == "bilateral"].set_index(["participant_id", "region"])
    rows = []
    for cand in candidates:
        for sub, table in _tables(folder, cand).items():
            bil = table[table.hemisphere == "bilateral"].set_index("region")
            for region in REGIONS:
                true = float(truth.loc[(sub, region), "r2star_true"])
                have = region in bil.index
                value = float(bil.loc[region, "r2star_mean"]) if have else float("nan")
                rows.append({"folder": folder.name, "participant": sub, "candidate": cand,
                             "region": region, "r2star": value, "truth": true,
                             "rel_diff_pct": 100 * (value / true - 1),
                             "voxels": int(bil.loc[region, "n_voxels"]) if have else 0})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "erosion_resolution.tsv", sep="\t", index=False)
    return table


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per candidate and region: coverage, median and worst |difference| (%), voxels."""
    g = table.groupby(["candidate", "region"], sort=False)
    return pd.DataFrame({
        "with_value": g["rel_diff_pct"].count(),
        "participants": g["participant"].count(),
        "median_abs_pct": g["rel_diff_pct"].apply(lambda s: s.abs().median()),
        "median_pct": g["rel_diff_pct"].median(),
        "worst_abs_pct": g["rel_diff_pct"].apply(lambda s: s.abs().max()),
        "voxels": g["voxels"].median(),
        "voxels_min": g["voxels"].min()}).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--seed", type=int, default=201)
    ap.add_argument("--voxel", type=float, default=3.4, help="GRE voxel edge (mm)")
    ap.add_argument("--hc", type=int, default=2)
    ap.add_argument("--rrms", type=int, default=2)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES[:-1]),
                    choices=CANDIDATES)
    ap.add_argument("--summary", action="store_true",
                    help="only summarise finished folders (their erosion_resolution.tsv)")
    args = ap.parse_args()
    if args.summary:
        table = pd.concat([pd.read_csv(f / "erosion_resolution.tsv", sep="\t")
                           for f in args.folders], ignore_index=True)
        table = table[table.candidate.isin(args.candidates)]
    else:
        (folder,) = args.folders
        sim = simulate(folder, args.seed, args.voxel, args.hc, args.rrms)
        for cand in args.candidates:
            if cand in LEVEL_ARGS:
                cpu = run_level(sim, folder / cand, LEVEL_ARGS[cand])
                print(f"{cand}: participant level {cpu:.0f} CPU-s", flush=True)
        table = evaluate(folder, args.candidates)
    summary = summarise(table)
    summary.to_csv(args.folders[0] / "erosion_resolution_summary.tsv", sep="\t", index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
