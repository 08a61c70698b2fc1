"""Coordinates of results that select and unstack the same lazily as eagerly.

Two xarray behaviours get in the way of the usual idioms on lazy results:

* a boolean mask that is a dask array cannot index (``KeyError: Indexing
  with a boolean dask array is not allowed``) and a dask-backed coordinate
  cannot be grouped by. ``Dataset.chunk`` makes every non-index coordinate a
  dask array and ``xr.open_dataset(..., chunks={})`` opens them as dask
  arrays, so ``res.acausal_posterior.sel(state_bins=res.state == "continuous")``
  would fail. :func:`numpy_coords` loads the small (1-D, non-index)
  coordinates into NumPy; xhmm's results and :func:`xhmm.open_results` use it.
* ``unstack`` of a dask array reindexes onto the product of the MultiIndex
  levels, which never hold a missing label: bins whose level value is NaN
  (non_local_detector's ``Local`` and ``No-Spike`` states have position NaN)
  are silently dropped. Eagerly, xarray keeps their values but files them
  under the last position label. :func:`unstack_bins` gives the missing label
  a place of its own, lazily and eagerly alike.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DimensionError
from ..names import BINS

__all__ = ["numpy_coords", "unstack_bins"]

XarrayObject = TypeVar("XarrayObject", xr.Dataset, xr.DataArray)


def numpy_coords(obj: xr.Dataset | xr.DataArray) -> xr.Coordinates:
    """The coordinates of ``obj``, every 1-D non-index coordinate in NumPy.

    Index coordinates (``time``, the levels of a MultiIndex) are NumPy-backed
    already; 1-D coordinates without an index (``state``, ``position``,
    ``is_interior``, anything along ``time``) may be dask arrays, which
    xarray refuses as boolean indexers and as ``groupby`` keys. These are
    computed; coordinates of two or more dimensions are left as they are.

    Parameters
    ----------
    obj : xr.Dataset or xr.DataArray
        Whose coordinates to take. Not modified.

    Returns
    -------
    xr.Coordinates
        The same names, dims, values and indexes, for use as
        ``xr.Dataset(..., coords=...)`` or ``obj.assign_coords(...)``.
    """
    coords = obj.coords.to_dataset()
    small = {
        name: coord.variable.compute()
        for name, coord in coords.coords.items()
        if coord.ndim == 1 and name not in coords.xindexes
    }
    return coords.assign_coords(small).coords


def unstack_bins(obj: XarrayObject, dim: str = BINS) -> XarrayObject:
    """Unstack the MultiIndex over ``dim``, keeping bins whose level is NaN.

    ``obj.unstack(dim)`` on dask-backed data drops every bin whose value in
    some level is missing (``Local`` and ``No-Spike`` bins with position
    NaN), so summing the unstacked posterior over position gives
    ``P(Local) = 0``. Here a missing value is a label of its own, placed
    after the level's other labels: the ``Local`` probability sits at
    ``(state="Local", position=NaN)``. Dask-backed data stay lazy.

    Parameters
    ----------
    obj : xr.Dataset or xr.DataArray
        A result of ``ds.hmm.smooth`` / ``filter`` or
        :func:`xhmm.open_results`, or a variable of one, with a
        ``pandas.MultiIndex`` over ``dim``.
    dim : str, default "state_bins"
        The dimension to unstack.

    Returns
    -------
    xr.Dataset or xr.DataArray
        ``dim`` replaced by one dimension per level, coordinated by that
        level's labels (with NaN appended where a bin lacks a label).
        Combinations of labels no bin has are NaN.

    Raises
    ------
    xhmm.DimensionError
        If ``obj`` has no MultiIndex over ``dim``.
    """
    index = obj.indexes.get(dim)
    if not isinstance(index, pd.MultiIndex):
        raise DimensionError(
            f"{dim!r} has no MultiIndex to unstack (index: {type(index).__name__}); "
            f"set one with xr.Coordinates.from_pandas_multiindex(index, {dim!r})"
        )
    index = index.remove_unused_levels()
    labels: dict[str, pd.Index] = {}
    codes: list[np.ndarray] = []
    for name, level, code in zip(index.names, index.levels, index.codes):
        code = np.asarray(code)
        if (code < 0).any():  # pandas codes a missing label -1, with no level value
            code = np.where(code < 0, len(level), code)
            level = level.insert(len(level), np.nan)
        labels[name] = level
        codes.append(code)
    # Unstack by the integer codes, which have no missing values, then label.
    by_code = xr.Coordinates.from_pandas_multiindex(
        pd.MultiIndex.from_arrays(codes, names=index.names), dim
    )
    stripped = obj.drop_vars([dim, *index.names])
    return stripped.assign_coords(by_code).unstack(dim).assign_coords(labels)
