"""``ironmap lesions grow|segment``: semi-automatic and automatic lesion outlining on FLAIR."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ironmap lesions``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; options are added to it.
    """
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    grow = sub.add_parser("grow", help="grow lesions from seed points on a FLAIR image")
    grow.add_argument("flair", metavar="FLAIR", help="FLAIR NIfTI (lesions bright)")
    grow.add_argument("--seeds", metavar="TSV", default=None,
                      help="seed table with columns x, y, z in world mm (RAS+, the NIfTI's "
                           "scanner space), one row per lesion")
    grow.add_argument("--propose", action="store_true",
                      help="add seeds at FLAIR hyperintensities in deep white matter")
    grow.add_argument("--brain-mask", metavar="MASK", default=None,
                      help="brain mask on the FLAIR grid (default: FLAIR > 0)")
    grow.add_argument("-o", "--output", required=True, metavar="MASK",
                      help="output lesion mask, e.g. sub-01_label-lesion_mask.nii.gz")
    grow.add_argument("--overwrite", action="store_true", help="replace an existing output")
    grow.add_argument("--rim-rule", action="store_true",
                      help="below 0.4 of each lesion's profile add only a one-voxel "
                           "partial-volume rim (higher Dice, lower load on the test patients; "
                           "docs/lesions.md)")
    grow.add_argument("--rim-floor", type=float, default=None, metavar="F",
                      help="with --rim-rule: lowest level of a lesion's profile (0 = local "
                           "white matter, 1 = lesion peak) a partial-volume rim voxel may have "
                           "(default 0.35; 0.3 was chosen with --compete, docs/lesions.md)")
    grow.add_argument("--compete", action="store_true",
                      help="seeds compete: a click never grows into another click's lesion, "
                           "and a second pass grows each seed with the others' lesions closed "
                           "(docs/lesions.md)")
    grow.add_argument("--stop-rule", choices=("leak", "stable"), default="leak",
                      help="'leak' (default): growing stops before a sudden jump in region "
                           "size; 'stable': a jump ends growing only from a stable region, so "
                           "a click's fragment that has just formed may join the rest of its "
                           "lesion (docs/lesions.md)")
    grow.add_argument("--rim-at-seed", action="store_true",
                      help="with --rim-rule and --compete: a lesion whose growing stops where "
                           "it meets another click's seed still gets its partial-volume rim "
                           "(with --bright-leak: higher Dice on the test patients, load "
                           "target not met on one; docs/lesions.md)")
    grow.add_argument("--bright-leak", action="store_true",
                      help="a jump out of a click's first few voxels into a structure far "
                           "brighter than the click's own peak counts as a leak "
                           "(docs/lesions.md)")
    grow.add_argument("--pv-border", action="store_true",
                      help="after growing, trim each lesion of at least 100 voxels at its "
                           "partial-volume border, 0.4 of the way from local white matter "
                           "to its bright level (docs/lesions.md)")
    seg = sub.add_parser("segment", help="automatic white-matter lesion segmentation on FLAIR")
    seg.add_argument("flair", metavar="FLAIR", help="FLAIR NIfTI (lesions bright)")
    seg.add_argument("--t1w", metavar="T1W", default=None,
                     help="T1w NIfTI of the same session (guides registration, brain mask "
                          "and the normal-appearing white matter)")
    seg.add_argument("-o", "--output", required=True, metavar="MASK",
                     help="output lesion mask, e.g. sub-01_label-lesion_mask.nii.gz")
    seg.add_argument("--threshold", type=float, default=0.5, metavar="P",
                     help="lesion probability threshold, 0 < P < 1 (default 0.5)")
    seg.add_argument("--probability", metavar="OUT_PROB", default=None,
                     help="also write the lesion probability map, e.g. "
                          "sub-01_label-lesion_probseg.nii.gz")
    seg.add_argument("--outline", choices=("fraction", "volume"), default="fraction",
                     help="lesion border rule: 'fraction' drops rim voxels below a quarter of "
                          "the lesion's contrast (default); 'volume' keeps as many voxels as "
                          "the lesion's partial-volume content (docs/lesions.md)")
    seg.add_argument("--method", choices=("ironmap", "samseg"), default="ironmap",
                     help="'ironmap' (default, built in) or 'samseg': SAMSEG's lesion mode, "
                          "run in its own environment (needs --t1w; docs/samseg.md); the "
                          "threshold applies to its lesion posterior")
    seg.add_argument("--samseg", metavar="RUN_SAMSEG", default=None,
                     help="SAMSEG's run_samseg script for --method samseg (default "
                          "$SAMSEG_CMD, else run_samseg on PATH)")
    seg.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    """Run ``ironmap lesions ACTION``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (:func:`add_arguments` and the common ones).

    Returns
    -------
    int
        Exit code: 0 ok, 1 failure, 2 usage error.
    """
    from ironmap.io.nifti import ImageError
    from ironmap.workflows.lesion_growing import RIM_RULE, SeedError, grow_from_file

    if args.action == "segment":
        return _segment(args)
    if not args.seeds and not args.propose:
        log.error("give --seeds TSV and/or --propose")
        return 2
    top = RIM_RULE["rim_level"]
    if args.rim_floor is not None and (not args.rim_rule or not 0 <= args.rim_floor < top):
        log.error("--rim-floor needs --rim-rule and a value in [0, %s)", top)
        return 2
    if args.rim_at_seed and not (args.rim_rule and args.compete):
        log.error("--rim-at-seed needs --rim-rule and --compete")
        return 2
    try:
        table = grow_from_file(args.flair, args.output, seeds_path=args.seeds,
                               propose=args.propose, brain_mask_path=args.brain_mask,
                               overwrite=args.overwrite, rim_rule=args.rim_rule,
                               compete=args.compete, rim_floor=args.rim_floor,
                               stop_rule=args.stop_rule, rim_at_seed=args.rim_at_seed,
                               bright_leak=args.bright_leak, pv_border=args.pv_border)
    except (SeedError, ImageError, FileNotFoundError, FileExistsError) as exc:
        log.error("%s", exc)
        return 1
    ok = int((table.status == "ok").sum())
    log.info("%d of %d seeds grown; %d lesion voxels -> %s", ok, len(table),
             int(table.n_voxels.sum()), args.output)
    return 0


def _segment(args: argparse.Namespace) -> int:
    from ironmap.core.lesions.auto_segment import LesionSegParams
    from ironmap.workflows.lesion_segmentation import (
        LesionSegError,
        segment_from_file,
        segment_samseg_from_file,
    )

    if not 0.0 < args.threshold < 1.0:
        log.error("--threshold must be between 0 and 1, got %s", args.threshold)
        return 2
    try:
        if args.method == "samseg":
            seg = segment_samseg_from_file(args.flair, args.output, t1w_path=args.t1w,
                                           threshold=args.threshold,
                                           probability_path=args.probability,
                                           overwrite=args.overwrite, samseg_cmd=args.samseg)
        else:
            seg = segment_from_file(args.flair, args.output, t1w_path=args.t1w,
                                    threshold=args.threshold,
                                    probability_path=args.probability, overwrite=args.overwrite,
                                    params=LesionSegParams(outline_volume=args.outline ==
                                                           "volume"))
    except (LesionSegError, FileNotFoundError, FileExistsError) as exc:
        log.error("%s", exc)
        return 1
    log.info("%d lesions, %.2f cm3 -> %s", seg.n_lesions, seg.load_cm3, args.output)
    return 0
