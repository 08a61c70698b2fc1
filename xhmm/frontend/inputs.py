"""Resolve and validate the inputs of a run before any heavy work.

Everything here is cheap: dims, shapes, dtypes and the (small) transition and
initial arrays. The (large) log-likelihood is checked chunk by chunk as the
engine reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..engine.transition import EngineTransition
from ..errors import DimensionError, InitialError, InputError, TransitionError
from ..names import BINS, STOCHASTIC_ATOL, TIME
from ..transitions.blocks import Blocks
from ..transitions.plan import plan_transition
from .hpd import BinSizes, bin_sizes
from .missing import flat_where_missing, resolve_is_missing

__all__ = ["ResolvedInputs", "resolve_inputs", "check_initial"]


@dataclass
class ResolvedInputs:
    """Validated inputs of one run.

    Attributes
    ----------
    log_likelihood : DataArray
        ``(time, state_bins)``, NumPy- or dask-backed, not loaded.
    columns : (K,) int64 ndarray
        Interior bins.
    mask : (N,) bool ndarray
        ``is_interior``.
    transition : EngineTransition
        What the engine runs: a :class:`xhmm.transitions.Blocks` planned
        block by block, or a matrix over the interior bins (rows
        renormalised within STOCHASTIC_ATOL), analysed for zero and
        rank-one state blocks (:func:`xhmm.transitions.plan.plan_transition`).
    initial : (K,) float64 ndarray
    state_labels : ndarray or None
        Unique labels of the ``state`` coordinate, in order of appearance.
    state_onehot : (K, S) ndarray or None
    missing : (T,) bool ndarray or None
        ``is_missing``; None when no step is missing.
    bin_sizes : BinSizes or None
        Size of each interior bin from the position coordinates
        (:func:`xhmm.frontend.hpd.bin_sizes`), for ``hpd_area``.
    """

    log_likelihood: xr.DataArray
    columns: np.ndarray
    mask: np.ndarray
    transition: EngineTransition
    initial: np.ndarray
    state_labels: np.ndarray | None
    state_onehot: np.ndarray | None
    missing: np.ndarray | None = None
    bin_sizes: BinSizes | None = None

    @property
    def n_bins(self) -> int:
        """Number of state bins, interior or not."""
        return int(self.mask.size)

    def engine_log_likelihood(self):
        """The ``(1, T, N)`` engine input: missing rows read as 0, lazily."""
        missing = None if self.missing is None else self.missing[None]
        return flat_where_missing(self.log_likelihood.data[None], missing)


def resolve_inputs(ds: xr.Dataset, transition, initial, is_missing=None) -> ResolvedInputs:
    """Check ``log_likelihood``, ``is_interior``, transition, initial, is_missing.

    ``ds`` has the canonical names, its ``log_likelihood`` the dims ``(time,
    state_bins)``, none empty (checked at the public entry,
    :func:`xhmm.frontend.naming.canonical_input`). ``transition`` /
    ``initial`` / ``is_missing`` default to the Dataset variables of those
    names (``is_missing`` is optional, see
    :mod:`xhmm.frontend.missing`).

    Raises
    ------
    InputError, DimensionError, TransitionError, InitialError
    """
    ll = ds["log_likelihood"].transpose(TIME, BINS)
    if not (np.issubdtype(ll.dtype, np.floating) or np.issubdtype(ll.dtype, np.integer)):
        raise InputError(f"log_likelihood must be a real-valued array, got dtype {ll.dtype}")
    n_bins = ll.sizes[BINS]
    mask = _interior(ds, n_bins)
    columns = np.flatnonzero(mask).astype(np.int64)
    given = _lookup(ds, transition, "transition")
    A = given if isinstance(given, Blocks) else _transition(ds, given, mask)
    p0 = check_initial(ds, initial, mask)
    labels, onehot = _states(ds, columns)
    state = ds.coords["state"].values if labels is not None else None
    plan = plan_transition(A, state_labels=state, is_interior=mask, n_time=ll.sizes[TIME])
    missing = resolve_is_missing(ds, is_missing, ll.sizes[TIME])
    return ResolvedInputs(ll, columns, mask, plan, p0, labels, onehot, missing,
                          bin_sizes(ds, columns))


def _interior(ds: xr.Dataset, n_bins: int) -> np.ndarray:
    if "is_interior" not in ds.variables:
        return np.ones(n_bins, dtype=bool)
    var = ds["is_interior"]
    if var.dims != (BINS,):
        raise DimensionError(f"is_interior must have dims ('state_bins',), got {var.dims}")
    if var.dtype != bool:
        raise InputError(
            f"is_interior must be boolean (True for bins in use), got dtype {var.dtype}"
        )
    mask = np.asarray(var.values, dtype=bool)
    if not mask.any():
        raise InputError("is_interior is False everywhere: there is no interior bin")
    return mask


def _lookup(ds: xr.Dataset, value, name: str):
    if value is not None:
        return value
    if name in ds.variables:
        return ds[name].values
    raise InputError(
        f"no {name!r} given: pass {name}=... or add a variable {name!r} to the Dataset"
    )


def _as_float_array(value, name: str, error: type) -> np.ndarray:
    if isinstance(value, xr.DataArray):
        value = value.values
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be a numeric array: {exc}") from exc
    return array


def _expected(n_bins: int, n_int: int, ndim: int) -> str:
    def shape(n: int) -> str:
        return str((n,) * ndim)

    if n_bins == n_int:
        return f"{shape(n_bins)} (one entry per state bin)"
    return f"{shape(n_bins)} over all state_bins or {shape(n_int)} over the interior bins"


def _transition(ds: xr.Dataset, value, mask: np.ndarray) -> np.ndarray:
    A = _as_float_array(_lookup(ds, value, "transition"), "transition", TransitionError)
    n_bins, n_int = mask.size, int(mask.sum())
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise TransitionError(f"transition must be a square 2-D matrix, got shape {A.shape}")
    if A.shape[0] not in (n_bins, n_int):
        raise TransitionError(
            f"transition has shape {A.shape}; expected {_expected(n_bins, n_int, 2)}"
        )
    if not np.isfinite(A).all():
        i, j = np.argwhere(~np.isfinite(A))[0]
        raise TransitionError(f"transition[{i}, {j}] is {A[i, j]}; entries must be finite")
    if (A < 0).any():
        i, j = np.argwhere(A < 0)[0]
        raise TransitionError(f"transition[{i}, {j}] = {A[i, j]:.6g} is negative")
    full = A.shape[0] == n_bins and n_int != n_bins
    rows = np.flatnonzero(mask) if full else np.arange(A.shape[0])
    sums = A.sum(axis=1)[rows]  # no copy of a (possibly 10,650²) matrix
    bad = np.abs(sums - 1) > STOCHASTIC_ATOL
    if bad.any():
        i = int(rows[np.argmax(bad)])
        column_sums = A.sum(axis=0)[rows]
        hint = (
            "; its columns sum to 1: pass transition.T (rows are 'from', columns 'to')"
            if (np.abs(column_sums - 1) <= STOCHASTIC_ATOL).all() else ""
        )
        raise TransitionError(
            f"transition row {i} sums to {sums[np.argmax(bad)]:.9g}; rows (from) must sum "
            f"to 1 within {STOCHASTIC_ATOL:g}{hint}"
        )
    if full:
        A = A[np.ix_(rows, rows)]
        kept = A.sum(axis=1)
        lost = 1 - kept
        if (lost > STOCHASTIC_ATOL).any():
            i = int(rows[np.argmax(lost)])
            raise TransitionError(
                f"transition row {i} moves probability {lost.max():.6g} to exterior bins "
                "(is_interior False); exterior bins must be unreachable"
            )
        A /= kept[:, None]  # A is our own sub-matrix copy here
        return A
    return A / sums[:, None]


def check_initial(ds: xr.Dataset, value, mask: np.ndarray) -> np.ndarray:
    """Validate ``initial`` (or ``ds["initial"]``) and return it over the interior bins.

    Raises
    ------
    InitialError
        Naming the shape, the first bad entry or the sum.
    """
    p0 = _as_float_array(_lookup(ds, value, "initial"), "initial", InitialError)
    n_bins, n_int = mask.size, int(mask.sum())
    if p0.ndim != 1 or p0.size not in (n_bins, n_int):
        raise InitialError(
            f"initial has shape {p0.shape}; expected {_expected(n_bins, n_int, 1)}"
        )
    if not np.isfinite(p0).all():
        i = int(np.argmax(~np.isfinite(p0)))
        raise InitialError(f"initial[{i}] is {p0[i]}; entries must be finite")
    if (p0 < 0).any():
        i = int(np.argmax(p0 < 0))
        raise InitialError(f"initial[{i}] = {p0[i]:.6g} is negative")
    if p0.size == n_bins and n_int != n_bins:
        outside = p0[~mask].sum()
        if outside > STOCHASTIC_ATOL:
            raise InitialError(
                f"initial puts probability {outside:.6g} on exterior bins (is_interior False)"
            )
        p0 = p0[mask]
    total = p0.sum()
    if total == 0:
        raise InitialError("initial is zero everywhere on the interior bins")
    if abs(total - 1) > STOCHASTIC_ATOL:
        raise InitialError(
            f"initial sums to {total:.9g}; it must sum to 1 within {STOCHASTIC_ATOL:g}"
        )
    return p0 / total


def _states(ds: xr.Dataset, columns: np.ndarray):
    if "state" not in ds.coords:
        return None, None
    coord = ds.coords["state"]
    if coord.dims != (BINS,):
        return None, None
    all_values = np.asarray(coord.values)
    labels = np.asarray(pd.unique(pd.Series(all_values)))
    onehot = (all_values[columns][:, None] == labels[None, :]).astype(np.float64)
    return labels, onehot
