"""Read, check and shift one time chunk of the log-likelihood at a time.

The engine sees every input as ``(B, T, N)``: ``B`` sequences (a single
recording is ``B = 1``), ``T`` time rows and ``N`` bins, of which the
interior ``columns`` are kept.

Ragged lengths
--------------
All sequences start at time 0 and share the chunk grid ``[0, C), [C, 2C),
...``; sequence ``b`` has ``lengths[b]`` real rows. Lengths are either given
(rows past a length are ignored, never checked; they may hold anything) or
inferred while reading: a sequence ends at its first row that is NaN in
every interior bin, and every later row must be all-NaN too (how an outer
``xr.concat`` pads shorter sequences). An all-NaN row followed by data is an
error, not a silent truncation. A single recording has its length given
(``T``): an all-NaN row there is an error naming the time.

Probabilities passed as log-likelihoods
---------------------------------------
When every finite value of the real rows of the first chunk is in [0, 1]
and not all are zero, the input looks like probabilities rather than their
logarithms (a log-likelihood is often all <= 0, rarely all >= 0 and <= 1):
an :class:`xhmm.InputWarning` says so, once per reader.

Dask blocks computed once per pass
----------------------------------
A dask input is computed whole block by block (its blocks along time),
never by engine chunk: a chunk's rows are sliced from the blocks it
overlaps, and the blocks overlapping the last two chunks read stay
computed. So each block is computed at most once per pass whatever the
chunk size, in forward and in reverse chunk order, and reading a chunk
again in another dtype (a float64 recomputation of the chunk just read or
the one before it) computes nothing. Host memory: the blocks overlapping
two chunks. Blocks longer than a chunk and larger than
:data:`BLOCK_CACHE_BYTES` are not kept whole: dask
computes each chunk's rows (a NumPy, Zarr or NetCDF backed block reads
just them; a computed block is computed again per chunk), and the rows of
the last two chunks read are kept instead. :meth:`LikelihoodReader.sample`
(the manifest's fingerprint) keeps the blocks it computed until a chunk
reads them.

Reused chunk buffers
--------------------
A reader made with ``buffers=n`` hands out its chunks' rows in ``n``
host arrays per dtype, in turn, instead of a fresh array per chunk (which
costs a page fault per 4 KiB page at every chunk). They are 64-byte
aligned, so JAX on CPU uses them in place rather than copying them to the
device (measured: a 213 MB chunk passed to a jitted kernel, 0.01 ms in
place against 140 ms copied). The caller's side of that bargain: every
computation given a chunk's rows must be complete before ``n`` more
chunks of the same dtype are read, since the ``n``-th next read overwrites
them.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputWarning, LikelihoodError, ResumeError, XHMMError, caller_stacklevel
from .chunking import resolve_chunk_size

__all__ = ["LikelihoodReader", "Chunk", "BufferRing", "first_true", "run_reader"]

#: Alignment of reused buffers: JAX on CPU aliases host arrays aligned to
#: 64 bytes and copies others.
ALIGNMENT = 64
#: Interior columns forming at most this many contiguous runs are gathered
#: run by run (slice copies) instead of by fancy indexing.
MAX_RUNS = 32
#: Largest dask block (all sequences and bins, input dtype) kept whole when
#: it is longer than a chunk. Computing a block materialises all of it
#: anyway; a larger block backed by a file (e.g. a NetCDF variable opened
#: with ``chunks={}``, one block) is better read chunk by chunk.
BLOCK_CACHE_BYTES = 1024**3
#: Reads whose computed dask blocks (or rows) stay cached: the chunk just
#: read and the one before it (read ahead in the forward pass, then
#: possibly read again in float64).
KEPT_READS = 2


def first_true(mask: np.ndarray) -> tuple[int, int] | None:
    """``(b, row)`` of the first True of a (B, rows) mask, in row-major order; None if none."""
    if not mask.any():
        return None
    b, row = np.argwhere(mask)[0]
    return int(b), int(row)


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data start on an :data:`ALIGNMENT` boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


class BufferRing:
    """Host arrays of one shape, ``size`` per dtype, handed out in turn.

    With ``size = 0`` every call returns a fresh array. Otherwise the
    arrays are aligned (see :func:`_aligned_empty`), so JAX on CPU may use
    them in place: whatever was computed from an array must be complete
    before ``size`` more arrays of its dtype are taken.

    Parameters
    ----------
    shape : tuple of int
    size : int
    """

    def __init__(self, shape: tuple[int, ...], size: int) -> None:
        self.shape = shape
        self.size = size
        self._arrays: dict[str, list[np.ndarray]] = {}
        self._taken: dict[str, int] = {}

    def take(self, dtype: np.dtype | str) -> np.ndarray:
        """The next array of ``dtype`` (uninitialised or holding old rows)."""
        dtype = np.dtype(dtype)
        if self.size == 0:
            return np.empty(self.shape, dtype=dtype)
        arrays = self._arrays.setdefault(dtype.name, [])
        turn = self._taken.get(dtype.name, 0)
        self._taken[dtype.name] = turn + 1
        if len(arrays) < self.size:
            arrays.append(_aligned_empty(self.shape, dtype))
        return arrays[turn % self.size]


@dataclass
class Chunk:
    """One chunk of log-likelihood rows of every sequence, ready for the device.

    Attributes
    ----------
    index : int
        Chunk number.
    start, stop : int
        Time rows covered by the chunk grid (``stop - start <= C``).
    log_lik : (B, C, K) ndarray
        Interior-bin log-likelihood minus each row's maximum, in the compute
        dtype; rows at or past ``n_valid[b]`` are zero. With reused buffers
        (see the module docstring) the ``n``-th next read of the same dtype
        overwrites it.
    shift : (B, C) float64 ndarray
        The subtracted row maxima (0 on padded rows), added back to the log
        normalisers.
    n_valid : (B,) int32 ndarray
        Real rows of each sequence in this chunk.
    """

    index: int
    start: int
    stop: int
    log_lik: np.ndarray
    shift: np.ndarray
    n_valid: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(B, stop - start) bool: the real rows of each sequence."""
        return np.arange(self.stop - self.start)[None, :] < self.n_valid[:, None]

    def unshifted(self, relative: np.ndarray) -> np.ndarray:
        """(B, stop - start) float64: per-row values relative to the shift, plus the shift.

        ``relative`` is a kernel's (B, C) per-row log value (a log
        normaliser or log scale), computed from the shifted rows.
        """
        n_rows = self.stop - self.start
        return self.shift[:, :n_rows] + relative[:, :n_rows].astype(np.float64)


