"""Time steps without data: ``is_missing`` and the flat likelihood they get.

A step marked missing carries no evidence: its log-likelihood is read as 0 in
every bin (a flat likelihood), so the filter only propagates the prediction
through it and the step adds ``log 1 = 0`` to the marginal log-likelihood.
Whatever the log-likelihood holds in a missing row (NaN included) is never
looked at.

The masking is lazy: :func:`flat_where_missing` wraps the ``(B, T, N)``
input so that each chunk the engine reads has its missing rows zeroed, and
the whole array is never materialised.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import DimensionError, InputError
from ..names import SEQUENCE, TIME

__all__ = ["MISSING", "resolve_is_missing", "flat_where_missing", "MissingRowsAsFlat"]

#: The name of the optional variable (and keyword) marking steps without data.
MISSING = "is_missing"


def resolve_is_missing(ds: xr.Dataset, value: Any, n_time: int,
                       n_sequences: int | None = None) -> np.ndarray | None:
    """Find and check ``is_missing``: the ``value`` given, else ``ds["is_missing"]``.

    Parameters
    ----------
    ds : xr.Dataset
        Looked up for an ``is_missing`` variable when ``value`` is None.
    value : array-like, DataArray or None
        Boolean, one entry per time step: dims ``(time,)``, or ``(sequence,
        time)`` (or ``(time,)``, shared) for a multi-sequence input.
    n_time : int
        Size of the log-likelihood's ``time`` dimension.
    n_sequences : int, optional
        Number of sequences of a ``(sequence, time, state_bins)`` input.

    Returns
    -------
    ndarray or None
        ``(n_time,)`` or ``(n_sequences, n_time)`` bool; None when no step is
        missing (nothing to mask).

    Raises
    ------
    DimensionError
        Wrong dims or sizes.
    InputError
        A dtype other than bool.
    """
    if value is None:
        if MISSING not in ds.variables:
            return None
        value = ds[MISSING]
    dims, shape = (TIME,), (n_time,)
    expected = f"dims {dims} and shape {shape}"
    if n_sequences is not None:
        dims, shape = (SEQUENCE, TIME), (n_sequences, n_time)
        expected = f"dims {dims} and shape {shape}, or {expected} shared by every sequence"
    if isinstance(value, xr.DataArray):
        if TIME not in value.dims or not set(value.dims) <= set(dims):
            raise DimensionError(f"{MISSING} has dims {value.dims}; expected {expected}")
        value = value.transpose(*[d for d in dims if d in value.dims]).values
    array = np.asarray(value)
    if array.dtype != bool:
        hint = ("; where NaN filled a gap (e.g. xr.concat), use .fillna(False).astype(bool)"
                if array.dtype.kind in "fO" else "")
        raise InputError(
            f"{MISSING} must be boolean (True at time steps without data), got dtype "
            f"{array.dtype}{hint}"
        )
    if array.shape not in (shape, (n_time,)):
        raise DimensionError(
            f"{MISSING} has shape {array.shape}; expected {expected}: one entry per "
            "'time' step of log_likelihood"
        )
    if not array.any():
        return None
    return np.broadcast_to(array, shape)


def flat_where_missing(log_likelihood: Any, missing: np.ndarray | None) -> Any:
    """The ``(B, T, N)`` log-likelihood with the rows of missing steps read as 0.

    Parameters
    ----------
    log_likelihood : (B, T, N) NumPy, memmap or dask array, or array-like
    missing : (B, T) bool ndarray or None

    Returns
    -------
    array-like
        ``log_likelihood`` itself when ``missing`` is None; a dask array
        (``where``, lazy) for a dask input; otherwise a
        :class:`MissingRowsAsFlat` view that zeroes the rows it reads.
    """
    if missing is None:
        return log_likelihood
    if isinstance(log_likelihood, da.Array):
        return da.where(missing[:, :, None], 0, log_likelihood)
    return MissingRowsAsFlat(log_likelihood, missing)


class MissingRowsAsFlat:
    """A ``(B, T, N)`` view whose rows at missing steps read as zeros.

    Only the rows asked for are read, so a memmap stays on disk. Indexing
    selects sequences and time rows (``[:, start:stop]``, ``[indices]``,
    ``[indices, rows]``), as the engine and the sequence batches do.

    Parameters
    ----------
    source : (B, T, N) array-like
        NumPy array, ``np.memmap`` or any object with ``shape``, ``dtype``
        and that slicing.
    missing : (B, T) bool ndarray
    """

    def __init__(self, source: Any, missing: np.ndarray) -> None:
        self.source = source
        self.missing = missing
        self.shape = tuple(int(n) for n in source.shape)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 2:
            raise IndexError("MissingRowsAsFlat selects sequences and time rows only")
        block = np.asarray(self.source[key])
        rows = self.missing[key]
        return np.where(rows[..., None], np.zeros((), dtype=block.dtype), block)
