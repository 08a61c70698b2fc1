"""The ``ds.hmm`` Dataset accessor: each method is the public function of that name.

``ds.hmm.smooth(...)`` is ``xhmm.smooth(ds, ...)``, and so on for
``filter``, ``map_estimate``, ``most_likely_sequence``, ``sample_paths`` and ``fit``
(:mod:`xhmm.frontend.api`); the ``da.hmm`` DataArray accessor
(:mod:`xhmm.frontend.dataarray_accessor`) forwards the same way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import xarray as xr

__all__ = ["HMMAccessor"]


class _Forward:
    """An accessor method: the :mod:`~xhmm.frontend.api` function of its name.

    It calls the function with the accessor's object as its first argument.
    The function (and with it JAX) is imported when the method is looked up,
    not when ``import xhmm`` registers the accessors.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, accessor: HMMAccessor | None, owner: type | None = None) -> Callable:
        from . import api

        function = getattr(api, self.name)
        if accessor is None:  # looked up on the class (xr.Dataset.hmm.smooth)
            return function

        @functools.wraps(function)
        def method(*args: Any, **kwargs: Any) -> xr.Dataset:
            return function(accessor._obj, *args, **kwargs)

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

    smooth = _Forward()
    filter = _Forward()
    map_estimate = _Forward()
    most_likely_sequence = _Forward()
    sample_paths = _Forward()
    fit = _Forward()