class LikelihoodReader:
    """Pull fixed-size time chunks of ``B`` sequences out of a ``(B, T, N)`` array.

    Parameters
    ----------
    log_likelihood : (B, T, N) array-like
        NumPy array, ``np.memmap``, dask array or any object with ``shape``,
        ``dtype`` and ``[:, start:stop]`` slicing; only the rows of the
        requested chunk are read (dask computes the blocks they overlap, each
        at most once per pass: see the module docstring).
    columns : (K,) int ndarray or None
        Interior bins; None means all N.
    chunk_size : int
        Rows per chunk (clamped to the rows read: padding beyond them is
        wasted memory).
    dtype : dtype
        Compute dtype of the returned rows.
    lengths : (B,) int array-like, optional
        Real rows of each sequence. None infers them from trailing all-NaN
        rows while chunks are read in order (see the module docstring).
    sequence_ids : (B,) array-like, optional
        Labels of the sequences in error messages; None for a single
        recording (messages then name only the time index).
    scheduler : str, optional
        dask scheduler used to compute chunks of a dask input (None: the
        current default).
    buffers : int, default 0
        Chunk buffers reused per dtype (0: a fresh array per chunk), in
        :attr:`buffers`; see the module docstring for what the caller then
        guarantees.
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
        buffers: int = 0,
    ) -> None:
        self.source = log_likelihood
        self.n_seq, self.n_time, n_total = (int(n) for n in log_likelihood.shape)
        self.columns = (
            None
            if columns is None or len(columns) == n_total
            else np.asarray(columns, dtype=np.int64)
        )
        self.n_bins = n_total if self.columns is None else len(self.columns)
        self.dtype = np.dtype(dtype)
        self.scheduler = scheduler
        self.sequence_ids = None if sequence_ids is None else np.asarray(sequence_ids)
        self.infer = lengths is None
        self.lengths = (
            np.full(self.n_seq, self.n_time, dtype=np.int64)
            if self.infer
            else np.asarray(lengths, dtype=np.int64)
        )
        self.chunk_size = min(int(chunk_size), self.n_rows)
        self._runs = _column_runs(self.columns)
        #: The chunks' rows come from here; a caller may take other (B, C, K)
        #: arrays for the device from it, under the same rule.
        self.buffers = BufferRing((self.n_seq, self.chunk_size, self.n_bins), buffers)
        self._ended = np.zeros(self.n_seq, dtype=bool)
        self._scanned = 0
        self._scale_checked = False
        self._lazy = hasattr(log_likelihood, "compute")
        self._edges = self._block_edges() if self._lazy else None
        #: Computed rows of a lazy input by (start, stop): dask blocks (or
        #: chunks' rows when blocks are not kept whole).
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._recent: list[tuple[tuple[int, int], ...]] = []
        self._pinned: set[tuple[int, int]] = set()
        #: CRC-32 of each chunk's input rows by chunk number (a memmap run's
        #: manifest's ``input_crc``): recorded at a chunk's first read,
        #: compared at every later one. None: not kept.
        self.checksums: dict[str, int] | None = None

    def _block_edges(self) -> np.ndarray | None:
        """Row offsets of the dask blocks along time when they are kept whole, else None.

        Blocks are kept whole when none is both longer than a chunk and
        larger than :data:`BLOCK_CACHE_BYTES`.
        """
        chunks = getattr(self.source, "chunks", None)
        if not isinstance(chunks, tuple) or len(chunks) < 2:
            return None
        n_total = int(self.source.shape[2])
        row_bytes = max(1, self.n_seq * n_total * np.dtype(self.source.dtype).itemsize)
        longest = max(self.chunk_size, BLOCK_CACHE_BYTES // row_bytes)
        if max(chunks[1]) > longest:
            return None
        return np.cumsum([0, *chunks[1]])

    def _spans(self, start: int, stop: int) -> tuple[tuple[int, int], ...]:
        """The cached units covering rows ``start:stop``: dask blocks, or the rows themselves."""
        if self._edges is None:
            return ((start, stop),)
        first = int(np.searchsorted(self._edges, start, side="right")) - 1
        last = int(np.searchsorted(self._edges, stop, side="left")) - 1
        return tuple((int(self._edges[i]), int(self._edges[i + 1]))
                     for i in range(first, last + 1))

    def _computed(self, span: tuple[int, int]) -> np.ndarray:
        """(B, rows, N) rows ``span`` of a lazy input, computed once while cached."""
        rows = self._cache.get(span)
        if rows is None:
            rows = np.asarray(self.source[:, span[0]:span[1]].compute(scheduler=self.scheduler))
            self._cache[span] = rows
        return rows

    def _source_rows(self, start: int, stop: int) -> np.ndarray:
        """(B, stop - start, N) rows of the input as NumPy (a view where possible)."""
        if not self._lazy:
            return np.asarray(self.source[:, start:stop])
        spans = self._spans(start, stop)
        rows = self._slice(spans, start, stop)
        self._recent = [spans, *(s for s in self._recent if s != spans)][:KEPT_READS]
        self._pinned.difference_update(spans)
        kept = self._pinned.union(*self._recent)
        for span in [span for span in self._cache if span not in kept]:
            del self._cache[span]
        return rows

    def _slice(self, spans: tuple[tuple[int, int], ...], start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` out of the computed ``spans`` covering them."""
        parts = [self._computed((lo, hi))[:, max(start, lo) - lo:stop - lo] for lo, hi in spans]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def sample(self, start: int, stop: int, keep: bool) -> np.ndarray:
        """(B, stop - start, N) raw rows of the input, outside the chunk reads.

        Parameters
        ----------
        start, stop : int
            Time rows.
        keep : bool
            Keep the dask blocks computed for them until a chunk read uses
            them (a run about to read every chunk: the blocks are computed
            once for both).

        Returns
        -------
        ndarray
        """
        if not self._lazy:
            return np.asarray(self.source[:, start:stop])
        if self._edges is None:
            return np.asarray(self.source[:, start:stop].compute(scheduler=self.scheduler))
        spans = self._spans(start, stop)
        rows = self._slice(spans, start, stop)
        if keep:
            self._pinned.update(spans)
        else:
            kept = self._pinned.union(*self._recent)
            for span in [span for span in spans if span not in kept]:
                del self._cache[span]
        return rows

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

    def last_chunk(self) -> np.ndarray:
        """Index of the chunk holding each sequence's last row."""
        return (self.lengths - 1) // self.chunk_size

    def where(self, b: int, t: int) -> str:
        """``"time index t"``, prefixed by the sequence label in a multi-sequence run."""
        if self.sequence_ids is None:
            return f"time index {t}"
        return f"sequence {self.sequence_ids[b].item()}, time index {t}"

    def first_where(self, chunk: Chunk, mask: np.ndarray) -> str | None:
        """Where the first True of a (B, rows) mask over ``chunk`` is, as :meth:`where` says it.

        None when the mask is all False.
        """
        found = first_true(mask)
        return None if found is None else self.where(found[0], chunk.start + found[1])

    def restore_lengths(self, lengths, ended, scanned: int) -> None:
        """Take back lengths inferred by an earlier (resumed) run."""
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self._ended = np.asarray(ended, dtype=bool)
        self._scanned = int(scanned)

    def inferred_state(self) -> dict:
        """What :meth:`restore_lengths` needs, JSON-serialisable."""
        return {"lengths": self.lengths.tolist(), "ended": self._ended.tolist(),
                "scanned": self._scanned}

    def read(self, index: int, dtype: np.dtype | str | None = None) -> Chunk:
        """Read, validate and shift chunk ``index`` of every sequence.

        With inferred lengths the chunks must first be read in order (the
        forward pass does); re-reading an earlier chunk is fine. ``dtype``
        overrides the compute dtype of the returned rows.

        Raises
        ------
        LikelihoodError
            On NaN or +inf in an interior bin of a real row, a real row whose
            interior bins are all -inf, data after all-NaN padding, or a
            sequence with no data, naming the sequence and time index.
        """
        start, stop = self.bounds(index)
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        padded = self.buffers.take(dtype)
        source = self._source_rows(start, stop)
        self._check_unchanged(index, source)
        block = self._interior_rows(source, padded)
        if self.infer and index >= self._scanned:
            self._find_ends(block, start)
            self._scanned = index + 1
        n_valid = self.n_valid(index)
        n_rows = stop - start
        valid = np.arange(n_rows)[None, :] < n_valid[:, None]
        shift = np.where(valid, block.max(axis=2), 0.0).astype(np.float64)
        found = first_true(~np.isfinite(shift))
        if found is not None:
            b, row = found
            raise self._bad_row(block[b, row], b, start + row)
        if index == 0 and not self._scale_checked:
            self._scale_checked = True
            self._warn_if_probabilities(block, shift, valid)
        out = padded[:, :n_rows]
        if np.can_cast(block.dtype, dtype, "safe"):
            # Both operands are exact in the compute dtype, so one IEEE
            # subtraction there is the exact difference rounded once: the
            # float64 result rounded to float32 is the same number (a
            # float64 difference of float32 operands rounds to float32
            # without double-rounding error: 53 >= 2 * 24 + 2 bits).
            np.subtract(block, shift[:, :, None].astype(dtype), out=out)
        else:  # subtract in float64, round once to the compute dtype
            np.subtract(block, shift[:, :, None], out=out, dtype=np.float64,
                        casting="unsafe")
        out[~valid] = 0
        padded[:, n_rows:] = 0
        full_shift = np.zeros((self.n_seq, self.chunk_size), dtype=np.float64)
        full_shift[:, :n_rows] = shift
        return Chunk(index, start, stop, padded, full_shift, n_valid)

    def _check_unchanged(self, index: int, source: np.ndarray) -> None:
        """Record chunk ``index``'s input rows' CRC-32, or compare it with the recorded one.

        Raises
        ------
        ResumeError
            The rows differ from those the run read before.
        """
        if self.checksums is None:
            return
        value = 0
        for rows in source:  # each sequence's (rows, N) block
            value = zlib.crc32(np.ascontiguousarray(rows), value)
        stored = self.checksums.setdefault(str(index), value)
        if stored != value:
            start, stop = self.bounds(index)
            raise ResumeError(
                f"log_likelihood changed since the run read it: time rows {start}-{stop - 1} "
                f"(chunk {index}) differ from the rows its earlier results were computed "
                "from; restore the input, or start the run again with overwrite=True"
            )

    def _interior_rows(self, block: np.ndarray, into: np.ndarray) -> np.ndarray:
        """(B, rows, K) floating rows of the interior bins of a (B, rows, N) ``block``.

        Gathered into ``into[:, :rows]`` when the input's floats convert
        exactly to its dtype and the interior bins are a few contiguous runs
        (slice copies, no temporary); otherwise a view of the input or a new
        array.
        """
        stop = block.shape[1]
        exact = (np.issubdtype(block.dtype, np.floating)
                 and np.can_cast(block.dtype, into.dtype, "safe"))
        if self.columns is not None:
            if exact and self._runs is not None:
                out = into[:, :stop]
                for first, last, at in self._runs:
                    out[:, :, at:at + last - first] = block[:, :, first:last]
                return out
            block = block[:, :, self.columns]
        if not np.issubdtype(block.dtype, np.floating):
            block = block.astype(np.float64)
        return block

    def read_ahead(self, index: int) -> tuple[Chunk | None, XHMMError | None]:
        """Read chunk ``index`` while the device works on the chunk before it.

        Returns
        -------
        chunk : Chunk or None
            None past the last chunk or when reading failed.
        error : XHMMError or None
            The error reading raised (bad likelihood values), returned so
            that the caller can finish and commit the chunk before it first.
        """
        if index >= self.n_chunks:
            return None, None
        try:
            return self.read(index), None
        except XHMMError as exc:
            return None, exc

    def _warn_if_probabilities(self, block: np.ndarray, shift: np.ndarray,
                               valid: np.ndarray) -> None:
        """Warn when the real rows of ``block`` (chunk 0) look like probabilities.

        The rows are checked already: no NaN or +inf, and ``shift`` holds
        each row's (finite) maximum, so only the minimum over finite values
        remains to be found, and only when the maxima are in (0, 1].
        """
        if not valid.any():
            return
        top = shift[valid].max()
        if not 0 < top <= 1:
            return
        low = block.min(where=valid[:, :, None] & np.isfinite(block), initial=np.inf)
        if low < 0:
            return
        warnings.warn(
            f"every finite value of log_likelihood in time steps 0 to {block.shape[1] - 1} "
            "is between 0 and 1: these look like probabilities; pass np.log(...) of them",
            InputWarning, stacklevel=caller_stacklevel(),
        )

    def _find_ends(self, block: np.ndarray, start: int) -> None:
        """Update the inferred lengths from the all-NaN rows of a new chunk."""
        all_nan = np.isnan(block).all(axis=2)
        for b in np.flatnonzero(~self._ended & all_nan.any(axis=1)):
            self.lengths[b] = start + int(np.argmax(all_nan[b]))
            self._ended[b] = True
        if (self.lengths == 0).any():
            b = int(np.argmax(self.lengths == 0))
            raise LikelihoodError(
                f"sequence {self.sequence_ids[b].item()} has no data: log_likelihood is "
                "NaN in every interior bin from time index 0 (an all-NaN row marks the "
                "padding after a sequence's end)"
            )
        rows = start + np.arange(block.shape[1])
        found = first_true((rows[None, :] >= self.lengths[:, None]) & ~all_nan)
        if found is not None:
            b, row = found
            raise LikelihoodError(
                f"sequence {self.sequence_ids[b].item()}: log_likelihood has values at "
                f"time index {start + row} after an all-NaN row at time index "
                f"{self.lengths[b]}; all-NaN rows are only allowed as padding at the "
                "end of a sequence (give a 'sequence_length' variable, or use -inf for "
                "impossible bins)"
            )

    def _bad_row(self, values: np.ndarray, b: int, t: int) -> LikelihoodError:
        """The error for a real row whose maximum is not finite."""
        where = self.where(b, t)

        def bin_of(mask: np.ndarray) -> int:
            k = int(np.argmax(mask))
            return int(k if self.columns is None else self.columns[k])

        interior = "" if self.columns is None else " (interior bins only)"
        if np.isnan(values).any():
            hint = "use -inf for impossible bins and mark unused bins with is_interior"
            if np.isnan(values).all():
                hint = (f"every bin{interior} of that step is NaN: mark steps without data "
                        "with is_missing= (True at those steps, or an 'is_missing' "
                        f"variable along time); {hint}")
            if self.sequence_ids is not None:
                hint += (", and pad shorter sequences with all-NaN rows or give "
                         "'sequence_length'")
            return LikelihoodError(
                f"log_likelihood is NaN at {where}, bin {bin_of(np.isnan(values))}; {hint}"
            )
        if np.isposinf(values).any():
            return LikelihoodError(
                f"log_likelihood is +inf at {where}, bin {bin_of(np.isposinf(values))}; "
                "log-likelihoods must be finite or -inf"
            )
        return LikelihoodError(
            f"every bin{interior} of log_likelihood is -inf at {where}: "
            "no state is possible at that step"
        )


