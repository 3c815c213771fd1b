# ruff: noqa: E501  (tool output lines are long)
"""Importers of FreeSurfer/FastSurfer, SynthSeg, SIENAX, FIRST and participants.tsv volumes.

Example files are written here following each tool's documented output format.
"""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.core.regions.tissue_volumes import VOLUME_COLUMNS
from ironmap.io.volume_import import (
    ETIV_SCALE_CM3,
    VolumeImportError,
    combine_volume_rows,
    first_structure_volumes,
    read_aseg_stats,
    read_first_labels,
    read_sienax_report,
    read_synthseg_csv,
    volumes_from_participants,
)

ASEG = """\
# Title Segmentation Statistics
#
# generating_program mri_segstats
# cvs_version 7.4.1
# cmdline mri_segstats --seed 1234 --seg mri/aseg.mgz --sum stats/aseg.stats --pv mri/norm.mgz --empty --brainmask mri/brainmask.mgz --brain-vol-from-seg --excludeid 0 --excl-ctxgmwm --supratent --subcortgray --in mri/norm.mgz --in-intensity-name norm --in-intensity-units MR --etiv --surf-wm-vol --surf-ctx-vol --totalgray --euler --ctab /usr/local/freesurfer/ASegStatsLUT.txt --subject sub-01
# sysname  Linux
# hostname node01
# machine  x86_64
# user     analyst
# anatomy_type volume
#
# SUBJECTS_DIR /data/derivatives/freesurfer
# subjectname sub-01
# Measure BrainSeg, BrainSegVol, Brain Segmentation Volume, 1176473.000000, mm^3
# Measure BrainSegNotVent, BrainSegVolNotVent, Brain Segmentation Volume Without Ventricles, 1152334.000000, mm^3
# Measure VentricleChoroidVol, VentricleChoroidVol, Volume of ventricles and choroid plexus, 19744.000000, mm^3
# Measure lhCortex, lhCortexVol, Left hemisphere cortical gray matter volume, 237516.108366, mm^3
# Measure rhCortex, rhCortexVol, Right hemisphere cortical gray matter volume, 239470.505734, mm^3
# Measure Cortex, CortexVol, Total cortical gray matter volume, 476986.614100, mm^3
# Measure lhCerebralWhiteMatter, lhCerebralWhiteMatterVol, Left hemisphere cerebral white matter volume, 246123.500000, mm^3
# Measure rhCerebralWhiteMatter, rhCerebralWhiteMatterVol, Right hemisphere cerebral white matter volume, 247876.500000, mm^3
# Measure CerebralWhiteMatter, CerebralWhiteMatterVol, Total cerebral white matter volume, 494000.000000, mm^3
# Measure SubCortGray, SubCortGrayVol, Subcortical gray matter volume, 58000.000000, mm^3
# Measure TotalGray, TotalGrayVol, Total gray matter volume, 638986.614100, mm^3
# Measure SupraTentorial, SupraTentorialVol, Supratentorial volume, 1030422.614100, mm^3
# Measure SupraTentorialNotVent, SupraTentorialVolNotVent, Supratentorial volume, 1010678.614100, mm^3
# Measure Mask, MaskVol, Mask Volume, 1670354.000000, mm^3
# Measure BrainSegVol-to-eTIV, BrainSegVol-to-eTIV, Ratio of BrainSegVol to eTIV, 0.754886, unitless
# Measure MaskVol-to-eTIV, MaskVol-to-eTIV, Ratio of MaskVol to eTIV, 1.071781, unitless
# Measure lhSurfaceHoles, lhSurfaceHoles, Number of defect holes in lh surfaces prior to fixing, 22, unitless
# Measure rhSurfaceHoles, rhSurfaceHoles, Number of defect holes in rh surfaces prior to fixing, 19, unitless
# Measure SurfaceHoles, SurfaceHoles, Total number of defect holes in surfaces prior to fixing, 41, unitless
# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, 1558485.000000, mm^3
# SegVolFile mri/aseg.mgz
# ColorTable /usr/local/freesurfer/ASegStatsLUT.txt
# PVVolFile  mri/norm.mgz
# Excluding Cortical Gray and White Matter
# ExcludeSegId 0 2 3 41 42
# NTableCols 10
# TableCol  1 ColHeader Index
# TableCol  2 ColHeader SegId
# TableCol  3 ColHeader NVoxels
# TableCol  4 ColHeader Volume_mm3
# TableCol  5 ColHeader StructName
# NRows 5
# ColHeaders  Index SegId NVoxels Volume_mm3 StructName normMean normStdDev normMin normMax normRange
  1   4      7801     7542.3  Left-Lateral-Ventricle            38.5      14.2      15.0     97.0     82.0
  2   7     14120    14000.0  Left-Cerebellum-White-Matter      91.2       5.1      50.0    108.0     58.0
  3   8     52310    52000.0  Left-Cerebellum-Cortex            58.9      10.1      21.0    102.0     81.0
  4  46     14055    14000.0  Right-Cerebellum-White-Matter     90.8       5.3      49.0    107.0     58.0
  5  47     52290    52000.0  Right-Cerebellum-Cortex           59.3       9.9      20.0    101.0     81.0
"""

