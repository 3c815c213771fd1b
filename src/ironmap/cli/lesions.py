"""``ironmap lesions grow FLAIR --seeds seeds.tsv -o MASK``: semi-automatic lesion outlining."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ironmap lesions``."""
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


def run(args: argparse.Namespace) -> int:
    """Run ``ironmap lesions ACTION``; 0 ok, 1 failure, 2 usage error."""
    from ironmap.io.nifti import ImageError
    from ironmap.workflows.lesions import SeedError, grow_from_file

    if args.action != "grow":  # pragma: no cover - argparse restricts the choices
        return 2
    if not args.seeds and not args.propose:
        log.error("give --seeds TSV and/or --propose")
        return 2
    try:
        table = grow_from_file(args.flair, args.output, seeds_path=args.seeds,
                               propose=args.propose, brain_mask_path=args.brain_mask,
                               overwrite=args.overwrite)
    except (SeedError, ImageError, FileNotFoundError, FileExistsError) as exc:
        log.error("%s", exc)
        return 1
    ok = int((table.status == "ok").sum())
    log.info("%d of %d seeds grown; %d lesion voxels -> %s", ok, len(table),
             int(table.n_voxels.sum()), args.output)
    return 0
