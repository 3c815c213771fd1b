"""CPU seconds of one participant's steps: ``cProfile`` on the CPU clock around the CLI.

Runs ``ironmap BIDS OUT participant --participant-label X [--masks M] --overwrite`` in this
process under ``cProfile`` timed by ``time.process_time`` (so the figures are CPU seconds,
comparable on a loaded machine) and prints the cumulative CPU seconds of each step of the
participant level (:data:`STEPS`); the imports before the participant starts are the whole
run's CPU minus ``process_subject``.

Usage::

    python benchmarks/participant_profile.py BIDS OUT sub-001 [--masks RATERS] [--stats FILE]

Numbers include the profiler's overhead (a few per cent); compare runs of the same command.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

#: label -> (file name ending, function name) whose cumulative CPU seconds are reported.
STEPS = {
    "whole participant (process_subject)": ("participant_level.py", "process_subject"),
    "loading and checking the images": ("participant.py", "load_images"),
    "R2* fit and its maps (fit_and_write)": ("participant.py", "fit_and_write"),
    "- writing the maps": ("r2star.py", "write_r2star_outputs"),
    "registrations with their checks (register_series)": ("participant.py", "register_series"),
    "- inside antsRegistration (all calls)": ("registration.py", "_run_ants"),
    "- NMI of the kept results": ("registration.py", "normalized_mutual_information"),
    "- block averaging": ("registration.py", "downsample"),
    "regional values (labels onto R2*, erosion, table)": ("participant.py", "regional"),
    "- label transport (resample_labels, every call)": ("grid.py", "resample_labels"),
    "- erosion": ("regional_values.py", "erode"),
    "- regional statistics": ("regional_values.py", "regional_stats"),
    "lesions": ("participant.py", "lesions"),
    "QC page (_qc_page)": ("participant_level.py", "_qc_page"),
    "- reading the derivatives back (load_subject)": ("report.py", "load_subject"),
    "- display ranges and masks (figure_jobs)": ("subject.py", "figure_jobs"),
    "- drawing and encoding the figures (realise)": ("report_figures.py", "realise"),
}


def step_seconds(stats: pstats.Stats) -> dict[str, tuple[float, int]]:
    """Cumulative CPU seconds and calls of each of :data:`STEPS` in a profile."""
    out = {}
    for label, (ending, name) in STEPS.items():
        cpu, calls = 0.0, 0
        for (path, _, func), (_, ncalls, _, cumulative, _) in stats.stats.items():
            if path.endswith(ending) and func == name:
                cpu, calls = cpu + cumulative, calls + ncalls
        out[label] = (cpu, calls)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bids")
    p.add_argument("out")
    p.add_argument("label", help="participant label, e.g. sub-001")
    p.add_argument("--masks", help="rater mask dataset")
    p.add_argument("--stats", help="also write the cProfile statistics to this file")
    args = p.parse_args(argv)
    cli = [args.bids, args.out, "participant", "--participant-label", args.label, "--overwrite"]
    if args.masks:
        cli += ["--masks", args.masks]
    t0 = time.process_time()
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    from ironmap.cli.main import main as ironmap_main

    code = ironmap_main(cli)
    profiler.disable()
    total = time.process_time() - t0
    if args.stats:
        profiler.dump_stats(args.stats)
    steps = step_seconds(pstats.Stats(profiler))
    print(f"{'whole run (profiled CPU-s)':52s} {total:7.2f}")
    print(f"{'imports and start-up before the participant':52s} "
          f"{total - steps['whole participant (process_subject)'][0]:7.2f}")
    for label, (cpu, calls) in steps.items():
        print(f"{label:52s} {cpu:7.2f}  ({calls} calls)")
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