SYNTHSEG_COLUMNS = [
    "subject", "total intracranial", "left cerebral white matter", "left cerebral cortex",
    "left lateral ventricle", "left inferior lateral ventricle",
    "left cerebellum white matter", "left cerebellum cortex", "left thalamus",
    "left caudate", "left putamen", "left pallidum", "3rd ventricle", "4th ventricle",
    "brain-stem", "left hippocampus", "left amygdala", "csf", "left accumbens area",
    "left ventral DC", "right cerebral white matter", "right cerebral cortex",
    "right lateral ventricle", "right inferior lateral ventricle",
    "right cerebellum white matter", "right cerebellum cortex", "right thalamus",
    "right caudate", "right putamen", "right pallidum", "right hippocampus",
    "right amygdala", "right accumbens area", "right ventral DC",
]

SIENAX = """\
sienax sub-01_T1w -B "-f 0.35" -r

----------  extracting brain  ----------

----------  registering to standard space  ----------
VSCALING 1.3276493536

----------  segmenting  ----------
tissue             volume    unnormalised-volume
pgrey              615308.89 463457.38 (peripheral grey)
vcsf               35322.85 26605.56 (ventricular CSF)
GREY               774459.48 583331.34
WHITE              678633.69 511154.31
BRAIN              1453093.17 1094485.65
"""


def test_aseg_stats(tmp_path):
    path = tmp_path / "aseg.stats"
    path.write_text(ASEG)
    row = read_aseg_stats(path)
    assert list(row) == list(VOLUME_COLUMNS)
    assert row["gm_cm3"] == pytest.approx(638.9866141)
    assert row["deep_gm_cm3"] == pytest.approx(58.0)
    # cortical GM = cerebral cortex + cerebellar cortex (ironmap's definition)
    assert row["cortical_gm_cm3"] == pytest.approx(476.9866141 + 104.0)
    assert row["wm_cm3"] == pytest.approx(494.0 + 28.0)
    assert row["brain_cm3"] == pytest.approx(638.9866141 + 522.0)
    assert math.isnan(row["csf_cm3"]) and math.isnan(row["csf_norm_cm3"])
    assert row["scaling_factor"] == pytest.approx(ETIV_SCALE_CM3 / 1558.485)
    assert row["wm_norm_cm3"] == pytest.approx(522.0 * row["scaling_factor"])


def test_fastsurfer_aseg_stats_same_format(tmp_path):
    text = ASEG.replace("# generating_program mri_segstats",
                        "# generating_program segstats.py").replace(
        "# cvs_version 7.4.1", "# FastSurfer 2.2.0")
    path = tmp_path / "aseg.stats"
    path.write_text(text)
    assert read_aseg_stats(path)["gm_cm3"] == pytest.approx(638.9866141)


