"""Local midbrain refinement of the template registration, measured on simulated cohorts.

    python benchmarks/midbrain_local_sim.py DIR [DIR ...] [--variants NAME ...]
        [--candidates r2star_1vox r2star_1mm fallback_1mm]

Each ``DIR`` is a finished ``benchmarks/automatic_anatomy_sim.py`` folder (``sim``, ``rater``,
``auto``; the automatic level with ``--erosion-space native`` as for
``benchmarks/erosion_candidates_sim.py``). Per participant:

1. the automatic route's global template registration is run again on the participant's T1w
   (:func:`ironmap.workflows.anatomy.label_reference`, same code, seed and thread count as
   the level; its SN/RN on the R2* grid are checked to equal the level's, column
   ``reproduced``);
2. for every variant, the local refinement (:mod:`ironmap.spatial.midbrain`): a SyN inside a
   box around SN + RN at 1 mm, started from the global fit; SN and RN are carried through the
   composition, put on the R2* grid with the level's GRE -> T1w transform (nearest
   neighbour) and replace the SN/RN of the level's own label image (every other label,
   including the dentate moved by the level's default refinement, stays);
3. the regional table recomputed with the level's ``regional_stats`` for each candidate
   erosion (:mod:`erosion_candidates_sim`), against the rater masks' own table (the seed's
   one-voxel erosion); Dice with the rater labels and with the simulator's true labels.

Variant ``global`` is the level's labels as they are (today). The simulator's true tissue
R2* of each region (``sim/truth/regions.tsv``) is compared too (``auto_vs_true_pct``,
``rater_vs_true_pct``): is the rater value itself a sensible reference? CPU seconds of each local
refinement (process time) are recorded. Written: ``DIR/midbrain_local.tsv`` (per
participant) and ``midbrain_local_summary.tsv`` in the first folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automatic_anatomy_sim import REGIONS, dice, region_mask, true_labels_on_gre  # noqa: E402
from erosion_candidates_sim import (  # noqa: E402
    _bilateral,
    _options,
    rater_reference,
    summarise,
)

#: Local refinement settings tried (margin mm, metric, iterations at shrink 4/2/1 or 2/1).
VARIANTS: dict[str, dict] = {
    "mattes_m12": {"margin": 12.0, "metric": "mattes", "iterations": (40, 20, 10)},
    "cc_m12": {"margin": 12.0, "metric": "CC", "iterations": (40, 20, 10)},
    "mattes_m20": {"margin": 20.0, "metric": "mattes", "iterations": (40, 20, 10)},
    "cc_m20": {"margin": 20.0, "metric": "CC", "iterations": (40, 20, 10)},
    "mattes_m12_fine": {"margin": 12.0, "metric": "mattes", "iterations": (40, 40, 20)},
}


def global_fit(ref, atlases, work: Path, sub: str):
    """The route's global registration and labels, kept in ``work`` for reruns."""
    import json

    from ironmap.spatial.atlas import NonlinearFit
    from ironmap.workflows.anatomy import label_reference

    saved = work / "global.json"
    if saved.exists():
        info = json.loads(saved.read_text())
        labels = np.asarray(nib.load(work / "global_labels.nii.gz").dataobj).astype(np.int16)
        return labels, NonlinearFit(info["transforms"], info["similarity"],
                                    info["inverse"]), info["cpu_s"]
    c0 = time.process_time()
    labels, _, fit = label_reference(ref, atlases, str(work), sub)
    cpu = time.process_time() - c0
    nib.save(nib.Nifti1Image(labels.astype(np.int16), ref.affine), work / "global_labels.nii.gz")
    saved.write_text(json.dumps({"transforms": fit.transforms, "similarity": fit.similarity,
                                 "inverse": fit.inverse_transforms, "cpu_s": cpu}))
    return labels, fit, cpu


