"""Pure array and table math (numpy/scipy/pandas/statsmodels only; no files)."""