def test_aseg_stats_bad_file(tmp_path):
    bad = tmp_path / "aseg.stats"
    bad.write_text("Index SegId NVoxels Volume_mm3 StructName\n1 4 10 10.0 X\n")
    with pytest.raises(VolumeImportError, match="aseg.stats: no '# Measure' lines"):
        read_aseg_stats(bad)
    with pytest.raises(VolumeImportError, match="not found"):
        read_aseg_stats(tmp_path / "missing.stats")


def test_synthseg_csv(tmp_path):
    rng = np.random.default_rng(4)
    values = rng.uniform(1000.0, 9000.0, size=(2, len(SYNTHSEG_COLUMNS) - 1)).round(3)
    df = pd.DataFrame(values, columns=SYNTHSEG_COLUMNS[1:])
    df.insert(0, "subject", ["/data/sub-01_T1w.nii.gz", "/data/sub-02_T1w.nii.gz"])
    df["total intracranial"] = [1450000.0, 1620000.0]
    path = tmp_path / "volumes.csv"
    df.to_csv(path, index=False)
    out = read_synthseg_csv(path)
    assert list(out["subject"]) == list(df["subject"])
    for i in range(2):
        r = df.iloc[i]
        cortex = sum(r[f"{h} {s}"] for h in ("left", "right")
                     for s in ("cerebral cortex", "cerebellum cortex")) / 1000
        deep = sum(r[f"{h} {s}"] for h in ("left", "right")
                   for s in ("thalamus", "caudate", "putamen", "pallidum", "hippocampus",
                             "amygdala", "accumbens area", "ventral DC")) / 1000
        wm = sum(r[f"{h} {s}"] for h in ("left", "right")
                 for s in ("cerebral white matter", "cerebellum white matter")) / 1000
        csf = (r["csf"] + r["3rd ventricle"] + r["4th ventricle"]
               + sum(r[f"{h} {s}"] for h in ("left", "right")
                     for s in ("lateral ventricle", "inferior lateral ventricle"))) / 1000
        assert out["cortical_gm_cm3"][i] == pytest.approx(cortex)
        assert out["deep_gm_cm3"][i] == pytest.approx(deep)
        assert out["gm_cm3"][i] == pytest.approx(cortex + deep)
        assert out["wm_cm3"][i] == pytest.approx(wm)
        assert out["csf_cm3"][i] == pytest.approx(csf)
        factor = ETIV_SCALE_CM3 / (r["total intracranial"] / 1000)
        assert out["scaling_factor"][i] == pytest.approx(factor)
        assert out["gm_norm_cm3"][i] == pytest.approx((cortex + deep) * factor)


def test_synthseg_without_csf_column_and_bad_csv(tmp_path):
    cols = [c for c in SYNTHSEG_COLUMNS if c != "csf"]
    df = pd.DataFrame([[1.0] * (len(cols) - 1)], columns=cols[1:])
    df.insert(0, "subject", ["s"])
    path = tmp_path / "v.csv"
    df.to_csv(path, index=False)
    assert math.isnan(read_synthseg_csv(path)["csf_cm3"][0])
    pd.DataFrame({"subject": ["s"], "left cortex": [1.0]}).to_csv(path, index=False)
    with pytest.raises(VolumeImportError, match=r"v.csv: not a SynthSeg.*left cerebral cortex"):
        read_synthseg_csv(path)


