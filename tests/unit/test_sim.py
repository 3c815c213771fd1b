"""Cohort draws follow the seed's Tables 1 and 2; phantom, signal and input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ironmap.cli.main import main
from ironmap.io.atomic import OutputExistsError
from ironmap.sim import anatomy, cohort, poses, signal
from ironmap.sim.subject import make_geometry
from ironmap.sim.truth import plan_cohort, regions_table, table2
from ironmap.sim.voxelize import voxelize
from ironmap.workflows.simulate import simulate_cohort

BIG = {"HC": 600, "RRMS": 600, "SPMS": 300, "PPMS": 300}


@pytest.fixture(scope="module")
def big_plan():
    """A large cohort plan (no images) to check distributions."""
    return plan_cohort(BIG, 7, seed=5)


def test_participants_follow_table1(big_plan):
    p = big_plan.participants
    for group, st in cohort.TABLE1.items():
        g = p[p["group"] == group]
        assert g["age"].between(st.age[0], st.age[1]).all()
        assert g["age"].mean() == pytest.approx(st.age[2], abs=1.5)
        assert (g["sex"] == "F").mean() == pytest.approx(st.female, abs=0.08)
        if st.edss is None:
            assert g["edss"].isna().all() and g["disease_duration"].isna().all()
            continue
        assert set(g["edss"] * 2) <= set(range(0, 21)) and not (g["edss"] == 0.5).any()
        assert g["edss"].between(st.edss[0], st.edss[1]).all()
        assert g["edss"].mean() == pytest.approx(st.edss[2], abs=0.4)
        assert g["disease_duration"].mean() == pytest.approx(st.duration[2], abs=1.5)
        load = g["lesion_load_target"]
        assert load.mean() == pytest.approx(st.lesion_load[0], rel=0.2)
        assert load.median() < load.mean()  # skewed, as the seed's mean 7.3, SD 9.4 implies
    assert p["site"].value_counts().max() - p["site"].value_counts().min() <= 1


def test_agecorr_group_means_and_sds_follow_table2(big_plan):
    t2 = table2(regions_table(big_plan), big_plan.participants).set_index("region")
    w = big_plan.putamen_anterior_fraction
    for region, groups in cohort.TABLE2.items():
        for group, (mean, sd) in groups.items():
            n = BIG[group]
            if region == "putamen":  # the volume mix of its parts (the seed's PPMS row is not)
                mean = (w * cohort.TABLE2["putamen_anterior"][group][0]
                        + (1 - w) * cohort.TABLE2["putamen_posterior"][group][0])
            assert t2.loc[region, f"{group}_mean"] == pytest.approx(mean, abs=4 * sd / n**0.5)
            if region != "putamen":  # the composite mixes its parts
                assert t2.loc[region, f"{group}_sd"] == pytest.approx(sd, rel=0.15)


def test_seed_effects_are_built_in(big_plan):
    p = big_plan.participants.set_index("participant_id")
    x = big_plan.agecorr
    ms = p["group"] == "RRMS"

    def r(region, column):
        return np.corrcoef(x.loc[ms, region], p.loc[ms, column])[0, 1]

    assert r("substantia_nigra", "cortical_gm_norm_target") < -0.2
    assert r("red_nucleus", "wm_norm_target") < -0.15
    assert r("dentate_nucleus", "edss") > 0.2
    assert r("putamen_anterior", "disease_duration") > 0.2
    assert abs(r("caudate", "edss")) < 0.12
    lesion = big_plan.lesion_r2star[ms.to_numpy()]
    assert np.corrcoef(lesion, p.loc[ms, "disease_duration"])[0, 1] < -0.2
    assert np.corrcoef(lesion, np.log(p.loc[ms, "lesion_load_target"]))[0, 1] < -0.2
    bias = big_plan.sites["r2star_bias"]
    assert bias.between(0.95, 1.05).all() and bias.std() > 0.005


def test_age_curve_passes_through_control_means_at_reference_age(big_plan):
    curves = big_plan.agecurves.set_index("region")
    for region in cohort.TABLE2:
        a, b, c = curves.loc[region, ["a", "b", "c"]]
        value = cohort.age_curve(cohort.REFERENCE_AGE, a, b, c)
        assert value == pytest.approx(cohort.TABLE2[region]["HC"][0], abs=0.15)
    # raw R2* rises with age in controls, the age-corrected values do not
    p = big_plan.participants.set_index("participant_id")
    hc = p["group"] == "HC"
    raw = big_plan.r2star_nosite.loc[hc, "putamen_posterior"]
    assert np.corrcoef(raw, p.loc[hc, "age"])[0, 1] > 0.3
    assert abs(np.corrcoef(big_plan.agecorr.loc[hc, "putamen_posterior"],
                           p.loc[hc, "age"])[0, 1]) < 0.12


def test_spgr_signal_two_point_recovers_r2star():
    te = np.array([0.00492, 0.0246])
    s = signal.spgr_signal([0.8, 0.7], [1.2, 0.9], [25.0, 40.0], te, 0.030, 15.0)
    r2 = np.log(s[:, 0] / s[:, 1]) / (te[1] - te[0])
    np.testing.assert_allclose(r2, [25.0, 40.0], rtol=1e-12)
    # Ernst-like T1 weighting: at TR 30 ms / 15 deg, shorter T1 gives more signal
    s1 = signal.spgr_signal([1.0, 1.0], [0.8, 1.6], [0.0, 0.0], te[:1], 0.030, 15.0)
    assert s1[0, 0] > s1[1, 0]


def test_rician_noise_floor(rng):
    out = signal.add_rician_noise(np.zeros(20000), 10.0, rng)
    assert out.mean() == pytest.approx(10.0 * np.sqrt(np.pi / 2), rel=0.03)


def test_phantom_anatomy_is_plausible():
    geom = anatomy.Geometry(head_scale=1.0)
    centres = anatomy.deep_gm_centres()
    labels = anatomy.label_points(np.array(list(centres.values())), geom)
    assert list(labels - anatomy.DSEG_OFFSET) == list(centres)
    assert centres[1][0] < 0 < centres[2][0]  # Left- labels at negative x (RAS)
    frac = anatomy.putamen_anterior_fraction()
    assert 0.5 < frac < 0.6  # Table 2: putamen mean lies 45/55 between its parts
    shape, vs = (64, 78, 64), 3.0
    affine = np.diag([vs, vs, vs, 1.0])
    affine[:3, 3] = np.array([0, -17, 12]) - vs * (np.array(shape) - 1) / 2
    v = voxelize(geom, shape, affine, np.eye(4), (2, 2, 2)).volumes_mm3(vs**3) / 1e3
    assert 500 < v[anatomy.CORTEX] < 800 and 550 < v[anatomy.WM] < 900
    assert 8 < v[anatomy.VENTRICLE] < 40


def test_poses_are_small_rigid_transforms(rng):
    for _ in range(20):
        m = poses.random_pose(rng)
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
        angle = np.degrees(np.arccos((np.trace(m[:3, :3]) - 1) / 2))
        assert angle < 15 and np.all(np.abs(m[:3, 3]) <= 10)


@pytest.mark.parametrize("kwargs, message", [
    ({"subjects_per_group": -1}, "non-negative"),
    ({"subjects_per_group": 0}, "at least one"),
    ({"subjects_per_group": {"XX": 2}}, "unknown group"),
    ({"sites": 0}, "sites"),
    ({"echoes": 1}, "echoes"),
    ({"echo_times_s": [4.92, 24.6]}, "shorter than TR"),
    ({"echo_times_s": [0.02, 0.01]}, "ascending"),
    ({"voxel_size": 0.1}, "voxel size"),
    ({"voxel_size": {"DWI": 2.0}}, "unknown series"),
    ({"preset": "huge"}, "preset"),
])
def test_bad_input_is_refused_before_writing(tmp_path, kwargs, message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        simulate_cohort(out, **{"preset": "fast", **kwargs})
    assert not out.exists()


def test_non_empty_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not empty"):
        simulate_cohort(out, subjects_per_group={"HC": 1}, sites=1, preset="fast")
    assert main(["simulate", str(out), "--preset", "fast", "--hc", "1", "--rrms", "0",
                 "--spms", "0", "--ppms", "0", "--sites", "1", "-q"]) == 1
    assert main(["simulate", str(tmp_path / "o2"), "--echoes", "1", "-q"]) == 2
    assert not (tmp_path / "o2").exists()
    code = main(["simulate", str(out), "--preset", "fast", "--subjects-per-group", "0",
                 "--hc", "1", "--sites", "1", "--overwrite", "--voxel-size", "4",
                 "--t1w-voxel-size", "4", "--flair-voxel-size", "4", "-q"])
    assert code == 0
    assert (out / "keep.txt").exists()
    participants = pd.read_csv(out / "bids" / "participants.tsv", sep="\t")
    assert list(participants["group"]) == ["HC"]


def test_fraction_of_one_label_equals_the_weighted_sum():
    """``fraction`` of one label takes its column; the same values as the full weighted sum."""
    row = {"cortical_gm_norm_target": 520.0, "wm_norm_target": 690.0, "age": 40.0,
           "head_scale": 1.03, "lesion_load_target": 25.0}
    geom = make_geometry(row, np.random.default_rng(4))
    assert len(geom.lesions) > 0
    vs = 3.0
    shape = (int(190 / vs), int(230 / vs), int(190 / vs))
    affine = np.diag([vs, vs, vs, 1.0])
    affine[:3, 3] = -np.array(shape) * vs / 2
    pv = voxelize(geom, shape, affine, np.eye(4), (2, 2, 2))
    for code in (anatomy.LESION, anatomy.WM, anatomy.BACKGROUND):
        lut = np.zeros(anatomy.N_LABELS)
        lut[code] = 1.0
        got = pv.fraction(code)
        assert got.dtype == np.float64
        assert np.array_equal(got.view(np.uint64), pv.apply(lut).view(np.uint64))
    both = pv.fraction([anatomy.WM, anatomy.LESION])
    assert np.array_equal(both, pv.apply(np.isin(np.arange(anatomy.N_LABELS),
                                                 [anatomy.WM, anatomy.LESION]).astype(float)))
