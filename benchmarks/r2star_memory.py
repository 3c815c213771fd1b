"""Peak memory of an R2* fit of a 256x256x176x12 float32 stack (run by hand).

    python benchmarks/r2star_memory.py [METHOD ...]

Prints the stack size and, per method, the extra peak resident memory of a fit in a fresh
process (peak RSS after the fit minus RSS with the stack loaded), in MB.
"""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import resource, sys, numpy as np
from ironmap import fit_r2star
te = 0.003 + 0.004 * np.arange(12)
r2 = np.random.default_rng(0).uniform(10, 60, (256, 256, 176)).astype(np.float32)
data = np.empty((256, 256, 176, 12), np.float32, order="F")  # echoes contiguous, as NIfTI
for k, t in enumerate(te):
    data[..., k] = 1000 * np.exp(-r2 * t)
del r2
fit_r2star(data[:4, :4, :4], te, sys.argv[1])  # compile / import outside the measurement
with open("/proc/self/status") as fh:
    rss = [int(l.split()[1]) for l in fh if l.startswith("VmRSS")][0]
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current RSS
fit = fit_r2star(data, te, sys.argv[1])
with open("/proc/self/status") as fh:
    hwm = [int(l.split()[1]) for l in fh if l.startswith("VmHWM")][0]
print(f"{sys.argv[1]}: stack {data.nbytes / 1e6:.0f} MB, extra peak {(hwm - rss) / 1e3:.0f} MB")
"""


def main(argv=None) -> int:
    methods = (argv if argv is not None else sys.argv[1:]) or ["loglinear", "nonlinear"]
    for method in methods:
        subprocess.run([sys.executable, "-c", CHILD, method], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
