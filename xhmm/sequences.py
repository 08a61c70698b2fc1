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
:mod:`xhmm.engine.loop` (one ``(B, K) @ (K, K)`` product per step). Without a
dask.distributed client the batches run one after another in this process.
With one (passed as ``client=`` or active, see :func:`distributed.get_client`)
each batch is one task on the cluster's workers; each worker runs the engine
on its batch, writing memmap outputs to ``{memmap_dir}/batch-NNNN/`` (which
must then be on a filesystem the workers and this process share; with a
client, lazy results always use memmaps, in a temporary folder when
``memmap_dir`` is not given, so no posterior travels inside a dask graph) or
returning its arrays (``use_memmap=False`` with ``lazy_expand=False``). dask does all
the scheduling. The results are assembled into one Dataset of lazy posteriors
that read the batch buffers block by block, by path for memmaps, so they can
be computed on the workers too.
"""

from __future__ import annotations

import math
import sys
import tempfile
import uuid
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .config import Config
from .engine.budget import choose_batch_size, default_memory_budget
from .engine.chunking import resolve_chunk_size
from .engine.loop import run_engine
from .engine.progress import progress_bar, progress_enabled
from .engine.manifest import MANIFEST
from .engine.storage import prepare_memmap_dir
from .errors import (
    DimensionError,
    InitialError,
    InputError,
    TransitionError,
)
from .inputs import ResolvedInputs, check_initial, resolve_inputs
from .missing import MISSING, flat_where_missing, resolve_is_missing
from .names import BINS, SEQUENCE, SEQUENCE_LENGTH, TIME
from .runs import run_metadata
from .results import BinLayout, Part, build_result, part_of

__all__ = [
    "smooth_sequences",
    "active_client",
    "SequenceInputs",
    "resolve_sequences",
    "sequence_batches",
    "batch_data",
    "batch_folder",
    "batch_config",
    "SEQUENCE",
    "SEQUENCE_LENGTH",
]


# -- inputs ----------------------------------------------------------------


@dataclass
class SequenceInputs:
    """Validated inputs of a multi-sequence run.

    Attributes
    ----------
    shared : ResolvedInputs
        What all sequences share (interior, transition, states), resolved on
        the first sequence; its ``initial`` is unused when ``initial`` below
        is per sequence.
    log_likelihood : (S, T, N) NumPy or dask array, or array-like
        Rows of missing steps (``is_missing``) read as 0.
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


def resolve_sequences(ds: xr.Dataset, transition, initial,
                      is_missing=None) -> SequenceInputs:
    """Find and check the inputs of a ``(sequence, time, state_bins)`` run.

    ``is_missing`` (or ``ds["is_missing"]``) marks steps read as a flat
    likelihood.

    Raises
    ------
    InputError, DimensionError, TransitionError, InitialError
        Naming the variable (and, for a per-sequence ``initial``, the sequence).
    """
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
    missing = resolve_is_missing(ds, is_missing, ll.sizes[TIME], ll.sizes[SEQUENCE])
    template = ds.isel({SEQUENCE: 0}, drop=True).drop_vars(MISSING, errors="ignore")
    if per_sequence:
        rows = _as_rows(p0, ll.sizes[SEQUENCE])
        label = labels[0]
        try:
            shared = resolve_inputs(template, transition, rows[0])
            checked = [shared.initial]
            for label, row in zip(labels[1:], rows[1:]):
                checked.append(check_initial(template, row, shared.mask))
        except InitialError as exc:
            raise InitialError(f"initial of sequence {label}: {exc}") from exc
        initial_array = np.stack(checked)
    else:
        shared = resolve_inputs(template, transition, p0)
        initial_array = shared.initial
    ll = ll.transpose(*wanted)
    lengths = _lengths(ds, ll.sizes[TIME], labels)
    return SequenceInputs(shared, flat_where_missing(ll.data, missing), initial_array,
                          lengths, labels)


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


