"""``ironmap demo``: simulate a small cohort, run both analysis levels and write the report.

Layout under ``OUT_DIR``::

    cohort/bids/      the simulated BIDS dataset (rater masks in cohort/bids/derivatives/raters)
    cohort/truth/     its ground truth
    ironmap/          the ironmap derivatives; ironmap/report.html is the study report
    autocheck/        the automatic anatomy check: one extra simulated participant processed
                      with and without rater masks (ironmap.workflows.demo_check)
    timings.tsv       seconds per stage
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ironmap.io.atomic import OutputExistsError
from ironmap.io.layout import output_path
from ironmap.io.tables import write_tsv
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)

STAGES = ("simulate", "participant level", "group level", "automatic anatomy check", "report")
#: The stage that runs in its own process beside the others; its row in ``timings.tsv`` holds
#: the wall time the demo waited for it and the CPU time of that process.
CHECK_STAGE = "automatic anatomy check"


class DemoError(RuntimeError):
    """A demo stage failed (the message names the stage and where to look)."""


@dataclass
class DemoResult:
    """Where the demo wrote its outputs and how long each stage took (s)."""

    out_dir: Path
    report: Path
    timings: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)


class _Progress:
    """Stage lines ("[2/4] participant level ...", then its time); styled on a terminal.

    Plain lines rather than a live bar, so that the participant level's own progress bar
    (one live display at a time) shows inside the stage.
    """

    def __init__(self, enabled: bool | None, stream=None):
        self.stream = stream or sys.stderr
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.styled = tty if enabled is None else enabled
        self._console = None
        if self.styled:
            from rich.console import Console

            self._console = Console(file=self.stream)

    def __enter__(self):
        return self

    def _print(self, text: str, style: str) -> None:
        if self._console is not None:
            self._console.print(text, style=style, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def stage(self, index: int, name: str, total: int = len(STAGES)) -> None:
        self._print(f"[{index + 1}/{total}] {name} ...", "bold cyan")

    def done(self, name: str, seconds: float) -> None:
        self._print(f"    {name} done in {seconds:.1f} s", "green")

    def __exit__(self, *exc):
        return False


def _cpu_time() -> float:
    """User + system CPU seconds of this process and its terminated children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _volumes_available() -> bool:
    try:
        from ironmap.workflows import volumes  # noqa: F401
    except ImportError:
        return False
    return True


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out_dir}: folder is not empty; pass --overwrite to replace "
                                "the demo in it")


#: The built-in demo cohort: enough controls for the age model; their ages are spread evenly
#: over the seed's 18-57 years, in turn over the sites (three per site with two sites).
DEMO_COUNTS: dict[str, int] = {"HC": 6, "RRMS": 3, "SPMS": 2, "PPMS": 2}


def run_demo(out_dir, *, subjects_per_group: int | dict[str, int] | None = None,
             nprocs: int = 1, sites: int = 2, seed: int = 0, overwrite: bool = False,
             volumes: bool | None = False, progress: bool | None = None,
             preset: str = "demo", auto_check: bool = True) -> Path:
    """Run the demo and return the path of ``report.html``.

    Parameters
    ----------
    out_dir : path
        Empty (or absent) folder, or any folder with ``overwrite``.
    subjects_per_group : int or dict, optional
        Participants in each of HC, RRMS, SPMS and PPMS, or ``{group: count}``; default
        :data:`DEMO_COUNTS`.
    nprocs : int
        Participants processed in parallel (and simulated in parallel).
    sites : int
        Number of simulated sites.
    seed : int
        Seed of the simulated cohort.
    overwrite : bool
        Replace an earlier demo in ``out_dir``.
    volumes : bool or None
        Measure tissue volumes (``--volumes``); None = when the volumes module is installed.
    progress : bool or None
        Progress display; None = on a terminal only.
    preset : str
        Simulation preset (``demo``: the seed's 1x1x2 mm GRE and 1x1x3 mm FLAIR with a 2 mm
        T1w, so that the small nuclei keep voxels after erosion; ``fast``: coarser).
    auto_check : bool
        Also run the automatic anatomy check (one extra simulated participant with rater
        masks and with automatic anatomy, in its own process beside the other stages;
        :mod:`ironmap.workflows.demo_check`).

    Returns
    -------
    pathlib.Path
        ``OUT_DIR/ironmap/report.html``.
    """
    return run_demo_stages(out_dir, subjects_per_group=subjects_per_group, nprocs=nprocs,
                           sites=sites, seed=seed, overwrite=overwrite, volumes=volumes,
                           progress=progress, preset=preset, auto_check=auto_check).report


