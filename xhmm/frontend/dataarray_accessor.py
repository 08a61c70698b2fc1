"""The ``da.hmm`` DataArray accessor: a log-likelihood DataArray as a one-variable Dataset.

It wraps the DataArray into a Dataset whose ``log_likelihood`` variable it is
(whatever its name), coordinates included, and calls the ``ds.hmm`` accessor
(:class:`xhmm.frontend.accessor.HMMAccessor`), so both give the same results.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from ..config import Config

__all__ = ["DataArrayHMMAccessor"]


@xr.register_dataarray_accessor("hmm")
class DataArrayHMMAccessor:
    """HMM filtering and smoothing of a log-likelihood DataArray.

    The DataArray has dims ``(time, state_bins)``, or ``(sequence, time,
    state_bins)`` for many recordings; its coordinates (``is_interior``,
    ``state``, positions, ...) are used as on a Dataset. Each method takes
    the transition and initial distribution explicitly and returns the same
    Dataset as the ``ds.hmm`` method of that name.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xhmm
    >>> ll = xr.DataArray(np.log(np.full((4, 3), 1 / 3)), dims=("time", "state_bins"))
    >>> A = np.full((3, 3), 1 / 3)
    >>> res = ll.hmm.smooth(A, np.full(3, 1 / 3), progress=False)
    >>> res.acausal_posterior.sizes["state_bins"]
    3
    """

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    @property
    def dataset(self) -> xr.Dataset:
        """The DataArray as the ``log_likelihood`` variable of a Dataset."""
        return self._da.to_dataset(name="log_likelihood")

    def smooth(self, transition: Any, initial: Any, *, is_missing: Any = None,
               config: Config | None = None, lazy: bool | None = None,
               **overrides: Any) -> xr.Dataset:
        """Forward filter then backward smoother; see ``xr.Dataset.hmm.smooth``.

        Parameters
        ----------
        transition, initial : array-like
            As for ``ds.hmm.smooth``; required here, as a DataArray holds no
            ``transition`` or ``initial`` variable.
        is_missing : bool array-like, optional
            Time steps without data, as for ``ds.hmm.smooth``; defaults to an
            ``is_missing`` coordinate of the DataArray along ``time``, if any.
        config, lazy, **overrides
            As for ``ds.hmm.smooth``: a :class:`xhmm.Config`, the shorthand for
            ``lazy_expand``, and any Config field as a keyword.

        Returns
        -------
        xr.Dataset
        """
        return self.dataset.hmm.smooth(transition, initial, is_missing=is_missing,
                                       config=config, lazy=lazy, **overrides)

    def filter(self, transition: Any, initial: Any, *, is_missing: Any = None,
               config: Config | None = None, lazy: bool | None = None,
               **overrides: Any) -> xr.Dataset:
        """Forward filter only; parameters as :meth:`smooth`, see ``xr.Dataset.hmm.filter``."""
        return self.dataset.hmm.filter(transition, initial, is_missing=is_missing,
                                       config=config, lazy=lazy, **overrides)

    def map_estimate(self, transition: Any, initial: Any, *, is_missing: Any = None,
                     config: Config | None = None, **overrides: Any) -> xr.Dataset:
        """Most probable state bin at each time; see ``xr.Dataset.hmm.map_estimate``.

        The per-step marginal argmax; for one most likely path use
        :meth:`most_likely_sequence`.
        """
        return self.dataset.hmm.map_estimate(transition, initial, is_missing=is_missing,
                                             config=config, **overrides)

    def most_likely_sequence(self, transition: Any, initial: Any, *, is_missing: Any = None,
                             config: Config | None = None, **overrides: Any) -> xr.Dataset:
        """The most likely path of state bins (Viterbi), also with a ``sequence`` dim.

        See ``xr.Dataset.hmm.most_likely_sequence``.
        """
        return self.dataset.hmm.most_likely_sequence(transition, initial,
                                                     is_missing=is_missing, config=config,
                                                     **overrides)
