"""Benchmark and validation of ironmap tissue volumes (run by hand, not in CI).

    python benchmarks/volumes.py mni       # FSL MNI152 1 mm brain vs FSL FAST (Dice, volumes)
    python benchmarks/volumes.py sim DIR   # a simulated cohort (truth/volumes.tsv) vs ironmap
    python benchmarks/volumes.py real [NAME ...]  # real T1w: volumes, plausibility, brain mask

Prints time and peak memory (ru_maxrss) per subject. Threads: ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS
(default 2 here, the 2-core reference machine).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

SHARED = Path(os.environ.get("IRONMAP_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mni() -> None:
    """Segment the FSL MNI152 1 mm brain; compare with FAST's segmentation shipped beside it."""
    from ironmap.core.regions.tissue_volumes import tissue_volumes
    from ironmap.spatial.grid import resample_labels
    from ironmap.spatial.segmentation import segment_tissues

    folder = SHARED / "mni152_fsl"
    t1 = nib.load(folder / "MNI152_T1_1mm_brain.nii.gz")
    t1 = nib.Nifti1Image(t1.get_fdata(dtype=np.float32), t1.affine)
    fast_img = nib.load(folder / "MNI152_T1_1mm_Brain_FAST_seg.nii.gz")
    t0 = time.perf_counter()
    seg = segment_tissues(t1, label="MNI152_T1_1mm_brain")
    dt = time.perf_counter() - t0
    fast = resample_labels(fast_img, t1)
    ours = np.argmax(np.stack([seg.csf, seg.gm, seg.wm]), axis=0) + 1
    ours[~seg.mask] = 0
    vols = tissue_volumes(seg.gm, seg.wm, seg.csf, seg.voxel_sizes, deep_gm=seg.deep)
    print(f"time {dt:.1f} s, peak memory {_peak_mb():.0f} MB")
    for k, name in ((1, "csf"), (2, "gm"), (3, "wm")):
        a, b = ours == k, fast == k
        dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
        print(f"{name}: Dice {dice:.3f}, ironmap {vols[name + '_cm3']:.1f} cm3 "
              f"(hard {a.sum() / 1000:.1f}), FAST {b.sum() / 1000:.1f} cm3")


def sim(cohort: Path) -> None:
    """Run subject_volumes on every T1w of a simulated cohort and compare with the truth."""
    import pandas as pd

    from ironmap.workflows.volumes import subject_volumes

    truth = pd.read_csv(cohort / "truth" / "volumes.tsv", sep="\t").set_index("participant_id")
    out = cohort / "volumes_benchmark"
    for sub in truth.index:
        t0 = time.perf_counter()
        row = subject_volumes(cohort / "bids" / sub / "anat" / f"{sub}_T1w.nii.gz", sub, None,
                              out)
        dt = time.perf_counter() - t0
        t = truth.loc[sub]
        errs = " ".join(f"{k} {100 * (row[k + '_cm3'] / t[k + '_cm3'] - 1):+.1f}%"
                        for k in ("gm", "cortical_gm", "deep_gm", "wm", "csf"))
        print(f"{sub}: {dt:.1f} s, peak {_peak_mb():.0f} MB, {errs}, scaling "
              f"{row['scaling_factor']:.3f} (true 1/head_scale^3 {t.head_scale ** -3:.3f})")


#: name -> (T1w, reference brain mask or None; "nonzero" = the image's non-zero voxels)
REAL = {
    "xa30_mprage": ("dcm_qa_xa30/nifti_ref/5_anat-T1w_acq-tfl.nii", None),
    "mni152_2mm_head": ("mni152_fsl/MNI152_T1_2mm.nii.gz",
                        "mni152_fsl/MNI152_T1_2mm_Brain_Mask.nii.gz"),
    "mni152_1mm_brain": ("mni152_fsl/MNI152_T1_1mm_brain.nii.gz",
                         "mni152_fsl/MNI152_T1_1mm_Brain_Mask.nii.gz"),
    **{f"open_ms_{p}": (f"open_ms_data/cross_sectional/MNI/patient{p}/"
                        "T1_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz",
                        "nonzero") for p in ("07", "19", "26")},
    "open_ms_long_study1_2d": ("open_ms_data/longitudinal/raw/patient01/study1_T1W.nii.gz",
                               None),
    "open_ms_long_study2_2d": ("open_ms_data/longitudinal/raw/patient01/study2_T1W.nii.gz",
                               None),
}


def real(names: list[str]) -> None:
    """Volumes (plausible or refused), brain mask volume and Dice against a reference."""
    from ironmap.core.regions.tissue_volumes import (
        implausible_volumes,
        normalise_volumes,
        tissue_volumes,
    )
    from ironmap.spatial.brain import brain_mask
    from ironmap.spatial.grid import resample_labels
    from ironmap.spatial.segmentation import SegmentationError, segment_tissues

    for name in names or list(REAL):
        rel, ref = REAL[name]
        img = nib.load(SHARED / rel)
        img = nib.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine)
        t0, cpu0 = time.perf_counter(), time.process_time()
        try:
            seg = segment_tissues(img, label=name)
        except SegmentationError as exc:
            print(f"{name}: REFUSED ({exc}), {time.perf_counter() - t0:.0f} s")
            continue
        dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        vols = tissue_volumes(seg.gm, seg.wm, seg.csf, seg.voxel_sizes, deep_gm=seg.deep)
        row = normalise_volumes(vols, abs(np.linalg.det(seg.subject_to_template[:3, :3])))
        problems = implausible_volumes(row, seg.template_brain_cm3)
        mask = brain_mask(seg.gm, seg.wm, seg.csf, seg.voxel_sizes)
        vox = float(np.prod(seg.voxel_sizes)) / 1000.0
        text = (f"{name}: {dt:.0f} s wall, {cpu:.0f} s CPU, peak {_peak_mb():.0f} MB, "
                f"registration corr {seg.similarity:.2f}; GM {row['gm_cm3']:.0f} (cortical "
                f"{row['cortical_gm_cm3']:.0f}) WM {row['wm_cm3']:.0f} CSF {row['csf_cm3']:.0f} "
                f"cm3, factor {row['scaling_factor']:.2f}; "
                f"{'PLAUSIBLE' if not problems else 'FLAGGED: ' + '; '.join(problems)}; "
                f"brain mask {mask.sum() * vox:.0f} cm3")
        if ref is not None:
            truth = (np.asarray(img.dataobj) != 0 if ref == "nonzero" else
                     resample_labels(nib.load(SHARED / ref), img) > 0)
            dice = 2 * np.sum(mask & truth) / (mask.sum() + truth.sum())
            text += f", reference {truth.sum() * vox:.0f} cm3, Dice {dice:.3f}"
        print(text, flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sim":
        sim(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "real":
        real(sys.argv[2:])
    else:
        mni()
