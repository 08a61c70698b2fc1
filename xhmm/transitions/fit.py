"""Fit the discrete transition (and the initial distribution) by EM, out of core.

Each iteration is one smoother pass that stores no posterior: the engine
returns the exact expected transition counts between discrete states,
``sum_t sum_{i in s, j in s'} p(z_t = i, z_{t+1} = j | all data)`` (bin-level
pair posteriors summed block by block, see
:func:`xhmm.kernels.hmm.backward_chunk`), and the smoothed posterior of the
first step. The M-step is the Dirichlet MAP update of each row of the
discrete transition,

``discrete[s, :] ∝ counts[s, :] + alpha[s, :] - 1``,
``alpha = concentration + stickiness[s] * 1[s == s']``

(non_local_detector's prior semantics; ``prior_weight > 0`` rescales a
row's pseudo-counts to ``prior_weight * counts[s].sum()`` times the prior's
direction), with the continuous blocks held fixed. Sequences are fitted
jointly (their counts are summed). With ``concentration=1`` and
``stickiness=0`` there is no prior and every iteration does not decrease the
marginal log-likelihood.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

from ..engine.progress import progress_bar, progress_enabled
from ..errors import ConfigError, TransitionError
from ..names import BINS, SEQUENCE
from .blocks import Blocks
from .spec import with_transition

__all__ = ["fit_discrete", "dirichlet_map", "state_labels", "fitted_history", "has_converged"]


def dirichlet_map(counts: np.ndarray, concentration: float = 1.0,
                  stickiness: float | np.ndarray = 0.0,
                  prior_weight: float | np.ndarray = 0.0) -> np.ndarray:
    """The MAP discrete transition of expected counts under a Dirichlet prior.

    Parameters
    ----------
    counts : (S, S) ndarray
        Expected transitions from each state (rows) to each state (columns).
    concentration : float
        Dirichlet parameter of every entry.
    stickiness : float or (S,) array
        Added to the diagonal parameters (per state).
    prior_weight : float or (S,) array
        0: the pseudo-counts are ``alpha - 1``. Positive: row ``s``'s
        pseudo-counts are ``prior_weight[s] * counts[s].sum()`` spread as
        ``alpha[s] - 1`` is.

    Returns
    -------
    (S, S) ndarray
        Row-stochastic; a row with no counts and no pseudo-counts is the
        prior's mean.

    Raises
    ------
    ConfigError
        If a Dirichlet parameter is below 1 (no MAP update) or a weight is
        negative.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_states = counts.shape[0]
    alpha = concentration + np.diag(np.broadcast_to(np.asarray(stickiness, float), n_states))
    if (alpha < 1).any():
        raise ConfigError(
            f"concentration ({concentration}) and stickiness ({stickiness}) give Dirichlet "
            "parameters below 1; the MAP update needs concentration + stickiness >= 1 "
            "and concentration >= 1"
        )
    weight = np.broadcast_to(np.asarray(prior_weight, dtype=float), n_states)
    if (weight < 0).any():
        raise ConfigError(f"prior_weight must be non-negative, got {prior_weight!r}")
    pseudo = alpha - 1
    spread = pseudo.sum(axis=1, keepdims=True)
    direction = np.divide(pseudo, spread, out=np.zeros_like(pseudo), where=spread > 0)
    adaptive = weight[:, None] * counts.sum(axis=1, keepdims=True) * direction
    pseudo = np.where(weight[:, None] > 0, adaptive, pseudo)
    total = counts + pseudo
    sums = total.sum(axis=1, keepdims=True)
    mean = alpha / alpha.sum(axis=1, keepdims=True)
    return np.where(sums > 0, total / np.where(sums > 0, sums, 1), mean)


def _static_discrete(transition: Blocks, labels: np.ndarray) -> np.ndarray:
    """The (S, S) discrete matrix of a Blocks in the order of ``labels``."""
    discrete = transition.discrete
    if isinstance(discrete, xr.DataArray):
        if "time" in discrete.dims:
            raise TransitionError(
                "fit estimates a static discrete transition; this Blocks has a "
                "time-varying one (dims with 'time')"
            )
        if "from_state" in discrete.coords:
            discrete = discrete.sel(from_state=list(labels), to_state=list(labels))
        return np.asarray(discrete.transpose("from_state", "to_state").values, float)
    values = np.asarray(discrete, dtype=float)
    if values.ndim != 2:
        raise TransitionError(
            f"fit estimates a static (S, S) discrete transition; got shape {values.shape}"
        )
    return values