def run_demo_stages(out_dir, *, subjects_per_group: int | dict[str, int] | None = None,
                    nprocs: int = 1, sites: int = 2, seed: int = 0, overwrite: bool = False,
                    volumes: bool | None = False, progress: bool | None = None,
                    preset: str = "demo", auto_check: bool = True) -> DemoResult:
    """:func:`run_demo` returning the stage timings and exit codes as well.

    Parameters
    ----------
    out_dir, subjects_per_group, nprocs, sites, seed, overwrite, volumes, progress, preset
        As for :func:`run_demo`.
    auto_check : bool
        As for :func:`run_demo`.

    Returns
    -------
    DemoResult
        Output folder, report path, seconds and CPU seconds per stage, exit codes.
    """
    out = Path(out_dir).resolve()
    if subjects_per_group is None:
        subjects_per_group = dict(DEMO_COUNTS)
    counts = subjects_per_group.values() if isinstance(subjects_per_group, dict) \
        else [subjects_per_group]
    if min(counts) < 1 or nprocs < 1 or sites < 1:
        raise ValueError("subjects per group, nprocs and sites must be at least 1")
    _check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    use_volumes = _volumes_available() if volumes is None else bool(volumes)
    result = DemoResult(out, output_path(out / "ironmap", "report"))
    steps = _steps(out, subjects_per_group, nprocs, sites, seed, overwrite, use_volumes, result,
                   preset)
    stale = output_path(out / "ironmap", "autoanatomy_check")  # an earlier demo's (overwrite)
    for old in (stale, stale.with_suffix(".json")):
        old.unlink(missing_ok=True)
    check = _BackgroundCheck(out, seed, preset) if auto_check else None
    if check is None:
        steps = [s for s in steps if s[0] != CHECK_STAGE]
    else:
        steps = [(n, check.wait if n == CHECK_STAGE else f) for n, f in steps]
    try:
        with _Progress(progress) as bar:
            for i, (name, step) in enumerate(steps):
                bar.stage(i, name, len(steps))
                t0, c0 = time.monotonic(), _cpu_time()
                step()
                result.timings[name] = time.monotonic() - t0
                result.cpu_seconds[name] = _cpu_time() - c0
                if name == CHECK_STAGE:
                    result.cpu_seconds[name] = check.cpu_seconds
                    result.exit_codes["automatic anatomy check"] = check.exit_code
                bar.done(name, result.timings[name])
    finally:
        if check is not None:
            check.close()
    write_tsv(pd.DataFrame({"stage": list(result.timings),
                            "seconds": list(result.timings.values()),
                            "cpu_seconds": list(result.cpu_seconds.values())}),
              out / "timings.tsv",
              {"stage": {"Description": "Demo stage"},
               "seconds": {"Description": "Wall-clock time of the stage", "Units": "s"},
               "cpu_seconds": {"Description": "CPU time of this process and its finished "
                               "child processes during the stage; for the automatic anatomy "
                               "check (which runs in its own process beside the other "
                               "stages, its seconds being the time the demo waited for it) "
                               "the CPU time of that process", "Units": "s"}},
              float_format="%.2f")
    return result


