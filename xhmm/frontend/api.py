"""The public functions: smooth, filter, map_estimate, most_likely_sequence, sample_paths, fit.

Each takes ``data``: a Dataset holding the log-likelihood (and optionally
the model), a log-likelihood DataArray, or a NumPy / dask array, with dims
of any name (``time_dim=``, ``state_dim=``, ``sequence_dim=``, or ``dims=``
for an array) and variables of any name (``log_likelihood="ll"``,
``transition="A"``, ...; or the arrays themselves). A thin adapter
(:mod:`xhmm.frontend.naming`) renames them to the canonical names, the one
driver (:func:`xhmm.frontend.driver.run_job`) runs, and the result gets the
caller's dim names back. ``ds.hmm`` and ``da.hmm`` forward to these
functions with nothing of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..config import Config
from ..errors import ConfigError
from ..names import BINS, SEQUENCE, SEQUENCE_LENGTH, TIME
from ..transitions.covariates import fit_covariates, sequence_row
from ..transitions.fit import fit_discrete
from .driver import run_job
from .naming import ModelArguments, Renaming, canonical_input

__all__ = ["smooth", "filter", "map_estimate", "most_likely_sequence", "sample_paths", "fit"]


def _config(config: Config | None, lazy: bool | None, overrides: dict[str, Any]) -> Config:
    if lazy is not None:
        overrides = {**overrides, "lazy_expand": lazy}
    return Config.resolve(config, overrides)


def _naming(dims: tuple[str, ...] | None, time_dim: str, state_dim: str, sequence_dim: str,
            log_likelihood: str, is_interior: Any, state: Any,
            sequence_length: Any) -> dict[str, Any]:
    """The naming keywords of a public function, by name."""
    return dict(dims=dims, time_dim=time_dim, state_dim=state_dim, sequence_dim=sequence_dim,
                log_likelihood=log_likelihood, is_interior=is_interior, state=state,
                sequence_length=sequence_length)


def _canonical(data: Any, transition: Any, initial: Any, is_missing: Any,
               given: dict[str, Any]) -> tuple[xr.Dataset, ModelArguments, Renaming]:
    """The input with canonical names (:func:`~xhmm.frontend.naming.canonical_input`)."""
    variables = {"log_likelihood": given["log_likelihood"], "transition": transition,
                 "initial": initial, "is_missing": is_missing,
                 "is_interior": given["is_interior"], "state": given["state"],
                 SEQUENCE_LENGTH: given["sequence_length"]}
    return canonical_input(data, dims=given["dims"], time_dim=given["time_dim"],
                           state_dim=given["state_dim"], sequence_dim=given["sequence_dim"],
                           variables=variables)


def _run(data: Any, transition: Any, initial: Any, is_missing: Any, cfg: Config,
         algorithm: str, naming: dict[str, Any], client: Any, batch_size: int | None,
         memory_budget: int | None, store_acausal: bool = True,
         sampling: tuple[Any, Any] | None = None) -> tuple[xr.Dataset, Renaming]:
    """Run ``algorithm``; the result has canonical names, ``Renaming`` gives them back."""
    ds, args, renaming = _canonical(data, transition, initial, is_missing, naming)
    if algorithm == "filter":
        state = ds.coords.get("state")
        cfg.check_filter_output(has_states=state is not None and state.dims == (BINS,))
    res = run_job(ds, args.transition, args.initial, cfg, algorithm=algorithm,
                  is_missing=args.is_missing, client=client, batch_size=batch_size,
                  memory_budget=memory_budget, store_acausal=store_acausal,
                  names=renaming.back, sampling=sampling)
    return res, renaming


def smooth(data: Any, transition: Any = None, initial: Any = None, *,
           is_missing: Any = None,
           dims: tuple[str, ...] | None = None, time_dim: str = TIME,
           state_dim: str = BINS, sequence_dim: str = SEQUENCE,
           log_likelihood: str = "log_likelihood", is_interior: Any = None, state: Any = None,
           sequence_length: Any = None, config: Config | None = None, lazy: bool | None = None,
           client: Any = None, batch_size: int | None = None,
           memory_budget: int | None = None, **overrides: Any) -> xr.Dataset:
    """Forward filter then backward smoother over each recording.

    Parameters
    ----------
    data : xr.Dataset, xr.DataArray or array-like
        A Dataset holding the log-likelihood (``log_likelihood=`` names the
        variable) and optionally ``transition``, ``initial``, ``is_missing``,
        ``is_interior``, ``sequence_length`` and a ``state`` coordinate; or
        the log-likelihood itself as a DataArray (its coordinates are used
        as a Dataset's) or a NumPy / dask array. Dims: time and state bins,
        with an optional leading sequence dim for many recordings.
    transition : (n, n) array-like, xhmm.transitions.Blocks or str, optional
        Row-stochastic (row = from, column = to) over all state bins or over
        the interior bins only; a str names a variable of ``data``.
        Default: the variable ``transition``.
    initial : (n,) or (sequence, n) array-like or str, optional
        Distribution of the first step, before its likelihood. Default: the
        variable ``initial``.
    is_missing : (time,) or (sequence, time) bool array-like or str, optional
        Steps without data: a flat likelihood there, adding 0 to the
        marginal log-likelihood. Default: the variable ``is_missing``, if any.
    config : xhmm.Config, optional
    lazy : bool, optional
        Shorthand (alias) for the Config field ``lazy_expand``.
    client : dask.distributed.Client or False, optional
        Run the batches of sequences as tasks on this client's cluster (None:
        the active client, if any; False: here).
    batch_size : int, optional
        Sequences per device batch (default: the most that fit ``memory_budget``).
    memory_budget : int, optional
        Bytes one batch may use on its device.
    dims : tuple of str, optional
        The dims of an array or DataArray, in order. Default for an array:
        ``(time_dim, state_dim)``, or ``(sequence_dim, time_dim, state_dim)``
        in 3-D.
    time_dim, state_dim, sequence_dim : str
        The names of the time, state-bin and sequence dims (defaults
        ``"time"``, ``"state_bins"``, ``"sequence"``); the results keep them.
    log_likelihood : str, default "log_likelihood"
        The log-likelihood variable of a Dataset.
    is_interior, state, sequence_length : str or array-like, optional
        A variable or coordinate of ``data`` by name, or the array (the
        interior bins, each bin's discrete-state label, each sequence's
        length). Default: the variable or coordinate of that name, if any.
    **overrides
        Any :class:`xhmm.Config` field, e.g. ``chunk_size=2_000``.

    Returns
    -------
    xr.Dataset
        ``causal_posterior`` (unless ``persist_causal=False``),
        ``acausal_posterior``, ``marginal_log_likelihood`` and the requested
        summaries, with the input's coordinates and dim names.

    Raises
    ------
    xhmm.InputError, xhmm.DimensionError
        A variable or dim that is not there (naming it and the keyword to pass).
    xhmm.TransitionError, xhmm.InitialError, xhmm.LikelihoodError
        Bad model or likelihood values.

    Examples
    --------
    >>> import numpy as np, xhmm
    >>> ll = np.log(np.full((4, 3), 1 / 3))
    >>> res = xhmm.smooth(ll, np.full((3, 3), 1 / 3), np.full(3, 1 / 3), progress=False)
    >>> res.acausal_posterior.dims
    ('time', 'state_bins')
    """
    naming = _naming(dims, time_dim, state_dim, sequence_dim, log_likelihood, is_interior,
                     state, sequence_length)
    res, renaming = _run(data, transition, initial, is_missing,
                         _config(config, lazy, overrides), "smooth", naming, client,
                         batch_size, memory_budget)
    return renaming.restore(res)


def filter(data: Any, transition: Any = None, initial: Any = None, *,  # noqa: A001
           is_missing: Any = None,
           dims: tuple[str, ...] | None = None, time_dim: str = TIME,
           state_dim: str = BINS, sequence_dim: str = SEQUENCE,
           log_likelihood: str = "log_likelihood", is_interior: Any = None, state: Any = None,
           sequence_length: Any = None, config: Config | None = None, lazy: bool | None = None,
           client: Any = None, batch_size: int | None = None,
           memory_budget: int | None = None, **overrides: Any) -> xr.Dataset:
    """Forward filter only (the causal posterior); parameters as :func:`smooth`.

    Returns
    -------
    xr.Dataset
        ``causal_posterior`` (unless ``persist_causal=False``),
        ``marginal_log_likelihood`` and the requested summaries.

    Raises
    ------
    xhmm.ConfigError
        With ``persist_causal=False`` and no summary requested (``emit_map``,
        ``emit_entropy``, ``emit_hpd``, ``emit_consistency``, or
        ``emit_state_aggregates`` with a ``state`` coordinate): the run would
        keep nothing.
    """
    naming = _naming(dims, time_dim, state_dim, sequence_dim, log_likelihood, is_interior,
                     state, sequence_length)
    res, renaming = _run(data, transition, initial, is_missing,
                         _config(config, lazy, overrides), "filter", naming, client,
                         batch_size, memory_budget)
    return renaming.restore(res)


def map_estimate(data: Any, transition: Any = None, initial: Any = None, *,
                 is_missing: Any = None,
                 dims: tuple[str, ...] | None = None, time_dim: str = TIME,
                 state_dim: str = BINS, sequence_dim: str = SEQUENCE,
                 log_likelihood: str = "log_likelihood", is_interior: Any = None,
                 state: Any = None, sequence_length: Any = None,
                 config: Config | None = None, client: Any = None,
                 batch_size: int | None = None, memory_budget: int | None = None,
                 **overrides: Any) -> xr.Dataset:
    """Most probable state bin of the smoothed posterior at each step, step by step.

    The per-step marginal argmax ``argmax_k p(state_t = k | y_1..T)``:
    consecutive steps may jump between bins the model forbids; for the one
    most likely *path* use :func:`most_likely_sequence`. Runs the smoother
    keeping no full posterior, so memory stays at one chunk. Parameters as
    :func:`smooth`.

    Returns
    -------
    xr.Dataset
        ``map_state_bin`` (index into the state bins), ``map_state`` when a
        ``state`` coordinate labels the bins, ``map_<coord>`` for each
        numeric coordinate of the bins, ``marginal_log_likelihood``, and the
        other per-step summaries asked for (``emit_entropy``, ``emit_hpd``,
        ``emit_consistency``): the way to have them with no stored posterior.
    """
    naming = _naming(dims, time_dim, state_dim, sequence_dim, log_likelihood, is_interior,
                     state, sequence_length)
    cfg = _config(config, None, {**overrides, "emit_map": True, "persist_causal": False})
    res, renaming = _run(data, transition, initial, is_missing, cfg, "smooth", naming,
                         client, batch_size, memory_budget, store_acausal=False)
    keep = [name for name in res.data_vars
            if name.startswith(("map_", "hpd_", "posterior_consistency_"))
            or name in ("marginal_log_likelihood", SEQUENCE_LENGTH, "entropy")]
    res = res[keep]
    return renaming.restore(res.drop_vars(
        [name for name, c in res.coords.items() if TIME not in c.dims and name not in res.dims]))


def most_likely_sequence(data: Any, transition: Any = None, initial: Any = None, *,
                         is_missing: Any = None,
                         dims: tuple[str, ...] | None = None, time_dim: str = TIME,
                         state_dim: str = BINS, sequence_dim: str = SEQUENCE,
                         log_likelihood: str = "log_likelihood", is_interior: Any = None,
                         state: Any = None, sequence_length: Any = None,
                         config: Config | None = None,
                         client: Any = None, batch_size: int | None = None,
                         memory_budget: int | None = None, **overrides: Any) -> xr.Dataset:
    """The most likely sequence of state bins given all observations (Viterbi).

    ``argmax over paths of p(state_1..T | y_1..T)``, out of core: a forward
    max-product pass keeps the max-message at each chunk boundary, then each
    chunk's back-pointers are recomputed in reverse chunk order. Ties go to
    the lowest interior bin. ``compute_dtype="auto"`` runs float32 and
    recomputes in float64 from the first chunk where float32 may have lost
    the path (attribute ``xhmm_float64_chunks``). Memmap runs
    (``memmap_dir``) resume with ``resume=True``; with a sequence dim each
    batch continues from where it stopped (a batch that never started runs
    then). Parameters as :func:`smooth` (the posterior settings do not apply).

    Returns
    -------
    xr.Dataset
        ``most_likely_state_bin`` (int64 index into the state bins),
        ``most_likely_state`` when a ``state`` coordinate labels the bins,
        ``most_likely_<coord>`` for each numeric coordinate of the bins, and
        ``path_log_probability`` (``log p(path, y_1..T)`` with the likelihood
        shift of ``marginal_log_likelihood``). With a sequence dim every
        variable has it, with -1 / NaN / "" past each sequence's length, and
        ``sequence_length`` is added.

    Raises
    ------
    xhmm.LikelihoodError
        Bad likelihood values, or a step at which every path has
        probability zero (naming the first such step).

    Examples
    --------
    >>> import numpy as np, xhmm
    >>> ll = np.log([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> A = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> res = xhmm.most_likely_sequence(ll, A, [0.5, 0.5], progress=False)
    >>> res.most_likely_state_bin.values.tolist()
    [0, 0, 0]
    """
    naming = _naming(dims, time_dim, state_dim, sequence_dim, log_likelihood, is_interior,
                     state, sequence_length)
    res, renaming = _run(data, transition, initial, is_missing,
                         Config.resolve(config, overrides), "viterbi", naming, client,
                         batch_size, memory_budget)
    return renaming.restore(res)


def sample_paths(data: Any, transition: Any = None, initial: Any = None, *,
                 n_samples: int, seed: int, is_missing: Any = None,
                 dims: tuple[str, ...] | None = None, time_dim: str = TIME,
                 state_dim: str = BINS, sequence_dim: str = SEQUENCE,
                 log_likelihood: str = "log_likelihood", is_interior: Any = None,
                 state: Any = None, sequence_length: Any = None,
                 config: Config | None = None, client: Any = None,
                 batch_size: int | None = None, memory_budget: int | None = None,
                 **overrides: Any) -> xr.Dataset:
    """Paths of state bins drawn from their posterior ``p(state_1..T | y_1..T)``.

    Exact forward filtering, backward sampling, out of core: a forward
    filter keeps the filtered distribution at each chunk boundary, then in
    reverse chunk order each chunk is filtered again from its checkpoint and
    the paths' states are drawn over its rows, last row first: the last step
    from its filtered posterior, each earlier step ``t`` from
    ``filtered_t(i) * A_t(i, j)`` normalised, given the path's state ``j``
    at ``t + 1``. Every draw is an inverse-CDF lookup in float64 with a
    uniform keyed on ``(seed, sequence, time index)``, so a seed gives the
    same paths whatever ``chunk_size``, ``batch_size`` or a resume. Memmap
    runs (``memmap_dir``) keep the paths on disk and resume with
    ``resume=True``. Parameters as :func:`smooth` (the posterior settings
    do not apply), and:

    Parameters
    ----------
    n_samples : int
        Paths drawn per recording (positive).
    seed : int
        From 0 to ``2**63 - 1``.

    Returns
    -------
    xr.Dataset
        ``sampled_state_bin`` (int32 index into the state bins) with dims
        ``(sample, time)``, ``sampled_state`` when a ``state`` coordinate
        labels the bins, ``sampled_<coord>`` for each numeric coordinate of
        the bins, and ``marginal_log_likelihood``; attribute ``xhmm_seed``.
        With a sequence dim every variable has it first, with -1 / NaN / ""
        past each sequence's length, and ``sequence_length`` is added. In a
        memmap run the variables are dask arrays reading the paths' file.

    Raises
    ------
    xhmm.InputError
        ``n_samples`` not a positive int, ``seed`` not an int in range.
    xhmm.LikelihoodError
        Bad likelihood values, or a step where no bin is possible.

    Examples
    --------
    >>> import numpy as np, xhmm
    >>> ll = np.log([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])
    >>> A = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> res = xhmm.sample_paths(ll, A, [0.5, 0.5], n_samples=4, seed=0, progress=False)
    >>> res.sampled_state_bin.dims
    ('sample', 'time')
    """
    naming = _naming(dims, time_dim, state_dim, sequence_dim, log_likelihood, is_interior,
                     state, sequence_length)
    res, renaming = _run(data, transition, initial, is_missing,
                         Config.resolve(config, overrides), "sample_paths", naming, client,
                         batch_size, memory_budget, sampling=(n_samples, seed))
    return renaming.restore(res)


def fit(data: Any, transition: Any = None, initial: Any = None, *,
        max_iter: int = 20, tol: float = 1e-4, concentration: float = 1.0,
        stickiness: Any = 0.0, prior_weight: Any = 0.0, fit_initial: bool = True,
        covariates: Any = None, intercept: bool = True, l2_penalty: float = 0.0,
        is_missing: Any = None,
        dims: tuple[str, ...] | None = None, time_dim: str = TIME,
        state_dim: str = BINS, sequence_dim: str = SEQUENCE,
        log_likelihood: str = "log_likelihood", is_interior: Any = None, state: Any = None,
        sequence_length: Any = None, config: Config | None = None, client: Any = None,
        batch_size: int | None = None, memory_budget: int | None = None,
        **overrides: Any) -> xr.Dataset:
    """Fit the discrete transition of a ``Blocks`` (and ``initial``) by EM.

    One smoother pass per iteration, storing no posterior (memory of about
    one chunk), with exact expected transition counts; the continuous
    blocks stay fixed; sequences are fitted jointly. See
    :mod:`xhmm.transitions.fit` for the update, and
    :mod:`xhmm.transitions.covariates` for the fit with ``covariates``.

    Parameters
    ----------
    data, is_missing, config, client, batch_size, memory_budget
        As for :func:`smooth`.
    dims, time_dim, state_dim, sequence_dim, log_likelihood : optional
        As for :func:`smooth`.
    is_interior, state, sequence_length : optional
        As for :func:`smooth`.
    **overrides
        Config fields of the smoother passes (``progress`` shows the
        iteration bar instead).
    transition : xhmm.transitions.Blocks
        With a static discrete transition (the starting point); a ``state``
        coordinate must label the bins.
    initial : array-like or str
        Initial distribution (the starting point).
    max_iter : int, default 20
    tol : float, default 1e-4
        Relative change of the marginal log-likelihood that stops EM.
    concentration : float, default 1.0
    stickiness : float or (S,) array, default 0.0
    prior_weight : float or (S,) array, default 0.0
        Dirichlet prior of each row, as in non_local_detector (the static
        fit only).
    fit_initial : bool, default True
    covariates : DataArray or array-like, optional
        A design matrix: fit a covariate-dependent (time-varying) discrete
        transition, a multinomial logistic regression per from-state. Dims
        ``(time_dim, "covariate")``, or ``(sequence_dim, time_dim,
        "covariate")`` for many recordings (a plain array in that order);
        row ``t`` drives the move from step ``t`` to ``t + 1``. NaN only
        past a sequence's end.
    intercept : bool, default True
        With ``covariates``: add a constant column ``"intercept"`` (do not
        include one yourself; with ``intercept=False`` every column is
        yours, and penalised).
    l2_penalty : float, default 0.0
        With ``covariates``: ``lambda`` of ``-(lambda / 2) ||W||^2`` over
        every coefficient but the intercept's.

    Returns
    -------
    xr.Dataset
        The history per ``iteration`` (``marginal_log_likelihood``,
        ``discrete_transition`` (not with ``covariates``),
        ``transition_counts``), the fitted model's ``initial`` (along the
        state bins) and its transition stored with
        :func:`xhmm.transitions.with_transition`: read it back with
        :func:`xhmm.transitions.stored_transition`, after
        :func:`xhmm.save_results` / :func:`xhmm.open_results` too. With
        ``covariates`` also ``coefficients`` and ``coefficients_se`` (dims
        ``from_state``, ``covariate``, ``to_state``), and the transition's
        discrete part varies along time (and sequence).
    """
    naming = _naming(dims, time_dim, state_dim, sequence_dim, log_likelihood, is_interior,
                     state, sequence_length)
    progress = overrides.pop("progress", None)
    counts = "emit_transition_counts" if covariates is None else "emit_step_transition_counts"
    cfg = _config(config, None, {**overrides, counts: True,
                                 "persist_causal": False, "emit_state_aggregates": False,
                                 "progress": False})
    ds, args, renaming = _canonical(data, transition, initial, is_missing, naming)

    def run(step_transition: Any, step_initial: Any, sequence: int | None = None
            ) -> xr.Dataset:
        part, missing, part_cfg = ds, args.is_missing, cfg
        if sequence is not None:  # one sequence (the covariate fit's own transition)
            part = ds.isel({SEQUENCE: [sequence]})
            missing = sequence_row(missing, sequence)
            if cfg.memmap_dir is not None:
                part_cfg = cfg.replace(memmap_dir=Path(cfg.memmap_dir) / f"sequence_{sequence}")
        return run_job(part, step_transition, step_initial, part_cfg, algorithm="smooth",
                       is_missing=missing, client=client, batch_size=batch_size,
                       memory_budget=memory_budget, store_acausal=False,
                       names=renaming.back)

    start = args.initial if args.initial is not None else ds.get("initial")
    if covariates is None:
        return renaming.restore(fit_discrete(
            ds, run, args.transition, start, max_iter=max_iter, tol=tol,
            concentration=concentration, stickiness=stickiness, prior_weight=prior_weight,
            fit_initial=fit_initial, progress=progress))
    if np.any(np.asarray(prior_weight) != 0):
        raise ConfigError(
            f"prior_weight ({prior_weight!r}) applies to the static fit; with covariates "
            "use concentration and stickiness (pseudo-counts) or l2_penalty"
        )
    return renaming.restore(fit_covariates(
        ds, run, args.transition, start, renaming.dims(covariates), intercept=intercept,
        l2_penalty=l2_penalty, max_iter=max_iter, tol=tol, concentration=concentration,
        stickiness=stickiness, fit_initial=fit_initial, progress=progress))

