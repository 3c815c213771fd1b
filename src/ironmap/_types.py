"""Frozen result types shared by all layers (no behaviour beyond small derived views)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class R2starFit:
    """Result of an R2* fit of S(TE) = S0 * exp(-R2* * TE).

    Attributes
    ----------
    r2star : ndarray of shape (...)
        R2* in s^-1; NaN where the fit failed or the voxel was excluded (never 0).
    s0 : ndarray of shape (...)
        Extrapolated signal at TE = 0, in the units of the input signal; NaN where failed.
    flags : ndarray of shape (...), uint16
        Quality bit field, 0 = good; see :func:`ironmap.core.r2star.relaxometry.describe_flags`.
    rmse : ndarray of shape (...) or None
        Root-mean-square residual of the fitted curve in signal units (None if not computed).
    method : str
        Estimator that produced the maps (``"two_point"``, ``"loglinear"``, ...).
    echo_times : ndarray of shape (n_echoes,)
        Echo times in s, ascending, as used by the fit.
    sigma : float or None
        Noise standard deviation used by the fit or by the noise-floor checks (signal units).
    """

    r2star: np.ndarray
    s0: np.ndarray
    flags: np.ndarray
    rmse: np.ndarray | None
    method: str
    echo_times: np.ndarray
    sigma: float | None = None

    @property
    def t2star(self) -> np.ndarray:
        """T2* = 1/R2* in s; NaN where R2* is NaN or not positive."""
        r2 = np.asarray(self.r2star, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = 1.0 / r2
        out[~np.isfinite(r2) | (r2 <= 0)] = np.nan
        return out.astype(self.r2star.dtype, copy=False)

    @property
    def failed(self) -> np.ndarray:
        """Boolean map, True where no R2* value was produced (the value is NaN)."""
        return ~np.isfinite(self.r2star)

    @property
    def shape(self) -> tuple[int, ...]:
        """Voxel shape of the maps."""
        return tuple(self.r2star.shape)

    def predict(self, echo_times=None) -> np.ndarray:
        """Model signal S0 exp(-R2* TE).

        Parameters
        ----------
        echo_times : array_like of shape (n_echoes,), optional
            Echo times in s (default: the fit's).

        Returns
        -------
        ndarray of shape (..., n_echoes)
            The predicted magnitude (units of S0).
        """
        te = self.echo_times if echo_times is None else np.asarray(echo_times, dtype=float)
        return self.s0[..., None] * np.exp(-self.r2star[..., None] * te)
