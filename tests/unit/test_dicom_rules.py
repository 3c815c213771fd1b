"""Pure parts of the DICOM import: de-identification rules, age, protocol checks, series
recognition rules."""

from __future__ import annotations

import pandas as pd
import pytest

from ironmap.core.metadata import deid, protocol
from ironmap.io.dicom import classify_series, image_part, match_series_map


@pytest.mark.parametrize(("age", "birth", "study", "years"), [
    ("031Y", None, None, 31), ("006M", None, None, 0), ("018M", None, None, 1),
    ("095Y", None, None, 89), (None, "19800501", "20210902", 41),
    (None, "19800903", "20210902", 40), ("", "bad", "20210902", None), (None, None, None, None),
])
def test_age_in_whole_years(age, birth, study, years):
    assert deid.age_in_years(age, birth, study) == years


def test_scrub_sidecar_removes_profile_fields_and_cleans_descriptors():
    header = {"PatientName": "Doe^Janet", "PatientID": "X99887", "StudyDate": "20230517",
              "DeviceSerialNumber": "67060", "InstitutionName": "Some Hospital"}
    idents = deid.identifying_values(header)
    assert {"Doe^Janet", "Janet", "X99887", "20230517", "2023-05-17", "67060"} <= set(idents)
    sidecar = {"PatientName": "Doe^Janet", "DeviceSerialNumber": "67060",
               "InstitutionAddress": "1 Road", "AcquisitionTime": "10:11:12",
               "AcquisitionDateTime": "2023-05-17T10:11:12", "StudyInstanceUID": "1.2.3",
               "SeriesDescription": "t1_Doe_2023-05-17", "ProtocolName": "t1 janet",
               "EchoTime": 0.005, "ImagingFrequency": 123.067060, "PatientPosition": "HFS",
               "ConversionSoftwareVersion": "v1.0.20260724", "ImageType": ["M", "X99887"]}
    out = deid.scrub_sidecar(sidecar, idents)
    assert out == {"SeriesDescription": "t1", "ProtocolName": "t1", "EchoTime": 0.005,
                   "ImagingFrequency": 123.067060, "PatientPosition": "HFS",
                   "ConversionSoftwareVersion": "v1.0.20260724", "ImageType": ["M", ""]}
    assert deid.find_identifiers(b'"ImagingFrequency": 123.067060', idents) == []
    assert deid.find_identifiers(b'"x": "serial 67060"', idents) == ["67060"]


def test_every_removed_field_is_a_ps315_basic_profile_action():
    for field in deid.REMOVED_FIELDS:
        assert field.action in {"X", "Z", "U"}
        assert field.tag.startswith("(") and len(field.tag) == 11


def test_echo_set_checks():
    ok = [{"EchoTime": 0.005, "EchoNumber": 1}, {"EchoTime": 0.01, "EchoNumber": 2}]
    assert protocol.check_echo_set(ok, 2, "s") == []
    assert "milliseconds" in protocol.check_echo_set([{"EchoTime": 5.0}, {"EchoTime": 10.0}],
                                                     None, "s")[0]
    assert "no valid EchoTime" in protocol.check_echo_set([{"EchoTime": None}], None, "s")[0]
    gap = [{"EchoTime": 0.005, "EchoNumber": 1}, {"EchoTime": 0.015, "EchoNumber": 3}]
    assert "[2] missing" in protocol.check_echo_set(gap, None, "s")[0]
    assert "2 of 4 echoes" in protocol.check_echo_set(ok, 4, "s")[0]


def test_philips_scaling_check():
    echo = {"Manufacturer": "Philips", "PhilipsScaleSlope": 0.000237989,
            "PhilipsRescaleSlope": 1.29158, "PhilipsRescaleIntercept": 0,
            "UsePhilipsFloatNotDisplayScaling": 1}
    good = 1 / 0.000237989
    errors, notes = protocol.check_philips_scaling([echo, echo], [good, good], [0, 0],
                                                   [False, False], "s")
    assert errors == [] and "equal in all echoes" in notes[0]
    errors, _ = protocol.check_philips_scaling([echo, echo], [good, 1.29158], [0, 0],
                                               [False, False], "s")
    assert "echo 2" in errors[0]
    display = [dict(echo, PhilipsScaleSlope=None, PhilipsRescaleSlope=r) for r in (1.2, 1.5)]
    errors, _ = protocol.check_philips_scaling(display, [1, 1], [0, 0], [False, False], "s")
    assert "rescale slopes differ" in errors[0]


