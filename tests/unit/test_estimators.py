"""One estimator table: the fit, the CLI choices, sidecars and methods text all read it."""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cli import r2star as cli_r2star
from ironmap.cli.main import main
from ironmap.core.r2star import estimators
from ironmap.core.r2star.estimators import ESTIMATORS, Estimator
from ironmap.core.r2star.relaxometry import METHODS, EchoTimeError, fit_r2star
from ironmap.report import methods as M
from ironmap.workflows.r2star import METHOD_DESCRIPTIONS, r2star_sidecar

EVEN = np.array([0.004, 0.008, 0.012, 0.016, 0.020])
UNEVEN = np.array([0.004, 0.006, 0.012, 0.016, 0.030])
R2 = np.array([12.0, 25.0, 40.0, 70.0])


def decay(te):
    return 1000.0 * np.exp(-np.multiply.outer(R2, te))


def cli_choices() -> list[str]:
    parser = argparse.ArgumentParser()
    cli_r2star.add_arguments(parser)
    return next(a.choices for a in parser._actions if a.dest == "method")


def test_every_entry_is_described_and_loads():
    phrases = [e.methods_text for e in ESTIMATORS.values()] + [estimators.AUTO_PHRASE]
    for name, est in ESTIMATORS.items():
        assert est.name == name
        for text in (est.description, est.methods_phrase):
            assert text.strip() and "\n" not in text
        assert est.min_echoes >= 2
        assert callable(est.load_setup())
        if est.citation:
            assert est.reference and est.citation in M.REFERENCES
    # no phrase contains another, so the methods text names exactly one estimator
    for a in phrases:
        assert sum(a in b for b in phrases) == 1, a


def test_readers_are_derived_from_the_table():
    assert METHODS == (*ESTIMATORS, "auto")
    assert cli_choices() == cli_r2star.method_choices() == ["auto", *ESTIMATORS]
    assert METHOD_DESCRIPTIONS == {n: e.description for n, e in ESTIMATORS.items()}
    assert M.ESTIMATORS == {**{n: e.methods_text for n, e in ESTIMATORS.items()},
                            "auto": estimators.AUTO_PHRASE}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_sidecar_and_fit_follow_the_table(name):
    te = EVEN
    fit = fit_r2star(decay(te), te, name, sigma=1e-6)
    np.testing.assert_allclose(fit.r2star, R2, rtol=1e-4)
    side = r2star_sidecar(fit)
    assert side["EstimationMethod"] == name
    assert side["EstimationMethodDescription"] == ESTIMATORS[name].description
    est = ESTIMATORS[name]
    short = EVEN[: est.min_echoes - 1]
    with pytest.raises(EchoTimeError, match="at least"):
        fit_r2star(decay(short), short, name, sigma=1e-6)
    if est.even_spacing:
        with pytest.raises(ValueError, match="evenly spaced"):
            fit_r2star(decay(UNEVEN), UNEVEN, name, sigma=1e-6)
    else:
        np.testing.assert_allclose(fit_r2star(decay(UNEVEN), UNEVEN, name, sigma=1e-6).r2star,
                                   R2, rtol=1e-4)
    with pytest.raises(TypeError, match="unknown option"):
        fit_r2star(decay(te), te, name, sigma=1e-6, no_such_option=1)


# ---- a toy estimator registered for one test: one table entry plus its kernel -------------

def _kernel_first_last(rows, te, *, want_rmse):
    """R2* from the first and last echo only."""
    r2 = np.log(rows[:, 0] / rows[:, -1]) / (te[-1] - te[0])
    s0 = rows[:, 0] * np.exp(r2 * te[0])
    return r2, s0, None, (0, te.size - 1)


def _setup_first_last(te, sigma, options):
    return _kernel_first_last, {}


TOY = Estimator("first_last", description="ln(S_first/S_last) over the echo-time span",
                methods_phrase="a toy first-to-last-echo ratio", setup=_setup_first_last,
                citation="toyref", reference="Toy A. A ratio. J Toys. 2026;1:1.")


def test_a_new_entry_reaches_fit_cli_sidecar_and_methods(monkeypatch, tmp_path):
    monkeypatch.setitem(ESTIMATORS, TOY.name, TOY)
    # the fit dispatches to its kernel
    np.testing.assert_allclose(fit_r2star(decay(UNEVEN), UNEVEN, "first_last").r2star, R2,
                               rtol=1e-6)
    # the CLI offers it and writes its description into the sidecar
    assert "first_last" in cli_choices()
    paths = []
    truth = np.broadcast_to(R2, (3, 2, 4)).astype(float)
    for k, t in enumerate(EVEN[:3]):
        p = tmp_path / f"sub-01_echo-{k + 1}_part-mag_MEGRE.nii.gz"
        nib.save(nib.Nifti1Image((1000 * np.exp(-truth * t)).astype(np.float32), np.eye(4)), p)
        p.with_name(p.name.replace(".nii.gz", ".json")).write_text(json.dumps({"EchoTime": t}))
        paths.append(str(p))
    out = tmp_path / "out" / "sub-01_R2starmap.nii.gz"
    assert main(["r2star", *paths, "-o", str(out), "--method", "first_last"]) == 0
    np.testing.assert_allclose(np.asarray(nib.load(out).dataobj), truth, rtol=1e-5)
    side = json.loads(out.with_name("sub-01_R2starmap.json").read_text())
    assert side["EstimationMethodDescription"] == TOY.description
    # the methods text names it and cites its reference
    agefit = pd.DataFrame({"region": ["putamen"], "hemisphere": "bilateral", "site": "all",
                           "model": "saturation"})
    record = M.methods_record({"method": "first_last", "registration": "affine"},
                              r2star_sidecar=side, agefit=agefit, reference_age=40.0)
    text = M.methods_text(record, {"ironmap": "1.0"})
    assert "with a toy first-to-last-echo ratio [toyref]" in " ".join(text.paragraphs)
    assert ("toyref", TOY.reference) in text.references
    monkeypatch.undo()
    assert "first_last" not in cli_choices()
