"""Many independent sequences: batched on one device, or spread over dask.distributed.

``log_likelihood`` with dims ``(sequence, time, state_bins)`` holds ``S``
independent recordings (epochs, animals, sessions) sharing one model:
``is_interior``, the ``state`` labels and ``transition`` are shared;
``initial`` is shared (``(state_bins,)``) or per sequence
(``(sequence, state_bins)``). For different transition matrices, call
:func:`smooth_sequences` once per group of sequences that share one.

Lengths
-------
Sequences may be shorter than the ``time`` dimension. Their lengths come from
an integer variable ``sequence_length`` (dims ``sequence``) when the Dataset
has one (rows past a length are ignored, they may hold anything);
otherwise they are inferred: a sequence ends at its first row that is NaN in
every interior bin, and every later row must be all-NaN too (this is what
``xr.concat(..., join="outer")`` of shorter sequences with a shared
relative time coordinate produces). In both
cases the results are NaN past each sequence's end and
``sequence_length`` is part of the result.

Execution
---------
Sequences are grouped into batches of ``B`` (longest first when lengths are
given, so a batch pads little); each batch runs the chunked engine of
:mod:`xhmm.engine.batch` (one ``(B, K) @ (K, K)`` product per step). Without a
dask.distributed client the batches run one after another in this process.
With one (passed as ``client=`` or active, see :func:`distributed.get_client`)
each batch is one task on the cluster's workers; each worker runs the engine
on its batch, writing memmap outputs to ``{memmap_dir}/batch-NNNN/`` (which
must then be on a filesystem the workers and this process share) or
returning its arrays (``use_memmap=False``, for small results). dask does all
the scheduling. The results are assembled into one Dataset of lazy posteriors
that read the batch buffers block by block, by path for memmaps, so they can
be computed on the workers too.
"""

from __future__ import annotations

import math
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .config import Config
from .engine.batch import BatchResult, choose_batch_size, default_memory_budget, run_batch
from .engine.progress import progress_bar, progress_enabled
from .engine.storage import _alloc_out, prepare_memmap_dir
from .errors import (
    DimensionError,
    InitialError,
    InputError,
    NotImplementedFeatureError,
    TransitionError,
)
from .inputs import BINS, STATES, TIME, ResolvedInputs, _initial, resolve_inputs
from .kernels.codec import UINT16_NAN
from .lazy import _lazy_masked_posterior, eager_masked_posterior

__all__ = ["smooth_sequences", "SEQUENCE", "SEQUENCE_LENGTH"]

SEQUENCE = "sequence"
SEQUENCE_LENGTH = "sequence_length"


# -- inputs ----------------------------------------------------------------


@dataclass
class _SequenceInputs:
    """Validated inputs of a multi-sequence run.

    Attributes
    ----------
    shared : ResolvedInputs
        What all sequences share (interior, transition, states), resolved on
        the first sequence; its ``initial`` is unused when ``initial`` below
        is per sequence.
    log_likelihood : (S, T, N) NumPy or dask array
    initial : (K,) or (S, K) float64 ndarray
    lengths : (S,) int64 ndarray or None
        None: inferred by the engine from trailing all-NaN rows.
    labels : (S,) ndarray
        The ``sequence`` coordinate (or positions), for messages.
    """

    shared: ResolvedInputs
    log_likelihood: Any
    initial: np.ndarray
    lengths: np.ndarray | None
    labels: np.ndarray

    @property
    def n_sequences(self) -> int:
        return int(self.log_likelihood.shape[0])

    @property
    def n_time(self) -> int:
        return int(self.log_likelihood.shape[1])


