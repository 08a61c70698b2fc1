"""The one driver: every method runs one or many sequences through here.

``smooth``, ``filter``, ``map_estimate``, ``most_likely_sequence``,
``sample_paths`` and ``fit`` (the public functions of :mod:`xhmm.frontend.api`, which the accessors
are) all call :func:`run_job`. It resolves the inputs (a
single recording is a sequence dim of length 1: the same
:class:`~xhmm.frontend.sequences.SequenceInputs`, ``is_missing`` applied the same
way), picks the batch size, runs each batch as a task (here, one after
another, or on a dask.distributed cluster), and builds the result Dataset.
A batch runs the smoother (:func:`xhmm.engine.loop.run_engine`), the
Viterbi decoder (:func:`xhmm.engine.viterbi.run_viterbi`) or the path
sampler (:func:`xhmm.engine.sampler.run_sampler`) on a ``(B, T, N)`` view of
its sequences.

Memmap runs: a single recording writes its buffers straight into
``memmap_dir`` (``xhmm.open_run`` reopens it); sequences write each batch
into its own sub-folder ``batch-NNNN`` (:func:`batch_config`).

With a client (``client=`` or the active one), each batch is one task: a
dask input travels as its graph and is computed inside the task (so dask
can rerun the task elsewhere if its worker dies), a NumPy input is copied
out one batch at a time and scattered to a worker; the transition is
broadcast once.
"""

from __future__ import annotations

import math
import sys
import uuid
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..config import Config
from ..engine.budget import choose_batch_size, default_memory_budget
from ..engine.chunking import resolve_chunk_size
from ..engine.loop import run_engine
from ..engine.manifest import MANIFEST
from ..engine.progress import progress_bar, progress_enabled
from ..engine.runstate import run_folder
from ..engine.sampler import run_sampler
from ..engine.viterbi import ViterbiResult, run_viterbi
from ..errors import InputError, XHMMError, caller_stacklevel
from ..extras import require
from ..names import SEQUENCE, TIME
from .inputs import resolve_inputs
from .lazy import TemporaryFolder, owned
from .most_likely import viterbi_dataset
from .results import BinLayout, Part, build_result, part_of, run_metadata
from .samples import SamplePart, sample_part, samples_dataset
from .sequences import SequenceInputs, resolve_sequences

__all__ = ["Algorithm", "run_job", "active_client", "has_sequences", "sequence_batches",
           "batch_config"]

#: What a job computes: forward-backward, forward only, the Viterbi path, or
#: posterior path samples.
Algorithm = Literal["smooth", "filter", "viterbi", "sample_paths"]


def has_sequences(ds: xr.Dataset) -> bool:
    """Whether ``ds["log_likelihood"]`` has a ``sequence`` dim."""
    ll = ds.variables.get("log_likelihood")
    return ll is not None and SEQUENCE in ll.dims


def resolve_job_inputs(ds: xr.Dataset, transition, initial, is_missing) -> SequenceInputs:
    """The inputs of a job: those of a ``sequence`` dim, or one recording as ``B = 1``.

    Raises
    ------
    InputError, DimensionError, TransitionError, InitialError
    """
    if has_sequences(ds):
        return resolve_sequences(ds, transition, initial, is_missing)
    inputs = resolve_inputs(ds, transition, initial, is_missing)
    return SequenceInputs(
        shared=inputs,
        log_likelihood=inputs.engine_log_likelihood(),
        initial=inputs.initial,
        lengths=np.array([inputs.log_likelihood.sizes[TIME]], dtype=np.int64),
        labels=np.array([0]),
    )


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
    """Everything one batch task needs except the transition.

    ``log_likelihood`` is a ``(B, T, N)`` dask array (computed chunk by
    chunk inside the task) or a :class:`_SequenceSubset` of a NumPy array
    (None in a distributed task, which receives the batch's rows separately).
    ``labels`` is None for a single recording (messages then name the time
    step alone). ``sampling`` is ``(n_samples, seed)`` of a ``sample_paths``
    job.
    """

    algorithm: str
    number: int
    indices: np.ndarray
    labels: np.ndarray | None
    lengths: np.ndarray | None
    log_likelihood: Any
    initial: np.ndarray
    columns: np.ndarray
    state_onehot: np.ndarray | None
    config: Config
    metadata: dict
    store_acausal: bool = True
    scheduler: str | None = None
    bin_sizes: np.ndarray | None = None
    sampling: tuple[int, int] | None = None


@dataclass
class ViterbiPart:
    """The path of the sequences one Viterbi batch covered."""

    indices: np.ndarray
    result: ViterbiResult


