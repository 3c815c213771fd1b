"""SAMSEG (FreeSurfer's Bayesian segmentation, PyPI ``samseg``) scored with ironmap's metrics.

SAMSEG is not an ironmap dependency (it needs numpy<2): install it in a separate environment
and pass its ``run_samseg`` script::

    python3 -m venv SAMSEG_ENV && SAMSEG_ENV/bin/pip install samseg "numpy<2"

    python benchmarks/samseg_eval.py lesion --samseg SAMSEG_ENV/bin/run_samseg [07 26 19]
    python benchmarks/samseg_eval.py tissue --samseg SAMSEG_ENV/bin/run_samseg [mni152 ...]

``lesion``: SAMSEG lesion mode (T1w + FLAIR, ``--lesion --lesion-mask-pattern 0 1
--pallidum-separate``, SAMSEG's defaults otherwise) on the open_ms_data patients in the MNI grid,
scored against the expert consensus with :func:`ironmap.core.lesions.auto_segment.lesion_detection`
(Dice, lesion load, lesion-wise F1), beside ironmap's ``lesions segment`` run in the same
process on the same images (``--no-ironmap`` skips it). Without TensorFlow in SAMSEG's
environment the shape model (VAE) cannot run: ``--do-not-use-shape-model`` is then added and
the VAE module's unused TensorFlow import is satisfied by a stub (any real use raises).

``tissue``: SAMSEG on a T1w (``mni152``: FSL's MNI152 1 mm brain, Dice of CSF/GM/WM against
the FSL FAST segmentation shipped beside it, as ``benchmarks/volumes.py mni``; ``xa30``: the
XA30 MPRAGE; ``open_ms_PP``: an open_ms T1w), GM/WM/CSF volumes in cm^3 and ironmap's
plausibility checks (:func:`ironmap.core.regions.tissue_volumes.implausible_volumes`).

SAMSEG labels are grouped a priori by SAMSEG's own tissue classes (``TISSUE_LABELS``).
Per run: user+system CPU seconds, wall seconds and peak resident memory of the SAMSEG process
tree (``os.wait4``). ``--reuse`` scores existing output folders under ``--work`` (cost read
from ``rusage.json`` written by this script, or a GNU ``time -v`` log ``time.txt``).
Prints ``skipped: ...`` and exits 0 when SAMSEG or the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ironmap.core.lesions.auto_segment import (
    LesionSegParams,
    lesion_detection,
    posterior_lesions,
)
from ironmap.core.regions.tissue_volumes import implausible_volumes, voxel_volume_cm3
from ironmap.io.samseg import LESION_LABEL, has_tensorflow, write_fit_options
from ironmap.io.samseg import STUB_MAIN as STUB
from ironmap.io.samseg import samseg_python as interpreter
from ironmap.spatial.grid import resample_image, resample_labels, same_grid

SHARED = Path(os.environ.get("IRONMAP_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
OPENMS = ("open_ms_data/cross_sectional/MNI/patient{p}/{kind}_N4_noneck_reduced_winsor_"
          "regtoFLAIR{brain}_regtoMNI.nii.gz")
T1W = {"mni152": "mni152_fsl/MNI152_T1_1mm_brain.nii.gz",
       "xa30": "dcm_qa_xa30/nifti_ref/5_anat-T1w_acq-tfl.nii",
       **{f"open_ms_{p}": OPENMS.format(p=p, kind="T1", brain="_brain_N4")
          for p in ("07", "19", "26")}}

#: FreeSurfer labels of SAMSEG's atlas grouped as SAMSEG's GMM groups them (GlobalWM, GlobalGM
#: + putamen + pallidum, GlobalCSF); lesions (99) and WM hypointensities count as WM.
TISSUE_LABELS = {
    "csf": (4, 5, 14, 15, 24, 30, 31, 43, 44, 62, 63, 72),
    "gm": (3, 8, 10, 11, 12, 13, 17, 18, 26, 42, 47, 49, 50, 51, 52, 53, 54, 58, 80),
    "wm": (2, 7, 16, 28, 41, 46, 60, 77, 85, 99),
}
def run_timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` with stdout+stderr to ``log``; CPU s, wall s and peak MB of its process tree."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": time.perf_counter() - t0,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024.0}


def gnu_time(path: Path) -> dict:
    """Cost from a GNU ``/usr/bin/time -v`` log."""
    text = path.read_text()

    def num(key):
        m = re.search(rf"{re.escape(key)}: ([0-9.:]+)", text)
        return m.group(1) if m else "nan"

    wall = [float(x) for x in num("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall_s = sum(v * 60 ** i for i, v in enumerate(reversed(wall)))
    return {"rc": int(float(num("Exit status"))), "wall_s": wall_s,
            "cpu_s": float(num("User time (seconds)")) + float(num("System time (seconds)")),
            "peak_mb": float(num("Maximum resident set size (kbytes)")) / 1024.0}


def samseg(args, inputs: list[Path], out: Path, extra: list[str]) -> dict:
    """Run SAMSEG into ``out`` (or reuse a finished run there); returns its cost."""
    if args.reuse and (out / "seg.mgz").exists():
        for name, read in (("rusage.json", lambda p: json.loads(p.read_text())),
                           ("time.txt", gnu_time)):
            if (out / name).exists():
                return read(out / name)
        return {"rc": 0, "wall_s": float("nan"), "cpu_s": float("nan"), "peak_mb": float("nan")}
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(args.samseg)]
    if "--lesion" in extra and not args.shape_model:
        extra = [*extra, "--do-not-use-shape-model"]
        python = interpreter(args.samseg)
        if not has_tensorflow(python):
            cmd = [python, "-c", STUB]
    if args.reuse_affine and (out / "template.lta").exists():
        earlier = out / "affine_of_interrupted_run.lta"
        shutil.copyfile(out / "template.lta", earlier)
        extra = [*extra, "--reg", str(earlier)]
    if args.fit_spacing:
        extra = [*extra, "--options", str(write_fit_options(out, args.fit_spacing))]
    cmd += ["--threads", str(args.threads), "-o", str(out), "-i", *map(str, inputs), *extra]
    cost = run_timed(cmd, out / "samseg.log")
    shown = [c if c != STUB else "<TensorFlow stub, see STUB>" for c in cmd]
    (out / "rusage.json").write_text(json.dumps({**cost, "command": shown}, indent=1))
    if cost["rc"] != 0:
        raise RuntimeError(f"SAMSEG failed (exit {cost['rc']}), see {out / 'samseg.log'}")
    return cost


def samseg_labels(out: Path, reference: nib.Nifti1Image) -> np.ndarray:
    """SAMSEG's ``seg.mgz`` carried onto ``reference``'s grid (nearest voxel, labels kept)."""
    seg = nib.load(out / "seg.mgz")
    if seg.shape[:3] == reference.shape[:3] and np.allclose(seg.affine, reference.affine,
                                                            atol=1e-3):
        return np.asarray(seg.dataobj).astype(np.int32)
    return resample_labels(seg, reference).astype(np.int32)


def tissue_classes(labels: np.ndarray) -> np.ndarray:
    """0 = background, 1 = CSF, 2 = GM, 3 = WM (FSL FAST's numbering) from SAMSEG labels."""
    classes = np.zeros(labels.shape, np.uint8)
    for value, name in enumerate(("csf", "gm", "wm"), start=1):
        classes[np.isin(labels, TISSUE_LABELS[name])] = value
    return classes


def lesion_case(args, case: str) -> dict:
    """Images of one lesion case: SAMSEG inputs, scoring grid and reference mask.

    ``07``/``26``/``19``: an open_ms patient (T1w + FLAIR on one MNI grid, expert consensus).
    ``sub-XXX`` with ``--cohort``: a simulated subject; SAMSEG needs its inputs on one grid, so
    the T1w is carried onto the FLAIR grid (rigid fit, linear interpolation:
    :func:`ironmap.spatial.lesion_priors.t1w_on_flair`, as ironmap's own segmentation does), and
    scoring is on the FLAIR grid against the simulated rater mask (empty for a control), as
    ``benchmarks/lesionseg.py sim`` scores ironmap.
    """
    out = args.work / f"lesion_{'shape' if args.shape_model else 'noshape'}_{case}"
    if not case.startswith("sub-"):
        path = {k: SHARED / OPENMS.format(p=case, kind=k, brain=b)
                for k, b in (("T1", "_brain_N4"), ("FLAIR", "_brain_N4"), ("GOLD_STANDARD", ""))}
        flair = nib.load(path["FLAIR"])
        return {"out": out, "t1w": path["T1"], "samseg_t1w": path["T1"], "flair": flair,
                "samseg_flair": path["FLAIR"],
                "truth": np.asarray(nib.load(path["GOLD_STANDARD"]).dataobj) > 0,
                "label": f"patient{case}"}
    if args.cohort is None:
        raise SystemExit(f"{case}: a simulated subject needs --cohort COHORT_DIR")
    bids = args.cohort / "bids"
    anat = bids / case / "anat"
    t1w, flair = anat / f"{case}_T1w.nii.gz", nib.load(anat / f"{case}_FLAIR.nii.gz")
    rater = bids / "derivatives" / "raters" / case / "anat" / f"{case}_label-lesion_mask.nii.gz"
    truth = (resample_labels(nib.load(rater), flair) > 0 if rater.exists()
             else np.zeros(flair.shape[:3], bool))
    samseg_t1w = out / "t1w_on_flair_grid.nii.gz"
    if not samseg_t1w.exists():
        from ironmap.spatial.lesion_priors import t1w_on_flair

        out.mkdir(parents=True, exist_ok=True)
        on_flair, _ = t1w_on_flair(nib.load(t1w), flair)
        nib.save(nib.Nifti1Image(np.nan_to_num(on_flair).astype(np.float32), flair.affine),
                 samseg_t1w)
    return {"out": out, "t1w": t1w, "samseg_t1w": samseg_t1w, "flair": flair,
            "samseg_flair": anat / f"{case}_FLAIR.nii.gz", "truth": truth, "label": case}


def lesion_posterior(out: Path, reference) -> np.ndarray:
    """SAMSEG's lesion posterior (``--save-posteriors Lesion``) on ``reference``'s grid."""
    found = sorted((out / "posteriors").glob("Lesion*.mgz"))
    if not found:
        raise SystemExit(f"{out}: no lesion posterior (run SAMSEG with --save-posteriors Lesion)")
    return on_grid(nib.load(found[0]), reference)


def on_grid(img, reference) -> np.ndarray:
    """An image on SAMSEG's grid carried onto ``reference`` (linear; 0 outside)."""
    if same_grid(img, reference):
        return np.asarray(img.dataobj, dtype=np.float64)
    return np.nan_to_num(resample_image(img, reference), nan=0.0)


#: The FLAIR > cortex rule alone (no minimum lesion size).
NO_SIZE_LIMIT = LesionSegParams(min_volume_mm3=0.0, min_voxels=0)


def corrected_flair_and_cortex(out: Path) -> tuple[nib.MGHImage, nib.MGHImage]:
    """SAMSEG's bias-corrected FLAIR and its cortex labels (3, 42), on SAMSEG's grid."""
    seg = nib.load(out / "seg.mgz")
    cortex = np.isin(np.asarray(seg.dataobj), (3, 42)).astype(np.float32)
    flair = np.asarray(nib.load(out / "flair_bias_corrected.mgz").dataobj, dtype=np.float32)
    return nib.MGHImage(flair, seg.affine), nib.MGHImage(cortex, seg.affine)


def lesion_scores(args, case: dict) -> list[tuple[str, dict]]:
    """SAMSEG's lesion masks for one finished case, scored against its reference."""
    out, flair, truth = case["out"], case["flair"], case["truth"]
    post = lesion_posterior(out, flair)
    labels = samseg_labels(out, flair)
    corrected, cortex = corrected_flair_and_cortex(out)
    corrected, cortex = on_grid(corrected, flair), on_grid(cortex, flair) > 0.5
    vox = np.linalg.norm(flair.affine[:3, :3], axis=0)
    rows = [("SAMSEG seg.mgz (its default, posterior > 0.3)", labels == LESION_LABEL)]
    for t in args.thresholds:
        rows.append((f"SAMSEG posterior > {t:g}", post > t))
        rows.append((f"SAMSEG posterior > {t:g}, FLAIR > cortex",
                     posterior_lesions(post, corrected, cortex, vox, threshold=t,
                                       params=NO_SIZE_LIMIT)))
        rows.append((f"SAMSEG posterior > {t:g}, FLAIR > cortex, min size",
                     posterior_lesions(post, corrected, cortex, vox, threshold=t)))
    scored = []
    for name, mask in rows:
        m = lesion_detection(mask, truth)
        m["load_cm3"] = float(mask.sum()) * case["vox_cm3"]
        scored.append((name, m))
    scored[0][1]["volumes"] = volumes(labels, case["vox_cm3"])
    return scored


def lesion(args) -> None:
    """SAMSEG lesion mode vs ironmap's automatic segmentation on the same cases."""
    from ironmap.workflows.lesion_segmentation import segment_images

    rows = []
    for name in args.cases or ["07", "26", "19"]:
        case = lesion_case(args, name)
        flair, truth = case["flair"], case["truth"]
        case["vox_cm3"] = voxel_volume_cm3(np.linalg.norm(flair.affine[:3, :3], axis=0))
        true_cm3 = float(truth.sum()) * case["vox_cm3"]
        if args.samseg_runs:
            cost = samseg(args, [case["samseg_t1w"], case["samseg_flair"]], case["out"],
                          ["-m", "t1w", "flair", "--lesion", "--lesion-mask-pattern", "0", "1",
                           "--pallidum-separate", "--save-posteriors", "Lesion"])
            rows += [(method, case["label"], m, cost, true_cm3)
                     for method, m in lesion_scores(args, case)]
        if args.ironmap:
            t0, w0 = time.process_time(), time.perf_counter()
            seg, _ = segment_images(flair, nib.load(case["t1w"]), label=case["label"])
            cost = {"cpu_s": time.process_time() - t0, "wall_s": time.perf_counter() - w0,
                    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
            m = lesion_detection(seg.mask, truth)
            m["load_cm3"] = float(seg.mask.sum()) * case["vox_cm3"]
            rows.append(("ironmap lesions segment", case["label"], m, cost, true_cm3))
    print("| method | case | Dice | lesion load (cm^3) / reference | load ratio | recall | "
          "precision | lesion-wise F1 | lesions found / true | CPU s | wall s | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for method, label, m, c, true_cm3 in rows:
        print(f"| {method} | {label} | {m['dice']:.3f} | {m['load_cm3']:.2f} / {true_cm3:.2f} | "
              f"{m['load_ratio']:.2f} | {m['recall']:.2f} | {m['precision']:.2f} | "
              f"{m['f1']:.2f} | {m['n_pred']} / {m['n_true']} | {c['cpu_s']:.0f} | "
              f"{c['wall_s']:.0f} | {c['peak_mb']:.0f} |", flush=True)
    for method in dict.fromkeys(r[0] for r in rows):
        dice = [r[2]["dice"] for r in rows if r[0] == method and r[4] > 0]
        if dice:
            print(f"{method}: mean Dice {np.mean(dice):.3f} over {len(dice)} cases with lesions")
    for _, label, m, *_ in rows:
        if "volumes" in m:
            print(f"SAMSEG {label} (T1w + FLAIR run): {m['volumes']}")


def volumes(labels: np.ndarray, vox_cm3: float) -> dict:
    """GM/WM/CSF volumes (cm^3, hard labels) and ironmap's plausibility verdict."""
    classes = tissue_classes(labels)
    row = {f"{name}_cm3": round(float(np.sum(classes == k) * vox_cm3), 1)
           for k, name in ((1, "csf"), (2, "gm"), (3, "wm"))}
    row["problems"] = "; ".join(implausible_volumes(row)) or "plausible"
    return row


def tissue(args) -> None:
    """SAMSEG on single T1w images: volumes, plausibility, Dice vs FAST for MNI152."""
    for name in args.cases or ["mni152"]:
        t1 = SHARED / T1W[name]
        if not t1.exists():
            print(f"{name}: skipped, {t1} is absent")
            continue
        img = nib.load(t1)
        cost = samseg(args, [t1], args.work / f"tissue_{name}", [])
        labels = samseg_labels(args.work / f"tissue_{name}", img)
        vox = voxel_volume_cm3(np.linalg.norm(img.affine[:3, :3], axis=0))
        print(f"{name}: {volumes(labels, vox)}; CPU {cost['cpu_s']:.0f} s, wall "
              f"{cost['wall_s']:.0f} s, peak {cost['peak_mb']:.0f} MB")
        if name == "mni152":
            fast = resample_labels(nib.load(t1.parent / "MNI152_T1_1mm_Brain_FAST_seg.nii.gz"),
                                   img)
            ours = tissue_classes(labels)
            for k, tissue_name in ((1, "CSF"), (2, "GM"), (3, "WM")):
                a, b = ours == k, fast == k
                dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
                print(f"  {tissue_name}: Dice vs FAST {dice:.3f}, SAMSEG {a.sum() * vox:.1f}"
                      f" cm3, FAST {b.sum() * vox:.1f} cm3")


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("lesion", "tissue"))
    ap.add_argument("cases", nargs="*", help="patients (07 26 19) or T1w names "
                    f"({', '.join(T1W)})")
    ap.add_argument("--samseg", type=Path, default=os.environ.get("SAMSEG_CMD"),
                    help="SAMSEG's run_samseg console script (or $SAMSEG_CMD)")
    ap.add_argument("--work", type=Path, default=Path("samseg_work"),
                    help="folder for SAMSEG's outputs (default ./samseg_work)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fit-spacing", type=float, default=None, metavar="MM",
                    help="voxel spacing of SAMSEG's second (finest) model-fitting level "
                    "(SAMSEG's default 1 mm); the final segmentation stays on the input grid")
    ap.add_argument("--reuse", action="store_true", help="score finished runs in --work")
    ap.add_argument("--reuse-affine", action="store_true",
                    help="start from the affine (template.lta) an interrupted SAMSEG run left "
                    "in the same folder (SAMSEG's --reg); its CPU time is not counted")
    ap.add_argument("--shape-model", action="store_true",
                    help="use SAMSEG's lesion shape model (needs TensorFlow with SAMSEG)")
    ap.add_argument("--no-ironmap", dest="ironmap", action="store_false",
                    help="lesion mode: do not re-run ironmap's segmentation beside it")
    ap.add_argument("--no-samseg", dest="samseg_runs", action="store_false",
                    help="lesion mode: run and score ironmap's segmentation only")
    ap.add_argument("--cohort", type=Path, default=None,
                    help="lesion mode: simulated cohort (ironmap simulate) for sub-XXX cases")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5], metavar="P",
                    help="lesion mode: thresholds on SAMSEG's lesion posterior to score "
                    "beside its own seg.mgz (default 0.5)")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"skipped: shared data folder {SHARED} is absent (set IRONMAP_SHARED_DATA)")
        return 0
    if args.samseg is None or not Path(args.samseg).is_file():
        print(f"skipped: SAMSEG's run_samseg not found ({args.samseg}); pass --samseg PATH")
        return 0
    (lesion if args.mode == "lesion" else tissue)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
