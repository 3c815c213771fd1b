"""SAMSEG (FreeSurfer's Bayesian segmentation, PyPI ``samseg``) run as an external program.

SAMSEG is not an ironmap dependency: it needs ``numpy<2`` and lives in an environment of its
own (``docs/samseg.md``). It is found through ``$SAMSEG_CMD`` (its ``run_samseg`` console
script) or ``run_samseg`` on ``PATH`` and run as a subprocess in a scratch folder.

Without TensorFlow in SAMSEG's environment its lesion shape model cannot run: then
``--do-not-use-shape-model`` is passed and, because ``samseg/SamsegLesion.py`` imports the
shape model's module (which imports TensorFlow at import time) even when the model is off,
SAMSEG's own ``main()`` is started behind :data:`TF_STUB`, which satisfies that import and
raises on any use.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

#: Environment variable naming SAMSEG's ``run_samseg`` console script.
SAMSEG_ENV = "SAMSEG_CMD"

#: FreeSurfer label of SAMSEG's lesion class.
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

#: SAMSEG's command line behind :data:`TF_STUB`.
STUB_MAIN = TF_STUB + """sys.argv[0] = "run_samseg"
from samseg.cli.run_samseg import main
sys.exit(main())
"""

_INSTALL = ("install it in its own environment (python3 -m venv SAMSEG_ENV && "
            "SAMSEG_ENV/bin/pip install samseg 'numpy<2') and set SAMSEG_CMD=SAMSEG_ENV/bin/"
            "run_samseg (docs/samseg.md)")


class SamsegError(RuntimeError):
    """SAMSEG is not available or failed (the message says which and where to look)."""


@dataclass(frozen=True)
class SamsegLesionRun:
    """What one SAMSEG lesion-mode run left behind (images in memory, on the input grid)."""

    posterior: nib.Nifti1Image
    labels: nib.Nifti1Image
    flair_corrected: nib.Nifti1Image
    version: str
    shape_model: bool
    cpu_s: float
    command: list[str]


def _in_memory(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    return nib.Nifti1Image(np.asarray(img.dataobj), img.affine)


def find_samseg(cmd: str | os.PathLike | None = None) -> Path:
    """SAMSEG's ``run_samseg`` console script.

    Parameters
    ----------
    cmd : path-like, optional
        The script; else ``$SAMSEG_CMD``, else ``run_samseg`` on ``PATH``.

    Returns
    -------
    pathlib.Path
        The script.

    Raises
    ------
    SamsegError
        When none is found, with installation instructions.
    """
    given = cmd or os.environ.get(SAMSEG_ENV)
    found = shutil.which(str(given)) if given else shutil.which("run_samseg")
    if found is None and given and Path(given).is_file():
        found = str(given)
    if found is None:
        where = f"{given!s} (from {'the option' if cmd else SAMSEG_ENV})" if given else \
            "run_samseg on PATH"
        raise SamsegError(f"SAMSEG is not available: {where} not found; {_INSTALL}")
    return Path(found)


def samseg_python(run_samseg: Path) -> str:
    """Python interpreter of a ``run_samseg`` console script (its ``#!`` line).

    Parameters
    ----------
    run_samseg : pathlib.Path
        The console script.

    Returns
    -------
    str
        The interpreter's path.

    Raises
    ------
    SamsegError
        When the file is not a console script.
    """
    try:
        first = run_samseg.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError) as exc:
        raise SamsegError(f"{run_samseg}: cannot read SAMSEG's console script") from exc
    if not first.startswith("#!"):
        raise SamsegError(f"{run_samseg}: not a console script (no #! line)")
    return first[2:].strip().split()[0]


def _probe(python: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)


def samseg_version(python: str) -> str:
    """Installed SAMSEG version in the environment of ``python``.

    Parameters
    ----------
    python : str
        SAMSEG's interpreter (:func:`samseg_python`).

    Returns
    -------
    str
        The version, e.g. ``0.4a0``.

    Raises
    ------
    SamsegError
        When that interpreter cannot find the ``samseg`` package.
    """
    done = _probe(python, "import importlib.metadata as m; print(m.version('samseg'))")
    if done.returncode != 0:
        raise SamsegError(f"{python}: the samseg package is not installed there; {_INSTALL}")
    return done.stdout.strip()


def has_tensorflow(python: str) -> bool:
    """Whether ``python`` can find TensorFlow (looked up, not imported).

    Parameters
    ----------
    python : str
        SAMSEG's interpreter.

    Returns
    -------
    bool
        True when ``import tensorflow`` would find a module.
    """
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is None)"
    return _probe(python, code).returncode == 0


def write_fit_options(folder: Path, spacing_mm: float) -> Path:
    """SAMSEG ``--options`` file: the finest model-fitting level at ``spacing_mm``.

    Parameters
    ----------
    folder : pathlib.Path
        Where ``options.json`` is written.
    spacing_mm : float
        Voxel spacing (mm) of SAMSEG's second (finest) multi-resolution fitting level.

    Returns
    -------
    pathlib.Path
        The options file.
    """
    options = Path(folder) / "options.json"
    options.write_text(json.dumps({"optimizationOptions": {
        "multiResolutionSpecification": [{}, {"targetDownsampledVoxelSpacing":
                                              float(spacing_mm)}]}}))
    return options


def run_samseg_lesion(t1w_path: Path, flair_path: Path, work: Path, *, cmd=None,
                      threads: int = 1, fit_spacing_mm: float | None = 2.0,
                      shape_model: bool = False) -> SamsegLesionRun:
    """Run SAMSEG's lesion mode on a T1w + FLAIR pair that share one grid.

    Options: ``--lesion --lesion-mask-pattern 0 1 --pallidum-separate`` (SAMSEG's documented
    setting for T1w + FLAIR, lesions brighter than cortex on FLAIR), ``--save-posteriors
    Lesion``, ``--do-not-use-shape-model`` unless ``shape_model``.

    Parameters
    ----------
    t1w_path, flair_path : pathlib.Path
        Input images on one grid (SAMSEG's outputs are on that grid).
    work : pathlib.Path
        Scratch folder for SAMSEG's outputs (created).
    cmd : path-like, optional
        ``run_samseg``; see :func:`find_samseg`.
    threads : int, optional
        SAMSEG's ``--threads``.
    fit_spacing_mm : float or None, optional
        Voxel spacing of SAMSEG's finest model-fitting level (SAMSEG's default 1 mm when
        None); the final segmentation stays on the input grid.
    shape_model : bool, optional
        Use SAMSEG's lesion shape model (needs TensorFlow in SAMSEG's environment).

    Returns
    -------
    SamsegLesionRun
        Lesion posterior, labels and bias-corrected FLAIR (on the input grid), SAMSEG's
        version, whether the shape model ran, the run's CPU seconds and command.

    Raises
    ------
    SamsegError
        SAMSEG absent, the shape model asked for without TensorFlow, or SAMSEG failing
        (the message names its log).
    """
    script = find_samseg(cmd)
    python = samseg_python(script)
    version = samseg_version(python)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    tensorflow = has_tensorflow(python)
    if shape_model and not tensorflow:
        raise SamsegError(f"{python}: SAMSEG's lesion shape model needs TensorFlow there")
    extra = ["-m", "t1w", "flair", "--lesion", "--lesion-mask-pattern", "0", "1",
             "--pallidum-separate", "--save-posteriors", "Lesion"]
    if not shape_model:
        extra.append("--do-not-use-shape-model")
    if fit_spacing_mm:
        extra += ["--options", str(write_fit_options(work, fit_spacing_mm))]
    head = [str(script)] if tensorflow else [python, "-c", STUB_MAIN]
    args = ["--threads", str(int(threads)), "-o", str(work), "-i", str(t1w_path),
            str(flair_path), *extra]
    log_path = work / "samseg.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w") as fh:
        done = subprocess.run([*head, *args], stdout=fh, stderr=subprocess.STDOUT, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SamsegError(f"SAMSEG failed (exit code {done.returncode}); see {log_path}")
    posteriors = sorted((work / "posteriors").glob("Lesion*.mgz"))
    if not (work / "seg.mgz").exists() or not (work / "flair_bias_corrected.mgz").exists() \
            or not posteriors:
        raise SamsegError(f"SAMSEG wrote no lesion posterior in {work}; see {log_path}")
    shown = ["run_samseg" if tensorflow else "run_samseg (TensorFlow import stubbed)", *args]
    return SamsegLesionRun(posterior=_in_memory(posteriors[0]),
                           labels=_in_memory(work / "seg.mgz"),
                           flair_corrected=_in_memory(work / "flair_bias_corrected.mgz"),
                           version=version,
                           shape_model=shape_model,
                           cpu_s=round(cpu, 1), command=shown)


#: SAMSEG labels for the FLAIR contrast check (unambiguous ones only): lateral ventricles,
#: cerebral cortex (also the "brighter than cortex" reference), cerebral white matter
#: (FreeSurfer numbering).
SAMSEG_TISSUE = {"csf": (4, 43), "gm": (3, 42), "wm": (2, 41)}
