"""R2* from multi-echo magnitude: estimators, fits, kernels, flags."""
