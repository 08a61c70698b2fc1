"""The ``ds.hmm`` Dataset accessor: each method is the public function of that name.

``ds.hmm.smooth(...)`` is ``xhmm.smooth(ds, ...)``, and so on for
``filter``, ``map_estimate``, ``most_likely_sequence`` and ``fit``
(:mod:`xhmm.frontend.api`); the ``da.hmm`` DataArray accessor
(:mod:`xhmm.frontend.dataarray_accessor`) forwards the same way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import xarray as xr

from . import api

__all__ = ["HMMAccessor"]


def _forward(function: Callable[..., xr.Dataset]) -> Callable[..., xr.Dataset]:
    """A method calling ``function`` with the accessor's object as its first argument."""

    @functools.wraps(function)
    def method(self: HMMAccessor, *args: Any, **kwargs: Any) -> xr.Dataset:
        return function(self._obj, *args, **kwargs)

    return method


@xr.register_dataset_accessor("hmm")
class HMMAccessor:
    """HMM filtering and smoothing of a Dataset's log-likelihood: the ``xhmm`` functions.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xhmm
    >>> ll = np.log(np.full((4, 3), 1 / 3))
    >>> ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)})
    >>> A = np.full((3, 3), 1 / 3)
    >>> res = ds.hmm.smooth(transition=A, initial=np.full(3, 1 / 3), progress=False)
    >>> res.acausal_posterior.sizes["state_bins"]
    3
    """

    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    smooth = _forward(api.smooth)
    filter = _forward(api.filter)
    map_estimate = _forward(api.map_estimate)
    most_likely_sequence = _forward(api.most_likely_sequence)
    fit = _forward(api.fit)
