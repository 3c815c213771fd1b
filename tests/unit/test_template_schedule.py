"""The automatic route's template-registration schedule is ANTsPy's default affine + SyN 60/30/10.

:func:`ironmap.spatial.atlas.register_syn` passes its affine schedule to ANTs explicitly
(``affine``, default :data:`ironmap.spatial.atlas.AFFINE_SCHEDULE`) so that benchmarks can
compare schedules (``benchmarks/template_schedule.py``); the default must stay exactly what
ANTsPy runs when given none, i.e. what the route ran before the parameter existed (a cheaper
schedule was measured and not adopted: docs/anatomy.md).
"""

from __future__ import annotations

import inspect

from ironmap.spatial.atlas import AFFINE_SCHEDULE, SYN_ITERATIONS


def test_default_is_antspy_default_affine_and_syn_60_30_10():
    from ironmap.spatial.registration import import_ants

    params = inspect.signature(import_ants().registration).parameters
    assert AFFINE_SCHEDULE == (params["aff_iterations"].default,
                               params["aff_shrink_factors"].default,
                               params["aff_smoothing_sigmas"].default)
    assert SYN_ITERATIONS == (60, 30, 10)
    steps, shrink, sigmas = AFFINE_SCHEDULE
    assert len(steps) == len(shrink) == len(sigmas)
