"""The discrete-state transition of :class:`~xhmm.transitions.Blocks`.

Static ``(S, S)`` or time-varying ``(T, S, S)`` (NumPy or dask; read chunk
by chunk), with rows "from" and columns "to" in the order of the state
layout. ``discrete[t]`` moves step ``t`` to step ``t + 1``, so the engine's
input of step ``t`` (the transition into it) is ``discrete[t - 1]``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..engine.manifest import array_digest
from ..errors import DimensionError, TransitionError
from ..names import STOCHASTIC_ATOL

__all__ = ["DiscreteSchedule", "resolve_discrete"]

FROM, TO, TIME = "from_state", "to_state", "time"


class DiscreteSchedule:
    """A validated discrete transition in layout order.

    Parameters
    ----------
    values : (S, S) float64 ndarray or (T, S, S) array
        The static matrix as it is used, or the time-varying one (NumPy or
        dask) with rows within :data:`~xhmm.names.STOCHASTIC_ATOL` of 1,
        renormalised as they are read.
    nonzero : (S, S) bool ndarray
        Pairs with non-zero probability at some step.
    fingerprint : str
        Content hash.
    """

    def __init__(self, values: Any, nonzero: np.ndarray, fingerprint: str) -> None:
        self.values = values
        self.nonzero = nonzero
        self.fingerprint = fingerprint

    @property
    def time_varying(self) -> bool:
        """True for a ``(T, S, S)`` schedule."""
        return self.values.ndim == 3

    @property
    def static(self) -> np.ndarray | None:
        """The (S, S) float64 matrix, or None when time-varying."""
        return None if self.time_varying else self.values

    def at(self, time_index: int | None) -> np.ndarray:
        """The (S, S) matrix moving step ``time_index`` to the next one.

        Raises
        ------
        TransitionError
            If the schedule is time-varying and ``time_index`` is None or
            out of range.
        """
        if not self.time_varying:
            return self.values
        n_time = self.values.shape[0]
        if time_index is None or not -n_time <= time_index < n_time:
            raise TransitionError(
                f"the discrete transition varies over time ({n_time} steps): pass a "
                f"time_index in [0, {n_time}), got {time_index}"
            )
        return _normalised(self.values[time_index])

    def inputs(self, start: int, n_rows: int, dtype: np.dtype) -> np.ndarray | None:
        """Engine inputs of steps ``start .. start + n_rows``: ``discrete[t - 1]``.

        Step 0 (which starts from ``initial``) and steps past the end get
        the identity. None when static.
        """
        if not self.time_varying:
            return None
        n_states = self.values.shape[1]
        out = np.tile(np.eye(n_states, dtype=dtype), (n_rows, 1, 1))
        lo, hi = max(start - 1, 0), min(start + n_rows - 1, self.values.shape[0])
        if hi > lo:
            out[lo + 1 - start:hi + 1 - start] = _normalised(self.values[lo:hi])
        return out


def _normalised(values: Any) -> np.ndarray:
    rows = np.asarray(values, dtype=np.float64)
    return rows / rows.sum(axis=-1, keepdims=True)


def _ordered(array: xr.DataArray, dim: str, labels: list) -> xr.DataArray:
    """Reorder ``dim`` to ``labels`` when it has a coordinate; check its size."""
    if array.sizes[dim] != len(labels) and dim not in array.coords:
        raise DimensionError(
            f"discrete has {array.sizes[dim]} entries along {dim!r}; expected "
            f"{len(labels)}, one per state ({', '.join(map(repr, labels))})"
        )
    if dim not in array.coords:
        return array
    found = array.coords[dim].values.tolist()
    extra = [label for label in found if label not in labels]
    missing = [label for label in labels if label not in found]
    if extra or missing or len(found) != len(labels):
        raise TransitionError(
            f"discrete {dim!r} labels {found} do not match the states of the 'state' "
            f"coordinate {labels}" + (f"; unknown: {extra}" if extra else "")
            + (f"; missing: {missing}" if missing else "")
        )
    return array.isel({dim: [found.index(label) for label in labels]})


def _as_array(discrete: Any, labels: list) -> Any:
    if isinstance(discrete, da.Array):
        return discrete
    if not isinstance(discrete, xr.DataArray):
        try:
            return np.asarray(discrete, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TransitionError(f"discrete must be a numeric array: {exc}") from exc
    dims = set(discrete.dims)
    if dims not in ({FROM, TO}, {TIME, FROM, TO}):
        raise DimensionError(
            f"discrete has dims {discrete.dims}; expected ('from_state', 'to_state') or "
            "('time', 'from_state', 'to_state')"
        )
    discrete = discrete.transpose(*([TIME] if TIME in dims else []), FROM, TO)
    return _ordered(_ordered(discrete, FROM, labels), TO, labels).data


def _first(flags: np.ndarray) -> tuple[int, ...]:
    """Index of the first True of a boolean array."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(flags)), flags.shape))


