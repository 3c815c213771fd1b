"""Speed and accuracy of the R2* estimators on a brain-masked 256x256x80 volume (run by hand).

    python benchmarks/r2star.py [--rounds 5] [--snr 50] [--echoes 2 8] [--quick]
    python benchmarks/r2star.py --default-only  # floors + the default calls on float64 input
    python benchmarks/r2star.py --first-call   # compile / cache-load cost of the first call

Data: an ellipsoidal brain mask in a 256x256x80 matrix (about 1.5 M voxels), R2* ~ U(10, 60)
s^-1 and S0 ~ N(1000, 100) per voxel, Rician noise with sigma = median S(TE1) / SNR, float32,
voxel-major ``(n_voxels, n_echoes)`` as in ``../shared/research/performance-anchors.md``.
2 echoes: TE 4.92 / 24.6 ms; 8 echoes: TE 3, 7, ..., 31 ms. The same stack is also held as
float64 (what ``nibabel``'s ``get_fdata()`` returns): the "DEFAULT" rows time
``fit_r2star(float64_stack, te, method)`` with every other argument at its default (RMSE map,
``n_jobs`` = the usable cores), and their "x floor" is against one ``np.sum`` over the float64
stack in the same run.

Every method runs once per round, in a new random order each round, as ``--repeat`` (3)
back-to-back calls for the full-brain methods (the first call after another method also pays
for fresh output pages and cold caches). The table gives the median rate over all timed calls
with [min-max]. "x floor" = time / time of one ``np.sum`` pass over the same
stack (same dtype) in the same run; "CPU x floor" uses the CPU time of all threads instead
(less sensitive to other jobs on a shared machine). Per-voxel Python fits (scipy
``curve_fit`` loop, tedana ``curvefit``) run on a random subset and are extrapolated (marked
"subset"); their accuracy is on that subset.
bias = median(estimate - truth), MdAE = median |estimate - truth|, both in s^-1.
BLAS is limited to one thread for the whole run (as in the anchors' harness): idle OpenBLAS
threads spin on the second core after each multi-threaded call and would slow every "2 thr"
row that follows in the random order.
tedana is optional (``pip install tedana``); it is not an ironmap dependency.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
import warnings

import numpy as np

from ironmap import fit_r2star

TES = {2: np.array([4.92e-3, 24.6e-3]), 8: np.arange(3.0, 32.0, 4.0) * 1e-3}


def brain_data(n_echoes: int, snr: float, seed: int = 0):
    """Voxel-major float32 stack of the ellipsoidal brain, and the true R2*."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[-1:1:256j, -1:1:256j, -1:1:80j]
    mask = (x / 0.66) ** 2 + (y / 0.83) ** 2 + (z / 0.995) ** 2 <= 1.0
    n = int(mask.sum())
    r2 = rng.uniform(10, 60, n)
    s0 = rng.normal(1000, 100, n)
    te = TES[n_echoes]
    nu = s0[:, None] * np.exp(-r2[:, None] * te)
    sigma = float(np.median(nu[:, 0]) / snr)
    noisy = np.abs(nu + sigma * rng.standard_normal(nu.shape)
                   + 1j * sigma * rng.standard_normal(nu.shape))
    return noisy.astype(np.float32), te, r2, sigma


def _tedana(kind: str):
    try:
        from tedana.decay import fit_decay
    except ImportError:
        return None

    def run(data, te, _sigma):
        amask = np.full(data.shape[0], data.shape[1], dtype=int)
        t2s = fit_decay(data, te * 1e3, amask, kind, report=False, n_threads=1)[0]
        return 1e3 / np.asarray(t2s, dtype=float)

    return run


def _curve_fit_loop(data, te, _sigma):
    from scipy.optimize import curve_fit

    def model(t, s0, r2):
        return s0 * np.exp(-r2 * t)

    out = np.full(data.shape[0], np.nan)
    for i, y in enumerate(np.asarray(data, dtype=float)):
        try:
            out[i] = curve_fit(model, te, y, p0=(y[0], 30.0))[0][1]
        except RuntimeError:
            pass
    return out