def _resolve_sequences(ds: xr.Dataset, transition, initial) -> _SequenceInputs:
    if "log_likelihood" not in ds.variables:
        raise InputError(
            "the Dataset has no variable 'log_likelihood' (dims sequence, time, "
            f"state_bins); found: {', '.join(map(str, ds.data_vars)) or 'no data variables'}"
        )
    ll = ds["log_likelihood"]
    wanted = (SEQUENCE, TIME, BINS)
    if set(ll.dims) != set(wanted):
        raise DimensionError(
            f"log_likelihood must have dims {wanted} for a multi-sequence run, got {ll.dims}"
        )
    if ll.sizes[SEQUENCE] == 0:
        raise DimensionError("log_likelihood has an empty 'sequence' dimension (size 0)")
    for name in ("is_interior", "state"):
        if name in ds.variables and SEQUENCE in ds[name].dims:
            raise DimensionError(
                f"{name} has dims {ds[name].dims}: it is shared by all sequences and "
                "must not have a 'sequence' dim"
            )
    A = _given_or_variable(ds, transition, "transition")
    if A is not None and (_ndim(A) == 3 or SEQUENCE in getattr(A, "dims", ())):
        raise TransitionError(
            f"transition has shape {np.shape(A)}: one matrix per sequence is not "
            "supported (a shared matrix is what batching reads once per step); call "
            "smooth_sequences once per group of sequences that share a transition"
        )
    p0 = _given_or_variable(ds, initial, "initial")
    per_sequence = p0 is not None and (
        SEQUENCE in getattr(p0, "dims", ()) or _ndim(p0) == 2
    )
    labels = _labels(ds, ll.sizes[SEQUENCE])
    template = ds.isel({SEQUENCE: 0}, drop=True)
    if per_sequence:
        rows = _as_rows(p0, ll.sizes[SEQUENCE])
        label = labels[0]
        try:
            shared = resolve_inputs(template, transition, rows[0])
            checked = [shared.initial]
            for label, row in zip(labels[1:], rows[1:]):
                checked.append(_initial(template, row, shared.mask))
        except InitialError as exc:
            raise InitialError(f"initial of sequence {label}: {exc}") from exc
        initial_array = np.stack(checked)
    else:
        shared = resolve_inputs(template, transition, p0)
        initial_array = shared.initial
    ll = ll.transpose(*wanted)
    lengths = _lengths(ds, ll.sizes[TIME], labels)
    return _SequenceInputs(shared, ll.data, initial_array, lengths, labels)


def _given_or_variable(ds: xr.Dataset, value, name: str):
    if value is not None:
        return value
    return ds[name] if name in ds.variables else None


def _ndim(value) -> int:
    return value.ndim if hasattr(value, "ndim") else np.ndim(value)


def _as_rows(value, n_sequences: int) -> np.ndarray:
    if isinstance(value, xr.DataArray):
        if SEQUENCE in value.dims:
            value = value.transpose(SEQUENCE, ...)
        value = value.values
    try:
        rows = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InitialError(f"initial must be a numeric array: {exc}") from exc
    if rows.ndim != 2 or rows.shape[0] != n_sequences:
        raise InitialError(
            f"per-sequence initial has shape {rows.shape}; expected ({n_sequences}, n) "
            "with one row per sequence"
        )
    return rows


def _labels(ds: xr.Dataset, n_sequences: int) -> np.ndarray:
    if SEQUENCE in ds.coords:
        return np.asarray(ds.coords[SEQUENCE].values)
    return np.arange(n_sequences)


def _lengths(ds: xr.Dataset, n_time: int, labels: np.ndarray) -> np.ndarray | None:
    if SEQUENCE_LENGTH not in ds.variables:
        return None
    var = ds[SEQUENCE_LENGTH]
    if var.dims != (SEQUENCE,):
        raise DimensionError(
            f"{SEQUENCE_LENGTH} must have dims ('sequence',), got {var.dims}"
        )
    if not np.issubdtype(var.dtype, np.integer):
        raise InputError(
            f"{SEQUENCE_LENGTH} must be integer (number of real time steps of each "
            f"sequence), got dtype {var.dtype}"
        )
    lengths = np.asarray(var.values, dtype=np.int64)
    bad = (lengths < 1) | (lengths > n_time)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{SEQUENCE_LENGTH} of sequence {labels[i]} is {lengths[i]}; it must be "
            f"between 1 and the size of 'time' ({n_time})"
        )
    return lengths


# -- batches and tasks -----------------------------------------------------


@dataclass(frozen=True)
class _StoredArray:
    """A memmap output by path: small to pickle, opened read-only where used."""

    directory: str
    name: str
    shape: tuple[int, ...]
    dtype: str

    def open(self) -> np.ndarray:
        """The buffer as a read-only ``np.memmap``."""
        return _alloc_out(self.shape, self.dtype, self.name, self.directory, mode="r")