class _SequenceSubset:
    """Lazy ``(B, T, N)`` view of some sequences of a NumPy/memmap array.

    Reading ``[:, start:stop]`` copies just those rows of those sequences.
    """

    def __init__(self, source, indices: np.ndarray) -> None:
        self.source = source
        self.indices = indices
        self.shape = (len(indices), *source.shape[1:])
        self.dtype = source.dtype

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
    metadata: dict
    store_acausal: bool = True
    scheduler: str | None = None


def _run_batch_task(spec: _BatchSpec, transition,
                    log_likelihood=None) -> tuple[Part, list[tuple[type[Warning], str]]]:
    """Run the engine on one batch (in this process or as a dask task).

    ``log_likelihood``, when given, replaces ``spec.log_likelihood`` (a NumPy
    batch scattered to the worker separately). Warnings (e.g.
    :class:`xhmm.NumericalWarning`) are returned, to be issued again where
    the results are assembled: a worker's warnings would otherwise stay in
    its log.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_engine(
            spec.log_likelihood if log_likelihood is None else log_likelihood,
            transition,
            spec.initial,
            spec.config,
            smooth=spec.smooth,
            store_acausal=spec.store_acausal,
            lengths=spec.lengths,
            columns=spec.columns,
            state_onehot=spec.state_onehot,
            sequence_ids=spec.labels,
            scheduler=spec.scheduler,
            metadata=spec.metadata,
        )
    return part_of(result, spec.indices), [(w.category, str(w.message)) for w in caught]


def sequence_batches(inputs: SequenceInputs, batch_size: int) -> list[np.ndarray]:
    """Sequence indices of each batch: longest first when lengths are known."""
    n = inputs.n_sequences
    order = (
        np.arange(n)
        if inputs.lengths is None
        else np.argsort(-inputs.lengths, kind="stable")
    )
    return [np.sort(order[i:i + batch_size]) for i in range(0, n, batch_size)]


def batch_folder(cfg: Config) -> Path | None:
    """The folder of a multi-sequence memmap run (None in RAM).

    Resuming, the folder given; otherwise it is prepared (created, or
    emptied with ``overwrite``), a temporary one when none is given. Each
    batch runs in its own sub-folder (:func:`batch_config`).
    """
    if cfg.resume:
        return Path(cfg.memmap_dir)
    if cfg.use_memmap:
        return prepare_memmap_dir(cfg.memmap_dir or tempfile.mkdtemp(prefix="xhmm-"),
                                  overwrite=cfg.overwrite)
    return None


def batch_config(cfg: Config, folder: Path | None, number: int) -> Config:
    """The Config of batch ``number``: its own sub-folder ``batch-NNNN`` of ``folder``.

    The batch's folder may be replaced (by a task dask reruns after its
    worker died). Resuming, each batch continues its own run, or starts the
    one it never began.
    """
    if folder is None:
        return cfg
    own = folder / f"batch-{number:04d}"
    return cfg.replace(memmap_dir=str(own), overwrite=True,
                       resume=cfg.resume and (own / MANIFEST).exists())


def batch_data(data, indices: np.ndarray):
    """The log-likelihood of some sequences, lazily: nothing is read here."""
    if hasattr(data, "dask"):
        return data[indices]
    return _SequenceSubset(data, indices)


def active_client(client):
    """``False``: none; None: the active dask.distributed client, if any."""
    if client is False:
        return None
    if client is not None:
        return client
    distributed = sys.modules.get("distributed")
    if distributed is None:  # not imported: no client can be active
        return None
    try:
        return distributed.get_client()
    except ValueError:
        return None


def _run_local(specs: list[_BatchSpec], transition) -> list[tuple[Part, list]]:
    return [_run_batch_task(spec, transition) for spec in specs]


def _run_distributed(client, specs: list[_BatchSpec], transition,
                     show_progress: bool) -> list[tuple[Part, list]]:
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
        outputs: dict[str, tuple[Part, list]] = {}
        with progress_bar(show_progress, total, "xhmm sequences", unit="sequence") as bar:
            for future, output in as_completed(futures, with_results=True):
                outputs[future.key] = output
                bar.update(len(output[0].indices))
        return [outputs[future.key] for future in futures]
    finally:
        client.cancel([*futures, A])


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
    store_acausal: bool = True,
    is_missing: Any = None,
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
        (see :func:`xhmm.engine.budget.choose_batch_size`), and with a client
        at most ``ceil(S / worker threads)`` so every worker gets work.
    memory_budget : int, optional
        Bytes one batch may use on its device. Default:
        :func:`xhmm.engine.budget.default_memory_budget` (the smallest over
        the workers with a client).
    store_acausal : bool, default True
        Keep the smoothed posteriors (False keeps only summaries and
        statistics, as :meth:`ds.hmm.fit` does).
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
    InputError, DimensionError, TransitionError, InitialError, LikelihoodError
        Bad input, naming the variable (and sequence / time index).
    ResumeError
        With ``resume=True``, when a batch's folder holds a run of other
        settings or inputs (give the same ``batch_size`` as the first run).
    """
    cfg = Config.resolve(config, overrides)
    for name, value in (("batch_size", batch_size), ("memory_budget", memory_budget)):
        if value is not None and not _is_positive_int(value):
            raise InputError(f"{name} must be a positive int, got {value!r}")
    inputs = resolve_sequences(ds, transition, initial, is_missing)
    client = active_client(client)
    if client is not None and cfg.lazy_expand and not cfg.use_memmap:
        # Lazy results reference memmaps by path; RAM buffers would travel
        # inside every graph computed on the cluster.
        cfg = cfg.replace(use_memmap=True)
    n_seq = inputs.n_sequences
    n_bins = len(inputs.shared.columns)
    if batch_size is None:
        if memory_budget is None:
            memory_budget = (
                default_memory_budget() if client is None
                else min(client.run(default_memory_budget).values())
            )
        chunk_size = resolve_chunk_size(cfg.chunk_size, inputs.log_likelihood, n_bins)
        batch_size = choose_batch_size(n_seq, n_bins, chunk_size, cfg.attempt_dtype,
                                       memory_budget)
        if client is not None:
            slots = max(1, sum(client.nthreads().values()))
            batch_size = min(batch_size, math.ceil(n_seq / slots))
    memmap_dir = batch_folder(cfg)
    specs = []
    for number, indices in enumerate(sequence_batches(inputs, batch_size)):
        config_of_batch = batch_config(cfg, memmap_dir, number)
        if client is not None:
            config_of_batch = config_of_batch.replace(progress=False)
        initial_rows = inputs.initial[indices] if inputs.initial.ndim == 2 else inputs.initial
        specs.append(_BatchSpec(
            number=number,
            indices=indices,
            labels=inputs.labels[indices],
            lengths=None if inputs.lengths is None else inputs.lengths[indices],
            log_likelihood=batch_data(inputs.log_likelihood, indices),
            initial=initial_rows,
            columns=inputs.shared.columns,
            state_onehot=inputs.shared.state_onehot,
            config=config_of_batch,
            smooth=smooth,
            store_acausal=store_acausal,
            metadata=run_metadata(inputs.shared, sequences=True),
            scheduler=None if client is None else "sync",
        ))
    if client is None:
        outputs = _run_local(specs, inputs.shared.transition)
    else:
        outputs = _run_distributed(client, specs, inputs.shared.transition,
                                   progress_enabled(cfg.progress))
    for _, caught in outputs:
        for category, message in caught:
            warnings.warn(message, category, stacklevel=2)
    layout = BinLayout(inputs.shared.mask, inputs.shared.state_labels)
    attrs = {} if memmap_dir is None else {"xhmm_memmap_dir": str(memmap_dir)}
    return build_result(ds, layout, [part for part, _ in outputs], cfg,
                        n_time=inputs.n_time, sequences=True, attrs=attrs)
