"""Word-valued run settings: read from the configuration and refused outside their choices."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ironmap.workflows.anatomy import midbrain_enabled
from ironmap.workflows.config import RunConfig
from ironmap.workflows.erosion import erosion_settings
from ironmap.workflows.nuclei import refine_mode

BASE = RunConfig(bids_dir=Path("b"), output_dir=Path("o"), analysis_level="participant")


def test_defaults_and_values():
    assert refine_mode(BASE) == "iron" and midbrain_enabled(BASE)
    assert erosion_settings(BASE)["erosion_space"] == "r2star"
    assert refine_mode(dataclasses.replace(BASE, nuclei_refine="")) == "none"
    assert not midbrain_enabled(dataclasses.replace(BASE, midbrain_refine="none"))
    assert erosion_settings(dataclasses.replace(BASE, erosion_space="native"))[
        "erosion_space"] == "native"


@pytest.mark.parametrize("read, field, message", [
    (refine_mode, "nuclei_refine", "nuclei_refine 'x' is not one of iron, iron-all, none"),
    (midbrain_enabled, "midbrain_refine", "midbrain_refine 'x' is not one of none, local"),
    (erosion_settings, "erosion_space", "erosion space 'x' is not one of r2star, native, auto"),
])
def test_unknown_value_is_refused_naming_the_setting(read, field, message):
    with pytest.raises(ValueError) as info:
        read(dataclasses.replace(BASE, **{field: "x"}))
    assert str(info.value) == message
