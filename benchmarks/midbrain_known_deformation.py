"""The local midbrain SyN on known deformations of FSL's MNI152 (diagnosis and tuning).

    python benchmarks/midbrain_known_deformation.py OUT [--draws 1 2 3] [--identity]
        [--variants default ...]

Each *draw* warps FSL's MNI152 2 mm head (``$IRONMAP_SHARED_DATA/mni152_fsl``) by a random
pose and smooth field of the same family as the known-deformation test's
(``tests/unit/test_atlas.py::known_map``: rotation, scaling, translation, sinusoidal
displacement per axis) but with other angles, sizes, wavelengths and phases drawn from the
draw's seed, plus 2 % noise. ``--identity`` adds the undeformed head (no pose, no field).
The test's own map is never built here (it is the held-out case).

Per draw: the automatic route's global template registration
(:func:`ironmap.spatial.anatomy.automatic_labels`, default atlases, nilearn's ICBM152 2009a
template) once; then for every variant the local midbrain SyN
(:func:`ironmap.spatial.midbrain.refine_midbrain`). The truth is each atlas carried through the
known map (nearest neighbour). Written per draw, variant and SN/RN label: Dice with the truth
on the test's 2 mm grid and on a 1 mm grid over the midbrain (both carried by nearest
neighbour / ``genericLabel``), the centroid's distance to the truth's (mm), the local warp's
displacement at the label (mean and max, mm), the correlation in the box before and after;
``OUT/known_midbrain.tsv``.

``--sensitivity`` (no registration, seconds): per map and SN side, the Dice of the truth with
itself when the known map is shifted rigidly by 0.5 and 1 mm (20 random directions), i.e. how
much Dice a sub-millimetre misplacement costs on the 2 mm grid; ``OUT/sn_shift_dice.tsv``.
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
from scipy import ndimage  # noqa: E402

#: Local refinement variants: keyword arguments of ``refine_midbrain``. ``default`` follows
#: the route's defaults (``LOCAL_ITERATIONS``: 40/20/0 since the held-out decision in
#: docs/anatomy.md; 40/20/10, now ``iter_fine``, when the diagnosis table was measured).
#: ``*_volume*``: SN and RN carried volume-preserving (``--midbrain-transport volume``) with
#: the ``carried`` (sum of fractions) or ``affine`` (atlas volume x affine Jacobian) quota;
#: ``*_volume_sn``: SN alone so (``--midbrain-transport volume-sn``; RN keeps the winner);
#: ``global_*`` through the template registration alone.
VARIANTS: dict[str, dict] = {
    "global": {},
    "default": {"margin_mm": 12.0},
    "flow6": {"margin_mm": 12.0, "flow_sigma": 6.0},
    "total2": {"margin_mm": 12.0, "total_sigma": 2.0},
    "flow6_total2": {"margin_mm": 12.0, "flow_sigma": 6.0, "total_sigma": 2.0},
    "m20": {"margin_mm": 20.0},
    "mattes": {"margin_mm": 12.0, "metric": "mattes"},
    "iter_coarse": {"margin_mm": 12.0, "iterations": (40, 20, 0)},
    "iter_fine": {"margin_mm": 12.0, "iterations": (40, 20, 10)},
    "global_volume": {"volume": True, "quota": "carried"},
    "default_volume": {"margin_mm": 12.0, "volume": True, "quota": "carried"},
    "global_volume_affine": {"volume": True, "quota": "affine"},
    "default_volume_affine": {"margin_mm": 12.0, "volume": True, "quota": "affine"},
    "default_volume_sn": {"margin_mm": 12.0, "volume": ("substantia_nigra",),
                          "quota": "affine"},
}


def draw_map(seed: int | None):
    """Template world mm of subject world mm, (3, N) -> (3, N), for draw ``seed``.

    ``None`` gives the identity (the undeformed head).
    """
    if seed is None:
        return lambda xyz: np.asarray(xyz, float)
    rng = np.random.default_rng(1000 + seed)
    ax, ay, az = np.deg2rad(rng.uniform(-6, 6, 3))
    scale = rng.uniform(0.93, 1.07)
    shift = rng.uniform(-5, 5, (3, 1))
    amp = rng.uniform(1.5, 3.5, 3)
    wave = rng.uniform(70, 130, 3)
    phase = rng.uniform(0, 2 * np.pi, 3)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rot = rz @ ry @ rx

    def world(xyz):
        x, y, z = xyz
        disp = amp[:, None] * np.stack([np.sin(2 * np.pi * y / wave[0] + phase[0]),
                                        np.sin(2 * np.pi * z / wave[1] + phase[1]),
                                        np.sin(2 * np.pi * x / wave[2] + phase[2])])
        return (rot @ xyz) / scale + shift + disp
    return world


def sample(img, world, order):
    """Values of ``img`` at world points (3, N)."""
    inv = np.linalg.inv(img.affine)
    vox = inv[:3, :3] @ world + inv[:3, 3:4]
    arr = np.asarray(img.dataobj, dtype=np.float32)
    return ndimage.map_coordinates(arr, vox, order=order, mode="constant", cval=0.0)


def subject_and_truth(mni: nib.Nifti1Image, atlases, seed: int | None):
    """The deformed head (2 mm grid of the test) and the atlases' labels through the map."""
    from ironmap.spatial.anatomy import paint_regions

    shape = (96, 112, 96)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-95.0, -128.0, -76.0]
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    world = draw_map(seed)(affine[:3, :3] @ ijk + affine[:3, 3:4])
    t1 = sample(mni, world, order=1).reshape(shape)
    noise = np.random.default_rng(500 + (seed or 0)).normal(0, 0.02 * t1.max(), shape)
    t1 = t1 + noise * (t1 > 0)
    truth = paint_regions({pos: sample(a.labels, world, order=0).reshape(shape).astype(int)
                           for pos, a in enumerate(atlases)}, atlases)
    return nib.Nifti1Image(t1.astype(np.float32), affine), truth