def _where(index: tuple[int, ...], labels: list, time_varying: bool) -> str:
    """``discrete[time=.., from_state=.., to_state=..]`` for a (T, S[, S]) index."""
    time, *states = index
    names = [f"time={time}"] if time_varying else []
    names += [f"{dim}={labels[i]!r}" for dim, i in zip((FROM, TO), states)]
    return f"discrete[{', '.join(names)}]"


def resolve_discrete(discrete: Any, labels: list, n_time: int | None) -> DiscreteSchedule:
    """Check a discrete transition and put it in layout order.

    Parameters
    ----------
    discrete : (S, S) or (T, S, S) array-like, or DataArray
        See :class:`~xhmm.transitions.Blocks`.
    labels : list
        State labels in layout order.
    n_time : int or None
        Time steps of the likelihood (required for a time-varying one).

    Returns
    -------
    DiscreteSchedule

    Raises
    ------
    DimensionError, TransitionError
        Bad dims, sizes or labels; non-finite or negative entries; a row not
        summing to 1; a time length other than ``n_time``.
    """
    values = _as_array(discrete, labels)
    n_states = len(labels)
    if values.ndim not in (2, 3) or values.shape[-2:] != (n_states, n_states):
        raise DimensionError(
            f"discrete has shape {values.shape}; expected ({n_states}, {n_states}) or "
            f"(time, {n_states}, {n_states}) for the states {labels}"
        )
    if values.ndim == 3 and values.shape[0] != n_time:
        raise DimensionError(
            f"discrete varies over {values.shape[0]} time steps; the log-likelihood has "
            f"{n_time}"
        )
    stack = values if values.ndim == 3 else values[None]
    ramp = np.arange(stack.shape[0], dtype=np.float64)[:, None, None]
    checks = (np.isfinite(stack), stack < 0, stack.sum(axis=-1), (stack != 0).any(axis=0),
              stack.sum(axis=0), (stack * ramp).sum(axis=0))
    if isinstance(stack, da.Array):
        checks = dask.compute(*checks)
    finite, negative, row_sums, nonzero, total, moment = checks
    varying = values.ndim == 3
    if not finite.all():
        raise TransitionError(f"{_where(_first(~finite), labels, varying)} is not finite")
    if negative.any():
        raise TransitionError(f"{_where(_first(negative), labels, varying)} is negative")
    bad = np.abs(row_sums - 1) > STOCHASTIC_ATOL
    if bad.any():
        index = _first(bad)
        raise TransitionError(
            f"{_where(index, labels, varying)} sums to {row_sums[index]:.9g} over "
            f"to_state; rows must sum to 1 within {STOCHASTIC_ATOL:g}"
        )
    digest = hashlib.blake2b(digest_size=16)
    for part in (str(values.shape), array_digest(total), array_digest(moment)):
        digest.update(part.encode())
    return DiscreteSchedule(values if varying else _normalised(values), nonzero,
                            digest.hexdigest())
