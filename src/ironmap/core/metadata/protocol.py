"""Acquisition protocols of multi-echo GRE series: checks and per-site comparison (pure).

Inputs are the BIDS sidecars (dicts) of the echoes of one series, as dcm2niix writes them
(``EchoTime`` in s, ``RepetitionTime`` in s, ``FlipAngle`` in degrees,
``MagneticFieldStrength`` in T), plus numbers read from the images by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Columns of the per-acquisition protocol table, in order.
PROTOCOL_COLUMNS = (
    "participant_id", "session_id", "site", "manufacturer", "model", "field_strength_T",
    "mr_acquisition_type", "n_echoes", "echo_times_s", "repetition_time_s", "flip_angle_deg",
    "voxel_size_mm", "coil_combination", "phase_available",
)

#: JSON data dictionary of the protocol tables.
PROTOCOL_DICTIONARY: dict[str, dict[str, str]] = {
    "participant_id": {"Description": "participant label (sub-X)"},
    "session_id": {"Description": "session label (ses-Y), n/a without sessions"},
    "site": {"Description": "site label given at import"},
    "manufacturer": {"Description": "scanner manufacturer (DICOM Manufacturer)"},
    "model": {"Description": "scanner model (DICOM ManufacturerModelName)"},
    "field_strength_T": {"Description": "main magnetic field", "Units": "T"},
    "mr_acquisition_type": {"Description": "2D or 3D"},
    "n_echoes": {"Description": "number of magnitude echoes"},
    "echo_times_s": {"Description": "echo times, comma-separated, ascending", "Units": "s"},
    "repetition_time_s": {"Description": "repetition time", "Units": "s"},
    "flip_angle_deg": {"Description": "flip angle", "Units": "degree"},
    "voxel_size_mm": {"Description": "voxel size x,y,z of the NIfTI grid", "Units": "mm"},
    "coil_combination": {"Description": "coil combination (CoilCombinationMethod, else "
                                         "CoilString), n/a when the header does not say"},
    "phase_available": {"Description": "phase images were exported (true/false)"},
    "n_acquisitions": {"Description": "number of imported multi-echo GRE acquisitions"},
}

_PHILIPS_RTOL = 1e-4


def check_echo_set(echoes: Sequence[Mapping[str, Any]], expected: int | None,
                   series: str) -> list[str]:
    """Problems with the echoes of one multi-echo series (empty list when fine).

    Parameters
    ----------
    echoes : sequence of mapping
        Sidecars of the magnitude echoes (``EchoTime`` in s, optional ``EchoNumber``).
    expected : int or None
        Number of echoes the acquisition had (from the headers), None when unknown.
    series : str
        How to name the series in messages.

    Returns
    -------
    list of str
        Problems, each naming the series.
    """
    errors = []
    tes = [e.get("EchoTime") for e in echoes]
    if any(not isinstance(t, int | float) or t <= 0 for t in tes):
        return [f"{series}: an echo has no valid EchoTime ({tes})"]
    if any(t >= 0.5 for t in tes):
        errors.append(f"{series}: EchoTime {max(tes)} s is implausible (milliseconds?)")
    if len(set(np.round(tes, 7))) != len(tes):
        errors.append(f"{series}: echoes share an EchoTime ({sorted(tes)} s)")
    numbers = sorted(int(e["EchoNumber"]) for e in echoes if e.get("EchoNumber") is not None)
    if numbers:
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        if missing:
            errors.append(f"{series}: echo(es) {missing} missing "
                          f"(found echo numbers {numbers})")
    if expected is not None and len(echoes) < expected and not errors:
        errors.append(f"{series}: {len(echoes)} of {expected} echoes present; "
                      "the acquisition had more echoes (missing files?)")
    return errors


def check_philips_scaling(echoes: Sequence[Mapping[str, Any]],
                          slopes: Sequence[float], intercepts: Sequence[float],
                          float_data: Sequence[bool], series: str) -> tuple[list[str], list[str]]:
    """Check that Philips magnitude echoes carry the floating-point (FP) scaling.

    Philips stores pixel values PV with a display rescale (RS, RI) and a private scale slope
    SS. The floating-point value is ``FP = (PV * RS + RI) / (RS * SS)``; dcm2niix writes it
    as NIfTI ``scl_slope = 1 / SS`` and ``scl_inter = RI / (RS * SS)`` when
    ``UsePhilipsFloatNotDisplayScaling`` is 1. Float-typed NIfTI data mean dcm2niix applied a
    per-slice scaling itself; those echoes are not checked here.

    Parameters
    ----------
    echoes : sequence of mapping
        Sidecars of the magnitude echoes.
    slopes, intercepts : sequence of float
        NIfTI ``scl_slope`` and ``scl_inter`` per echo.
    float_data : sequence of bool
        Whether each echo's NIfTI holds float data.
    series : str
        How to name the series in messages.

    Returns
    -------
    (errors, notes) : tuple of list of str
    """
    errors, notes = [], []
    if not echoes or not str(echoes[0].get("Manufacturer", "")).lower().startswith("philips"):
        return errors, notes
    ss = [e.get("PhilipsScaleSlope") for e in echoes]
    rs = [e.get("PhilipsRescaleSlope", 1.0) for e in echoes]
    if any(s is None for s in ss):
        if len({round(float(r), 6) for r in rs}) > 1:
            errors.append(f"{series}: Philips private scale slope missing and the display "
                          f"rescale slopes differ between echoes ({rs}); R2* would be wrong")
        else:
            notes.append(f"{series}: Philips private scale slope missing; display values "
                         "used (same RescaleSlope in every echo)")
        return errors, notes
    for k, echo in enumerate(echoes):
        if float_data[k]:
            continue
        if echo.get("UsePhilipsFloatNotDisplayScaling") != 1:
            errors.append(f"{series} echo {k + 1}: not converted with Philips "
                          "floating-point scaling")
            continue
        ri = float(echo.get("PhilipsRescaleIntercept", 0.0))
        want_slope = 1.0 / float(ss[k])
        want_inter = ri / (float(rs[k]) * float(ss[k]))
        if not (np.isclose(slopes[k], want_slope, rtol=_PHILIPS_RTOL)
                and np.isclose(intercepts[k], want_inter, rtol=_PHILIPS_RTOL, atol=1e-6)):
            errors.append(f"{series} echo {k + 1}: NIfTI scaling {slopes[k]:.6g}, "
                          f"{intercepts[k]:.6g} differs from Philips FP scaling "
                          f"{want_slope:.6g}, {want_inter:.6g}")
    same = len({round(float(s), 12) for s in ss}) == 1
    notes.append(f"{series}: Philips floating-point scaling FP = PV/SS applied per echo "
                 f"(SS {'equal in all echoes' if same else 'differs between echoes'}: "
                 f"{', '.join(f'{float(s):.6g}' for s in ss)})")
    return errors, notes


def acquisition_summary(echoes: Sequence[Mapping[str, Any]],
                        voxel_size_mm: Sequence[float], phase_available: bool) -> dict[str, Any]:
    """One row of the protocol table from the magnitude-echo sidecars (ascending TE).

    Parameters
    ----------
    echoes : sequence of mapping
        Sidecars of the magnitude echoes.
    voxel_size_mm : sequence of 3 float
        Voxel edges in mm.
    phase_available : bool
        Whether phase images were acquired.

    Returns
    -------
    dict
        The acquisition columns of :data:`PROTOCOL_COLUMNS`, without the ids and site (echo
        times in s, field in T, voxel in mm).
    """
    first = echoes[0]
    coil = first.get("CoilCombinationMethod") or first.get("CoilString")
    return {
        "manufacturer": first.get("Manufacturer"),
        "model": first.get("ManufacturersModelName"),
        "field_strength_T": first.get("MagneticFieldStrength"),
        "mr_acquisition_type": first.get("MRAcquisitionType"),
        "n_echoes": len(echoes),
        "echo_times_s": ",".join(f"{float(e['EchoTime']):.6g}" for e in echoes),
        "repetition_time_s": first.get("RepetitionTime"),
        "flip_angle_deg": first.get("FlipAngle"),
        "voxel_size_mm": ",".join(f"{float(v):.4g}" for v in voxel_size_mm),
        "coil_combination": coil,
        "phase_available": bool(phase_available),
    }


def site_protocols(acquisitions: pd.DataFrame) -> pd.DataFrame:
    """Per-site summary: the distinct values of each protocol column, joined by ``" | "``.

    Parameters
    ----------
    acquisitions : pandas.DataFrame
        One row per acquisition with a ``site`` column.

    Returns
    -------
    pandas.DataFrame
        One row per site.
    """
    cols = [c for c in PROTOCOL_COLUMNS[3:] if c in acquisitions]
    rows = []
    for site, grp in acquisitions.groupby("site", sort=True, dropna=False):
        row: dict[str, Any] = {"site": site, "n_acquisitions": len(grp)}
        for col in cols:
            vals = sorted({str(v) for v in grp[col] if not _missing(v)})
            row[col] = " | ".join(vals) if vals else None
        rows.append(row)
    return pd.DataFrame(rows, columns=["site", "n_acquisitions", *cols])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def protocol_warnings(acquisitions: pd.DataFrame, *, voxel_rtol: float = 0.05,
                      te_atol_s: float = 2e-4) -> list[str]:
    """Warnings when acquisitions differ in what changes R2*: field strength, voxel size, TE.

    Between sites: the first acquisition of each site is compared with that of the first
    site. Within a site: each acquisition is compared with the site's first one.

    Parameters
    ----------
    acquisitions : pandas.DataFrame
        One row per acquisition (:func:`acquisition_summary` columns and ``site``).
    voxel_rtol : float, optional
        Relative difference of a voxel axis counted as different.
    te_atol_s : float, optional
        Difference of an echo time counted as different (s); differing echo counts always
        count.

    Returns
    -------
    list of str
        One warning per difference found.
    """
    if acquisitions.empty:
        return []
    acq = acquisitions.sort_values(["site", "participant_id"], kind="stable")
    firsts = [grp.iloc[0] for _, grp in acq.groupby("site", sort=True, dropna=False)]
    out = []
    for what in ("field strength", "voxel size", "echo times"):
        test = _COMPARE[what]
        differ = [r for r in firsts[1:] if test(firsts[0], r, voxel_rtol, te_atol_s)]
        if differ:
            values = "; ".join(f"{r['site']}: {_describe(r, what)}" for r in firsts)
            out.append(f"{what} {'differ' if what.endswith('s') else 'differs'} between "
                       f"sites ({values}); R2* depends on it - correct for it before "
                       "comparing sites")
        for ref in firsts:
            grp = acq[acq["site"].astype(str) == str(ref["site"])]
            odd = [r for _, r in grp.iterrows() if test(ref, r, voxel_rtol, te_atol_s)]
            if odd:
                values = "; ".join(f"{r['participant_id']}: {_describe(r, what)}"
                                   for _, r in grp.iterrows())
                out.append(f"{what} {'differ' if what.endswith('s') else 'differs'} within "
                           f"site {ref['site']} ({values})")
    return out


def _describe(row: pd.Series, what: str) -> str:
    return {"field strength": f"{row['field_strength_T']} T",
            "voxel size": f"{row['voxel_size_mm']} mm",
            "echo times": f"{row['echo_times_s']} s"}[what]


def _floats(text: Any) -> np.ndarray:
    return np.array([float(v) for v in str(text).split(",") if v not in ("", "None", "nan")])


def _differs_field(a: pd.Series, b: pd.Series, _rtol: float, _atol: float) -> bool:
    return not np.isclose(float(a["field_strength_T"]), float(b["field_strength_T"]),
                          atol=0.05)


def _differs_voxels(a: pd.Series, b: pd.Series, rtol: float, _atol: float) -> bool:
    va, vb = _floats(a["voxel_size_mm"]), _floats(b["voxel_size_mm"])
    return va.shape != vb.shape or not np.allclose(va, vb, rtol=rtol)


def _differs_tes(a: pd.Series, b: pd.Series, _rtol: float, atol: float) -> bool:
    ta, tb = _floats(a["echo_times_s"]), _floats(b["echo_times_s"])
    return ta.shape != tb.shape or not np.allclose(ta, tb, rtol=0, atol=atol)


_COMPARE = {"field strength": _differs_field, "voxel size": _differs_voxels,
            "echo times": _differs_tes}