def local_fit(ref, on_ref, atlases, fit, tpl1, work: Path, v: dict):
    """One variant's refined labels on the T1w grid, CPU-s and box correlations (cached)."""
    import json

    from ironmap.spatial.anatomy import choose_sources, midbrain_indices
    from ironmap.spatial.midbrain import refine_midbrain

    saved = work / "local.json"
    if saved.exists():
        info = json.loads(saved.read_text())
        labels = np.asarray(nib.load(work / "local_labels.nii.gz").dataobj).astype(np.int16)
        return labels, info["cpu_s"], info["before"], info["after"]
    work.mkdir(exist_ok=True)
    c0 = time.process_time()
    new, local = refine_midbrain(ref, on_ref, atlases, fit, tpl1, indices=midbrain_indices(),
                                 source=choose_sources(atlases), workdir=str(work),
                                 margin_mm=v["margin"], iterations=v["iterations"],
                                 metric=v["metric"])
    cpu = time.process_time() - c0
    nib.save(nib.Nifti1Image(new, ref.affine), work / "local_labels.nii.gz")
    saved.write_text(json.dumps({"cpu_s": cpu, "before": local.similarity_before,
                                 "after": local.similarity_after}))
    return new, cpu, local.similarity_before, local.similarity_after


def evaluate(folder: Path, variants, candidates, atlases, tpl1,
             rater_erosion_mm: float | None = None) -> pd.DataFrame:
    """Per participant, variant, candidate and region: automatic vs rater, Dice, CPU."""
    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.io.nifti import load_image
    from ironmap.io.outputs import derivative_path
    from ironmap.io.tables import read_tsv
    from ironmap.sim import anatomy
    from ironmap.spatial.anatomy import NAWM_INDEX, midbrain_indices
    from ironmap.spatial.grid import resample_labels, voxel_sizes
    from ironmap.spatial.registration import load_transform

    auto, rater = folder / "auto", folder / "rater"
    mid = midbrain_indices()
    rows = []
    for sub in sorted(p.name for p in auto.glob("sub-*") if p.is_dir()):
        if not derivative_path(auto, "regions_table", sub).exists():
            continue
        ref = load_image(folder / "sim" / "bids" / sub / "anat" / f"{sub}_T1w.nii.gz")
        work = folder / "midbrain" / sub
        work.mkdir(parents=True, exist_ok=True)
        on_ref, fit, cpu_global = global_fit(ref, atlases, work, sub)
        r2img = nib.load(derivative_path(auto, "r2starmap", sub))
        r2 = np.asarray(r2img.dataobj, dtype=float)
        flags = np.asarray(nib.load(derivative_path(auto, "fitflags", sub)).dataobj)
        sizes = voxel_sizes(r2img.affine)
        to_ref = np.linalg.inv(np.asarray(load_transform(
            derivative_path(auto, "xfm_megre_to_t1w", sub)).matrix, float))
        base = np.asarray(nib.load(derivative_path(auto, "dseg_r2star", sub)).dataobj).astype(int)
        native = np.asarray(nib.load(derivative_path(auto, "dseg_eroded", sub)).dataobj)
        names_t = read_tsv(derivative_path(auto, "dseg_labels", sub))
        names = dict(zip(names_t["index"].astype(int), names_t["name"], strict=True))
        glob_r2 = resample_labels(nib.Nifti1Image(on_ref, ref.affine), r2img, to_ref)
        same = all(np.array_equal(glob_r2 == i, base == i) for i in mid)
        lr, nr, rtab = rater_reference(rater, sub, r2, flags, sizes, rater_erosion_mm)
        truth, _ = true_labels_on_gre(folder / "sim", sub)
        tissue = pd.read_csv(folder / "sim" / "truth" / "regions.tsv", sep="\t")
        tissue = tissue[(tissue.participant_id == sub) & (tissue.hemisphere == "bilateral")]
        tissue = dict(zip(tissue.region, tissue.r2star_true, strict=True))
        sets = {"global": (base, 0.0, float("nan"), float("nan"))}
        for name in variants:
            v = VARIANTS[name]
            new, cpu, before, after = local_fit(ref, on_ref, atlases, fit, tpl1, work / name, v)
            new_r2 = resample_labels(nib.Nifti1Image(new, ref.affine), r2img, to_ref)
            lab = base.copy()
            lab[np.isin(lab, mid)] = 0
            for i in mid:
                lab[(new_r2 == i) & ((lab == 0) | (lab == NAWM_INDEX))] = i
            sets[name] = (lab, cpu, before, after)
        for name, (la, cpu, s0, s1) in sets.items():
            for cand in candidates:
                opts = _options(cand, la, names, sizes, native, 10)
                tab = regional_stats(r2, la, names, flags=flags, voxel_sizes=sizes, **opts)
                for region in REGIONS:
                    parts = [r for r in anatomy.DSEG_REGIONS if r.startswith(region)]
                    true = np.isin(truth, [i for r in parts for i in anatomy.DSEG_REGIONS[r]])
                    mr, nvr = _bilateral(rtab, region)
                    ma, nva = _bilateral(tab, region)
                    am = region_mask(la, names_t, region)
                    rows.append({"folder": folder.name, "participant": sub, "variant": name,
                                 "candidate": cand, "region": region, "auto_r2star": ma,
                                 "rater_r2star": mr, "rel_diff_pct": 100 * (ma / mr - 1),
                                 "true_r2star": tissue.get(region, float("nan")),
                                 "auto_vs_true_pct": 100 * (ma / tissue.get(region, np.nan) - 1),
                                 "rater_vs_true_pct": 100 * (mr / tissue.get(region, np.nan)
                                                             - 1),
                                 "auto_voxels": nva, "rater_voxels": nvr,
                                 "dice": dice(am, region_mask(lr, nr, region)),
                                 "dice_true": dice(am, true), "cpu_s": cpu,
                                 "cpu_global_s": cpu_global, "reproduced": same,
                                 "corr_before": s0, "corr_after": s1})
        print(sub, "done", flush=True)
    table = pd.DataFrame(rows)
    suffix = "" if rater_erosion_mm is None else f"_rater{rater_erosion_mm:g}mm"
    table.to_csv(folder / f"midbrain_local{suffix}.tsv", sep="\t", index=False)
    return table