#: (method, echo counts) of the DEFAULT calls timed on float64 input (what nibabel's
#: ``get_fdata()`` returns): ``fit_r2star(data, te, method)``, every other argument default.
DEFAULT_CALLS = (("two_point", (2,)), ("auto", (2, 8)), ("loglinear", (8,)), ("wls", (8,)),
                 ("arlo", (8,)), ("nonlinear", (8,)))


def default_calls(n_echoes: int):
    """name -> (function, None, "float64") for the default calls on float64 input."""
    def call(method):
        return lambda d, te, s: fit_r2star(d, te, method).r2star

    return {f"DEFAULT fit_r2star(float64, te, {m!r})": (call(m), None, "float64")
            for m, counts in DEFAULT_CALLS if n_echoes in counts}


def methods(n_echoes: int, quick: bool, default_only: bool = False):
    """name -> (function(data, te, sigma) -> r2, subset size or None, input dtype)."""
    table = default_calls(n_echoes)
    if default_only:
        return table

    def ironmap(method, n_jobs=1, **kw):
        return lambda d, te, s: fit_r2star(d, te, method, n_jobs=n_jobs, rmse=False,
                                           sigma=s if method == "rician" else None,
                                           **kw).r2star

    est = ["two_point"] if n_echoes == 2 else ["loglinear", "wls", "arlo", "nonlinear"]
    est.append("rician")
    for m in est:
        for nj in (1, 2):
            table[f"ironmap {m} ({nj} thr)"] = (ironmap(m, nj), None, "float32")
    if n_echoes == 2:
        table["ironmap nonlinear (1 thr)"] = (ironmap("nonlinear"), None, "float32")
    table["ironmap default (auto, with RMSE map), float32"] = (
        lambda d, te, s: fit_r2star(d, te).r2star, None, "float32")
    ted_ll, ted_cf = _tedana("loglin"), _tedana("curvefit")
    if ted_ll is not None:
        table["tedana fit_decay loglin"] = (ted_ll, None, "float32")
        table["tedana fit_decay curvefit"] = (ted_cf, 200 if quick else 1000, "float32")
    table["scipy curve_fit loop"] = (_curve_fit_loop, 300 if quick else 1000, "float32")
    return table


def _floors(stacks):
    """One np.sum pass over each stack (float32 and float64), np.log on the float32 one."""
    buf = np.empty_like(stacks["float32"])
    table = {f"floor: np.sum (one read), {dt}": (lambda d, te, s: d.sum(), None, dt)
             for dt in stacks}
    table["floor: np.log into a buffer, float32"] = (
        lambda d, te, s: np.log(d, out=buf), None, "float32")
    return table