def _row(pid, site, field=3.0, voxel="3,3,3", tes="0.005,0.01"):
    return {"participant_id": pid, "session_id": None, "site": site, "field_strength_T": field,
            "voxel_size_mm": voxel, "echo_times_s": tes}


def test_protocol_warnings_between_and_within_sites():
    same = pd.DataFrame([_row("sub-1", "a"), _row("sub-2", "b", voxel="3.05,3,3")])
    assert protocol.protocol_warnings(same) == []
    table = pd.DataFrame([_row("sub-1", "a"), _row("sub-2", "a", tes="0.005,0.012"),
                          _row("sub-3", "b", field=1.5, voxel="1,1,2")])
    warnings = protocol.protocol_warnings(table)
    assert any(w.startswith("field strength differs between sites") for w in warnings)
    assert any(w.startswith("voxel size differs between sites") for w in warnings)
    assert any(w.startswith("echo times differ within site a") for w in warnings)
    sites = protocol.site_protocols(table.assign(manufacturer=["X", "X", "Y"]))
    assert list(sites["n_acquisitions"]) == [2, 1]
    assert sites.loc[0, "echo_times_s"] == "0.005,0.01 | 0.005,0.012"


def _sidecar(**kw):
    base = {"SeriesDescription": "", "ProtocolName": "", "ImageType": ["ORIGINAL", "PRIMARY",
            "M"], "ScanningSequence": "GR", "EchoTime": 0.005, "MRAcquisitionType": "3D"}
    return base | kw


@pytest.mark.parametrize(("images", "expected", "suffix"), [
    ([_sidecar(EchoTime=0.005), _sidecar(EchoTime=0.01)], None, "MEGRE"),
    ([_sidecar(EchoTime=0.005)], 3, "MEGRE"),  # announced echoes missing -> error later
    ([_sidecar(SeriesDescription="t1_mprage_sag", ScanningSequence="GR_IR")], None, "T1w"),
    ([_sidecar(SeriesDescription="3D_sag", InversionTime=0.9, ScanningSequence="GR_IR")],
     None, "T1w"),
    ([_sidecar(SeriesDescription="anat-T1w_acq-tfl")], None, "T1w"),
    ([_sidecar(SeriesDescription="ax T2 FLAIR", EchoTime=0.09, ScanningSequence="SE_IR")],
     None, "FLAIR"),
    ([_sidecar(SeriesDescription="3D_sag", EchoTime=0.4, InversionTime=1.8,
               ScanningSequence="SE_IR")], None, "FLAIR"),
    ([_sidecar(SeriesDescription="localizer")], None, None),
    ([_sidecar(SeriesDescription="t1_mpr_tra", ImageType=["DERIVED", "PRIMARY", "M"])],
     None, None),
    ([_sidecar(SeriesDescription="dwi", ScanningSequence="EP", EchoTime=0.08)], None, None),
])
def test_series_recognition_rules(images, expected, suffix):
    assert classify_series(images, expected) == suffix


def test_image_part_and_series_map():
    assert image_part({"ImageType": ["ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"]}) == \
        "phase"
    assert image_part({"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}) == "mag"
    assert image_part({}) == "mag"
    smap = [("*special*", "T1w"), ("12", "ignore")]
    assert match_series_map({"SeriesDescription": "My_Special_T1"}, smap) == "T1w"
    assert match_series_map({"SeriesNumber": 12}, smap) == "ignore"
    assert match_series_map({"SeriesDescription": "other"}, smap) is None


@pytest.mark.parametrize("missing", ["pydicom", "dcm2niix"])
def test_import_without_the_dicom_extra_is_one_clear_error(tmp_path, monkeypatch, missing):
    """A missing pydicom or dcm2niix is named with the install command; nothing is written."""
    import sys

    from ironmap.io.dicom import DicomImportError
    from ironmap.workflows.import_dicom import import_dicom

    monkeypatch.setitem(sys.modules, missing, None)  # the import then raises ImportError
    (tmp_path / "dicom").mkdir()
    bids = tmp_path / "bids"
    with pytest.raises(DicomImportError, match=rf"{missing} is not installed.*ironmap\[dicom\]"):
        import_dicom(tmp_path / "dicom", bids, "01")
    assert not bids.exists()
