"""Tissue classes and volumes on real T1w (skipped without ``../shared/data``).

FSL's MNI152 1 mm brain against the FSL FAST segmentation shipped beside it (Dice of hard
CSF/GM/WM labels must not fall below the previous k-means version's 0.57 / 0.84 / 0.85), and an
open_ms_data patient's T1w: its volumes are either inside every plausible range or refused with
``volumes_valid`` false - never silently absurd.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from conftest import require_shared

#: one template registration and segmentation each (about 1 CPU-min at 1 mm)
pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.timeout(2400)]

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

#: Dice vs FAST of the k-means version (docs/volumes.md), the floor the priors must keep
PREVIOUS_DICE = {"csf": 0.57, "gm": 0.84, "wm": 0.85}


def test_mni152_tissue_dice_against_fast_is_kept():
    from ironmap.spatial.grid import resample_labels
    from ironmap.spatial.segmentation import segment_tissues

    t1 = nib.load(require_shared("mni152_fsl", "MNI152_T1_1mm_brain.nii.gz"))
    fast = nib.load(require_shared("mni152_fsl", "MNI152_T1_1mm_Brain_FAST_seg.nii.gz"))
    t1 = nib.Nifti1Image(t1.get_fdata(dtype=np.float32), t1.affine)
    seg = segment_tissues(t1, label="MNI152_T1_1mm_brain")
    ours = np.argmax(np.stack([seg.csf, seg.gm, seg.wm]), axis=0) + 1
    ours[~seg.mask] = 0
    ref = resample_labels(fast, t1)
    for k, name in enumerate(("csf", "gm", "wm"), start=1):
        a, b = ours == k, ref == k
        dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
        print(f"{name}: Dice vs FAST {dice:.3f}")
        assert dice >= PREVIOUS_DICE[name], (name, dice)


def test_open_ms_volumes_are_plausible_or_refused(tmp_path):
    from ironmap.core.regions.tissue_volumes import PLAUSIBLE_RANGES
    from ironmap.io.tables import read_tsv
    from ironmap.workflows.volumes import ImplausibleVolumes, subject_volumes

    t1w = require_shared("open_ms_data", "cross_sectional", "MNI", "patient07",
                         "T1_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz")
    try:
        row = subject_volumes(t1w, "ms07", None, tmp_path)
    except ImplausibleVolumes as exc:
        table = read_tsv(tmp_path / "sub-ms07" / "anat" / "sub-ms07_desc-volumes.tsv")
        assert not bool(table.loc[0, "volumes_valid"]) and "outside" in table.loc[0, "volumes_qc"]
        print("open_ms 07 refused:", exc)
        return
    low, high = PLAUSIBLE_RANGES["gm_wm_ratio"]
    assert low <= row["gm_cm3"] / row["wm_cm3"] <= high
    for key in ("gm_cm3", "wm_cm3", "scaling_factor"):
        low, high = PLAUSIBLE_RANGES[key]
        assert low <= row[key] <= high, (key, row[key])
    print("open_ms 07 plausible:", {k: round(v, 1) for k, v in row.items() if k.endswith("cm3")})