def test_sienax_report(tmp_path):
    path = tmp_path / "report.sienax"
    path.write_text(SIENAX)
    row = read_sienax_report(path)
    assert row["scaling_factor"] == pytest.approx(1.3276493536)
    assert row["gm_cm3"] == pytest.approx(583.33134)
    assert row["cortical_gm_cm3"] == pytest.approx(463.45738)
    assert row["deep_gm_cm3"] == pytest.approx(583.33134 - 463.45738)
    assert row["wm_cm3"] == pytest.approx(511.15431)
    assert row["brain_cm3"] == pytest.approx(1094.48565)
    # raw x VSCALING reproduces SIENAX's own normalised column
    assert row["gm_norm_cm3"] == pytest.approx(774.45948, rel=1e-6)
    assert row["cortical_gm_norm_cm3"] == pytest.approx(615.30889, rel=1e-6)
    assert row["wm_norm_cm3"] == pytest.approx(678.63369, rel=1e-6)
    assert math.isnan(row["csf_cm3"])
    path.write_text(SIENAX.replace("VSCALING 1.3276493536", ""))
    with pytest.raises(VolumeImportError, match="report.sienax: not a SIENAX report"):
        read_sienax_report(path)


def _first_image(tmp_path):
    data = np.zeros((20, 20, 20), np.int16)
    data[2:5, 2:6, 2:4] = 11  # 24 voxels, left caudate
    data[10:14, 10:13, 10:12] = 51  # 24 voxels, right putamen
    data[15:17, 15:17, 15:17] = 16  # 8 voxels, brainstem: not deep GM
    path = tmp_path / "sub-01_all_fast_firstseg.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def test_first_labels(tmp_path):
    path = _first_image(tmp_path)
    vols = first_structure_volumes(path)
    assert vols == pytest.approx({11: 0.048, 51: 0.048, 16: 0.016})
    row = read_first_labels(path)
    assert row["deep_gm_cm3"] == pytest.approx(0.096)
    assert math.isnan(row["gm_cm3"]) and math.isnan(row["scaling_factor"])
    sienax = tmp_path / "report.sienax"
    sienax.write_text(SIENAX)
    both = combine_volume_rows(row, read_sienax_report(sienax))
    assert both["deep_gm_cm3"] == pytest.approx(0.096)
    assert both["gm_cm3"] == pytest.approx(583.33134)
    assert both["deep_gm_norm_cm3"] == pytest.approx(0.096 * 1.3276493536)


def test_volumes_from_participants():
    df = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [30, 41],
                       "gm_ml": [640.0, 610.0], "wm_mm3": [520000.0, 500000.0],
                       "cortical_gm_norm_cm3": [700.0, 690.0], "eTIV": [1558485.0, 1400000.0]})
    out = volumes_from_participants(df)
    assert list(out.columns) == ["participant_id", "session_id", *VOLUME_COLUMNS]
    assert out["gm_cm3"].tolist() == pytest.approx([640.0, 610.0])
    assert out["wm_cm3"].tolist() == pytest.approx([520.0, 500.0])
    assert out["scaling_factor"][1] == pytest.approx(ETIV_SCALE_CM3 / 1400.0)
    assert out["gm_norm_cm3"][1] == pytest.approx(610.0 * ETIV_SCALE_CM3 / 1400.0)
    assert out["cortical_gm_norm_cm3"].tolist() == [700.0, 690.0]  # kept as given
    assert out["csf_cm3"].isna().all()
    custom = pd.DataFrame({"participant_id": ["sub-01"], "GMV": [0.64], "VS": [1.2]})
    out = volumes_from_participants(custom, {"GMV": ("gm_cm3", "l"),
                                             "VS": ("scaling_factor", "")})
    assert out["gm_cm3"][0] == pytest.approx(640.0)
    assert out["gm_norm_cm3"][0] == pytest.approx(768.0)
    with pytest.raises(VolumeImportError, match="unknown unit 'cc'"):
        volumes_from_participants(custom, {"GMV": ("gm_cm3", "cc")})
    with pytest.raises(VolumeImportError, match="no volume columns recognised"):
        volumes_from_participants(pd.DataFrame({"participant_id": ["sub-01"], "age": [3]}))
