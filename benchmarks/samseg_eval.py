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

from ironmap.core.lesions.auto_segment import lesion_detection
from ironmap.core.regions.tissue_volumes import implausible_volumes, voxel_volume_cm3
from ironmap.spatial.grid import resample_labels

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
LESION_LABEL = 99

#: Stands in for the TensorFlow modules that ``samseg/VAE.py`` imports at import time; only the
#: shape model uses them, so with ``--do-not-use-shape-model`` nothing else is touched.
TF_STUB = """import sys, types
class _Absent(types.ModuleType):
    def disable_v2_behavior(self):
        pass
    def __getattr__(self, name):
        raise RuntimeError("TensorFlow is not installed (needed only by the shape model)")
for _n in ("tensorflow", "tensorflow.compat", "tensorflow.compat.v1"):
    sys.modules[_n] = _Absent(_n)
sys.modules["tensorflow"].compat = sys.modules["tensorflow.compat"]
sys.modules["tensorflow.compat"].v1 = sys.modules["tensorflow.compat.v1"]
"""
STUB = TF_STUB + """sys.argv[0] = "run_samseg"
from samseg.cli.run_samseg import main
sys.exit(main())
"""


def interpreter(run_samseg: Path) -> str:
    """Python interpreter of a ``run_samseg`` console script (its ``#!`` line)."""
    first = run_samseg.read_text(errors="replace").splitlines()[0]
    if not first.startswith("#!"):
        raise SystemExit(f"{run_samseg}: not a console script (no #! line)")
    return first[2:].strip().split()[0]


def has_tensorflow(python: str) -> bool:
    """Whether ``import tensorflow`` can be found by ``python`` (not imported: slow)."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is None)"
    return subprocess.run([python, "-c", code], check=False).returncode == 0


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
        options = out / "options.json"
        level2 = {"targetDownsampledVoxelSpacing": args.fit_spacing}
        options.write_text(json.dumps({"optimizationOptions": {
            "multiResolutionSpecification": [{}, level2]}}))
        extra = [*extra, "--options", str(options)]
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


def lesion(args) -> None:
    """SAMSEG lesion mode vs ironmap's automatic segmentation on the open_ms patients."""
    from ironmap.workflows.lesion_segmentation import segment_images

    rows = []
    for p in args.cases or ["07", "26", "19"]:
        path = {k: SHARED / OPENMS.format(p=p, kind=k, brain=b)
                for k, b in (("T1", "_brain_N4"), ("FLAIR", "_brain_N4"), ("GOLD_STANDARD", ""))}
        flair = nib.load(path["FLAIR"])
        gold = np.asarray(nib.load(path["GOLD_STANDARD"]).dataobj) > 0
        vox = voxel_volume_cm3(np.linalg.norm(flair.affine[:3, :3], axis=0))
        out = args.work / f"lesion_{'shape' if args.shape_model else 'noshape'}_{p}"
        cost = samseg(args, [path["T1"], path["FLAIR"]], out,
                      ["-m", "t1w", "flair", "--lesion", "--lesion-mask-pattern", "0", "1",
                       "--pallidum-separate"])
        labels = samseg_labels(out, flair)
        rows.append(("SAMSEG", p, lesion_detection(labels == LESION_LABEL, gold), cost,
                     vox, gold.sum()))
        rows[-1][2]["volumes"] = volumes(labels, vox)
        if args.ironmap:
            t0, w0 = time.process_time(), time.perf_counter()
            seg, _ = segment_images(flair, nib.load(path["T1"]), label=f"patient{p}")
            cost = {"cpu_s": time.process_time() - t0, "wall_s": time.perf_counter() - w0,
                    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
            rows.append(("ironmap", p, lesion_detection(seg.mask, gold), cost, vox, gold.sum()))
    print("| method | patient | Dice | lesion load (cm^3) / consensus | load ratio | recall | "
          "precision | lesion-wise F1 | lesions found / true | CPU s | wall s | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for method, p, m, c, vox, n_true in rows:
        print(f"| {method} | {p} | {m['dice']:.3f} | {m['load_ratio'] * n_true * vox:.2f} / "
              f"{n_true * vox:.2f} | {m['load_ratio']:.2f} | {m['recall']:.2f} | "
              f"{m['precision']:.2f} | {m['f1']:.2f} | {m['n_pred']} / {m['n_true']} | "
              f"{c['cpu_s']:.0f} | {c['wall_s']:.0f} | {c['peak_mb']:.0f} |")
    for method in dict.fromkeys(r[0] for r in rows):
        dice = [r[2]["dice"] for r in rows if r[0] == method]
        print(f"{method}: mean Dice {np.mean(dice):.3f} over {len(dice)} patients")
    for method, p, m, *_ in rows:
        if "volumes" in m:
            print(f"{method} patient{p} (T1w + FLAIR run): {m['volumes']}")


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