def _portable(buffer, name: str, directory: Path | None):
    """Replace a memmap buffer by its path so it is not pickled as data."""
    if isinstance(buffer, np.memmap):
        return _StoredArray(str(directory), name, tuple(buffer.shape), buffer.dtype.name)
    return buffer


def _load(buffer) -> np.ndarray:
    return buffer.open() if isinstance(buffer, _StoredArray) else buffer


class _SequenceSubset:
    """Lazy ``(B, T, N)`` view of some sequences of a NumPy/memmap array.

    Reading ``[:, start:stop]`` copies just those rows of those sequences.
    """

    def __init__(self, source, indices: np.ndarray) -> None:
        self.source = source
        self.indices = indices
        self.shape = (len(indices), *source.shape[1:])

    def __getitem__(self, key):
        _, rows = key
        return self.source[self.indices, rows]


@dataclass
class _BatchSpec:
    """Everything one batch task needs except the transition matrix.

    ``log_likelihood`` is a ``(B, T, N)`` dask array (computed chunk by
    chunk inside the task) or a :class:`_SequenceSubset` of a NumPy array
    (None in a distributed task, which receives the batch's rows separately).
    """

    number: int
    indices: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray | None
    log_likelihood: Any
    initial: np.ndarray
    columns: np.ndarray
    state_onehot: np.ndarray | None
    config: Config
    smooth: bool
    scheduler: str | None = None


@dataclass
class _BatchOutput:
    """A batch's results with memmaps replaced by :class:`_StoredArray`."""

    indices: np.ndarray
    lengths: np.ndarray
    marginal_log_likelihood: np.ndarray
    causal: Any
    acausal: Any
    summaries: dict[str, Any] = field(default_factory=dict)
    warnings: list[tuple[type[Warning], str]] = field(default_factory=list)


