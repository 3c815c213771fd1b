"""``ironmap`` entry point: the BIDS-App form plus helper subcommands.

``ironmap BIDS_DIR OUTPUT_DIR participant|group [options]`` runs an analysis level;
``ironmap SUBCOMMAND ...`` runs a helper (``r2star``, ``simulate``, ``demo``, ``import-dicom``,
``lesions``). Each helper lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand is used.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import signal
import sys
import warnings
from importlib import import_module
from pathlib import Path

from ironmap import __version__

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "r2star": ("ironmap.cli.r2star", "compute an R2* map from multi-echo GRE NIfTI files"),
    "simulate": ("ironmap.cli.simulate", "write a synthetic multicenter MS cohort (BIDS + truth)"),
    "demo": ("ironmap.cli.demo", "simulate a small cohort, run both levels and the report"),
    "import-dicom": ("ironmap.cli.import_dicom", "convert DICOM to BIDS with de-identification"),
    "lesions": ("ironmap.cli.lesions", "semi-automatic lesion outlining on FLAIR"),
}

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # some participants failed, the others finished


def setup_logging(verbosity: int = 0) -> None:
    """Log to stderr; INFO by default, DEBUG with -v, WARNING with -q.

    Python warnings are routed to the log as one line each.

    Parameters
    ----------
    verbosity : int, optional
        Count of ``-v`` minus count of ``-q``.
    """
    level = logging.INFO - 10 * verbosity
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("distributed", "tornado", "matplotlib", "PIL", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))
    warnings.showwarning = _warning_as_log_line


def _warning_as_log_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a Python warning as one log line (no source line, no file path)."""
    name = "ironmap" if "ironmap" in str(filename) else "py.warnings"
    logging.getLogger(name).warning("%s", message)


def unknown_command(argv: list[str]) -> str | None:
    """A usage message when ``argv`` is neither a subcommand nor the BIDS-App form.

    Parameters
    ----------
    argv : list of str
        The arguments after the program name.

    Returns
    -------
    str or None
        The message (naming the closest subcommand when there is one), or None when ``argv``
        may be a subcommand or a BIDS-App call.
    """
    positional = [a for a in argv if not a.startswith("-")]
    first = argv[0]
    if first.startswith("-") or len(positional) >= 3 or Path(first).exists():
        return None
    close = difflib.get_close_matches(first, list(SUBCOMMANDS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"ironmap: error: '{first}' is not a subcommand{hint} nor an existing BIDS_DIR; "
            f"subcommands: {', '.join(SUBCOMMANDS)}; analysis levels: "
            "ironmap BIDS_DIR OUTPUT_DIR participant|group")


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command has (``-v``, ``-q``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser; options are added to it.
    """
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")


def build_subcommand_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """Parser and module of one helper subcommand.

    Parameters
    ----------
    name : str
        A key of :data:`SUBCOMMANDS`.

    Returns
    -------
    parser : argparse.ArgumentParser
        With the subcommand's and the common options.
    module : module
        The subcommand's module (its ``run(args)`` runs it).
    """
    module_name, help_text = SUBCOMMANDS[name]
    module = import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"ironmap {name}", description=help_text)
    module.add_arguments(parser)
    add_common(parser)
    return parser, module


def top_level_help() -> str:
    """Text of ``ironmap --help``: the BIDS-App usage and the subcommands.

    Returns
    -------
    str
        The help text.
    """
    lines = [
        f"ironmap {__version__}: brain iron (R2*) mapping for multicenter MRI studies",
        "",
        "usage: ironmap BIDS_DIR OUTPUT_DIR {participant,group} [options]",
        "       ironmap SUBCOMMAND [options]",
        "",
        "analysis levels (BIDS-App): see `ironmap BIDS_DIR OUTPUT_DIR participant --help`",
        "",
        "subcommands:",
    ]
    lines += [f"  {name:<14}{text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "`ironmap SUBCOMMAND --help` shows a subcommand's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 ok, 1 failure, 2 usage error, 3 some participants failed, 130
        interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help())
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] == "--version":
        print(f"ironmap {__version__}")
        return EXIT_OK
    if argv[0] in SUBCOMMANDS:
        parser, module = build_subcommand_parser(argv[0])
        args = parser.parse_args(argv[1:])
    else:
        problem = unknown_command(argv)
        if problem:
            print(problem, file=sys.stderr)
            return EXIT_USAGE
        module = import_module("ironmap.cli.bidsapp")
        parser = module.build_parser()
        add_common(parser)
        args = parser.parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    previous = _exit_on_sigterm()
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        logging.getLogger("ironmap").error("interrupted")
        return 130
    except OSError as exc:  # read-only or full disk, a path under a file: one line
        logging.getLogger("ironmap").error("%s", os_error_line(exc))
        logging.getLogger("ironmap").debug("details", exc_info=True)
        return EXIT_FAILURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame):  # noqa: ARG001 - signal handler signature
    raise SystemExit(128 + signum)


def _exit_on_sigterm():
    """Turn SIGTERM into SystemExit; return the previous handler.

    So that ``finally`` blocks remove scratch files and release the OUTPUT_DIR lock. The previous
    handler is None off the main thread.
    """
    try:
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        return None


def os_error_line(exc: OSError) -> str:
    """``<file>: <reason>`` of a file-system error, in one line.

    Parameters
    ----------
    exc : OSError
        The error.

    Returns
    -------
    str
        The file name (when the error has one) and the reason.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    return " ".join(f"{where}: {reason}".strip(": ").split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