def displacement_at(local, mask: np.ndarray, affine: np.ndarray) -> tuple[float, float]:
    """Mean and max length (mm) of the local warp at the world centres of ``mask``'s voxels."""
    from ironmap.spatial.registration import import_ants

    ants = import_ants()
    xyz = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    if not len(xyz):
        return float("nan"), float("nan")
    warp = [t for t in local.transforms if t.endswith("Warp.nii.gz")][:1]
    # transforms carry images template -> reference; points go the other way: the inverse
    # warp maps reference points back, its length is the same to first order
    inv = [w.replace("Warp.nii.gz", "InverseWarp.nii.gz") for w in warp]
    df = pd.DataFrame(xyz * [-1.0, -1.0, 1.0], columns=["x", "y", "z"])
    moved = ants.apply_transforms_to_points(3, df, inv).to_numpy() * [-1.0, -1.0, 1.0]
    d = np.linalg.norm(moved - xyz, axis=1)
    return float(d.mean()), float(d.max())


def fine_grid() -> nib.Nifti1Image:
    """A 1 mm grid over the midbrain of the subject's world (for Dice free of the 2 mm grid)."""
    affine = np.eye(4)
    affine[:3, 3] = [-40.0, -60.0, -45.0]
    return nib.Nifti1Image(np.zeros((81, 71, 66), np.float32), affine)


def fine_labels(atlases, transforms: list[str], world_map, volume=False,
                quota: str = "carried") -> tuple[np.ndarray, np.ndarray]:
    """SN and RN carried onto :func:`fine_grid` through ``transforms``, and their truth there."""
    from types import SimpleNamespace

    from ironmap.spatial.anatomy import choose_sources, midbrain_indices
    from ironmap.spatial.midbrain import refine_midbrain_labels

    grid = fine_grid()
    source = choose_sources(atlases)
    empty = np.zeros(grid.shape, np.int16)
    moved = refine_midbrain_labels(grid, empty, atlases, SimpleNamespace(transforms=transforms),
                                   midbrain_indices(), source, volume=volume,
                                   quota=quota)
    ijk = np.indices(grid.shape).reshape(3, -1).astype(float)
    world = world_map(grid.affine[:3, :3] @ ijk + grid.affine[:3, 3:4])
    truth = np.zeros(grid.shape, np.int16)
    for index in midbrain_indices():
        atlas = atlases[source[index]]
        truth[(sample(atlas.labels, world, 0).reshape(grid.shape) == index) & (truth == 0)] = index
    return moved, truth


def centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World centroid (mm) of a mask."""
    return np.argwhere(mask).mean(axis=0) @ affine[:3, :3].T + affine[:3, 3]


def run_draw(out: Path, seed: int | None, variants: list[str]) -> list[dict]:
    """Every variant on one draw; rows per variant and SN/RN label."""
    from types import SimpleNamespace

    from ironmap.io.atlas import find_atlases, packaged_atlas_folder, read_label_map
    from ironmap.spatial.anatomy import (
        automatic_labels,
        choose_sources,
        midbrain_indices,
        output_name,
        relabel_atlas,
    )
    from ironmap.spatial.midbrain import refine_midbrain, refine_midbrain_labels
    from ironmap.workflows.static_cache import cached_template

    shared = Path(os.environ["IRONMAP_SHARED_DATA"])
    mni = nib.load(str(shared / "mni152_fsl" / "MNI152_T1_2mm.nii.gz"))
    atlases = [relabel_atlas(a, read_label_map())
               for a in find_atlases(packaged_atlas_folder())]
    subject, truth = subject_and_truth(mni, atlases, seed)
    tag = "identity" if seed is None else f"draw{seed}"
    work = out / tag
    work.mkdir(parents=True, exist_ok=True)
    tpl = cached_template(2)
    wm = nib.Nifti1Image(tpl.wm.astype(np.float32), tpl.t1.affine)
    brain = nib.Nifti1Image(tpl.mask.astype(np.uint8), tpl.t1.affine)
    t0 = time.process_time()
    base, _, fit = automatic_labels(subject, atlases, tpl.t1, wm, workdir=str(work),
                                    registration_mm=2.0, template_brain=brain)
    print(f"{tag}: global fit {time.process_time() - t0:.0f} CPU-s", flush=True)
    fine_template = cached_template(1).t1
    rows = []
    for name in variants:
        kwargs = dict(VARIANTS[name])
        if isinstance(kwargs.get("volume"), tuple):  # region names -> output labels
            kwargs["volume"] = midbrain_indices(kwargs["volume"])
        local = None
        t0 = time.process_time()
        if name == "global":
            labels = base
        elif name.startswith("global_volume"):
            labels = refine_midbrain_labels(subject, base, atlases,
                                            SimpleNamespace(transforms=fit.transforms),
                                            midbrain_indices(), choose_sources(atlases),
                                            **kwargs)
        else:
            vdir = work / name
            vdir.mkdir(exist_ok=True)
            labels, local = refine_midbrain(subject, base, atlases, fit, fine_template,
                                            indices=midbrain_indices(),
                                            source=choose_sources(atlases),
                                            workdir=str(vdir), **kwargs)
        cpu = time.process_time() - t0
        fine, fine_truth = fine_labels(atlases, local.transforms if local else fit.transforms,
                                       draw_map(seed), volume=kwargs.get("volume", False),
                                       quota=kwargs.get("quota", "affine"))
        for index in midbrain_indices():
            fa, fb = fine == index, fine_truth == index
            a, b = labels == index, truth == index
            mean_d, max_d = (displacement_at(local, b, subject.affine) if local
                             else (0.0, 0.0))
            rows.append({
                "draw": tag, "variant": name, "label": output_name(index),
                "dice": round(2 * float((a & b).sum()) / max(1, a.sum() + b.sum()), 3),
                "dice_1mm": round(2 * float((fa & fb).sum()) / max(1, fa.sum() + fb.sum()), 3),
                "centroid_error_mm": round(float(np.linalg.norm(
                    centroid(a, subject.affine) - centroid(b, subject.affine))), 2),
                "auto_voxels": int(a.sum()), "true_voxels": int(b.sum()),
                "warp_mean_mm": round(mean_d, 2), "warp_max_mm": round(max_d, 2),
                "cc_before": round(local.similarity_before, 4) if local else np.nan,
                "cc_after": round(local.similarity_after, 4) if local else np.nan,
                "cpu_s": round(cpu, 1)})
        print(pd.DataFrame(rows[-len(midbrain_indices()):])
              [["variant", "label", "dice", "dice_1mm", "centroid_error_mm", "warp_mean_mm",
                "cc_before", "cc_after"]].to_string(index=False), flush=True)
    return rows


def shift_sensitivity(seed: int | None, shifts=(0.5, 1.0), n_directions: int = 20
                      ) -> list[dict]:
    """Dice of each SN truth label with itself under rigid shifts of the known map (mm)."""
    from ironmap.io.atlas import find_atlases, packaged_atlas_folder, read_label_map
    from ironmap.spatial.anatomy import choose_sources, output_index, relabel_atlas

    atlases = [relabel_atlas(a, read_label_map())
               for a in find_atlases(packaged_atlas_folder())]
    source = choose_sources(atlases)
    shape = (96, 112, 96)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-95.0, -128.0, -76.0]
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    world = draw_map(seed)(affine[:3, :3] @ ijk + affine[:3, 3:4])
    dirs = np.random.default_rng(0).normal(size=(n_directions, 3))
    dirs /= np.linalg.norm(dirs, axis=1)[:, None]
    rows = []
    for side in ("left", "right"):
        index = output_index("substantia_nigra", side)
        labels = atlases[source[index]].labels
        truth = sample(labels, world, 0) == index
        for shift in shifts:
            scores = []
            for d in dirs:
                moved = sample(labels, world + shift * d[:, None], 0) == index
                scores.append(2 * float((truth & moved).sum()) / (truth.sum() + moved.sum()))
            rows.append({"draw": "identity" if seed is None else f"draw{seed}", "side": side,
                         "voxels": int(truth.sum()), "shift_mm": shift,
                         "dice_mean": round(float(np.mean(scores)), 3),
                         "dice_min": round(float(np.min(scores)), 3)})
    return rows


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--draws", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--identity", action="store_true")
    ap.add_argument("--sensitivity", action="store_true")
    ap.add_argument("--variants", nargs="+", default=["global", "default"],
                    choices=sorted(VARIANTS))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = ([None] if args.identity else []) + list(args.draws)
    if args.sensitivity:
        table = pd.DataFrame([r for seed in seeds for r in shift_sensitivity(seed)])
        table.to_csv(args.out / "sn_shift_dice.tsv", sep="\t", index=False)
        print(table.to_string(index=False))
        return 0
    rows = []
    for seed in seeds:
        rows += run_draw(args.out, seed, args.variants)
        table = pd.DataFrame(rows)
        table.to_csv(args.out / "known_midbrain.tsv", sep="\t", index=False)
    table = pd.DataFrame(rows)
    sn = table[table["label"].str.contains("Nigra")]
    stats = sn.groupby("variant")[["dice", "dice_1mm", "centroid_error_mm"]]
    print(stats.agg(["min", "median", "mean"]).round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
