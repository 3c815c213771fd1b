"""DICOM import on real vendor data (Siemens classic, Siemens XA enhanced, Philips classic and
enhanced) against the dcm2niix reference NIfTI files shipped with each data set."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import require_shared
from ironmap.core.r2star.relaxometry import fit_r2star
from ironmap.io.dicom import DicomImportError
from ironmap.workflows.import_dicom import import_dicom, load_protocols

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # dcm2niix on every series

PHILIPS_REF = "nifti_ref/2001_WIP_fcMRI_Field_Mapping_{export}_{echo}.nii.gz"

#: name -> (DICOM folder, reference magnitude echoes, reference phase echoes)
CASES = {
    "siemens_classic": ("dcm_qa_fmap_siemens/dicom",
                        ["dcm_qa_fmap_siemens/nifti_ref/Si_5_gre_field_mag_e1.nii",
                         "dcm_qa_fmap_siemens/nifti_ref/Si_5_gre_field_mag_e2.nii"], []),
    "siemens_xa_enhanced": ("dcm_qa_xa30/dicom",
                            ["dcm_qa_xa30/nifti_ref/8_gre_field_mapping_e1.nii",
                             "dcm_qa_xa30/nifti_ref/8_gre_field_mapping_e2.nii"], []),
    "philips_classic": ("dcm_qa_philips_enh/dicom_classic",
                        [f"dcm_qa_philips_enh/{PHILIPS_REF.format(export='cl', echo=e)}"
                         for e in ("e1", "e2")],
                        [f"dcm_qa_philips_enh/{PHILIPS_REF.format(export='cl', echo=e)}"
                         for e in ("e1_ph", "e2_ph")]),
    "philips_enhanced": ("dcm_qa_philips_enh/dicom_enhanced",
                         [f"dcm_qa_philips_enh/{PHILIPS_REF.format(export='enh', echo=e)}"
                          for e in ("e1", "e2")],
                         [f"dcm_qa_philips_enh/{PHILIPS_REF.format(export='enh', echo=e)}"
                          for e in ("e1_ph", "e2_ph")]),
}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _ref_sidecar(nifti: Path) -> dict:
    name = nifti.name.removesuffix(".gz").removesuffix(".nii")
    return json.loads((nifti.parent / f"{name}.json").read_text())


def _r2star(paths: list[Path], tes: list[float]) -> np.ndarray:
    echoes = np.stack([nib.load(p).get_fdata() for p in paths], axis=-1)
    return fit_r2star(echoes, np.asarray(tes), method="two_point").r2star


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """Import every case once into one BIDS dataset (one participant per case)."""
    bids = tmp_path_factory.mktemp("bids")
    out = {}
    for n, (name, (folder, _, _)) in enumerate(CASES.items(), start=1):
        src = require_shared(folder)
        before = _digest(src)
        site = "site-siemens" if name.startswith("siemens") else "site-philips"
        result = import_dicom(src, bids, f"{n:02d}", site=site)
        assert _digest(src) == before, "the DICOM source changed"
        out[name] = (bids, result)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_import_equals_reference_voxel_for_voxel(imported, case):
    _, mag_refs, phase_refs = CASES[case]
    bids, result = imported[case]
    anat = bids / f"sub-{result.participant_id}" / "anat"
    for part, refs in (("mag", mag_refs), ("phase", phase_refs)):
        for echo, ref_rel in enumerate(refs, start=1):
            ref_path = require_shared(ref_rel)
            got_path = anat / f"sub-{result.participant_id}_echo-{echo}_part-{part}_MEGRE.nii.gz"
            got, ref = nib.load(got_path), nib.load(ref_path)
            # stored integers and the NIfTI scaling (Philips: floating-point scaling 1/SS)
            assert got.get_data_dtype() == ref.get_data_dtype()
            np.testing.assert_array_equal(np.asanyarray(got.dataobj.get_unscaled()),
                                          np.asanyarray(ref.dataobj.get_unscaled()))
            assert got.dataobj.slope == ref.dataobj.slope
            assert got.dataobj.inter == ref.dataobj.inter
            np.testing.assert_array_equal(got.get_fdata(), ref.get_fdata())
            np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
            sidecar = json.loads(got_path.with_name(
                got_path.name.replace(".nii.gz", ".json")).read_text())
            assert sidecar["EchoTime"] == _ref_sidecar(ref_path)["EchoTime"]
    # no other series were present: exactly the reference images were written
    assert len(result.written) == len(mag_refs) + len(phase_refs)


@pytest.mark.parametrize("case", list(CASES))
def test_r2star_from_import_equals_r2star_from_references(imported, case):
    _, mag_refs, _ = CASES[case]
    bids, result = imported[case]
    anat = bids / f"sub-{result.participant_id}" / "anat"
    refs = [require_shared(r) for r in mag_refs]
    ref_tes = [_ref_sidecar(r)["EchoTime"] for r in refs]
    got = sorted(anat.glob("*part-mag_MEGRE.nii.gz"))
    got_tes = [json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())
               ["EchoTime"] for p in got]
    assert got_tes == ref_tes and got_tes == sorted(got_tes)
    r2_import, r2_ref = _r2star(got, got_tes), _r2star(refs, ref_tes)
    np.testing.assert_array_equal(r2_import, r2_ref)  # NaN where both failed
    assert np.isfinite(r2_import).mean() > 0.3


def test_philips_classic_and_enhanced_give_same_r2star(imported):
    maps = []
    for case in ("philips_classic", "philips_enhanced"):
        bids, result = imported[case]
        paths = sorted((bids / f"sub-{result.participant_id}" / "anat")
                       .glob("*part-mag_MEGRE.nii.gz"))
        maps.append(_r2star(paths, [0.0023, 0.0046]))
    np.testing.assert_array_equal(maps[0], maps[1])
    brain = np.isfinite(maps[0]) & (maps[0] > 0)
    assert 20 < np.median(maps[0][brain]) < 200  # s^-1, dual-echo at 3 T (fat-water biased)


def test_protocol_table_and_site_warnings(imported):
    bids, _ = imported["philips_enhanced"]
    table = load_protocols(bids)
    assert len(table) == 4
    siemens = table[table["site"] == "site-siemens"]
    assert set(siemens["manufacturer"]) == {"Siemens"}
    assert set(table["field_strength_T"]) == {3}
    philips = table[table["manufacturer"] == "Philips"].iloc[0]
    assert philips["echo_times_s"] == "0.0023,0.0046"
    assert philips["voxel_size_mm"] == "3,3,3" and bool(philips["phase_available"])
    assert philips["flip_angle_deg"] == 10 and philips["repetition_time_s"] == 0.02
    sites = (bids / "code/ironmap-import/site_protocols.tsv").read_text()
    assert "site-philips" in sites and "site-siemens" in sites
    warnings = " ".join(imported["philips_enhanced"][1].warnings)
    assert "voxel size differs between sites" in warnings
    assert "echo times differ between sites" in warnings
    assert "field strength" not in warnings  # all 3 T
    participants = (bids / "participants.tsv").read_text().splitlines()
    assert participants[0] == "participant_id\tage\tsex\tsite"
    assert participants[1:] == ["sub-01\t21\tO\tsite-siemens", "sub-02\t31\tM\tsite-siemens",
                                "sub-03\t41\tM\tsite-philips", "sub-04\t41\tM\tsite-philips"]


def test_no_identifying_header_value_in_real_outputs(imported):
    bids, _ = imported["philips_enhanced"]
    needles = ["phantom", "crlab", "XAtest", "12343@hucheng", "d2n_Philips_3T_R571",
               "Indiana University", "East 10th Street", "Medical Center Dr", "67060",
               "67093", "45053", "MRC35131", "MRC35062", "19910101", "1991-01-01",
               "19990909", "1999-09-09", "19800501", "2021-07-15", "2022-07-11", "20210902",
               "662491096", "8fd8f3b7-572e-42", "Husband"]
    for path in sorted(bids.rglob("*")):
        data = path.name.encode()
        if path.is_file():
            data += path.read_bytes()
            if path.name.endswith(".gz"):
                import gzip

                data += gzip.decompress(path.read_bytes())
        for needle in needles:
            assert needle.lower().encode() not in data.lower(), (needle, path)


def test_missing_echo_in_real_siemens_series(tmp_path):
    src = require_shared("dcm_qa_fmap_siemens/dicom/5_gre_field_mag")
    dicom_dir = tmp_path / "dicom"
    dicom_dir.mkdir()
    for f in sorted(src.glob("e1_*.dcm")):  # echo 2 files lost in transfer
        shutil.copyfile(f, dicom_dir / f.name)
    bids = tmp_path / "bids"
    with pytest.raises(DicomImportError, match=r"series 5 \(gre_field_mag\).*1 of 2 echoes"):
        import_dicom(dicom_dir, bids, "01")
    assert not bids.exists() or not any(bids.iterdir())