def _column_runs(columns: np.ndarray | None) -> list[tuple[int, int, int]] | None:
    """Interior columns as ``(first, stop, position)`` runs of consecutive bins.

    None when there are more than :data:`MAX_RUNS` runs (or no columns).
    """
    if columns is None or len(columns) == 0:
        return None
    breaks = np.flatnonzero(np.diff(columns) != 1) + 1
    if len(breaks) >= MAX_RUNS:
        return None
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(columns)]])
    return [(int(columns[a]), int(columns[b - 1]) + 1, int(a)) for a, b in zip(starts, stops)]


def run_reader(log_likelihood, columns: np.ndarray | None, config, lengths=None,
               sequence_ids=None, scheduler: str | None = None, buffers: int = 0):
    """The run's ``config`` with ``chunk_size="auto"`` resolved, and its reader.

    What every engine entry point (smoother, Viterbi, sampler) starts with:
    :func:`xhmm.engine.chunking.resolve_chunk_size` for the input, then a
    :class:`LikelihoodReader` of ``config.attempt_dtype`` chunks.

    Returns
    -------
    (Config, LikelihoodReader)
    """
    n_bins = int(log_likelihood.shape[2]) if columns is None else len(columns)
    config = config.replace(
        chunk_size=resolve_chunk_size(config.chunk_size, log_likelihood, n_bins))
    return config, LikelihoodReader(log_likelihood, columns, config.chunk_size,
                                    config.attempt_dtype, lengths, sequence_ids, scheduler,
                                    buffers=buffers)