def _steps(out: Path, n, nprocs: int, sites: int, seed: int, overwrite: bool,
           volumes: bool, result: DemoResult, preset: str = "demo"
           ) -> list[tuple[str, Callable[[], Any]]]:
    cohort_dir, deriv = out / "cohort", out / "ironmap"
    state: dict[str, Any] = {}

    def simulate():
        from ironmap.workflows.simulate import simulate_cohort

        state["cohort"] = simulate_cohort(cohort_dir, subjects_per_group=n, sites=sites,
                                          preset=preset, seed=seed, overwrite=True,
                                          nprocs=nprocs, control_ages="span")

    def config(level: str) -> RunConfig:
        # the participant level makes each QC page while the participant's images are in
        # memory (the report stage reuses it); the group level leaves the report to its stage
        c = state["cohort"]
        return RunConfig(bids_dir=Path(c.bids_dir), output_dir=deriv, analysis_level=level,
                         masks=(Path(c.masks_dir),), nprocs=nprocs, volumes=volumes,
                         overwrite=overwrite, report=level == "participant")

    def participant():
        from ironmap.workflows.participant_level import run_participant_level

        result.exit_codes["participant"] = code = run_participant_level(config("participant"))
        if code not in (0, 3):
            raise DemoError(f"participant level failed (exit {code}); see {deriv / 'logs'}")

    def group():
        from ironmap.workflows.group_level import run_group_level

        result.exit_codes["group"] = code = run_group_level(config("group"))
        if code != 0:
            log.warning("group level exited with %d; the report shows what is missing", code)

    def report():
        from ironmap.workflows.report import write_reports

        write_reports(config("group"))

    return list(zip(STAGES, (simulate, participant, group, None, report), strict=True))


def _check_job(out: Path, seed: int, preset: str) -> tuple[float, int, str, Any]:
    """The automatic anatomy check in a worker process.

    Returns (CPU seconds, exit code, message, the check or None). It writes only under
    ``OUT_DIR/autocheck``; the demo writes its table into the derivatives afterwards.
    """
    import resource

    from ironmap.workflows.demo_check import run_anatomy_check

    # its participant's warnings stay in its own logs (OUT_DIR/autocheck/*/logs): on the
    # console they would read as the study's participant of the same label
    root = logging.getLogger()
    if not root.handlers:  # a spawned process: keep Python's last-resort handler off the console
        root.addHandler(logging.NullHandler())
    for handler in root.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(max(handler.level, logging.ERROR))
    check, code, message = None, 0, ""
    try:
        check = run_anatomy_check(out, seed=seed, preset=preset)
    except Exception as exc:  # reported by the demo; the study outputs are not affected
        log.warning("automatic anatomy check failed: %s", exc, exc_info=True)
        code, message = 1, str(exc)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime, code, message, check


class _BackgroundCheck:
    """The automatic anatomy check, started at once in its own process.

    It runs beside the simulation and the participant level (its participant is not one of
    the study's, its outputs go to ``OUT_DIR/autocheck`` and one table); the demo waits for
    it before the report. A failed check is logged and leaves the report without the section.
    """

    def __init__(self, out: Path, seed: int, preset: str):
        from ironmap.parallel import process_pool

        self.out = out
        self.cpu_seconds, self.exit_code = 0.0, -1
        # spawned (process_pool's default), not forked: a fork of a process with threads can
        # inherit a lock held by another thread and hang; its log stays in its own files
        self._pool = process_pool(1, forward_logs=False)
        self._future = self._pool.submit(_check_job, out, seed, preset)

    def wait(self) -> None:
        """Wait for the check and write its table; a failure is logged, not raised."""
        from ironmap.workflows.demo_check import write_check_table

        try:
            self.cpu_seconds, self.exit_code, message, check = self._future.result()
        except Exception as exc:  # the worker process itself died
            self.exit_code, message, check = 1, str(exc), None
        if check is not None:
            write_check_table(self.out / "ironmap", check.comparison, check.record)
        if self.exit_code:
            log.warning("automatic anatomy check failed (%s); the report has no such section",
                        message)

    def close(self) -> None:
        """Shut the worker process down (cancelling a check not yet started)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
