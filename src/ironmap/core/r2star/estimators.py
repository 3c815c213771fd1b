"""The R2* estimators: one table that the fit, the CLI, the sidecars and the methods text read.

Each :class:`Estimator` names an estimator and says everything the rest of ironmap needs
about it: a one-line description (``--help``, the ``EstimationMethodDescription`` of the
R2* sidecars), the phrase of the methods text, its citation, the options it accepts, how many
echoes it needs and whether they must be evenly spaced, and where its kernel is.
:func:`ironmap.core.r2star.relaxometry.fit_r2star` dispatches through this table; the CLI's
``--method`` choices, :data:`ironmap.workflows.r2star.METHOD_DESCRIPTIONS` and
:data:`ironmap.report.methods.ESTIMATORS` are derived from it.

Adding an estimator is one entry in :data:`ESTIMATORS` plus its kernel (see
``docs/architecture.md`` for a worked example). The kernel is named by a ``"module:function"``
string, so that reading the table (the CLI's ``--help``) loads no fitting code.

This module imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

#: The pseudo-estimator that picks one from the number of echoes (see :func:`resolve_auto`).
AUTO = "auto"
AUTO_DESCRIPTION = "two_point for two echoes, nonlinear for three or more"
AUTO_PHRASE = "the estimator chosen automatically from the number of echoes"


@dataclass(frozen=True)
class Estimator:
    """One R2* estimator.

    Attributes
    ----------
    name : str
        The ``method=`` value, the CLI's ``--method`` choice and the sidecar's
        ``EstimationMethod``.
    description : str
        One line (sidecar ``EstimationMethodDescription``).
    methods_phrase : str
        Noun phrase completing "R2* maps were computed ... with <phrase>" in the methods text;
        ``[citation]`` is appended when :attr:`citation` is set.
    setup : str or callable
        ``"module:function"`` (or the function itself) called as
        ``setup(te, sigma, options) -> (kernel, kwargs)``: ``te`` the ascending echo times (s),
        ``sigma`` the noise level or None, ``options`` a dict of the options in
        :attr:`options` that the caller gave. ``kernel(rows, te, want_rmse=..., **kwargs)``
        fits rows of shape ``(m, n_echoes)`` and returns ``(r2star, s0, rmse | None,
        used_echo_indices)``.
    options : tuple of str
        Keyword options of :func:`~ironmap.core.r2star.relaxometry.fit_r2star` that it accepts.
    min_echoes : int
        Fewest echoes it can fit.
    even_spacing : bool
        Whether the echoes must be evenly spaced (checked with the ``spacing_rtol`` option).
    citation : str, optional
        Key of the reference in the methods text (``[key]``).
    reference : str, optional
        The full reference.
    """

    name: str
    description: str
    methods_phrase: str
    setup: str | Callable
    options: tuple[str, ...] = ()
    min_echoes: int = 2
    even_spacing: bool = False
    citation: str | None = None
    reference: str | None = None

    @property
    def methods_text(self) -> str:
        """The phrase of the methods text with its citation marker."""
        return self.methods_phrase + (f" [{self.citation}]" if self.citation else "")

    def load_setup(self) -> Callable:
        """The setup function (imported on first use when given as ``"module:function"``).

        Returns
        -------
        callable
            The estimator's setup function.
        """
        if callable(self.setup):
            return self.setup
        module, _, func = self.setup.partition(":")
        return getattr(importlib.import_module(module), func)


_RX = "ironmap.core.r2star.relaxometry"

#: name -> estimator, in the order of the CLI choices. Adding an estimator: one entry here.
ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator(
        "two_point",
        description="closed-form two-echo estimate R2* = ln(S1/S2)/(TE2-TE1)",
        methods_phrase="the two-point closed form R2* = ln(S(TE1)/S(TE2)) / (TE2 − TE1)",
        setup=f"{_RX}:setup_two_point", options=("echo_pair",)),
    Estimator(
        "loglinear",
        description="ordinary least squares on the logarithm of the signal",
        methods_phrase="a log-linear least-squares fit of ln S against TE",
        setup=f"{_RX}:setup_loglinear"),
    Estimator(
        "wls",
        description="least squares on the logarithm of the signal weighted by the squared "
                    "signal",
        methods_phrase="a signal-weighted (S²) log-linear least-squares fit",
        setup=f"{_RX}:setup_wls"),
    Estimator(
        "nonlinear",
        description="nonlinear least squares of S0*exp(-R2*·TE) on the magnitude signal",
        methods_phrase="a nonlinear least-squares fit of S = S0·exp(−R2*·TE)",
        setup=f"{_RX}:setup_nonlinear", options=("max_iter", "tol")),
    Estimator(
        "rician",
        description="maximum-likelihood fit of S0*exp(-R2*·TE) under Rician noise",
        methods_phrase="a noise-floor-aware (Rician likelihood) fit",
        setup=f"{_RX}:setup_rician", options=("max_iter", "tol")),
    Estimator(
        "arlo",
        description="auto-regression on linear operations (Pei et al., MRM 2015)",
        methods_phrase="auto-regression on linear operations (ARLO)",
        setup=f"{_RX}:setup_arlo", options=("spacing_rtol", "simpson_exact"),
        min_echoes=3, even_spacing=True, citation="arlo",
        reference="Pei M, Nguyen TD, Thimmappa ND, et al. Algorithm for fast monoexponential "
                  "fitting based on auto-regression on linear operations (ARLO) of data. "
                  "Magn Reson Med. 2015;73(2):843-850."),
)}


def method_names() -> tuple[str, ...]:
    """Every ``method=`` value: the table's estimators, then ``"auto"``.

    Returns
    -------
    tuple of str
        The names.
    """
    return (*ESTIMATORS, AUTO)


def get_estimator(name: str) -> Estimator:
    """The table entry of ``name``.

    Parameters
    ----------
    name : str
        Estimator name.

    Returns
    -------
    Estimator
        Its table entry.

    Raises
    ------
    ValueError
        ``name`` is not in the table (the message lists the choices).
    """
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown R2* method {name!r}; choose one of "
                         f"{', '.join(method_names())}") from None


def resolve_auto(n_echoes: int) -> str:
    """The estimator that ``"auto"`` stands for with ``n_echoes`` echoes.

    Parameters
    ----------
    n_echoes : int
        Number of echoes.

    Returns
    -------
    str
        An estimator name of the table.
    """
    return "two_point" if n_echoes == 2 else "nonlinear"


def description(name: str) -> str:
    """One-line description of an estimator (or of ``"auto"``).

    Parameters
    ----------
    name : str
        Estimator name.

    Returns
    -------
    str
        The description; the name itself if unknown.
    """
    if name == AUTO:
        return AUTO_DESCRIPTION
    est = ESTIMATORS.get(name)
    return est.description if est is not None else name


def methods_phrase(name: str) -> str | None:
    """The methods-text phrase (with citation marker) of an estimator.

    Parameters
    ----------
    name : str
        Estimator name.

    Returns
    -------
    str or None
        The phrase; None if unknown.
    """
    if name == AUTO:
        return AUTO_PHRASE
    est = ESTIMATORS.get(name)
    return est.methods_text if est is not None else None


def references() -> dict[str, str]:
    """Citation key -> full reference of the estimators that cite one.

    Returns
    -------
    dict of str to str
        The references.
    """
    return {e.citation: e.reference or e.citation for e in ESTIMATORS.values() if e.citation}
