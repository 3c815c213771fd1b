"""Partial-volume-aware SN (fraction core) measured on simulated cohorts with saved registrations.

    python benchmarks/sn_core_sim.py DIR [DIR ...] [--levels 0.5 0.6 ...] [--variant cc_m12]

Each ``DIR`` is a finished ``benchmarks/midbrain_local_sim.py`` folder: ``sim``, ``rater``,
``auto`` and ``midbrain/sub-*/`` with the route's template registration and the local
midbrain SyN (``VARIANT/``) kept. Per participant the SN labels of the atlas are carried
through the composed transforms (``local`` = local SyN + template registration; ``global``
= template registration alone) straight onto the R2* grid as fractions
(:func:`ironmap.spatial.label_fraction.label_fractions`), and the SN's regional mean R2*
(both sides pooled, fit flags excluded, no further erosion) over the voxels whose fraction
is at least each level is compared with the rater masks' value (the seed's one-voxel
erosion) and with the simulator's true tissue R2*. Written: ``DIR/sn_core.tsv``.

Run with the working directory holding the folders (the saved transform paths are relative).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automatic_anatomy_sim import dice, true_labels_on_gre  # noqa: E402
from erosion_candidates_sim import _bilateral, rater_reference  # noqa: E402

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def evaluate(folder: Path, atlases, levels, variant: str) -> pd.DataFrame:
    """Per participant, transport and level: SN mean R2* against the rater and the truth."""
    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.io.outputs import derivative_path
    from ironmap.sim import anatomy
    from ironmap.spatial.anatomy import choose_sources, output_index, output_name
    from ironmap.spatial.grid import resample_labels, voxel_sizes
    from ironmap.spatial.label_fraction import label_fractions
    from ironmap.spatial.registration import load_transform

    auto, rater = folder / "auto", folder / "rater"
    sn = [output_index("substantia_nigra", h) for h in ("left", "right")]
    source = choose_sources(atlases)
    rows = []
    for work in sorted((folder / "midbrain").glob("sub-*")):
        sub = work.name
        info = json.loads((work / "global.json").read_text())
        local = sorted(str(p) for p in (work / variant).glob("local_1Warp.nii.gz"))
        r2img = nib.load(derivative_path(auto, "r2starmap", sub))
        r2 = np.asarray(r2img.dataobj, dtype=float)
        flags = np.asarray(nib.load(derivative_path(auto, "fitflags", sub)).dataobj)
        sizes = voxel_sizes(r2img.affine)
        to_ref = np.linalg.inv(np.asarray(load_transform(
            derivative_path(auto, "xfm_megre_to_t1w", sub)).matrix, float))
        lr, nr, rtab = rater_reference(rater, sub, r2, flags, sizes)
        mr, nvr = _bilateral(rtab, "substantia_nigra")
        truth, _ = true_labels_on_gre(folder / "sim", sub)
        true_sn = np.isin(truth, [i for r in anatomy.DSEG_REGIONS if r.startswith(
            "substantia_nigra") for i in anatomy.DSEG_REGIONS[r]])
        tissue = pd.read_csv(folder / "sim" / "truth" / "regions.tsv", sep="\t")
        tissue = tissue[(tissue.participant_id == sub) & (tissue.hemisphere == "bilateral")
                        & (tissue.region == "substantia_nigra")].r2star_true.iloc[0]
        labels_t1 = {"global": work / "global_labels.nii.gz",
                     "local": work / variant / "local_labels.nii.gz"}
        chains = {"global": info["transforms"], "local": local + info["transforms"]}
        rater_sn = np.isin(lr, [int(i) for i, n in zip(nr["index"], nr["name"], strict=True)
                                if "nigra" in str(n).lower()])
        for name, chain in chains.items():
            on_ref = nib.load(labels_t1[name])
            near = resample_labels(on_ref, r2img, to_ref)
            pos = source[sn[0]]
            frac = label_fractions(r2img, to_ref, atlases[pos].labels, sn, chain, near)
            names = {i: output_name(i) for i in sn}
            for level in levels:
                lab = np.zeros(r2.shape, np.int16)
                for i in sn:
                    lab[frac[i] >= level] = i
                tab = regional_stats(r2, lab, names, flags=flags, voxel_sizes=sizes,
                                     erosion_voxels=0)
                ma, nva = _bilateral(tab, "substantia_nigra")
                rows.append({"folder": folder.name, "participant": sub, "transport": name,
                             "level": level, "auto_r2star": ma, "rater_r2star": mr,
                             "rel_diff_pct": 100 * (ma / mr - 1), "true_r2star": tissue,
                             "auto_vs_true_pct": 100 * (ma / tissue - 1),
                             "rater_vs_true_pct": 100 * (mr / tissue - 1),
                             "auto_voxels": nva, "rater_voxels": nvr,
                             "dice_rater": dice(lab > 0, rater_sn),
                             "dice_true": dice(lab > 0, true_sn)})
            near_sn = np.isin(near, sn)
            rows.append({"folder": folder.name, "participant": sub, "transport": name,
                         "level": -1, "auto_voxels": int(near_sn.sum()),
                         "dice_rater": dice(near_sn, rater_sn),
                         "dice_true": dice(near_sn, true_sn)})
        print(sub, "done", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(folder / "sn_core.tsv", sep="\t", index=False)
    return table


def main() -> None:
    from ironmap.workflows.anatomy import load_atlases
    from ironmap.workflows.config import RunConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--levels", type=float, nargs="+", default=list(LEVELS))
    ap.add_argument("--variant", default="cc_m12")
    args = ap.parse_args()
    atlases = load_atlases(RunConfig(Path("."), Path("."), "participant"))
    table = pd.concat([evaluate(f, atlases, args.levels, args.variant) for f in args.folders],
                      ignore_index=True)
    t = table[table.level >= 0]
    g = t.groupby(["transport", "level"])
    summary = pd.DataFrame({
        "median_abs_pct": g.rel_diff_pct.apply(lambda v: v.abs().median()),
        "median_signed_pct": g.rel_diff_pct.median(),
        "worst_pct": g.rel_diff_pct.apply(lambda v: v.loc[v.abs().idxmax()] if v.notna().any()
                                          else np.nan),
        "n_ref": g.rel_diff_pct.apply(lambda v: int(v.notna().sum())),
        "vs_true_abs_pct": g.auto_vs_true_pct.apply(lambda v: v.abs().median()),
        "vs_true_signed_pct": g.auto_vs_true_pct.median(),
        "voxels": g.auto_voxels.median(), "min_voxels": g.auto_voxels.min(),
        "dice_rater": g.dice_rater.median(), "dice_true": g.dice_true.median()})
    with pd.option_context("display.width", 220, "display.max_rows", 500):
        print(t.drop(columns=["folder"]).round(2).to_string())
        print(table[table.level < 0][["participant", "transport", "auto_voxels", "dice_rater",
                                      "dice_true"]].round(3).to_string())
        print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
