"""Fit a covariate-dependent discrete transition by EM, out of core.

The discrete transition of each step is a multinomial logistic function of a
design matrix ``X`` (``time x covariate``):

``P(state_{t+1} = s' | state_t = s, x_t) = softmax_s'(x_t . W[s, :, s'])``

Row ``t`` of the design drives the move from step ``t`` to step ``t + 1``,
the convention of a time-varying :class:`~xhmm.transitions.Blocks`
(``discrete[time=t]``) and of non_local_detector 0.6.9 (whose EM pairs
``design_matrix[:-1]`` with the joint of steps ``t, t + 1``); the last row is
not used. One reference to-state per from-state has coefficients 0 (the
from-state itself where staying is allowed, see
:mod:`xhmm.transitions.logistic`); moves that are impossible in the starting
transition stay impossible.

Each EM iteration is one smoother pass per sequence that stores no
posterior and keeps the exact expected move of every step,
``xi_t(s, s') = p(state_t = s, state_{t+1} = s' | all data)``
(``Config.emit_step_transition_counts``: a ``(T, S, S)`` float64 buffer, in
a memmap with ``use_memmap``), and the M-step a weighted multinomial
logistic regression of those moves on the design, by damped Newton
(:class:`~xhmm.transitions.logistic.MoveRegression`), reading the design and
the moves a block of rows at a time. With ``l2_penalty=0``,
``concentration=1`` and ``stickiness=0`` the marginal log-likelihood does
not decrease from one iteration to the next once the model is a member of
the family (from the start when the starting transition is static and
``intercept=True``).

Priors: ``l2_penalty`` (``lambda``) subtracts ``(lambda / 2) ||W||^2`` over
every coefficient but the intercept's; ``concentration`` and ``stickiness``
add the Dirichlet pseudo-counts ``alpha - 1`` of each row (as in the static
fit), spread evenly over all moves. non_local_detector 0.6.9 minimises the
average over its ``n`` steps, ``-(1/n) sum_t (xi_t + (alpha - 1)/n) log p_t +
r ||W[1:]||^2`` (``r = transition_regularization``, 1e-5 by default, not on
its first design column, the intercept; its reference to-state is the last
state): ``n`` times it is ``-Q`` with ``l2_penalty = 2 n r`` and the same
pseudo-counts, but for the reference column the penalty is measured from.

Sequences are fitted jointly (their moves summed in the regression), each
with its own design rows; the engine runs one time-varying transition per
pass, so each sequence is smoothed in a pass of its own.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..engine.progress import progress_bar, progress_enabled
from ..errors import ConfigError, DimensionError, InputError
from ..names import SEQUENCE, TIME
from .blocks import Blocks
from .discrete import resolve_discrete
from .fit import fitted_history, has_converged, state_labels
from .logistic import MoveRegression, reference_states

__all__ = ["COVARIATE", "INTERCEPT", "design_matrix", "covariate_discrete", "fit_covariates",
           "sequence_row"]

#: The dimension of the covariates (columns of the design matrix).
COVARIATE = "covariate"
#: The label of the constant column ``intercept=True`` adds.
INTERCEPT = "intercept"
#: Rows per block of a lazy discrete transition built from NumPy covariates.
DISCRETE_ROWS = 8192


def design_matrix(covariates: Any, ds: xr.Dataset, intercept: bool = True
                  ) -> tuple[xr.DataArray, np.ndarray]:
    """The checked design matrix of ``ds`` (canonical names) and its finite rows.

    Parameters
    ----------
    covariates : DataArray or array-like
        Dims ``(time, covariate)``, or ``(sequence, time, covariate)`` when
        ``ds`` has a sequence dim (a plain array in that order), NumPy or
        dask; a ``covariate`` coordinate labels the columns (else ``x0``,
        ``x1``, ...).
    ds : xr.Dataset
        The input (for the sizes and the time coordinate).
    intercept : bool
        Put a constant column ``intercept`` first.

    Returns
    -------
    design : xr.DataArray
        float64, dims as above, NumPy or dask; rows from each sequence's
        first non-finite row on are set to 0 (they must lie past its end).
    finite_rows : (B,) int ndarray
        Each sequence's rows before its first non-finite one.

    Raises
    ------
    DimensionError
        Missing, extra or wrongly sized dims, an empty covariate dim, or a
        time (or sequence) coordinate other than the log-likelihood's.
    InputError
        Not real-valued; a non-finite value followed by finite rows; a column
        named ``intercept``, or a constant column, with ``intercept=True``.
    """
    sequences = SEQUENCE in ds.dims
    want = (SEQUENCE, TIME, COVARIATE) if sequences else (TIME, COVARIATE)
    if isinstance(covariates, xr.DataArray):
        found = tuple(map(str, covariates.dims))
        if set(found) != set(want):
            raise DimensionError(
                f"covariates has dims {found}; expected {want} (a DataArray's time and "
                "sequence dims named as the log-likelihood's, its columns along "
                f"{COVARIATE!r})"
            )
        array = covariates.transpose(*want)
    else:
        values = covariates if hasattr(covariates, "ndim") else np.asarray(covariates)
        if values.ndim != len(want):
            raise DimensionError(
                f"covariates has {values.ndim} dims; expected {len(want)}: {want}"
            )
        array = xr.DataArray(values, dims=want)
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf":
        raise InputError(f"covariates must be a real-valued array, got dtype {dtype}")
    for dim in want[:-1]:
        if array.sizes[dim] != ds.sizes[dim]:
            raise DimensionError(
                f"covariates has {array.sizes[dim]} entries along {dim!r}; the "
                f"log-likelihood has {ds.sizes[dim]}"
            )
        if dim in array.coords and dim in ds.coords and not np.array_equal(
                array[dim].values, ds[dim].values):
            raise DimensionError(
                f"covariates' {dim} coordinate differs from the log-likelihood's")
    if array.sizes[COVARIATE] == 0:
        raise DimensionError(f"covariates has an empty {COVARIATE!r} dimension (size 0)")
    labels = (array[COVARIATE].values.tolist() if COVARIATE in array.coords
              else [f"x{i}" for i in range(array.sizes[COVARIATE])])
    if intercept and INTERCEPT in labels:
        raise InputError(
            f"covariates has a column named {INTERCEPT!r} and intercept=True adds one; pass "
            "intercept=False to use your own constant column"
        )
    array = array.astype(np.float64).assign_coords({COVARIATE: labels})
    finite_rows = _check_values(array, labels, intercept, sequences)
    if not np.all(finite_rows == array.sizes[TIME]):  # rows past a sequence's end
        steps = xr.DataArray(np.arange(array.sizes[TIME]), dims=TIME)
        array = array.where(steps < xr.DataArray(finite_rows, dims=SEQUENCE), 0.0)
    if intercept:
        ones = xr.ones_like(array.isel({COVARIATE: [0]})).assign_coords({COVARIATE: [INTERCEPT]})
        array = xr.concat([ones, array], dim=COVARIATE)
    return array, finite_rows


def _check_values(array: xr.DataArray, labels: list, intercept: bool, sequences: bool
                  ) -> np.ndarray:
    """Each sequence's rows before its first non-finite one.

    Raises where a non-finite value has finite rows after it (or is in the
    one recording), or on a constant column with ``intercept``.
    """
    data = array.data if sequences else array.data[None]
    lib = da if isinstance(data, da.Array) else np
    finite = lib.isfinite(data)
    masked = lib.where(finite, data, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: not constant
        bad_rows, low, high = dask.compute(~finite.all(axis=-1), lib.nanmin(masked, axis=(0, 1)),
                                           lib.nanmax(masked, axis=(0, 1)))
    n_time = bad_rows.shape[1]
    finite_rows = np.where(bad_rows.any(axis=1), np.argmax(bad_rows, axis=1), n_time)
    for b, first in enumerate(finite_rows):
        if first < n_time and (not sequences or not bad_rows[b, first:].all()):
            row = np.asarray(data[b, first])
            column = labels[int(np.argmax(~np.isfinite(row)))]
            where = (f"sequence index {b}, " if sequences else "") + f"time index {first}"
            raise InputError(
                f"covariates is not finite at {where} (covariate {column!r})"
                + ("; only the rows past a sequence's end may be NaN" if sequences else "")
            )
    if intercept:
        constant = np.flatnonzero(low == high)
        if constant.size:
            raise InputError(
                f"covariates column {labels[constant[0]]!r} is constant ({low[constant[0]]:g}); "
                "with intercept=True it duplicates the intercept: drop it, or pass "
                "intercept=False"
            )
    return finite_rows


def covariate_discrete(coefficients: xr.DataArray, covariates: Any) -> xr.DataArray:
    """The discrete transition of each step from coefficients and covariates.

    ``discrete[..., s, s'] = softmax_s'(x . coefficients[s, :, s'])`` over
    the moves with a coefficient (NaN coefficients: impossible moves, 0).

    Parameters
    ----------
    coefficients : xr.DataArray
        Dims ``(from_state, covariate, to_state)``, as ``fit`` returns them
        (variable ``coefficients``).
    covariates : xr.DataArray or (time, covariate) array-like
        A ``covariate`` dim (or the last axis of an array) holding the
        columns of ``coefficients``: by label where both have a
        ``covariate`` coordinate, else in order. An ``intercept``
        coefficient without its column (by label, or one column short) adds
        the constant one.

    Returns
    -------
    xr.DataArray
        Dims of ``covariates`` but ``covariate``, then ``from_state``,
        ``to_state``; dask-backed (computed a block of rows at a time), e.g.
        ``(time, from_state, to_state)`` for the ``discrete`` of a
        :class:`~xhmm.transitions.Blocks`.

    Raises
    ------
    DimensionError
        Missing dims, or columns that do not match the coefficients'.
    """
    expected = {"from_state", COVARIATE, "to_state"}
    if not isinstance(coefficients, xr.DataArray) or set(coefficients.dims) != expected:
        raise DimensionError(
            "coefficients must be a DataArray with dims ('from_state', 'covariate', "
            "'to_state')"
        )
    if not isinstance(covariates, xr.DataArray):
        values = covariates if hasattr(covariates, "ndim") else np.asarray(covariates)
        covariates = xr.DataArray(values, dims=(TIME, COVARIATE)[2 - values.ndim:])
    if COVARIATE not in covariates.dims:
        raise DimensionError(f"covariates has dims {covariates.dims}; no {COVARIATE!r} dim")
    names = (coefficients[COVARIATE].values.tolist() if COVARIATE in coefficients.coords
             else [])
    labelled = COVARIATE in covariates.coords and bool(names)
    given = covariates[COVARIATE].values.tolist() if labelled else None
    if INTERCEPT in names and (INTERCEPT not in given if labelled else
                               covariates.sizes[COVARIATE] == len(names) - 1):
        at = 0 if labelled else names.index(INTERCEPT)
        ones = xr.ones_like(covariates.isel({COVARIATE: [0]}))
        if labelled:
            ones = ones.assign_coords({COVARIATE: [INTERCEPT]})
        covariates = xr.concat([covariates.isel({COVARIATE: slice(0, at)}), ones,
                                covariates.isel({COVARIATE: slice(at, None)})], dim=COVARIATE)
    if labelled:
        missing = [name for name in names if name not in [INTERCEPT, *given]]
        if missing:
            raise DimensionError(
                f"covariates has no column(s) {missing} of the coefficients' {names}")
        covariates = covariates.sel({COVARIATE: names})
    elif covariates.sizes[COVARIATE] != coefficients.sizes[COVARIATE]:
        raise DimensionError(
            f"covariates has {covariates.sizes[COVARIATE]} column(s); the coefficients have "
            f"{coefficients.sizes[COVARIATE]} ({', '.join(map(str, names))}), in "
            "that order"
        )
    weights = coefficients.transpose("from_state", COVARIATE, "to_state")
    table = np.asarray(weights.values, dtype=np.float64)
    allowed = ~np.isnan(table).any(axis=1)
    covariates = covariates.transpose(..., COVARIATE)
    data = covariates.data
    if isinstance(data, da.Array):
        data = data.rechunk({data.ndim - 1: -1})
    else:
        rows = (1,) * (data.ndim - 2) + (DISCRETE_ROWS,) * (data.ndim > 1) + (-1,)
        data = da.from_array(np.asarray(data, dtype=np.float64), chunks=rows)
    n_states = table.shape[0]
    out = da.map_blocks(_softmax_rows, data, np.nan_to_num(table), allowed,
                        dtype=np.float64, drop_axis=data.ndim - 1,
                        new_axis=[data.ndim - 1, data.ndim],
                        chunks=data.chunks[:-1] + ((n_states,), (n_states,)))
    dims = (*covariates.dims[:-1], "from_state", "to_state")
    coords = {name: coord for name, coord in covariates.coords.items()
              if COVARIATE not in coord.dims}
    coords.update(from_state=weights["from_state"].values, to_state=weights["to_state"].values)
    return xr.DataArray(out, dims=dims, coords=coords)


def _softmax_rows(x: np.ndarray, table: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``softmax(x . table[s])`` over the allowed to-states, for every row of ``x``."""
    logits = np.where(allowed, np.einsum("...p,spa->...sa", x, table), -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def _starting_coefficients(mean: np.ndarray, allowed: np.ndarray, n_cov: int,
                           intercept: bool) -> np.ndarray:
    """Coefficients reproducing a static ``mean`` transition through the intercept, else 0."""
    start = np.zeros((mean.shape[0], n_cov, mean.shape[0]))
    if intercept:
        reference = reference_states(allowed)
        with np.errstate(divide="ignore"):
            logs = np.log(mean)
        start[:, 0, :] = np.where(allowed, logs - logs[np.arange(len(mean)), reference][:, None],
                                  0.0)
    return start


def sequence_row(value: Any, b: int | None) -> Any:
    """Sequence ``b``'s row (kept 2-D) of a per-sequence input: a 2-D array or a
    DataArray with a ``sequence`` dim (``initial``, ``is_missing``); others pass."""
    if b is None or value is None:
        return value
    if isinstance(value, xr.DataArray):
        return value.isel({SEQUENCE: [b]}) if SEQUENCE in value.dims else value
    return np.asarray(value)[b:b + 1] if np.ndim(value) == 2 else value


def fit_covariates(
    ds: xr.Dataset,
    run: Callable[..., xr.Dataset],
    transition: Blocks,
    initial: Any,
    covariates: Any,
    *,
    intercept: bool = True,
    l2_penalty: float = 0.0,
    max_iter: int = 20,
    tol: float = 1e-4,
    concentration: float = 1.0,
    stickiness: float | np.ndarray = 0.0,
    fit_initial: bool = True,
    progress: bool | None = None,
) -> xr.Dataset:
    """EM over a covariate-dependent discrete transition (module docstring).

    Parameters
    ----------
    ds : xr.Dataset
        The input (canonical names; a ``sequence`` dim is fitted jointly).
    run : callable
        ``run(transition, initial, sequence)`` returns a smoother result of
        sequence ``sequence`` (None: the one recording) with
        ``step_transition_counts``, ``transition_counts`` and
        ``initial_posterior`` and no stored posterior.
    transition : Blocks
        The starting model (static or time-varying discrete); its blocks
        are held fixed, its zero moves stay impossible.
    initial : array-like
        Initial distribution (the starting point).
    covariates : DataArray or array-like
        See :func:`design_matrix`.
    intercept : bool
        Add a constant column (not penalised).
    l2_penalty : float
        ``lambda`` of the L2 penalty (see the module docstring).
    max_iter, tol, concentration, stickiness, fit_initial, progress
        As for :func:`xhmm.transitions.fit.fit_discrete`.

    Returns
    -------
    xr.Dataset
        ``marginal_log_likelihood`` and ``transition_counts`` per
        ``iteration`` (the model of each iteration, before its update);
        ``coefficients`` and ``coefficients_se`` (dims ``from_state``,
        ``covariate``, ``to_state``: 0 and NaN in each reference column, NaN
        for impossible moves), ``initial`` and the fitted transition (its
        discrete ``(time, from_state, to_state)``, with a leading
        ``sequence`` dim for sequences) stored by
        :func:`~xhmm.transitions.with_transition`; attribute ``converged``.

    Raises
    ------
    ConfigError
        A bad ``l2_penalty``, ``max_iter``, ``tol`` or prior.
    DimensionError, InputError
        Bad covariates (:func:`design_matrix`), before any smoother pass;
        non-finite covariates within a sequence, after the first.
    """
    labels = state_labels(ds, transition, max_iter, tol, concentration, stickiness)
    if not (isinstance(l2_penalty, (int, float)) and np.isfinite(l2_penalty)
            and l2_penalty >= 0):
        raise ConfigError(f"l2_penalty must be a non-negative number, got {l2_penalty!r}")
    design, finite_rows = design_matrix(covariates, ds, intercept)
    schedule = resolve_discrete(transition.discrete, labels, ds.sizes[TIME])
    allowed = schedule.nonzero
    mean = (schedule.values if not schedule.time_varying
            else np.asarray(schedule.values.mean(axis=0), dtype=np.float64))
    names = design[COVARIATE].values
    n_states = len(labels)
    prior = concentration - 1 + np.diag(np.broadcast_to(np.asarray(stickiness, float), n_states))
    coefficients = _starting_coefficients(mean, allowed, len(names), intercept)
    sequences = list(range(ds.sizes[SEQUENCE])) if SEQUENCE in ds.dims else [None]
    rows = [design if b is None else design.isel({SEQUENCE: b}) for b in sequences]
    models = [transition] * len(sequences)
    mlls, counts_seen, fitted = [], [], None
    converged = False
    with progress_bar(progress_enabled(progress), max_iter, "xhmm fit", unit="iteration") as bar:
        for iteration in range(max_iter):
            results = [run(model, sequence_row(initial, b), b)
                       for model, b in zip(models, sequences)]
            if sequences[0] is not None:
                results = [res.isel({SEQUENCE: 0}) for res in results]
            lengths = [int(res.get("sequence_length", ds.sizes[TIME])) for res in results]
            if iteration == 0:
                _check_lengths(finite_rows, lengths, sequences)
            mlls.append(float(sum(res.marginal_log_likelihood.values for res in results)))
            counts_seen.append(sum(res.transition_counts.sel(from_state=labels,
                                                             to_state=labels).values
                                   for res in results))
            moves = [res.step_transition_counts.sel(from_state=labels, to_state=labels).data
                     for res in results]
            regression = MoveRegression([r.data for r in rows], moves, lengths, allowed,
                                        names != INTERCEPT if intercept else
                                        np.ones(len(names), bool), float(l2_penalty), prior)
            coefficients, errors, _, _ = regression.maximise(coefficients)
            fitted = xr.Dataset(
                {"coefficients": (("from_state", COVARIATE, "to_state"), coefficients),
                 "coefficients_se": (("from_state", COVARIATE, "to_state"), errors)},
                coords={"from_state": labels, COVARIATE: names, "to_state": labels})
            models = [Blocks(covariate_discrete(fitted.coefficients, r), transition.blocks)
                      for r in rows]
            if fit_initial:
                first = [np.nan_to_num(res.initial_posterior.values) for res in results]
                initial = np.mean(first, axis=0)
            bar.update(1)
            converged = has_converged(mlls, tol)
            if converged:
                break
    fitted.coefficients.attrs["long_name"] = (
        "change in log p(to_state) / p(reference) per unit of the covariate; the reference "
        "(0) is the from-state itself where allowed, else the first allowed to-state")
    fitted.coefficients_se.attrs["long_name"] = "standard error (complete-data information)"
    history = xr.Dataset(
        {"marginal_log_likelihood": ("iteration", np.array(mlls)),
         "transition_counts": (("iteration", "from_state", "to_state"), np.array(counts_seen)),
         **fitted.data_vars},
        coords={"iteration": np.arange(len(mlls)), **fitted.coords},
        attrs={"converged": int(converged)},
    )
    discrete = covariate_discrete(fitted.coefficients, design)
    return fitted_history(history, ds, initial, Blocks(discrete, transition.blocks))


def _check_lengths(finite_rows: np.ndarray, lengths: list[int], sequences: list) -> None:
    """Raise where a sequence's covariates stop being finite before its end."""
    for b, (rows, length) in enumerate(zip(finite_rows, lengths)):
        if rows < length:
            where = (f"sequence index {b}, " if sequences[0] is not None else "")
            raise InputError(
                f"covariates is not finite at {where}time index {rows}, within the "
                f"sequence (its length is {length})"
            )