def run_case(n_echoes, snr, rounds, quick, seed=0, repeat=3, default_only=False):
    data, te, truth, sigma = brain_data(n_echoes, snr, seed)
    stacks = {"float32": data, "float64": data.astype(np.float64)}
    rng = random.Random(seed)
    subset_idx = np.random.default_rng(seed + 1).choice(data.shape[0], 1000, replace=False)
    table = {**_floors(stacks), **methods(n_echoes, quick, default_only)}
    for name, (func, sub, dt) in table.items():  # warm-up: compile caches, imports
        if name.startswith("floor") or sub is not None:
            continue
        func(stacks[dt][:2048], te, sigma)
    times = {name: [] for name in table}
    cpu = {name: [] for name in table}
    results = {}
    for _ in range(rounds):
        names = list(table)
        rng.shuffle(names)
        for name in names:
            func, sub, dt = table[name]
            d = stacks[dt] if sub is None else stacks[dt][subset_idx[:sub]]
            for _ in range(1 if sub is not None else repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = func(d, te, sigma)
                times[name].append((time.perf_counter() - t0) / d.shape[0])
                cpu[name].append((time.process_time() - c0) / d.shape[0])
            if not name.startswith("floor"):
                results[name] = (np.asarray(r, dtype=float),
                                 truth if sub is None else truth[subset_idx[:sub]], sub)
    floors = {dt: np.median(times[f"floor: np.sum (one read), {dt}"]) for dt in stacks}
    dtypes = {name: entry[2] for name, entry in table.items()}
    return data, sigma, times, cpu, results, floors, dtypes


def fmt_rate(v):
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= f:
            return f"{v / f:.3g} {unit}"
    return f"{v:.3g}"


def report(n_echoes, snr, data, sigma, times, cpu, results, floors, dtypes):
    nvox = data.shape[0]
    print(f"\n#### {n_echoes} echoes, SNR {snr} (sigma {sigma:.1f}), {nvox} voxels, "
          f"{data.nbytes / 1e6:.1f} MB float32 / {2 * data.nbytes / 1e6:.1f} MB float64\n")
    print("\"x floor\" = median wall time / median wall time of one np.sum pass over the stack "
          "of the same dtype, same run; \"CPU x floor\" = median CPU time (all threads) / the "
          "same floor\n")
    print("| method | input | n timed | vox/s median [min-max] | x floor | CPU x floor | "
          "s / brain | bias | MdAE | bias R2*>=50 | non-finite % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, ts in sorted(times.items(), key=lambda kv: np.median(kv[1])):
        rates = 1.0 / np.asarray(ts)
        floor = floors[dtypes[name]]
        row = [name, dtypes[name], "", f"{fmt_rate(np.median(rates))} [{fmt_rate(rates.min())}"
               f" - {fmt_rate(rates.max())}]", f"{np.median(ts) / floor:.3g}",
               f"{np.median(cpu[name]) / floor:.3g}", f"{np.median(ts) * nvox:.3g}"]
        if name in results:
            est, truth, sub = results[name]
            err = est - truth
            ok = np.isfinite(err)
            hi = ok & (truth >= 50)
            row[2] = f"{sub} (subset)" if sub else str(nvox)
            row += [f"{np.median(err[ok]):+.2f}", f"{np.median(np.abs(err[ok])):.2f}",
                    f"{np.median(err[hi]):+.2f}", f"{100 * (1 - ok.mean()):.2f}"]
        else:
            row[2] = str(nvox)
            row += ["", "", "", ""]
        print("| " + " | ".join(row) + " |")


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from ironmap import fit_r2star
print(f"import {time.perf_counter() - t0:.2f} s", end="")
te = np.arange(3.0, 32.0, 4.0) * 1e-3
d = (1000 * np.exp(-30 * te) * np.ones((100, 1))).astype(np.float32)
for m in ("two_point", "loglinear", "arlo", "nonlinear", "rician"):
    dd, tt = (d[:, :2], te[:2]) if m == "two_point" else (d, te)
    t0 = time.perf_counter()
    fit_r2star(dd, tt, m, sigma=10.0)
    print(f", {m} {time.perf_counter() - t0:.2f} s", end="")
print()
"""


def first_call() -> None:
    """First-call cost per method in fresh processes: empty compile cache, then filled."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("empty numba cache (compiles)", "filled numba cache"):
            res = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                 capture_output=True, text=True)
            print(f"first call, {label}: {res.stdout.strip()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--snr", type=float, nargs="+", default=[50.0])
    p.add_argument("--echoes", type=int, nargs="+", default=[2, 8], choices=[2, 8])
    p.add_argument("--quick", action="store_true", help="smaller subsets for the slow fits")
    p.add_argument("--repeat", type=int, default=3,
                   help="back-to-back calls per round of each full-brain method (all timed)")
    p.add_argument("--first-call", action="store_true",
                   help="only time the first call per method (JIT compile / cache load)")
    p.add_argument("--default-only", action="store_true",
                   help="only the floors and the default calls on float64 input")
    args = p.parse_args(argv)
    if args.first_call:
        first_call()
        return 0
    from threadpoolctl import threadpool_limits

    print(f"# R2* benchmark: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable: the default "
          f"n_jobs), numpy {np.__version__}, load average at start "
          f"{os.getloadavg()}, BLAS limited to 1 thread")
    with threadpool_limits(limits=1, user_api="blas"):
        for n_echoes in args.echoes:
            for snr in args.snr:
                out = run_case(n_echoes, snr, args.rounds, args.quick, repeat=args.repeat,
                               default_only=args.default_only)
                report(n_echoes, snr, *out)
    print(f"\nload average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