def main() -> None:
    from ironmap.spatial.segmentation import load_template
    from ironmap.workflows.anatomy import load_atlases
    from ironmap.workflows.config import RunConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--variants", nargs="*", default=["mattes_m12"], choices=list(VARIANTS))
    ap.add_argument("--candidates", nargs="+",
                    default=["r2star_1vox", "r2star_1mm", "fallback_1mm"])
    ap.add_argument("--rater-erosion-mm", type=float, default=None,
                    help="compare with the rater masks eroded by this distance on the R2* "
                         "grid instead of the seed's one voxel (their own table)")
    args = ap.parse_args()
    atlases = load_atlases(RunConfig(Path("."), Path("."), "participant"))
    tpl1 = load_template(1).t1
    table = pd.concat([evaluate(f, args.variants, args.candidates, atlases, tpl1,
                                args.rater_erosion_mm)
                       for f in args.folders], ignore_index=True)
    table["candidate"] = table["variant"] + ":" + table["candidate"]
    summary = summarise(table)
    g = table.groupby(["candidate", "region"], sort=False)
    summary["dice_true"] = g["dice_true"].median().to_numpy()
    summary["cpu_s"] = g["cpu_s"].median().to_numpy()
    for col in ("auto_vs_true_pct", "rater_vs_true_pct"):
        summary[col] = g[col].apply(lambda v: v.abs().median()).to_numpy()
    suffix = "" if args.rater_erosion_mm is None else f"_rater{args.rater_erosion_mm:g}mm"
    summary.to_csv(args.folders[0] / f"midbrain_local_summary{suffix}.tsv", sep="\t",
                   index=False)
    with pd.option_context("display.width", 220, "display.max_rows", 500):
        print(table[table.region.isin(["substantia_nigra", "red_nucleus"])].round(3)
              .drop(columns=["folder"]).to_string())
        print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