def _run_batch_task(spec: _BatchSpec, transition: np.ndarray,
                    log_likelihood=None) -> _BatchOutput:
    """Run the engine on one batch (in this process or as a dask task).

    ``log_likelihood``, when given, replaces ``spec.log_likelihood`` (a NumPy
    batch scattered to the worker separately). Warnings (e.g.
    :class:`xhmm.NumericalWarning`) are returned, to be issued again where
    the results are assembled: a worker's warnings would otherwise stay in
    its log.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result: BatchResult = run_batch(
            spec.log_likelihood if log_likelihood is None else log_likelihood,
            transition,
            spec.initial,
            spec.config,
            smooth=spec.smooth,
            lengths=spec.lengths,
            columns=spec.columns,
            state_onehot=spec.state_onehot,
            sequence_ids=spec.labels,
            scheduler=spec.scheduler,
        )
    folder = result.memmap_dir
    return _BatchOutput(
        indices=spec.indices,
        lengths=result.lengths,
        marginal_log_likelihood=result.marginal_log_likelihood,
        causal=_portable(result.causal, "causal_posterior", folder),
        acausal=_portable(result.acausal, "acausal_posterior", folder),
        summaries={k: _portable(v, k, folder) for k, v in result.summaries.items()},
        warnings=[(w.category, str(w.message)) for w in caught],
    )


def _batches(inputs: _SequenceInputs, batch_size: int) -> list[np.ndarray]:
    """Sequence indices of each batch: longest first when lengths are known."""
    n = inputs.n_sequences
    order = (
        np.arange(n)
        if inputs.lengths is None
        else np.argsort(-inputs.lengths, kind="stable")
    )
    return [np.sort(order[i:i + batch_size]) for i in range(0, n, batch_size)]


def _batch_data(data, indices: np.ndarray):
    """The log-likelihood of some sequences, lazily: nothing is read here."""
    if hasattr(data, "dask"):
        return data[indices]
    return _SequenceSubset(data, indices)


def _resolve_client(client):
    """``False``: none; None: the active dask.distributed client, if any."""
    if client is False:
        return None
    if client is not None:
        return client
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


def _run_local(specs: list[_BatchSpec], transition: np.ndarray) -> list[_BatchOutput]:
    return [_run_batch_task(spec, transition) for spec in specs]


def _run_distributed(client, specs: list[_BatchSpec], transition: np.ndarray,
                     show_progress: bool) -> list[_BatchOutput]:
    """One task per batch on ``client``'s cluster; outputs in batch order.

    A dask input travels inside the task as its graph and is computed chunk
    by chunk by the task, so dask can rerun the task elsewhere if its worker
    dies. A NumPy input is copied out one batch at a time and sent straight
    to a worker with ``client.scatter`` (that batch is lost with its worker).
    The transition matrix is broadcast to every worker once.
    """
    from distributed import as_completed

    A = client.scatter(transition, broadcast=True, hash=False)
    futures = []
    try:
        for spec in specs:
            args = [spec, A]
            if isinstance(spec.log_likelihood, _SequenceSubset):
                subset = spec.log_likelihood
                args = [replace(spec, log_likelihood=None), A, client.scatter(
                    np.ascontiguousarray(subset.source[subset.indices]), hash=False)]
            futures.append(client.submit(
                _run_batch_task, *args, pure=False,
                key=f"xhmm-batch-{spec.number:04d}-{uuid.uuid4().hex}",
            ))
            del args
        total = sum(len(spec.indices) for spec in specs)
        outputs: dict[str, _BatchOutput] = {}
        with progress_bar(show_progress, total, "xhmm sequences", unit="sequence") as bar:
            for future, output in as_completed(futures, with_results=True):
                outputs[future.key] = output
                bar.update(len(output.indices))
        return [outputs[future.key] for future in futures]
    finally:
        client.cancel([*futures, A])


# -- results ---------------------------------------------------------------


class _PaddedRows:
    """One sequence's ``(n_time, K)`` rows of a batch buffer, padded with NaN.

    Rows past the sequence's length read as NaN (the uint16 NaN code for
    uint16 storage); a stored buffer is opened by path on each read, so dask
    tasks anywhere with access to the files can read it.
    """

    def __init__(self, buffer, row: int, length: int, n_time: int) -> None:
        self.buffer = buffer[row, :length] if isinstance(buffer, np.ndarray) else buffer
        self.row = row
        self.length = length
        self.dtype = np.dtype(buffer.dtype)
        self.shape = (n_time, int(buffer.shape[2]))
        self.ndim = 2

    def __getitem__(self, key) -> np.ndarray:
        rows, columns = key
        start, stop, _ = rows.indices(self.shape[0])
        fill = UINT16_NAN if self.dtype == np.uint16 else np.nan
        out = np.full((stop - start, self.shape[1]), fill, dtype=self.dtype)
        real = max(0, min(stop, self.length) - start)
        if real:
            if isinstance(self.buffer, _StoredArray):
                out[:real] = self.buffer.open()[self.row, start:start + real]
            else:
                out[:real] = self.buffer[start:start + real]
        return out[:, columns]


def _posterior(per_sequence: list[_PaddedRows], shared: ResolvedInputs, config: Config,
               long_name: str) -> xr.DataArray:
    dtype = np.dtype(config.posterior_out_dtype)
    n_total = shared.n_bins
    if config.lazy_expand:
        data = da.stack([
            _lazy_masked_posterior(rows, shared.mask, n_total, config.time_chunks, dtype)
            for rows in per_sequence
        ])
    else:
        data = np.empty((len(per_sequence), per_sequence[0].shape[0], n_total), dtype)
        for s, rows in enumerate(per_sequence):
            data[s] = eager_masked_posterior(
                rows[:, :], shared.mask, n_total, dtype
            )
    return xr.DataArray(
        data, dims=(SEQUENCE, TIME, BINS),
        attrs={"long_name": long_name, "xhmm_storage_dtype": config.storage_dtype},
    )


def _gather_rows(places, name: str, lengths: np.ndarray, n_time: int, fill,
                 dtype) -> np.ndarray:
    """Stack one summary of every sequence into ``(S, n_time, ...)``, filled past lengths."""
    first = places[0][0].summaries[name]
    out = np.full((len(places), n_time, *first.shape[2:]), fill, dtype=dtype)
    for s, (output, row) in enumerate(places):
        n = lengths[s]
        out[s, :n] = _load(output.summaries[name])[row, :n]
    return out


def _map_variables(ds: xr.Dataset, shared: ResolvedInputs, map_index: np.ndarray,
                   valid: np.ndarray) -> dict[str, xr.DataArray]:
    bins = np.where(valid, shared.columns[np.where(valid, map_index, 0)], -1)
    out = {
        "map_state_bin": xr.DataArray(
            bins, dims=(SEQUENCE, TIME),
            attrs={"long_name": "index into state_bins of the most probable bin "
                                "(-1 past the sequence's end)"},
        )
    }
    for name, coord in ds.coords.items():
        if coord.dims != (BINS,) or name in ("is_interior", BINS):
            continue
        if not np.issubdtype(coord.dtype, np.number) or coord.dtype == bool:
            continue
        values = np.asarray(coord.values)
        dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
        mapped = np.where(valid, values[np.maximum(bins, 0)].astype(dtype), np.nan)
        out[f"map_{name}"] = xr.DataArray(mapped, dims=(SEQUENCE, TIME),
                                          attrs=dict(coord.attrs))
    return out


def _assemble(ds: xr.Dataset, inputs: _SequenceInputs, outputs: list[_BatchOutput],
              config: Config, memmap_dir: Path | None) -> xr.Dataset:
    S, T = inputs.n_sequences, inputs.n_time
    places: list[tuple[_BatchOutput, int]] = [None] * S  # type: ignore[list-item]
    lengths = np.zeros(S, dtype=np.int64)
    marginal = np.zeros(S, dtype=np.float64)
    for output in outputs:
        for row, s in enumerate(output.indices):
            places[s] = (output, row)
            lengths[s] = output.lengths[row]
            marginal[s] = output.marginal_log_likelihood[row]
    shared = inputs.shared
    data: dict[str, xr.DataArray] = {}
    for name, long_name in (
        ("causal_posterior", "filtered posterior p(state_t | y_1..t)"),
        ("acausal_posterior", "smoothed posterior p(state_t | y_1..T)"),
    ):
        kind = name.split("_")[0]
        if getattr(outputs[0], kind) is None:
            continue
        rows = [_PaddedRows(getattr(out, kind), row, lengths[s], T)
                for s, (out, row) in enumerate(places)]
        data[name] = _posterior(rows, shared, config, long_name)
    data["marginal_log_likelihood"] = xr.DataArray(
        marginal, dims=(SEQUENCE,), attrs={"long_name": "log p(y_1..T)", "units": "nats"}
    )
    data[SEQUENCE_LENGTH] = xr.DataArray(
        lengths, dims=(SEQUENCE,), attrs={"long_name": "real time steps of each sequence"}
    )
    summaries = outputs[0].summaries
    for kind in ("causal", "acausal"):
        name = f"{kind}_state_probabilities"
        if name in summaries:
            data[name] = xr.DataArray(
                _gather_rows(places, name, lengths, T, np.nan, np.float32),
                dims=(SEQUENCE, TIME, STATES), coords={STATES: shared.state_labels},
                attrs={"long_name": f"{kind} probability of each discrete state"},
            )
    valid = np.arange(T)[None, :] < lengths[:, None]
    if "map_index" in summaries:
        index = _gather_rows(places, "map_index", lengths, T, 0, np.int64)
        data.update(_map_variables(ds, shared, index, valid))
    if "entropy" in summaries:
        data["entropy"] = xr.DataArray(
            _gather_rows(places, "entropy", lengths, T, np.nan, np.float32),
            dims=(SEQUENCE, TIME),
            attrs={"long_name": "posterior entropy over interior bins", "units": "nats"},
        )
    attrs = {"xhmm_config": config.to_json()}
    if memmap_dir is not None:
        attrs["xhmm_memmap_dir"] = str(memmap_dir)
    return xr.Dataset(data, coords=_result_coords(ds), attrs=attrs)


def _result_coords(ds: xr.Dataset) -> xr.Coordinates:
    """Coordinates of ``ds`` along ``sequence``, ``time`` and ``state_bins`` only."""
    keep = {
        name for name, coord in ds.coords.items()
        if set(coord.dims) <= {SEQUENCE, TIME, BINS}
    }
    drop = [name for name in ds.coords if name not in keep]
    return ds.drop_vars(list(ds.data_vars) + drop).coords


# -- entry point -----------------------------------------------------------


def _is_positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


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
    **overrides: Any,
) -> xr.Dataset:
    """Filter (and smooth) every sequence of a ``(sequence, time, state_bins)`` input.

    Parameters
    ----------
    ds : xr.Dataset
        ``log_likelihood`` with dims ``(sequence, time, state_bins)`` (NumPy
        or dask, chunked on time), optionally ``sequence_length`` (integer,
        dims ``sequence``), ``is_interior``, a ``state`` coordinate, and
        ``transition`` / ``initial`` variables.
    transition : (n, n) array-like, optional
        Shared by all sequences; over all ``state_bins`` or the interior
        only. Defaults to ``ds["transition"]``.
    initial : (n,) or (sequence, n) array-like, optional
        Shared or one row per sequence. Defaults to ``ds["initial"]``.
    config : xhmm.Config, optional
        ``chunk_size`` is the time rows per chunk of each sequence.
    smooth : bool, default True
        False runs the forward filter only.
    client : dask.distributed.Client or False, optional
        Run the batches as tasks on this client's cluster. None (default)
        uses the active client if there is one, else runs here; False always
        runs here.
    batch_size : int, optional
        Sequences per batch. Default: the largest that fits ``memory_budget``
        (see :func:`xhmm.engine.batch.choose_batch_size`), and with a client
        at most ``ceil(S / worker threads)`` so every worker gets work.
    memory_budget : int, optional
        Bytes one batch may use on its device. Default:
        :func:`xhmm.engine.batch.default_memory_budget` (the smallest over
        the workers with a client).
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
    InputError, DimensionError, TransitionError, InitialError, LikelihoodError
        Bad input, naming the variable (and sequence / time index).
    NotImplementedFeatureError
        For ``resume=True``.
    """
    cfg = Config.resolve(config, overrides)
    if cfg.resume:
        raise NotImplementedFeatureError(
            "Config.resume is not available for multi-sequence runs; rerun, or run "
            "the unfinished sequences one by one with ds.isel(sequence=i).hmm.smooth"
        )
    for name, value in (("batch_size", batch_size), ("memory_budget", memory_budget)):
        if value is not None and not _is_positive_int(value):
            raise InputError(f"{name} must be a positive int, got {value!r}")
    inputs = _resolve_sequences(ds, transition, initial)
    client = _resolve_client(client)
    n_seq = inputs.n_sequences
    n_bins = len(inputs.shared.columns)
    if batch_size is None:
        if memory_budget is None:
            memory_budget = (
                default_memory_budget() if client is None
                else min(client.run(default_memory_budget).values())
            )
        batch_size = choose_batch_size(n_seq, n_bins, cfg.chunk_size, cfg.compute_dtype,
                                       memory_budget)
        if client is not None:
            slots = max(1, sum(client.nthreads().values()))
            batch_size = min(batch_size, math.ceil(n_seq / slots))
    memmap_dir = None
    if cfg.use_memmap:
        memmap_dir = prepare_memmap_dir(
            cfg.memmap_dir or tempfile.mkdtemp(prefix="xhmm-"), overwrite=cfg.overwrite
        )
    specs = []
    for number, indices in enumerate(_batches(inputs, batch_size)):
        batch_config = cfg
        if memmap_dir is not None:
            # memmap_dir was checked above; a batch's own folder may be
            # replaced (by a task dask reruns after its worker died)
            batch_config = batch_config.replace(
                memmap_dir=str(memmap_dir / f"batch-{number:04d}"), overwrite=True)
        if client is not None:
            batch_config = batch_config.replace(progress=False)
        initial_rows = inputs.initial[indices] if inputs.initial.ndim == 2 else inputs.initial
        specs.append(_BatchSpec(
            number=number,
            indices=indices,
            labels=inputs.labels[indices],
            lengths=None if inputs.lengths is None else inputs.lengths[indices],
            log_likelihood=_batch_data(inputs.log_likelihood, indices),
            initial=initial_rows,
            columns=inputs.shared.columns,
            state_onehot=inputs.shared.state_onehot,
            config=batch_config,
            smooth=smooth,
            scheduler=None if client is None else "sync",
        ))
    if client is None:
        outputs = _run_local(specs, inputs.shared.transition)
    else:
        outputs = _run_distributed(client, specs, inputs.shared.transition,
                                   progress_enabled(cfg.progress))
    for output in outputs:
        for category, message in output.warnings:
            warnings.warn(message, category, stacklevel=2)
    return _assemble(ds, inputs, outputs, cfg, memmap_dir)
