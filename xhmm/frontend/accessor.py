"""The ``ds.hmm`` Dataset accessor: each method forwards to :mod:`xhmm.frontend.api`."""

from __future__ import annotations

from typing import Any

import xarray as xr

from ..config import Config
from . import api

__all__ = ["HMMAccessor"]


@xr.register_dataset_accessor("hmm")
class HMMAccessor:
    """HMM filtering and smoothing of ``log_likelihood`` (time × state_bins).

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

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def smooth(
        self,
        transition: Any = None,
        initial: Any = None,
        *,
        is_missing: Any = None,
        config: Config | None = None,
        lazy: bool | None = None,
        client: Any = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        **overrides: Any,
    ) -> xr.Dataset:
        """Forward filter then backward smoother over the whole recording.

        A ``log_likelihood`` with dims ``(sequence, time, state_bins)`` is
        smoothed sequence by sequence in device batches (see
        docs/scale-out.md); every method of this accessor runs one recording
        and a ``sequence`` dim the same way and takes the batching options
        below.

        Parameters
        ----------
        transition : (n, n) array-like, optional
            Row-stochastic (row = from, column = to) over all ``state_bins`` or
            over the interior bins only. Defaults to ``ds["transition"]``.
        initial : (n,) array-like, optional
            Distribution of the first time step, before its likelihood.
            Defaults to ``ds["initial"]``.
        is_missing : (time,) bool array-like, optional
            True at time steps without data (``(sequence, time)`` or
            ``(time,)`` with a ``sequence`` dim). Those steps get a flat
            likelihood (log-likelihood 0 in every bin, whatever
            ``log_likelihood`` holds there, NaN included) and add 0 to the
            marginal log-likelihood. Defaults to ``ds["is_missing"]`` if
            present, else no step is missing.
        config : xhmm.Config, optional
        lazy : bool, optional
            Shorthand for ``lazy_expand``.
        client : dask.distributed.Client or False, optional
            Run the batches as tasks on this client's cluster. None (default)
            uses the active client if there is one, else runs here; False
            always runs here.
        batch_size : int, optional
            Sequences per device batch (default: the most that fit
            ``memory_budget``; with a client at most ``ceil(S / worker
            threads)``).
        memory_budget : int, optional
            Bytes one batch may use on its device (default: 80 % of an
            accelerator's free memory, 2 GiB on CPU; see
            :mod:`xhmm.engine.budget`).
        **overrides
            Any :class:`xhmm.Config` field, e.g. ``chunk_size=2_000``.

        Returns
        -------
        xr.Dataset
            ``causal_posterior`` (unless ``persist_causal=False``),
            ``acausal_posterior``, ``marginal_log_likelihood`` and the
            requested summaries, with the input's coordinates.
        """
        return api.smooth(self._ds, transition, initial, is_missing=is_missing, config=config,
                          lazy=lazy, client=client, batch_size=batch_size,
                          memory_budget=memory_budget, **overrides)

    def filter(
        self,
        transition: Any = None,
        initial: Any = None,
        *,
        is_missing: Any = None,
        config: Config | None = None,
        lazy: bool | None = None,
        client: Any = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        **overrides: Any,
    ) -> xr.Dataset:
        """Forward filter only (causal posterior). Parameters as :meth:`smooth`.

        Raises
        ------
        xhmm.ConfigError
            With ``persist_causal=False`` and no summary requested
            (``emit_map``, ``emit_entropy``, or ``emit_state_aggregates`` with
            a ``state`` coordinate): the run would keep nothing.
        """
        return api.filter(self._ds, transition, initial, is_missing=is_missing, config=config,
                          lazy=lazy, client=client, batch_size=batch_size,
                          memory_budget=memory_budget, **overrides)

    def fit(
        self,
        transition: Any = None,
        initial: Any = None,
        *,
        max_iter: int = 20,
        tol: float = 1e-4,
        concentration: float = 1.0,
        stickiness: Any = 0.0,
        prior_weight: Any = 0.0,
        fit_initial: bool = True,
        is_missing: Any = None,
        config: Config | None = None,
        client: Any = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        **overrides: Any,
    ) -> tuple[Any, xr.Dataset]:
        """Fit the discrete transition of a ``Blocks`` (and ``initial``) by EM.

        One smoother pass per iteration, storing no posterior (memory of
        about one chunk), with exact expected transition counts; the
        continuous blocks stay fixed; sequences are fitted jointly. See
        :mod:`xhmm.transitions.fit` for the update.

        Parameters
        ----------
        transition : xhmm.transitions.Blocks
            With a static discrete transition (the starting point).
        initial : array-like
            Initial distribution (the starting point).
        max_iter : int, default 20
        tol : float, default 1e-4
            Relative change of the marginal log-likelihood that stops EM.
        concentration : float, default 1.0
        stickiness : float or (S,) array, default 0.0
        prior_weight : float or (S,) array, default 0.0
            Dirichlet prior of each row, as in non_local_detector.
        fit_initial : bool, default True
        is_missing : bool array-like, optional
            Time steps without data, as for :meth:`smooth`.
        config : xhmm.Config, optional
        **overrides
            Config fields for the smoother passes (``chunk_size``,
            ``compute_dtype``, ``progress`` for the iteration bar, ...).

        Returns
        -------
        fitted : xhmm.transitions.Blocks
        history : xr.Dataset
            ``marginal_log_likelihood``, ``discrete_transition`` and
            ``transition_counts`` per ``iteration``.
        """
        return api.fit(self._ds, transition, initial, max_iter=max_iter, tol=tol,
                       concentration=concentration, stickiness=stickiness,
                       prior_weight=prior_weight, fit_initial=fit_initial,
                       is_missing=is_missing, config=config, client=client,
                       batch_size=batch_size, memory_budget=memory_budget, **overrides)

    def map_estimate(
        self,
        transition: Any = None,
        initial: Any = None,
        *,
        is_missing: Any = None,
        config: Config | None = None,
        client: Any = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        **overrides: Any,
    ) -> xr.Dataset:
        """Most probable state bin of the smoothed posterior at each time, step by step.

        This is the per-step marginal argmax, ``argmax_k p(state_t = k |
        y_1..T)`` for each ``t`` on its own: consecutive steps may jump
        between bins the model forbids or finds unlikely in sequence (e.g.
        between two modes of a bimodal posterior). For the single most likely
        *path*, use :meth:`most_likely_sequence`.

        Parameters as :meth:`smooth` (``is_missing`` included). Runs the
        smoother keeping no full posterior (only the per-chunk MAP), so memory
        stays at one chunk whatever the length of the recording.

        Returns
        -------
        xr.Dataset
            ``map_state_bin`` (index into ``state_bins``), ``map_<coord>`` for
            each numeric coordinate of ``state_bins``, and
            ``marginal_log_likelihood``.
        """
        return api.map_estimate(self._ds, transition, initial, is_missing=is_missing,
                                config=config, client=client, batch_size=batch_size,
                                memory_budget=memory_budget, **overrides)

    def most_likely_sequence(
        self,
        transition: Any = None,
        initial: Any = None,
        *,
        is_missing: Any = None,
        config: Config | None = None,
        client: Any = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        **overrides: Any,
    ) -> xr.Dataset:
        """The most likely sequence of state bins given all observations (Viterbi).

        ``argmax over paths of p(state_1..T | y_1..T)``: one path that the
        model allows step to step, unlike :meth:`map_estimate` (the best bin
        of each step on its own). Out of core: a forward max-product pass
        keeps only the max-message at each chunk boundary, then each chunk's
        back-pointers are recomputed in reverse chunk order and the path is
        traced back through them, so memory stays at about one chunk
        whatever the length of the recording. Memmap runs (``memmap_dir``)
        resume with ``resume=True`` as the smoother's do.

        Ties between equally likely predecessors (and between equally likely
        last bins) go to the lowest interior bin index, so the path is
        deterministic. Numerics: max-product rescaled at each step, like the
        filter. ``compute_dtype="auto"`` (the default) and ``"float32"`` run
        float32 and recompute in float64 from the first chunk where float32
        may have lost the path (a prediction below ``1e-30`` where the
        likelihood is high; the attribute ``xhmm_float64_chunks`` counts
        those chunks); ``"float64"`` runs float64 throughout.

        A ``log_likelihood`` with dims ``(sequence, time, state_bins)`` is
        decoded sequence by sequence in device batches (not with
        ``resume=True``).

        Parameters
        ----------
        transition : (n, n) array-like or xhmm.transitions.Blocks, optional
            As for :meth:`smooth`; defaults to ``ds["transition"]``.
        initial : (n,) array-like, optional
            As for :meth:`smooth` (``(sequence, n)`` per sequence); defaults
            to ``ds["initial"]``.
        config : xhmm.Config, optional
        **overrides
            Any :class:`xhmm.Config` field, e.g. ``chunk_size=2_000``; the
            posterior settings (``posterior_dtype``, ``emit_map``, ...) do
            not apply.

        Returns
        -------
        xr.Dataset
            ``most_likely_state_bin`` (int64 index into ``state_bins``),
            ``most_likely_<coord>`` for each numeric coordinate of
            ``state_bins``, ``most_likely_state`` when a ``state`` coordinate
            labels the bins, all along ``time``; and
            ``path_log_probability`` (float64, ``log p(path, y_1..T)`` with
            the likelihood shift of ``marginal_log_likelihood``, so it is at
            most that). With a ``sequence`` dim every variable has it too,
            with -1 / NaN / "" past each sequence's length, and
            ``sequence_length`` is added.

        Raises
        ------
        xhmm.LikelihoodError
            Bad likelihood values, or a step at which every path has
            probability zero (naming the first such step).

        Examples
        --------
        >>> import numpy as np, xarray as xr, xhmm
        >>> ll = np.log([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)})
        >>> A = np.array([[0.9, 0.1], [0.1, 0.9]])
        >>> res = ds.hmm.most_likely_sequence(transition=A, initial=[0.5, 0.5],
        ...                                   progress=False)
        >>> res.most_likely_state_bin.values.tolist()
        [0, 0, 0]
        """
        return api.most_likely_sequence(self._ds, transition, initial, is_missing=is_missing,
                                        config=config, client=client,
                                        batch_size=batch_size, memory_budget=memory_budget,
                                        **overrides)