def _run_batch_task(spec: _BatchSpec, transition, log_likelihood=None
                    ) -> tuple[Part | ViterbiPart | SamplePart,
                               list[tuple[type[Warning], str]]]:
    """Run one batch (in this process or as a dask task).

    ``log_likelihood``, when given, replaces ``spec.log_likelihood`` (a NumPy
    batch scattered to the worker separately). Warnings (e.g.
    :class:`xhmm.NumericalWarning`) are returned, to be issued again where
    the results are assembled: a worker's warnings would otherwise stay in
    its log.
    """
    data = spec.log_likelihood if log_likelihood is None else log_likelihood
    common = dict(lengths=spec.lengths, columns=spec.columns, metadata=spec.metadata,
                  sequence_ids=spec.labels, scheduler=spec.scheduler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if spec.algorithm == "viterbi":
            part = ViterbiPart(spec.indices, run_viterbi(data, transition, spec.initial,
                                                         spec.config, **common))
        elif spec.algorithm == "sample_paths":
            n_samples, seed = spec.sampling
            part = sample_part(spec.indices, run_sampler(
                data, transition, spec.initial, spec.config, n_samples=n_samples, seed=seed,
                sequences=spec.indices, **common))
        else:
            part = part_of(run_engine(data, transition, spec.initial, spec.config,
                                      smooth=spec.algorithm == "smooth",
                                      store_acausal=spec.store_acausal,
                                      state_onehot=spec.state_onehot,
                                      bin_sizes=spec.bin_sizes, **common),
                           spec.indices)
    return part, [(w.category, str(w.message)) for w in caught]


def sequence_batches(inputs: SequenceInputs, batch_size: int) -> list[np.ndarray]:
    """Sequence indices of each batch: longest first when lengths are known."""
    n = inputs.n_sequences
    order = (
        np.arange(n)
        if inputs.lengths is None
        else np.argsort(-inputs.lengths, kind="stable")
    )
    return [np.sort(order[i:i + batch_size]) for i in range(0, n, batch_size)]


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


def _batch_data(data, indices: np.ndarray):
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


def _run_local(specs: list[_BatchSpec], transition) -> list[tuple[Any, list]]:
    return [_run_batch_task(spec, transition) for spec in specs]


def _submit(client, spec: _BatchSpec, transition):
    """Submit one batch as a task (a NumPy batch's rows scattered first)."""
    args = [spec, transition]
    if isinstance(spec.log_likelihood, _SequenceSubset):
        subset = spec.log_likelihood
        args = [replace(spec, log_likelihood=None), transition, client.scatter(
            np.ascontiguousarray(subset.source[subset.indices]), hash=False)]
    return client.submit(_run_batch_task, *args, pure=False,
                         key=f"xhmm-batch-{spec.number:04d}-{uuid.uuid4().hex}")


def _run_distributed(client, specs: list[_BatchSpec], transition,
                     show_progress: bool) -> list[tuple[Any, list]]:
    """One task per batch on ``client``'s cluster; outputs in batch order.

    A batch lost with a worker (the worker died running it, or its rows or
    its result were lost with one) is submitted once more; lost again, the
    other batches are cancelled and an ``XHMMError`` names the batch's
    sequences and the cause. A batch's own error (bad input, ...) is raised
    as it is, the other batches cancelled too.
    """
    from concurrent.futures import CancelledError

    distributed = require("distributed", "distributed", "running sequences on a dask cluster")
    KilledWorker, as_completed = distributed.KilledWorker, distributed.as_completed

    A = client.scatter(transition, broadcast=True, hash=False)
    shared = [A]
    futures = {_submit(client, spec, A): spec for spec in specs}
    retried: set[int] = set()
    try:
        outputs: dict[int, tuple[Any, list]] = {}
        # the client's loop: client= need not be the default client
        pending = as_completed(list(futures), loop=client.loop)
        with progress_bar(show_progress, sum(len(s.indices) for s in specs),
                          "xhmm sequences", unit="sequence") as bar:
            for future in pending:
                spec = futures[future]
                try:
                    outputs[spec.number] = future.result()
                except (KilledWorker, CancelledError) as lost:
                    # its worker died (KilledWorker), or its rows or its
                    # result were lost with a worker (cancelled)
                    if spec.number in retried:
                        raise XHMMError(
                            f"batch {spec.number} (sequences {_sequence_names(spec)}) was "
                            "lost twice on the dask.distributed cluster (its worker died "
                            f"or its data were lost): {type(lost).__name__}: {lost}"
                        ) from lost
                    retried.add(spec.number)
                    if A.status != "finished":  # every copy was lost
                        A = client.scatter(transition, broadcast=True, hash=False)
                        shared.append(A)
                    again = _submit(client, spec, A)
                    futures[again] = spec
                    pending.add(again)
                else:
                    bar.update(len(spec.indices))
        return [outputs[spec.number] for spec in specs]
    finally:
        client.cancel([*futures, *shared])


def _sequence_names(spec: _BatchSpec) -> str:
    """The sequences of a batch, as messages name them (a few, then a count)."""
    names = [str(v) for v in (spec.indices if spec.labels is None else spec.labels)]
    return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")


def _is_positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _checked_sampling(n_samples, seed) -> tuple[int, int]:
    """``(n_samples, seed)`` as ints, or an InputError naming the bad one."""
    if not _is_positive_int(n_samples):
        raise InputError(f"n_samples must be a positive int, got {n_samples!r}")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
            and 0 <= seed < 2 ** 63):
        raise InputError(f"seed must be an int from 0 to 2**63 - 1, got {seed!r}")
    return int(n_samples), int(seed)