def fit_discrete(
    ds: xr.Dataset,
    run: Callable[..., xr.Dataset],
    transition: Blocks,
    initial: Any,
    *,
    max_iter: int = 20,
    tol: float = 1e-4,
    concentration: float = 1.0,
    stickiness: float | np.ndarray = 0.0,
    prior_weight: float | np.ndarray = 0.0,
    fit_initial: bool = True,
    progress: bool | None = None,
) -> xr.Dataset:
    """EM over the discrete transition of a :class:`Blocks` (module docstring).

    Parameters
    ----------
    ds : xr.Dataset
        The input (``state`` coordinate, ``log_likelihood``; a ``sequence``
        dim is fitted jointly).
    run : callable
        ``run(transition, initial)`` returns a smoother result with
        ``transition_counts`` and ``initial_posterior`` and no stored
        posterior (the accessor provides it).
    transition : Blocks
        Static discrete transition; its blocks are held fixed.
    initial : array-like
        Initial distribution over all ``state_bins`` (or the interior).
    max_iter : int
        Most EM iterations (smoother passes).
    tol : float
        Stop when the marginal log-likelihood changes by less than ``tol``
        relative to its size.
    concentration, stickiness, prior_weight : see :func:`dirichlet_map`
    fit_initial : bool
        Re-estimate ``initial`` as the smoothed first-step posterior
        (averaged over sequences).
    progress : bool, optional
        A bar over iterations (None: on a terminal or notebook).

    Returns
    -------
    xr.Dataset
        The history: ``marginal_log_likelihood`` (dim ``iteration``: the
        model of each iteration, before its update), ``discrete_transition``
        and ``transition_counts`` (dims ``iteration``, ``from_state``,
        ``to_state``); the fitted model: ``initial`` (dim ``state_bins``, 0
        outside the interior; the given one with ``fit_initial=False``) and
        the fitted transition (the same blocks with the fitted discrete
        transition, labelled by state) stored by
        :func:`~xhmm.transitions.with_transition` (read it back with
        :func:`~xhmm.transitions.stored_transition`); attribute ``converged``.
    """
    state_labels(ds, transition, max_iter, tol, concentration, stickiness, prior_weight)
    mlls, discretes, counts_seen = [], [], []
    labels, converged = None, False
    with progress_bar(progress_enabled(progress), max_iter, "xhmm fit", unit="iteration") as bar:
        for _ in range(max_iter):
            res = run(transition, initial)
            counts = res.transition_counts
            if SEQUENCE in counts.dims:
                counts = counts.sum(SEQUENCE)
            labels = counts.from_state.values
            current = _static_discrete(transition, labels)
            mll = float(np.sum(res.marginal_log_likelihood.values))
            mlls.append(mll)
            discretes.append(current)
            counts_seen.append(counts.values)
            updated = dirichlet_map(counts.values, concentration, stickiness, prior_weight)
            transition = Blocks(
                xr.DataArray(updated, dims=("from_state", "to_state"),
                             coords={"from_state": labels, "to_state": labels}),
                transition.blocks,
            )
            if fit_initial:
                first = res.initial_posterior
                if SEQUENCE in first.dims:
                    first = first.mean(SEQUENCE)
                initial = np.nan_to_num(first.values)
            bar.update(1)
            converged = has_converged(mlls, tol)
            if converged:
                break
    history = xr.Dataset(
        {
            "marginal_log_likelihood": ("iteration", np.array(mlls)),
            "discrete_transition": (("iteration", "from_state", "to_state"),
                                    np.array(discretes)),
            "transition_counts": (("iteration", "from_state", "to_state"),
                                  np.array(counts_seen)),
        },
        coords={"iteration": np.arange(len(mlls)), "from_state": labels,
                "to_state": labels},
        attrs={"converged": int(converged)},
    )
    return fitted_history(history, ds, initial, transition)


def state_labels(ds: xr.Dataset, transition: Any, max_iter: Any, tol: Any,
                 concentration: float, stickiness: Any, prior_weight: Any = 0.0) -> list:
    """Check what every fit takes; the state labels in order of first appearance.

    Raises
    ------
    TransitionError
        Not a :class:`Blocks`, or no ``state`` coordinate.
    ConfigError
        A bad ``max_iter``, ``tol`` or prior (:func:`dirichlet_map`).
    """
    if not isinstance(transition, Blocks):
        raise TransitionError(
            f"fit needs a Blocks transition (its discrete part is what is fitted), got "
            f"{type(transition).__name__}"
        )
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ConfigError(f"max_iter must be a positive int, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ConfigError(f"tol must be a non-negative number, got {tol!r}")
    if "state" not in ds.coords:
        raise TransitionError("fit needs a 'state' coordinate along state_bins")
    labels = pd.unique(pd.Series(np.asarray(ds.coords["state"].values))).tolist()
    dirichlet_map(np.zeros((len(labels),) * 2), concentration, stickiness, prior_weight)
    return labels


def has_converged(mlls: list[float], tol: float) -> bool:
    """Whether the last marginal log-likelihood changed by at most ``tol`` relative to its size."""
    return len(mlls) > 1 and abs(mlls[-1] - mlls[-2]) <= tol * max(1.0, abs(mlls[-2]))


def fitted_history(history: xr.Dataset, ds: xr.Dataset, initial: Any,
                   transition: Blocks) -> xr.Dataset:
    """A fit's history with the fitted ``initial`` (over the state bins) and transition."""
    start = _over_bins(ds, initial)
    history["initial"] = xr.DataArray(start, dims=(SEQUENCE, BINS)[2 - start.ndim:])
    return with_transition(history, transition)


def _over_bins(ds: xr.Dataset, initial: Any) -> np.ndarray:
    """``initial`` over all state bins, 0 outside the interior (it may be given over it).

    A per-sequence ``initial`` (``fit_initial=False``) keeps its rows.
    """
    values = np.asarray(getattr(initial, "values", initial), dtype=np.float64)
    n_bins = ds.sizes[BINS]
    if values.shape[-1] == n_bins:
        return values
    full = np.zeros((*values.shape[:-1], n_bins))
    full[..., np.asarray(ds["is_interior"].values, dtype=bool)] = values
    return full
