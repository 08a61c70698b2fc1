"""The chunked filter and smoother over a batch of independent sequences.

The host loop of :mod:`xhmm.engine.loop`, for ``B`` sequences at once: each
time chunk of all ``B`` sequences goes to the device as one ``(B, C, K)``
block, the batched kernels of :mod:`xhmm.kernels.batched` run (one
``(B, K) @ (K, K)`` product per step), and each sequence's real rows are
written into preallocated ``(B, T_alloc, K)`` host buffers (RAM or memmap) in
the storage dtype. No time chunks are concatenated.

Padding scheme (ragged lengths)
-------------------------------
All sequences of a batch start at time 0 and share the chunk grid
``[0, C), [C, 2C), ...``; sequence ``b`` has ``lengths[b]`` real rows and is
padded at its end. In each chunk sequence ``b`` has
``n_valid[b] = clip(lengths[b] - start, 0, C)`` real rows; padded rows are
zero on the device and never change a sequence's carry, so a sequence's
results do not depend on the other sequences of its batch. Its last chunk is
the one holding row ``lengths[b] - 1``; that is where its smoother starts
(``has_next[b]`` False). Buffer rows past ``lengths[b]`` are left unwritten
(``log_normalizers`` holds NaN there).

Lengths are either given (rows past a sequence's length are ignored, never
checked, they may hold anything) or inferred while reading: a sequence ends at
its first row that is NaN in every interior bin, and every later row must be
all-NaN too (this is how an outer ``xr.concat`` pads shorter sequences). An all-NaN row
followed by data is an error, not a silent truncation.

Memory budget
-------------
Per batch about six ``(B, C, K)`` arrays are alive at once (the log-likelihood
block read on the host, its shifted copy on the device, filtered rows,
predictions and smoothed rows on the device, one host copy of an output) plus
the transition matrix twice (host and device). :func:`choose_batch_size` picks
the largest ``B`` with ``itemsize * (2 K^2 + 6 B C K)`` within a bytes budget;
:func:`default_memory_budget` is 80 % of the free memory of an accelerator, or
:data:`HOST_MEMORY_BUDGET` on CPU.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from ..config import Config
from ..errors import LikelihoodError, NumericalError, NumericalWarning
from ..kernels.batched import backward_batch, forward_batch, summarize_batch
from .loop import _UNDERFLOW_LOG, _precision
from .progress import progress_bar, progress_enabled
from .reader import bad_row_error
from .storage import _alloc_out, prepare_memmap_dir, sync_rows, write_rows

__all__ = [
    "BatchResult",
    "BatchReader",
    "BatchChunk",
    "run_batch",
    "choose_batch_size",
    "default_memory_budget",
    "HOST_MEMORY_BUDGET",
]

#: Batch memory budget in bytes when the device is the CPU (host RAM).
HOST_MEMORY_BUDGET = 2 * 1024**3
#: ``(B, C, K)`` arrays alive at once per batch (see the module docstring).
_BLOCKS_PER_BATCH = 6


@dataclass
class BatchChunk:
    """One chunk of log-likelihood rows of every sequence of a batch.

    Attributes
    ----------
    index : int
        Chunk number.
    start, stop : int
        Time rows covered by the chunk grid (``stop - start <= C``).
    log_lik : (B, C, K) ndarray
        Interior-bin log-likelihood minus each row's maximum, compute dtype;
        rows at or past ``n_valid[b]`` are zero.
    shift : (B, C) float64 ndarray
        The subtracted row maxima (0 on padded rows).
    n_valid : (B,) int32 ndarray
        Real rows of each sequence in this chunk.
    """

    index: int
    start: int
    stop: int
    log_lik: np.ndarray
    shift: np.ndarray
    n_valid: np.ndarray


class BatchReader:
    """Pull fixed-size time chunks of ``B`` sequences out of a ``(B, T, N)`` array.

    Parameters
    ----------
    log_likelihood : (B, T, N) array-like
        NumPy array, ``np.memmap`` or dask array; only the rows of the
        requested chunk are read (dask computes just them).
    columns : (K,) int ndarray or None
        Interior bins; None means all N.
    chunk_size : int
    dtype : dtype
        Compute dtype of the returned rows.
    lengths : (B,) int array-like, optional
        Real rows of each sequence. None infers them from trailing all-NaN
        rows while chunks are read in order (see the module docstring).
    sequence_ids : (B,) array-like, optional
        Labels of the sequences in error messages (default ``0 .. B-1``).
    scheduler : str, optional
        dask scheduler used to compute chunks of a dask input (None: the
        current default).
    """

    def __init__(
        self,
        log_likelihood,
        columns: np.ndarray | None,
        chunk_size: int,
        dtype: np.dtype | str,
        lengths=None,
        sequence_ids=None,
        scheduler: str | None = None,
    ) -> None:
        self.source = log_likelihood
        self.n_seq, self.n_time, n_total = (int(n) for n in log_likelihood.shape)
        self.columns = (
            None
            if columns is None or len(columns) == n_total
            else np.asarray(columns, dtype=np.int64)
        )
        self.n_bins = n_total if self.columns is None else len(self.columns)
        self.chunk_size = min(int(chunk_size), self.n_time)
        self.dtype = np.dtype(dtype)
        self.scheduler = scheduler
        self.sequence_ids = (
            np.arange(self.n_seq) if sequence_ids is None else np.asarray(sequence_ids)
        )
        self.infer = lengths is None
        self.lengths = (
            np.full(self.n_seq, self.n_time, dtype=np.int64)
            if self.infer
            else np.asarray(lengths, dtype=np.int64)
        )
        self._ended = np.zeros(self.n_seq, dtype=bool)
        self._scanned = 0

    @property
    def n_rows(self) -> int:
        """Time rows read: all T when lengths are inferred, else the longest length."""
        return self.n_time if self.infer else int(self.lengths.max())

    @property
    def n_chunks(self) -> int:
        """Number of chunks covering :attr:`n_rows`."""
        return -(-self.n_rows // self.chunk_size)

    def bounds(self, index: int) -> tuple[int, int]:
        """Time rows ``(start, stop)`` of chunk ``index``."""
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.n_rows)

    def n_valid(self, index: int) -> np.ndarray:
        """Real rows of each sequence in chunk ``index`` (lengths known so far)."""
        start = index * self.chunk_size
        return np.clip(self.lengths - start, 0, self.chunk_size).astype(np.int32)

    def read(self, index: int) -> BatchChunk:
        """Read, validate and shift chunk ``index`` of every sequence.

        With inferred lengths the chunks must first be read in order (the
        forward pass does); re-reading an earlier chunk is fine.

        Raises
        ------
        LikelihoodError
            On NaN or +inf in an interior bin of a real row, a real row whose
            interior bins are all -inf, data after all-NaN padding, or a
            sequence with no data, naming the sequence and time index.
        """
        start, stop = self.bounds(index)
        block = self.source[:, start:stop]
        if hasattr(block, "compute"):
            block = block.compute(scheduler=self.scheduler)
        block = np.asarray(block)
        if self.columns is not None:
            block = block[:, :, self.columns]
        if not np.issubdtype(block.dtype, np.floating):
            block = block.astype(np.float64)
        if self.infer and index >= self._scanned:
            self._find_ends(block, start)
            self._scanned = index + 1
        n_valid = self.n_valid(index)
        n_rows = stop - start
        valid = np.arange(n_rows)[None, :] < n_valid[:, None]
        shift = np.where(valid, block.max(axis=2), 0.0)
        bad = ~np.isfinite(shift)
        if bad.any():
            b, row = (int(i) for i in np.argwhere(bad)[0])
            self._raise_bad_row(block[b, row], b, start + row)
        padded = np.zeros((self.n_seq, self.chunk_size, self.n_bins), dtype=self.dtype)
        head = padded[:, :n_rows]
        np.subtract(block, shift[:, :, None], out=head, casting="unsafe")
        head[~valid] = 0
        full_shift = np.zeros((self.n_seq, self.chunk_size), dtype=np.float64)
        full_shift[:, :n_rows] = shift
        return BatchChunk(index, start, stop, padded, full_shift, n_valid)

    def _find_ends(self, block: np.ndarray, start: int) -> None:
        """Update the inferred lengths from the all-NaN rows of a new chunk."""
        all_nan = np.isnan(block).all(axis=2)
        for b in np.flatnonzero(~self._ended & all_nan.any(axis=1)):
            self.lengths[b] = start + int(np.argmax(all_nan[b]))
            self._ended[b] = True
        if (self.lengths == 0).any():
            b = int(np.argmax(self.lengths == 0))
            raise LikelihoodError(
                f"sequence {self._label(b)} has no data: log_likelihood is NaN in every "
                "interior bin from time index 0 (an all-NaN row marks the padding "
                "after a sequence's end)"
            )
        rows = start + np.arange(block.shape[1])
        stray = (rows[None, :] >= self.lengths[:, None]) & ~all_nan
        if stray.any():
            b, row = (int(i) for i in np.argwhere(stray)[0])
            raise LikelihoodError(
                f"sequence {self._label(b)}: log_likelihood has values at time index "
                f"{start + row} after an all-NaN row at time index {self.lengths[b]}; "
                "all-NaN rows are only allowed as padding at the end of a sequence "
                "(give a 'sequence_length' variable, or use -inf for impossible bins)"
            )

    def _raise_bad_row(self, values: np.ndarray, b: int, t: int) -> None:
        raise bad_row_error(
            values, f"sequence {self._label(b)}, time index {t}", self.columns,
            "use -inf for impossible bins, mark unused bins with is_interior, and pad "
            "shorter sequences with all-NaN rows or give 'sequence_length'",
        )

    def _label(self, b: int):
        return self.sequence_ids[b].item()


@dataclass
class BatchResult:
    """What one batch run produced (interior bins only).

    Attributes
    ----------
    lengths : (B,) int64 ndarray
        Real rows of each sequence (given or inferred).
    causal : (B, T_alloc, K) ndarray or None
        Filtered posteriors in the storage dtype; rows past a sequence's
        length are unwritten. None when not persisted.
    acausal : (B, T_alloc, K) ndarray or None
        Smoothed posteriors (None for a filter run).
    log_normalizers : (B, T_alloc) float64 ndarray
        Per-step log p(y_t | y_<t); NaN past each length.
    marginal_log_likelihood : (B,) float64 ndarray
        ``math.fsum`` of each sequence's log normalisers.
    summaries : dict of str to ndarray
        ``causal_state_probabilities`` / ``acausal_state_probabilities``
        (B, T_alloc, S), ``map_index`` and ``entropy`` (B, T_alloc), as in
        :class:`xhmm.engine.loop.EngineResult`.
    memmap_dir : Path or None
    """

    lengths: np.ndarray
    causal: np.ndarray | None
    acausal: np.ndarray | None
    log_normalizers: np.ndarray
    marginal_log_likelihood: np.ndarray
    summaries: dict[str, np.ndarray] = field(default_factory=dict)
    memmap_dir: Path | None = None


class _BatchRun:
    """State of one batch run (buffers, device constants, flags)."""

    def __init__(self, reader: BatchReader, transition, initial, config: Config,
                 smooth: bool, state_onehot) -> None:
        self.reader = reader
        self.config = config
        self.smooth = smooth
        self.compute = np.dtype(config.compute_dtype)
        B, K = reader.n_seq, reader.n_bins
        T = reader.n_rows
        self.transition = jax.device_put(np.asarray(transition, dtype=self.compute))
        initial = np.broadcast_to(np.asarray(initial, dtype=self.compute), (B, K))
        self.initial = jax.device_put(np.ascontiguousarray(initial))
        self.want_states = state_onehot is not None and config.emit_state_aggregates
        n_states = 0 if state_onehot is None else state_onehot.shape[1]
        self.onehot = jax.device_put(
            np.zeros((K, 0), self.compute) if state_onehot is None
            else np.asarray(state_onehot, dtype=self.compute)
        )
        self.memmap_dir = None
        if config.use_memmap:
            folder = config.memmap_dir or tempfile.mkdtemp(prefix="xhmm-")
            self.memmap_dir = prepare_memmap_dir(folder, overwrite=config.overwrite)
        alloc = self._alloc
        storage = config.storage_dtype
        self.causal = (
            alloc((B, T, K), storage, "causal_posterior") if config.persist_causal else None
        )
        self.acausal = alloc((B, T, K), storage, "acausal_posterior") if smooth else None
        self.log_norm = alloc((B, T), np.float64, "log_normalizer")
        self.checkpoints = alloc((reader.n_chunks, B, K), self.compute, "checkpoints")
        self.summaries: dict[str, np.ndarray] = {}
        if self.want_states:
            kinds = ("causal", "acausal") if smooth else ("causal",)
            for kind in kinds:
                name = f"{kind}_state_probabilities"
                self.summaries[name] = alloc((B, T, n_states), np.float32, name)
        if config.emit_map:
            self.summaries["map_index"] = alloc((B, T), np.int32, "map_index")
        if config.emit_entropy:
            self.summaries["entropy"] = alloc((B, T), np.float32, "entropy")
        self.filtered_exact = self.causal is not None and np.dtype(storage) == self.compute
        self.progress = progress_enabled(config.progress)
        self.warned = False

    def _alloc(self, shape, dtype, name):
        return _alloc_out(shape, dtype, name, self.memmap_dir)

    # -- forward -----------------------------------------------------------
    def forward(self) -> None:
        reader = self.reader
        prev = jax.device_put(np.zeros((reader.n_seq, reader.n_bins), self.compute))
        final = not self.smooth
        desc = f"xhmm forward ({reader.n_seq} sequences)"
        with progress_bar(self.progress, reader.n_rows, desc) as bar:
            chunk = reader.read(0)
            for index in range(reader.n_chunks):
                self.checkpoints[index] = np.asarray(prev)
                out = forward_batch(prev, index == 0, chunk.log_lik, chunk.n_valid,
                                    self.transition, self.initial)
                if index + 1 < reader.n_chunks:
                    next_chunk = reader.read(index + 1)  # overlaps device work
                filtered, log_norm, prev = jax.block_until_ready(out)
                self._check_forward(chunk, np.asarray(log_norm))
                if self.causal is not None:
                    self._write(self.causal, chunk.start, np.asarray(filtered), chunk.n_valid)
                self._summarize(filtered, chunk.start, chunk.n_valid, "causal", final)
                del filtered, log_norm, out
                self._sync(chunk.start, chunk.n_valid)
                bar.update(chunk.stop - chunk.start)
                if index + 1 < reader.n_chunks:
                    chunk = next_chunk
        del prev

    def _check_forward(self, chunk: BatchChunk, log_norm: np.ndarray) -> None:
        n_rows = chunk.stop - chunk.start
        values = chunk.shift[:, :n_rows] + log_norm[:, :n_rows].astype(np.float64)
        valid = np.arange(n_rows)[None, :] < chunk.n_valid[:, None]
        bad = valid & ~np.isfinite(values)
        if bad.any():
            b, row = (int(i) for i in np.argwhere(bad)[0])
            where = f"sequence {self.reader._label(b)}, time index {chunk.start + row}"
            if self.compute == np.float32:
                raise NumericalError(
                    f"no state bin has non-zero probability at {where}: the likelihood "
                    "is zero wherever the prediction is non-zero, or float32 "
                    "underflowed; retry with compute_dtype='float64'"
                )
            raise LikelihoodError(
                f"no state bin is possible at {where}: the likelihood is zero (-inf) "
                "wherever the model's prediction is non-zero"
            )
        for b, n in enumerate(chunk.n_valid):
            self.log_norm[b, chunk.start:chunk.start + n] = values[b, :n]
        surprise = valid & (log_norm[:, :n_rows] < _UNDERFLOW_LOG[self.compute.name])
        if surprise.any() and not self.warned:
            self.warned = True
            b, row = (int(i) for i in np.argwhere(surprise)[0])
            warnings.warn(
                f"at sequence {self.reader._label(b)}, time index {chunk.start + row} "
                "the model gave the observed likelihood a prediction of about "
                f"exp({float(log_norm[b, row]):.0f}), near the {self.compute.name} "
                "underflow limit: posteriors may have lost precision; use "
                "compute_dtype='float64' to be sure",
                NumericalWarning, stacklevel=4,
            )

    # -- backward ----------------------------------------------------------
    def backward(self) -> None:
        reader = self.reader
        lengths = reader.lengths
        last_chunk = (lengths - 1) // reader.chunk_size
        n_chunks = int(last_chunk.max()) + 1
        carry = jax.device_put(np.zeros((reader.n_seq, reader.n_bins), self.compute))
        desc = f"xhmm backward ({reader.n_seq} sequences)"
        with progress_bar(self.progress, n_chunks * reader.chunk_size, desc) as bar:
            for index in reversed(range(n_chunks)):
                start = index * reader.chunk_size
                n_valid = reader.n_valid(index)
                filtered = self._filtered(index, n_valid)
                smoothed, carry = jax.block_until_ready(
                    backward_batch(carry, index < last_chunk, filtered, n_valid,
                                   self.transition)
                )
                rows = np.asarray(smoothed)
                self._check_backward(rows, start, n_valid)
                if self.acausal is not None:
                    self._write(self.acausal, start, rows, n_valid)
                self._summarize(smoothed, start, n_valid, "acausal", True)
                del smoothed, filtered, rows
                self._sync(start, n_valid)
                bar.update(reader.chunk_size)
        del carry

    def _check_backward(self, rows: np.ndarray, start: int, n_valid: np.ndarray) -> None:
        valid = np.arange(rows.shape[1])[None, :] < n_valid[:, None]
        bad = valid & ~np.isfinite(rows).all(axis=2)
        if bad.any():
            b, row = (int(i) for i in np.argwhere(bad)[0])
            raise NumericalError(
                f"the smoothed posterior of sequence {self.reader._label(b)} at time "
                f"index {start + row} is not finite ({self.compute.name} underflow); "
                "retry with compute_dtype='float64'"
            )

    def _filtered(self, index: int, n_valid: np.ndarray):
        """Filtered rows of chunk ``index`` on the device, in the compute dtype."""
        reader = self.reader
        start = index * reader.chunk_size
        if self.filtered_exact:
            rows = np.zeros((reader.n_seq, reader.chunk_size, reader.n_bins), self.compute)
            for b, n in enumerate(n_valid):
                rows[b, :n] = self.causal[b, start:start + n]
            return jax.device_put(rows)
        chunk = reader.read(index)
        prev = jax.device_put(self.checkpoints[index])
        filtered, _, _ = forward_batch(prev, index == 0, chunk.log_lik, chunk.n_valid,
                                       self.transition, self.initial)
        return filtered

    # -- output ------------------------------------------------------------
    @staticmethod
    def _write(out: np.ndarray, start: int, rows: np.ndarray, n_valid: np.ndarray) -> None:
        for b, n in enumerate(n_valid):
            if n:
                write_rows(out[b], start, rows[b, :n])

    def _summarize(self, posterior, start: int, n_valid: np.ndarray, kind: str,
                   final: bool) -> None:
        want_final = final and (self.config.emit_map or self.config.emit_entropy)
        if not (self.want_states or want_final):
            return
        argmax, entropy, states = (
            np.asarray(a) for a in summarize_batch(posterior, self.onehot)
        )
        for b, n in enumerate(n_valid):
            rows = slice(start, start + n)
            if self.want_states:
                self.summaries[f"{kind}_state_probabilities"][b, rows] = states[b, :n]
            if final and self.config.emit_map:
                self.summaries["map_index"][b, rows] = argmax[b, :n]
            if final and self.config.emit_entropy:
                self.summaries["entropy"][b, rows] = entropy[b, :n]

    def _sync(self, start: int, n_valid: np.ndarray) -> None:
        """Flush the rows just written (or read back) to disk and drop their pages.

        Memmap buffers only; keeps host memory at about one chunk (see
        :func:`xhmm.engine.storage.sync_rows`).
        """
        if self.memmap_dir is None:
            return
        for buffer in (self.causal, self.acausal, self.log_norm, *self.summaries.values()):
            if buffer is None:
                continue
            n_seq, n_time = buffer.shape[:2]
            rows = buffer.reshape(n_seq * n_time, *buffer.shape[2:])
            for b, n in enumerate(n_valid):
                sync_rows(rows, b * n_time + start, b * n_time + start + n)

    def finish(self) -> BatchResult:
        lengths = self.reader.lengths.copy()
        marginal = np.empty(len(lengths), dtype=np.float64)
        for b, n in enumerate(lengths):
            self.log_norm[b, n:] = np.nan
            marginal[b] = math.fsum(self.log_norm[b, :n])
        if self.memmap_dir is not None:
            for buffer in (self.log_norm, self.checkpoints):
                buffer.flush()
        return BatchResult(
            lengths=lengths,
            causal=self.causal,
            acausal=self.acausal,
            log_normalizers=self.log_norm,
            marginal_log_likelihood=marginal,
            summaries=self.summaries,
            memmap_dir=self.memmap_dir,
        )


def run_batch(
    log_likelihood,
    transition: np.ndarray,
    initial: np.ndarray,
    config: Config,
    *,
    smooth: bool,
    lengths=None,
    columns: np.ndarray | None = None,
    state_onehot: np.ndarray | None = None,
    sequence_ids=None,
    scheduler: str | None = None,
) -> BatchResult:
    """Run the chunked filter (and smoother) over ``B`` sequences at once.

    Parameters
    ----------
    log_likelihood : (B, T, N) NumPy, memmap or dask array
        Sequence on axis 0, time on axis 1; read one chunk of rows of every
        sequence at a time.
    transition : (K, K) ndarray
        Row-stochastic transition over the interior bins, shared by the batch.
    initial : (K,) or (B, K) ndarray
        First-step distribution over the interior bins, shared or per sequence.
    config : Config
        ``chunk_size``, storage and memmap settings, flags; with
        ``use_memmap`` the buffers are ``{config.memmap_dir}/{name}.dat`` of
        shape ``(B, T_alloc, ...)``.
    smooth : bool
        Run the backward pass too.
    lengths : (B,) int array-like, optional
        Real rows of each sequence; None infers them from trailing all-NaN
        rows (see the module docstring).
    columns : (K,) int ndarray, optional
        Interior bins among the N; None means all.
    state_onehot : (K, S) ndarray, optional
        Membership of each interior bin in each discrete state.
    sequence_ids : (B,) array-like, optional
        Labels of the sequences in error messages.
    scheduler : str, optional
        dask scheduler for reading a dask input ("sync" inside a
        dask.distributed task computes the chunks in that task).

    Returns
    -------
    BatchResult
    """
    reader = BatchReader(log_likelihood, columns, config.chunk_size, config.compute_dtype,
                         lengths, sequence_ids, scheduler)
    with _precision(config.compute_dtype):
        run = _BatchRun(reader, transition, initial, config, smooth, state_onehot)
        run.forward()
        if smooth:
            run.backward()
    return run.finish()


def choose_batch_size(
    n_sequences: int,
    n_bins: int,
    chunk_size: int,
    compute_dtype: np.dtype | str,
    memory_budget: int,
) -> int:
    """Largest batch (at most ``n_sequences``, at least 1) within a bytes budget.

    Parameters
    ----------
    n_sequences : int
    n_bins : int
        Interior bins ``K``.
    chunk_size : int
        Rows per chunk ``C``.
    compute_dtype : dtype
    memory_budget : int
        Bytes the batch may use: ``itemsize * (2 K^2 + 6 B C K)`` must fit.

    Returns
    -------
    int
    """
    item = np.dtype(compute_dtype).itemsize
    free = memory_budget - 2 * n_bins * n_bins * item
    per_sequence = _BLOCKS_PER_BATCH * chunk_size * n_bins * item
    return int(max(1, min(n_sequences, free // per_sequence)))


def default_memory_budget() -> int:
    """Bytes a batch may use on this process's first JAX device.

    80 % of an accelerator's free memory (``bytes_limit - bytes_in_use``),
    or :data:`HOST_MEMORY_BUDGET` when the device is the CPU.
    """
    stats = jax.local_devices()[0].memory_stats()
    if stats and "bytes_limit" in stats:
        return int(0.8 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    return HOST_MEMORY_BUDGET