def _batch_size(cfg: Config, inputs: SequenceInputs, client, batch_size: int | None,
                memory_budget: int | None) -> int:
    """``batch_size`` if given, else the largest that fits the device budget."""
    if batch_size is not None:
        return int(batch_size)
    n_seq = inputs.n_sequences
    if memory_budget is None:
        memory_budget = (
            default_memory_budget() if client is None
            else min(client.run(default_memory_budget).values())
        )
    n_bins = len(inputs.shared.columns)
    chunk_size = resolve_chunk_size(cfg.chunk_size, inputs.log_likelihood, n_bins)
    size = choose_batch_size(n_seq, n_bins, chunk_size,
                             cfg.attempt_dtype, memory_budget)
    if client is not None:
        slots = max(1, sum(client.nthreads().values()))
        size = min(size, math.ceil(n_seq / slots))
    return size


def run_job(
    ds: xr.Dataset,
    transition: Any,
    initial: Any,
    config: Config,
    *,
    algorithm: Algorithm,
    is_missing: Any = None,
    client: Any = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    store_acausal: bool = True,
    names: dict[str, str] | None = None,
    sampling: tuple[int, int] | None = None,
) -> xr.Dataset:
    """Run ``algorithm`` over every sequence of ``ds`` and build its result.

    Parameters
    ----------
    ds : xr.Dataset
        ``log_likelihood`` with dims ``(time, state_bins)`` or ``(sequence,
        time, state_bins)``, and the optional variables of ``ds.hmm.smooth``.
    transition, initial, is_missing : optional
        As for ``ds.hmm.smooth`` (defaults: the Dataset's variables).
    config : Config
    algorithm : {"smooth", "filter", "viterbi", "sample_paths"}
    client : dask.distributed.Client or False, optional
        Run the batches as tasks on this client's cluster. None uses the
        active client if there is one, else runs here; False always runs here.
    batch_size : int, optional
        Sequences per batch (default: the largest that fits
        ``memory_budget``, with a client at most ``ceil(S / worker threads)``).
    memory_budget : int, optional
        Bytes one batch may use on its device.
    store_acausal : bool, default True
        Keep the smoothed posteriors (False keeps only summaries and statistics).
    names : dict, optional
        The caller's names of the canonical dims and coordinates
        (:attr:`xhmm.frontend.naming.Renaming.back`), kept in a memmap run's
        manifest for :func:`xhmm.open_run`.
    sampling : (int, int), optional
        ``(n_samples, seed)`` of ``sample_paths``.

    Returns
    -------
    xr.Dataset
        :func:`xhmm.frontend.results.build_result`'s Dataset (smooth, filter),
        :func:`xhmm.frontend.most_likely.viterbi_dataset`'s (viterbi) or
        :func:`xhmm.frontend.samples.samples_dataset`'s (sample_paths).

    Raises
    ------
    InputError, DimensionError, TransitionError, InitialError, LikelihoodError
        Bad input, naming the variable (and sequence / time index).
    ResumeError
        With ``resume=True``, when a run (or a batch's folder) holds a run of
        other settings or inputs.
    """
    for name, value in (("batch_size", batch_size), ("memory_budget", memory_budget)):
        if value is not None and not _is_positive_int(value):
            raise InputError(f"{name} must be a positive int, got {value!r}")
    if algorithm == "sample_paths":
        sampling = _checked_sampling(*sampling)
    sequences = has_sequences(ds)
    inputs = resolve_job_inputs(ds, transition, initial, is_missing)
    client = active_client(client)
    if client is not None and cfg_needs_memmap(config, algorithm):
        # Lazy results reference memmaps by path; RAM buffers would travel
        # inside every graph computed on the cluster.
        config = config.replace(use_memmap=True)
    size = _batch_size(config, inputs, client, batch_size, memory_budget)
    # One recording writes straight into memmap_dir (locked by its run);
    # sequences one folder a batch, in memmap_dir locked for the whole job.
    with run_folder(config) if sequences else nullcontext(None) as folder:
        return _run_batches(ds, inputs, config, algorithm, sequences, folder, client, size,
                            store_acausal, names or {}, sampling)


