"""The automatic route's template-registration schedule (``--template-schedule``).

``standard`` must be exactly ANTsPy's default affine schedule with SyN 60/30/10 (what the
route ran before the option); every schedule reaches the configuration, the run record, the
methods text and the labels' sidecar; an unknown one is refused at start-up. The schedules'
accuracy is checked with real ANTs on a known deformation of the FSL MNI152 head
(``test_anatomy.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from ironmap.report.methods import methods_record, schedule_phrase
from ironmap.spatial.atlas import AFFINE_SCHEDULE, SYN_ITERATIONS, TEMPLATE_SCHEDULES
from ironmap.workflows.anatomy import check_atlases, schedule_record, template_schedule
from ironmap.workflows.config import RunConfig

BASE = RunConfig(bids_dir=Path("b"), output_dir=Path("o"), analysis_level="participant")


def test_standard_is_antspy_default_affine_and_syn_60_30_10():
    from ironmap.spatial.registration import import_ants

    params = inspect.signature(import_ants().registration).parameters
    assert AFFINE_SCHEDULE == (params["aff_iterations"].default,
                               params["aff_shrink_factors"].default,
                               params["aff_smoothing_sigmas"].default)
    assert SYN_ITERATIONS == (60, 30, 10)
    assert TEMPLATE_SCHEDULES["standard"] == (SYN_ITERATIONS, AFFINE_SCHEDULE)
    for syn, (steps, shrink, sigmas) in TEMPLATE_SCHEDULES.values():
        assert len(steps) == len(shrink) == len(sigmas) and len(syn) == 3
        assert steps[0] > 0 and syn[0] > 0


def test_cli_option_reaches_config_record_methods_and_sidecar(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args
    from ironmap.workflows.participant_level import RESULT_PARAMETERS
    from ironmap.workflows.provenance import PARTICIPANT_KEYS

    assert "template_schedule" in PARTICIPANT_KEYS and "template_schedule" in RESULT_PARAMETERS
    base = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    default = config_from_args(build_parser().parse_args(base)).template_schedule
    assert default == BASE.template_schedule
    for name in TEMPLATE_SCHEDULES:
        cfg = config_from_args(build_parser().parse_args([*base, "--template-schedule",
                                                          name]))
        assert template_schedule(cfg) == name
        record = methods_record(cfg.to_json())
        assert record["template_schedule"] == name
        syn, (steps, shrink, sigmas) = TEMPLATE_SCHEDULES[name]
        phrase = schedule_phrase(record)
        assert (phrase == "") == (name == "standard")
        if phrase:  # every level that runs is named with its iterations
            for s, n in zip(shrink, steps, strict=True):
                assert (f"{n} at shrink factor {s}" in phrase) == (n > 0)
        side = schedule_record(name)
        assert side == {"Name": name, "AffineIterations": list(steps),
                        "AffineShrinkFactors": list(shrink),
                        "AffineSmoothingSigmasVoxels": list(sigmas),
                        "SyNIterations": list(syn), "SyNShrinkFactors": [4, 2, 1]}
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--template-schedule", "quick"])
    # a record without the key (a run before the option) ran the standard schedule
    assert methods_record({"method": "two_point"})["template_schedule"] == "standard"


def test_unknown_schedule_is_refused_at_start_up():
    bad = dataclasses.replace(BASE, template_schedule="quick")
    with pytest.raises(ValueError, match="template_schedule 'quick' is not one of"):
        template_schedule(bad)
    assert check_atlases(bad).startswith("template registration: template_schedule 'quick'")
    # without automatic anatomy nothing is registered: nothing to refuse
    assert check_atlases(dataclasses.replace(bad, auto_anatomy=False)) is None
