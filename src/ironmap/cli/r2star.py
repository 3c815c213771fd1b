"""``ironmap r2star ECHO1 ECHO2 [ECHO...] -o OUT``: an R2* map from multi-echo GRE NIfTI files."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

LOG = logging.getLogger(__name__)



def method_choices() -> list[str]:
    """The estimator names for ``--method``, ``auto`` first.

    Returns
    -------
    list of str
        From the table in :mod:`ironmap.core.r2star.estimators` (no fitting code is imported).
    """
    from ironmap.core.r2star.estimators import AUTO, method_names

    return [AUTO, *[m for m in method_names() if m != AUTO]]


def echo_numbers(text: str) -> tuple[int, ...]:
    """Parse ``--echoes``: 1-based echo numbers as ``2-12``, ``1,3,5`` or ``1-3,6``.

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    tuple of int
        The echo numbers in the order given (ranges expanded).

    Raises
    ------
    argparse.ArgumentTypeError
        For text that is not such a list (a usage error at parse time).
    """
    numbers: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if first < 1 or last < first:
                raise ValueError
            numbers.extend(range(first, last + 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--echoes {text!r}: expected 1-based echo numbers such as 2-12 or 1,3,5") from exc
    return tuple(numbers)


def _sigma(text: str):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--sigma must be a number or 'auto': {text}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("--sigma must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ironmap r2star``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; options are added to it.
    """
    parser.add_argument("echoes", nargs="+", type=Path,
                        help="one 4D NIfTI (echoes along dim 4) or one 3D NIfTI per echo")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="the R2* map to write (…_R2starmap.nii.gz) or a prefix; S0, flag "
                        "and RMSE maps are written beside it")
    parser.add_argument("--method", choices=method_choices(), default="auto",
                        help="estimator (default auto: two_point for 2 echoes, nonlinear for "
                        "more)")
    parser.add_argument("--te", nargs="+", type=float,
                        help="echo times (default: EchoTime from the BIDS JSON sidecars)")
    parser.add_argument("--te-unit", choices=["s", "ms"],
                        help="unit of --te; without it, values > 0.5 are taken as ms (warning)")
    parser.add_argument("--echoes", type=echo_numbers, default=None, metavar="LIST",
                        dest="echo_select",
                        help="fit only these echoes, 1-based (e.g. 2-12 or 1,3,5); default all")
    parser.add_argument("--mask", type=Path, help="fit only inside this mask (same grid)")
    parser.add_argument("--sigma", type=_sigma,
                        help="noise sigma (signal units) or 'auto' (background outside --mask);"
                        " required by --method rician, enables noise-floor flags")
    parser.add_argument("--r2star-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        default=(0.0, 1000.0),
                        help="accepted R2* interval in 1/s (outside: NaN + flag); default 0 1000")
    parser.add_argument("--t2star", action="store_true", help="also write the T2* map (s)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads (default: the cores this process may use)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    """Fit R2* maps from the given echoes.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (:func:`add_arguments` and the common ones).

    Returns
    -------
    int
        Exit code: 0 on success, 1 on bad input or refused output.
    """
    from ironmap.io.sanity import HeaderError, check_memory

    try:  # headers first, before the fitting modules load: a forged header fails in a second
        check_memory([p for p in (*args.echoes, args.mask) if p is not None and p.is_file()],
                     float("inf"), "this fit")
    except HeaderError as exc:
        print(f"ironmap r2star: error: {exc}", file=sys.stderr)
        return 1
    from ironmap.io.atomic import OutputExistsError
    from ironmap.io.nifti import ImageError
    from ironmap.workflows.r2star import run_r2star

    sigma = args.sigma
    if args.method == "rician" and sigma is None:
        if args.mask is None:
            print("ironmap r2star: error: --method rician needs --sigma (or --mask, to estimate"
                  " sigma from the background)", file=sys.stderr)
            return 2
        sigma = "auto"
    try:
        written = run_r2star(args.echoes, args.output, method=args.method, te=args.te,
                             te_unit=args.te_unit, mask_path=args.mask, t2star=args.t2star,
                             overwrite=args.overwrite, sigma=sigma,
                             r2star_range=tuple(args.r2star_range), n_jobs=args.n_jobs,
                             echo_select=args.echo_select)
    except (OutputExistsError, ImageError, ValueError) as exc:
        print(f"ironmap r2star: error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        LOG.info("wrote %s", path)
    return 0
