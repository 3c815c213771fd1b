"""CPU seconds of the exact participant-level cuts: the earlier and today's computation.

Times, in one process on the CPU clock (best of ``--repeats``), each computation that an
exact cut replaced, as it was (the reference copies the unit tests compare against) and as
it is now, on one participant's real arrays:

* the input checks of every image of ``anat/`` (``workflows.participant._check_values``);
* the echo-order check's NaN/Inf conversion of the GRE echoes;
* the lesion centroids of the participant's lesion mask on the R2* grid (a participant-level
  output; skipped without lesions);
* the first-echo SNR of the QC page.

Usage::

    python benchmarks/participant_cuts.py BIDS/sub-003/anat OUT/sub-003/anat [--repeats 5]

Both runs of each pair see the same arrays (decoded once beforehand, as the participant
level holds them), so the differences are the computations' own costs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

from test_input_checks import _reference_check  # noqa: E402
from test_report_qc import _reference_snr  # noqa: E402

from ironmap.core.lesions.lesion_values import label_lesions, lesion_centroids  # noqa: E402
from ironmap.core.qc.run_flags import first_echo_snr  # noqa: E402
from ironmap.report.subject import head_mask  # noqa: E402
from ironmap.workflows.participant import _check_values, _finite  # noqa: E402


def best(func, repeats: int) -> float:
    """Smallest CPU seconds of ``repeats`` calls of ``func()``."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        func()
        times.append(time.process_time() - t0)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("raw_anat", type=Path, help="the participant's raw anat/ folder")
    p.add_argument("out_anat", type=Path, help="its anat/ folder of the participant level")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    r = args.repeats
    files = sorted(args.raw_anat.glob("*.nii*"))
    imgs = [nib.load(f) for f in files]
    for img in imgs:
        img.get_fdata(dtype=np.float32)  # decoded and cached, as the participant level does
    rows = [(f"input checks, {len(imgs)} images",
             best(lambda: [_reference_check(i, Path("x")) for i in imgs], r),
             best(lambda: [_check_values(i, Path("x")) for i in imgs], r))]
    echoes = [i for f, i in zip(files, imgs, strict=True) if "MEGRE" in f.name]
    rows.append((f"echo-order check's NaN/Inf conversion, {len(echoes)} echoes",
                 best(lambda: [np.nan_to_num(i.get_fdata(dtype=np.float32)) for i in echoes], r),
                 best(lambda: [_finite(i.get_fdata(dtype=np.float32)) for i in echoes], r)))
    masks = sorted(args.out_anat.glob("*space-R2starmap_label-lesion_mask.nii*"))
    if masks:
        labels, n = label_lesions(np.asarray(nib.load(masks[0]).dataobj))
        if n:
            ids = np.arange(1, n + 1)
            boxes = ndimage.find_objects(labels, max_label=n)
            rows.append((f"lesion centroids, {n} lesions",
                         best(lambda: ndimage.center_of_mass(np.ones(labels.shape), labels,
                                                             ids), r),
                         best(lambda: lesion_centroids(labels, ids, boxes), r)))
    if echoes:
        echo1 = echoes[0].get_fdata(dtype=np.float32)
        head = head_mask(echo1)
        rows.append(("first-echo SNR", best(lambda: _reference_snr(echo1, head), r),
                     best(lambda: first_echo_snr(echo1, head), r)))
    print(f"{'computation':52s} {'before':>8s} {'after':>8s}  (CPU-s, best of {r})")
    for name, before, after in rows:
        print(f"{name:52s} {before:8.3f} {after:8.3f}")
    print(f"{'total':52s} {sum(b for _, b, _ in rows):8.3f} {sum(a for *_, a in rows):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
