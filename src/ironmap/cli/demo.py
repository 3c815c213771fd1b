"""``ironmap demo [OUT_DIR]``: the built-in demo cohort through both levels and the report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def default_nprocs() -> int:
    """CPU cores available to this process, at most 4.

    Returns
    -------
    int
        Participants processed in parallel by default (at least 1).
    """
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ironmap demo``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; options are added to it.
    """
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path("ironmap-demo"),
                        help="folder for the cohort, the derivatives and the report "
                        "(default ./ironmap-demo)")
    parser.add_argument("--subjects-per-group", type=int, default=None,
                        help="participants in each group (HC, RRMS, SPMS, PPMS); default 6 "
                        "controls, 3 RRMS, 2 SPMS, 2 PPMS")
    parser.add_argument("--preset", choices=("demo", "fast"), default="demo",
                        help="image resolution of the simulated cohort (default demo: the seed "
                        "study's GRE and FLAIR, 2 mm T1w; fast: coarser, quicker)")
    parser.add_argument("--sites", type=int, default=2, help="simulated sites (default 2)")
    parser.add_argument("--nprocs", type=int, default=default_nprocs(),
                        help="participants processed in parallel (default: CPU cores, at "
                        f"most 4; here {default_nprocs()})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort (default 0)")
    parser.add_argument("--volumes", action="store_true",
                        help="also measure tissue volumes from the T1w (slower)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier demo in OUT_DIR")
    parser.add_argument("--no-auto-check", dest="auto_check", action="store_false",
                        help="skip the automatic anatomy check (one extra simulated "
                        "participant processed with and without rater masks, shown beside "
                        "each other in the report; about 70 CPU-s in its own process)")


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the report path and each stage's time.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (:func:`add_arguments` and the common ones).

    Returns
    -------
    int
        Exit code: 0 ok, 1 failed, 2 usage error.
    """
    from ironmap.io.atomic import OutputExistsError
    from ironmap.workflows.demo import DemoError, run_demo_stages

    try:
        result = run_demo_stages(args.out_dir, subjects_per_group=args.subjects_per_group,
                                 nprocs=args.nprocs, sites=args.sites, seed=args.seed,
                                 overwrite=args.overwrite, volumes=args.volumes,
                                 preset=args.preset,
                                 auto_check=getattr(args, "auto_check", True))
    except (OutputExistsError, ValueError) as exc:
        print(f"ironmap demo: error: {exc}", file=sys.stderr)
        return 2
    except DemoError as exc:
        print(f"ironmap demo: {exc}", file=sys.stderr)
        return 1
    total = sum(result.timings.values())
    print(f"\nironmap demo finished in {total:.1f} s:")
    for stage, seconds in result.timings.items():
        print(f"  {stage:<18} {seconds:7.1f} s")
    print(f"\nStudy report: {result.report}")
    print(f"Open it in a browser, e.g. file://{result.report}")
    return 0