def _run_batches(ds: xr.Dataset, inputs: SequenceInputs, config: Config, algorithm: Algorithm,
                 sequences: bool, folder: Path | None, client, size: int,
                 store_acausal: bool, names: dict[str, str],
                 sampling: tuple[int, int] | None) -> xr.Dataset:
    """Run the batches of :func:`run_job` (memmap batches in ``folder``), build the result."""
    shared = inputs.shared
    metadata = run_metadata(shared, sequences=sequences, names=names)
    specs = []
    for number, indices in enumerate(sequence_batches(inputs, size)):
        batch_cfg = batch_config(config, folder, number)
        if client is not None:
            batch_cfg = batch_cfg.replace(progress=False)
        specs.append(_BatchSpec(
            algorithm=algorithm,
            number=number,
            indices=indices,
            labels=inputs.labels[indices] if sequences else None,
            lengths=None if inputs.lengths is None else inputs.lengths[indices],
            log_likelihood=_batch_data(inputs.log_likelihood, indices),
            initial=inputs.initial[indices] if inputs.initial.ndim == 2 else inputs.initial,
            columns=shared.columns,
            state_onehot=shared.state_onehot,
            config=batch_cfg,
            metadata=metadata,
            store_acausal=store_acausal,
            scheduler=None if client is None else "sync",
            bin_sizes=None if shared.bin_sizes is None else shared.bin_sizes.values,
            sampling=sampling,
        ))
    if client is None:
        outputs = _run_local(specs, shared.transition)
    else:
        outputs = _run_distributed(client, specs, shared.transition,
                                   progress_enabled(config.progress))
    for _, caught in outputs:
        for category, message in caught:
            warnings.warn(message, category, stacklevel=caller_stacklevel())
    parts = [part for part, _ in outputs]
    owner = None  # kept to the end: the result is built from the folder's files
    if config.use_memmap and config.memmap_dir is None and (sequences or client is None):
        # A temporary folder made in this process (a worker's own is left).
        owner = TemporaryFolder(str(folder or getattr(parts[0], "result", parts[0]).memmap_dir))
        parts = [_owned_part(part, owner) for part in parts]
    attrs = {} if folder is None else {"xhmm_memmap_dir": str(folder)}
    if algorithm == "viterbi":
        return viterbi_dataset(ds, shared.columns, parts, config, n_sequences=inputs.n_sequences,
                               n_time=inputs.n_time, sequences=sequences, attrs=attrs)
    if algorithm == "sample_paths":
        return samples_dataset(ds, shared.columns, parts, config,
                               n_sequences=inputs.n_sequences, n_time=inputs.n_time,
                               sequences=sequences, seed=sampling[1], attrs=attrs)
    layout = BinLayout(shared.mask, shared.state_labels,
                       None if shared.bin_sizes is None else shared.bin_sizes.attrs)
    return build_result(ds, layout, parts, config, n_time=inputs.n_time,
                        sequences=sequences, algorithm=algorithm, attrs=attrs)


def _owned_part(part: Part | ViterbiPart | SamplePart, owner: TemporaryFolder
                ) -> Part | ViterbiPart | SamplePart:
    """``part`` with memmaps that keep ``owner``'s folder alive (see :class:`TemporaryFolder`).

    A Viterbi path is copied into the result, so nothing keeps the folder.
    """
    if isinstance(part, ViterbiPart):
        return part
    if isinstance(part, SamplePart):
        return part.owned_by(owner)
    return replace(part, causal=owned(part.causal, owner), acausal=owned(part.acausal, owner),
                   summaries={k: owned(v, owner) for k, v in part.summaries.items()})


def cfg_needs_memmap(config: Config, algorithm: str) -> bool:
    """Whether a run on a cluster must keep its outputs in memmap files.

    Lazy posteriors read their buffers by path; a RAM buffer would travel
    inside every graph computed on the cluster. A Viterbi path and sampled
    paths in RAM come back with their task.
    """
    return (algorithm not in ("viterbi", "sample_paths") and config.lazy_expand
            and not config.use_memmap)
