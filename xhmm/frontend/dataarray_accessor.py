"""The ``da.hmm`` DataArray accessor: the ``xhmm`` functions on a log-likelihood DataArray.

``da.hmm.smooth(A, p0)`` is ``xhmm.smooth(da, A, p0)``: the DataArray is the
log-likelihood (whatever its name) and its coordinates (``is_interior``,
``state``, positions, ...) are used as a Dataset's, so both give the same
results.
"""

from __future__ import annotations

import xarray as xr

from .accessor import HMMAccessor

__all__ = ["DataArrayHMMAccessor"]


@xr.register_dataarray_accessor("hmm")
class DataArrayHMMAccessor(HMMAccessor):
    """HMM filtering and smoothing of a log-likelihood DataArray: the ``xhmm`` functions.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xhmm
    >>> ll = xr.DataArray(np.log(np.full((4, 3), 1 / 3)), dims=("time", "state_bins"))
    >>> A = np.full((3, 3), 1 / 3)
    >>> res = ll.hmm.smooth(A, np.full(3, 1 / 3), progress=False)
    >>> res.acausal_posterior.sizes["state_bins"]
    3
    """
