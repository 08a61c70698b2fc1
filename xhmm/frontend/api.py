"""The methods as functions on a Dataset: what ``ds.hmm`` and ``da.hmm`` call.

Each function takes a Dataset holding ``log_likelihood`` (``(time,
state_bins)``, or ``(sequence, time, state_bins)`` for many recordings), the
model (``transition``, ``initial``, optionally ``is_missing``), a
:class:`~xhmm.Config` or its fields as keywords, and the batching options
(``client``, ``batch_size``, ``memory_budget``), and runs the one driver
(:func:`xhmm.frontend.driver.run_job`), so every method accepts the same inputs and
runs one recording and a ``sequence`` dim the same way.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from ..config import Config
from ..errors import DimensionError
from ..names import BINS, SEQUENCE_LENGTH, TIME
from ..transitions.fit import fit_discrete
from .driver import has_sequences, run_job

__all__ = ["smooth", "filter", "map_estimate", "most_likely_sequence", "fit",
           "smooth_sequences"]


def _config(config: Config | None, lazy: bool | None, overrides: dict[str, Any]) -> Config:
    if lazy is not None:
        overrides = {**overrides, "lazy_expand": lazy}
    return Config.resolve(config, overrides)


def smooth(ds: xr.Dataset, transition: Any = None, initial: Any = None, *,
           is_missing: Any = None, config: Config | None = None, lazy: bool | None = None,
           client: Any = None, batch_size: int | None = None,
           memory_budget: int | None = None, **overrides: Any) -> xr.Dataset:
    """Forward filter then backward smoother; see ``xr.Dataset.hmm.smooth``."""
    return run_job(ds, transition, initial, _config(config, lazy, overrides),
                   algorithm="smooth", is_missing=is_missing, client=client,
                   batch_size=batch_size, memory_budget=memory_budget)


def filter(ds: xr.Dataset, transition: Any = None, initial: Any = None, *,  # noqa: A001
           is_missing: Any = None, config: Config | None = None, lazy: bool | None = None,
           client: Any = None, batch_size: int | None = None,
           memory_budget: int | None = None, **overrides: Any) -> xr.Dataset:
    """Forward filter only; see ``xr.Dataset.hmm.filter``.

    Raises
    ------
    xhmm.ConfigError
        With ``persist_causal=False`` and no summary requested: the run
        would keep nothing.
    """
    cfg = _config(config, lazy, overrides)
    state = ds.coords.get("state")
    cfg.check_filter_output(has_states=state is not None and state.dims == (BINS,))
    return run_job(ds, transition, initial, cfg, algorithm="filter", is_missing=is_missing,
                   client=client, batch_size=batch_size, memory_budget=memory_budget)


def map_estimate(ds: xr.Dataset, transition: Any = None, initial: Any = None, *,
                 is_missing: Any = None, config: Config | None = None, client: Any = None,
                 batch_size: int | None = None, memory_budget: int | None = None,
                 **overrides: Any) -> xr.Dataset:
    """Per-step argmax of the smoothed posterior; see ``xr.Dataset.hmm.map_estimate``."""
    cfg = _config(config, None, {**overrides, "emit_map": True, "persist_causal": False})
    res = run_job(ds, transition, initial, cfg, algorithm="smooth", is_missing=is_missing,
                  client=client, batch_size=batch_size, memory_budget=memory_budget,
                  store_acausal=False)
    keep = [name for name in res.data_vars
            if name.startswith("map_") or name in ("marginal_log_likelihood", SEQUENCE_LENGTH)]
    res = res[keep]
    return res.drop_vars([name for name, c in res.coords.items() if TIME not in c.dims
                          and name not in res.dims])


def most_likely_sequence(ds: xr.Dataset, transition: Any = None, initial: Any = None, *,
                         is_missing: Any = None, config: Config | None = None,
                         client: Any = None, batch_size: int | None = None,
                         memory_budget: int | None = None, **overrides: Any) -> xr.Dataset:
    """The most likely path (Viterbi); see ``xr.Dataset.hmm.most_likely_sequence``."""
    return run_job(ds, transition, initial, Config.resolve(config, overrides),
                   algorithm="viterbi", is_missing=is_missing, client=client,
                   batch_size=batch_size, memory_budget=memory_budget)


def fit(ds: xr.Dataset, transition: Any = None, initial: Any = None, *,
        max_iter: int = 20, tol: float = 1e-4, concentration: float = 1.0,
        stickiness: Any = 0.0, prior_weight: Any = 0.0, fit_initial: bool = True,
        is_missing: Any = None, config: Config | None = None, client: Any = None,
        batch_size: int | None = None, memory_budget: int | None = None,
        **overrides: Any) -> tuple[Any, xr.Dataset]:
    """EM over the discrete transition of a ``Blocks``; see ``xr.Dataset.hmm.fit``."""
    progress = overrides.pop("progress", None)
    cfg = _config(config, None, {**overrides, "emit_transition_counts": True,
                                 "persist_causal": False, "emit_state_aggregates": False,
                                 "progress": False})

    def run(step_transition, step_initial):
        return run_job(ds, step_transition, step_initial, cfg, algorithm="smooth",
                       is_missing=is_missing, client=client, batch_size=batch_size,
                       memory_budget=memory_budget, store_acausal=False)

    return fit_discrete(ds, run, transition, initial, max_iter=max_iter, tol=tol,
                        concentration=concentration, stickiness=stickiness,
                        prior_weight=prior_weight, fit_initial=fit_initial,
                        progress=progress)


def smooth_sequences(
    ds: xr.Dataset,
    transition: Any = None,
    initial: Any = None,
    config: Config | None = None,
    smooth: bool = True,
    client: Any = None,
    *,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    store_acausal: bool = True,
    is_missing: Any = None,
    **overrides: Any,
) -> xr.Dataset:
    """Filter (and smooth) every sequence of a ``(sequence, time, state_bins)`` input.

    The same run as ``ds.hmm.smooth`` (or ``ds.hmm.filter`` with
    ``smooth=False``) on a Dataset with a ``sequence`` dim; see
    :mod:`xhmm.frontend.sequences` for lengths and :mod:`xhmm.frontend.driver` for batches.

    Parameters
    ----------
    ds : xr.Dataset
        ``log_likelihood`` with dims ``(sequence, time, state_bins)`` (NumPy
        or dask, chunked on time), optionally ``sequence_length`` (integer,
        dims ``sequence``), ``is_interior``, a ``state`` coordinate, and
        ``transition`` / ``initial`` variables.
    transition : (n, n) array-like or Blocks, optional
        Shared by all sequences. Defaults to ``ds["transition"]``.
    initial : (n,) or (sequence, n) array-like, optional
        Shared or one row per sequence. Defaults to ``ds["initial"]``.
    config : xhmm.Config, optional
    smooth : bool, default True
        False runs the forward filter only.
    client : dask.distributed.Client or False, optional
        Run the batches as tasks on this client's cluster. None (default)
        uses the active client if there is one, else runs here; False always
        runs here.
    batch_size : int, optional
        Sequences per batch. Default: the largest that fits ``memory_budget``
        (see :func:`xhmm.engine.budget.choose_batch_size`), and with a client
        at most ``ceil(S / worker threads)`` so every worker gets work.
    memory_budget : int, optional
        Bytes one batch may use on its device. Default:
        :func:`xhmm.engine.budget.default_memory_budget` (the smallest over
        the workers with a client).
    store_acausal : bool, default True
        Keep the smoothed posteriors (False keeps only summaries and statistics).
    is_missing : (sequence, time) or (time,) bool array-like, optional
        Time steps without data: a flat likelihood (0 in every bin) there,
        adding 0 to the marginal log-likelihood. Defaults to
        ``ds["is_missing"]`` if present. With lengths inferred from all-NaN
        padding, leave the padding rows False (a missing row is a real step).
    **overrides
        Any :class:`xhmm.Config` field.

    Returns
    -------
    xr.Dataset
        ``causal_posterior`` / ``acausal_posterior`` (``sequence, time,
        state_bins``; NaN outside the interior and past each length; lazy
        unless ``lazy_expand=False``), ``marginal_log_likelihood`` and
        ``sequence_length`` (``sequence``), and the requested summaries with
        a leading ``sequence`` dim (``map_state_bin`` is -1 past the end).

    Raises
    ------
    DimensionError
        ``log_likelihood`` without a ``sequence`` dim (use ``ds.hmm.smooth``).
    InputError, DimensionError, TransitionError, InitialError, LikelihoodError
        Bad input, naming the variable (and sequence / time index).
    ResumeError
        With ``resume=True``, when a batch's folder holds a run of other
        settings or inputs (give the same ``batch_size`` as the first run).
    """
    if not has_sequences(ds):
        dims = ds["log_likelihood"].dims if "log_likelihood" in ds.variables else None
        raise DimensionError(
            "log_likelihood must have dims ('sequence', 'time', 'state_bins') for "
            f"smooth_sequences, got {dims}; use ds.hmm.smooth for one recording"
        )
    return run_job(ds, transition, initial, Config.resolve(config, overrides),
                   algorithm="smooth" if smooth else "filter", is_missing=is_missing,
                   client=client, batch_size=batch_size, memory_budget=memory_budget,
                   store_acausal=store_acausal)
