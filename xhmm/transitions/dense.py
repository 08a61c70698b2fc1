"""The dense matrix a transition stands for, over all ``state_bins``."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import InputError
from ..names import BINS, TIME
from .blocks import Blocks
from .layout import state_layout
from .plan import plan_blocks

__all__ = ["to_dense"]


def to_dense(transition: Blocks, ds: xr.Dataset, time_index: int | None = None) -> np.ndarray:
    """The (n_state_bins, n_state_bins) matrix of a :class:`Blocks` transition.

    For tests and inspection: it holds ``n_state_bins ** 2`` float64 values.

    Parameters
    ----------
    transition : Blocks
    ds : Dataset
        Gives ``state_bins`` (its size), the ``state`` coordinate, and
        ``is_interior`` (default all True) and the ``time`` size.
    time_index : int, optional
        For a time-varying discrete transition, the step ``t`` whose matrix
        (moving ``t`` to ``t + 1``) is returned.

    Returns
    -------
    (N, N) float64 ndarray
        Rows "from", columns "to"; rows and columns of exterior bins are 0.

    Raises
    ------
    InputError, TransitionError, DimensionError
    """
    if not isinstance(transition, Blocks):
        raise InputError(f"to_dense takes a Blocks transition, got {type(transition).__name__}")
    if "state" not in ds.coords or ds.coords["state"].dims != (BINS,):
        raise InputError("to_dense needs a 'state' coordinate along state_bins")
    labels = np.asarray(ds.coords["state"].values)
    mask = (np.asarray(ds["is_interior"].values, dtype=bool) if "is_interior" in ds.variables
            else np.ones(labels.size, dtype=bool))
    plan = plan_blocks(transition, state_layout(labels, mask), ds.sizes.get(TIME))
    columns = np.flatnonzero(mask)
    out = np.zeros((mask.size, mask.size))
    out[np.ix_(columns, columns)] = plan.matrix(time_index)
    return out
