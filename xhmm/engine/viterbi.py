"""The chunked Viterbi decoder: most likely paths of ``B`` sequences, out of core.

Checkpointed recomputation keeps device and host memory at about one chunk
whatever the length of the recording:

1. **Forward.** The max-product recursion runs chunk by chunk
   (:func:`xhmm.kernels.viterbi.viterbi_forward_chunk`); at each chunk
   boundary only the rescaled max-message of every sequence is kept
   (``max_checkpoints``, float64) and, per chunk, the float64 sum of its
   rows' log scales and likelihood shifts (``log_scale``).
2. **Backtrack.** Chunks in reverse order: each chunk's max-messages
   (``C x K``, the message entering each row) are recomputed on the device
   from its checkpoint (the forward pass's cost, values only), the path of
   its rows is traced back from the state the chunk after it handed over,
   taking at each row the back-pointer of the path's state alone (one
   column of the transition, ``O(K)``, instead of all ``C x K`` pointers),
   and the state before its first row is handed to the chunk before it
   (:func:`xhmm.kernels.viterbi.viterbi_backtrack_chunk`). Only the path
   rows come back to the host.

The log-probability of the path is ``math.fsum`` of the chunk sums: the
same shift convention as the marginal log-likelihood, so it is at most that.

Precision follows :class:`xhmm.engine.precision.Precision`, as the
smoother's does: ``"auto"`` runs float32 and recomputes in float64 the
chunks where the kernel's flags say float32 may have lost the path (a
max-product prediction below ``1e-30``, or zero, where the likelihood is
within 30 nats of the step's best; or a step float32 cannot represent),
from their (exact, float64) checkpoint; ``"float32"`` then checks its
max-messages against the recomputation and raises where they differ;
``"float64"`` runs float64 throughout. A chunk is always backtracked in the
dtype its forward pass used, so the recomputed messages, and the pointers
taken from them, match the forward pass.

Memmap runs use the smoother's storage and manifest
(:mod:`xhmm.engine.storage`, :mod:`xhmm.engine.manifest`): each chunk's
outputs are flushed before the manifest records it, so ``resume=True``
continues a killed run from its last completed chunk with the identical
path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import numpy as np

from ..config import Config
from ..kernels.viterbi import viterbi_backtrack_chunk, viterbi_forward_chunk
from .manifest import fingerprint
from .precision import FLOAT64, Precision
from .reader import Chunk, LikelihoodReader, run_reader
from .runstate import RunResult, RunState, drive, precision, run_folder
from .storage import alloc_out, sync_rows
from .transition import EngineTransition

__all__ = ["ViterbiResult", "PathDecoder", "run_viterbi"]

@dataclass(kw_only=True)
class ViterbiResult(RunResult):
    """What one decoder run produced, besides
    :class:`~xhmm.engine.runstate.RunResult`'s fields.

    Attributes
    ----------
    path : (B, T) int32 ndarray
        Index into the interior bins of each step's state on the most likely
        path; -1 past each sequence's length (a memmap in memmap runs).
    path_log_probability : (B,) float64 ndarray
        ``log p(path, observations)`` of each sequence.
    """

    path: np.ndarray
    path_log_probability: np.ndarray


class PathDecoder(RunState):
    """State of one decoder run: buffers, device constants, manifest, precision.

    The forward pass keeps checkpoints and per-chunk log-scale sums, the
    backward pass walks the chunks in reverse order handing each chunk's
    ``entry`` state(s) to the chunk before it; the kernels are
    :meth:`_forward_kernel` and :meth:`_backtrack_kernel`. The posterior
    path sampler (:mod:`xhmm.engine.sampler`) is this run with the filter's
    kernels and ``samples`` paths per sequence.

    Parameters
    ----------
    reader, transition, initial, config, folder
        As for :class:`~xhmm.engine.runstate.RunState`.
    metadata : dict or None
        Kept in a memmap run's manifest.
    inputs : dict, optional
        More entries of the resume fingerprint (the sampler's ``n_samples``
        and ``seed``).
    samples : tuple of int, default ()
        Trailing shape of the path rows: ``(n_samples,)`` for the sampler.
    """

    #: The manifest's ``algorithm``, the progress bars' and buffers' names.
    algorithm = "viterbi"
    checkpoint_name = "max_checkpoints"
    #: Messages of a step no path reaches and of a float64 step near underflow
    #: (see :meth:`~xhmm.engine.runstate.RunState.checked_log_scales`), and
    #: what the ``"float32"`` check compares.
    impossible = ("every path has probability zero at {where}: the likelihood is zero "
                  "(-inf) wherever the model's prediction is non-zero")
    near_underflow = ("at {where} the best path's prediction of the observed likelihood "
                      "was about exp({log:.0f}), near the float64 underflow limit: the "
                      "most likely path may have lost precision")
    compared = "the max-product message (rescaled to a maximum of 1)"

    def __init__(self, reader: LikelihoodReader, transition, initial, config: Config,
                 folder, metadata: dict | None, inputs: dict | None = None,
                 samples: tuple[int, ...] = ()) -> None:
        super().__init__(reader, transition, initial, config, folder)
        n_chunks = reader.n_chunks
        self.precision = Precision(config.compute_dtype, n_chunks)
        self.samples = samples
        mode = "w+"
        if config.use_memmap:
            inputs = {
                **fingerprint(reader.source, transition.digest(), initial, reader.columns,
                              None, smooth=False, store_acausal=False,
                              read_rows=partial(reader.sample, keep=not config.resume),
                              lengths=None if reader.infer else reader.lengths),
                "algorithm": self.algorithm,
                **(inputs or {}),
            }
            mode = self.open_folder(inputs)
            if self.manifest is not None:
                self.precision.restore(self.manifest.data)
        B, K = reader.n_seq, reader.n_bins

        def alloc(shape, dtype, name):
            return alloc_out(shape, dtype, name, self.memmap_dir, mode)

        self.path = alloc((B, reader.n_rows, *samples), np.int32, "path")
        self.checkpoints = alloc((n_chunks, B, K), np.float64, self.checkpoint_name)
        self.log_scale = alloc((n_chunks, B), np.float64, "log_scale")
        if mode == "r+":
            self.check_outputs()
        if self.manifest is None and self.memmap_dir is not None:
            buffers = {"path": self.path, self.checkpoint_name: self.checkpoints,
                       "log_scale": self.log_scale}
            metadata = {**(metadata or {}), "algorithm": self.algorithm,
                        "transition": transition.describe()}
            self.start_manifest(buffers, inputs, metadata,
                                {**self.precision.state(), "entry": None})

    # -- helpers -----------------------------------------------------------
    def _kernel_inputs(self, index: int, chunk: Chunk | None, dtype: np.dtype):
        """Device arguments of chunk ``index`` in ``dtype`` (re-read if needed)."""
        if chunk is None or chunk.log_lik.dtype != dtype:
            chunk = self.reader.read(index, dtype)
        consts = self.device(dtype)
        xs = self.transition.step_inputs(chunk.start, self.reader.chunk_size + 1, dtype)
        prev = self.verified_checkpoint(self.checkpoints, index, "forward").astype(dtype)
        return chunk, (prev, index == 0, chunk.log_lik, chunk.n_valid, consts.operator, xs,
                       consts.initial)

    # -- kernels -----------------------------------------------------------
    def _forward_kernel(self, args: tuple):
        """Dispatch a chunk's forward pass: ``(last carry, log scales, flags)``."""
        return viterbi_forward_chunk(*args)

    def _backtrack_kernel(self, chunk: Chunk, args: tuple, dtype: np.dtype,
                          entry: np.ndarray, has_next: np.ndarray):
        """Dispatch a chunk's backward pass: ``(path rows, entry of the chunk before)``.

        ``args`` are :meth:`_kernel_inputs`'s, in ``dtype``.
        """
        with precision(dtype.name):
            return viterbi_backtrack_chunk(*args, entry, has_next)

    # -- forward -----------------------------------------------------------
    def _dispatch_forward(self, index: int, chunk: Chunk | None, dtype: np.dtype):
        chunk, args = self._kernel_inputs(index, chunk, dtype)
        with precision(dtype.name):
            return chunk, self._forward_kernel(args)

    def forward(self) -> None:
        """Carry the max-message through every chunk, keeping the checkpoints."""
        reader = self.reader
        first, crcs, prev = self.start_forward(self.checkpoints)
        if prev is None:
            return
        with self.pass_bar(f"{self.algorithm} forward", reader.n_rows,
                           reader.bounds(first)[0]) as bar:
            dtype = self.precision.next_dtype(first)
            chunk, out = self._dispatch_forward(first, reader.read(first), dtype)
            for index in range(first, reader.n_chunks):
                # overlaps device work; an error is raised once this chunk is committed
                next_chunk, pending = reader.read_ahead(index + 1)
                last, log_scale, flags = (np.asarray(a) for a in jax.block_until_ready(out))
                if self.precision.lost(chunk, log_scale, flags, dtype):
                    approximate = last
                    first_redo = self.precision.redo_start(index)
                    self.roll_back_forward(first_redo, crcs)
                    for redo in range(first_redo, index + 1):
                        chunk, out = self._dispatch_forward(redo, None, FLOAT64)
                        last, log_scale, flags = (np.asarray(a)
                                                  for a in jax.block_until_ready(out))
                        self.precision.record(redo, FLOAT64, flags)
                        self._outputs(chunk, log_scale, last, crcs)
                    self._verify(chunk, approximate, last)
                else:
                    self.precision.record(index, dtype, flags)
                    self._outputs(chunk, log_scale, last, crcs)
                dtype = self.precision.next_dtype(index + 1)
                if next_chunk is not None:
                    chunk, out = self._dispatch_forward(index + 1, next_chunk, dtype)
                self.commit(forward_done=index + 1, forward_checkpoint_crc=crcs,
                             reader=reader.inferred_state())
                bar.update(reader.bounds(index)[1] - reader.bounds(index)[0])
                if pending is not None:
                    raise pending

    def _outputs(self, chunk: Chunk, log_scale: np.ndarray, last: np.ndarray,
                 crcs: dict) -> None:
        """Check one chunk's log scales, keep their sum and the next checkpoint."""
        values = self.checked_log_scales(chunk, log_scale, self.precision.dtype_of(chunk.index),
                                         self.impossible, self.near_underflow)
        self.log_scale[chunk.index] = [math.fsum(v[:n]) for v, n in zip(values, chunk.n_valid)]
        sync_rows(self.log_scale, chunk.index, chunk.index + 1)
        self.record_crc("log_scale", self.log_scale[chunk.index], str(chunk.index))
        if chunk.index + 1 < self.reader.n_chunks:
            self.store_checkpoint(self.checkpoints, chunk.index + 1, last, crcs)

    def _verify(self, chunk: Chunk, approximate: np.ndarray, exact: np.ndarray) -> None:
        """With ``"float32"``: the chunk's last max-message against its float64 recomputation.

        Messages are compared rescaled to a maximum of 1 per sequence (the
        path depends on their ratios only).
        """
        def rescaled(message: np.ndarray) -> np.ndarray:
            message = np.asarray(message, np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                return (message / message.max(axis=-1, keepdims=True))[:, None]

        last = np.maximum(chunk.n_valid - 1, 0)
        self.precision.verify(rescaled(approximate), rescaled(exact), chunk.n_valid[:, None] > 0,
                              lambda b, _: self.reader.where(b, chunk.start + int(last[b])),
                              self.compared)

    # -- backtrack ---------------------------------------------------------
    def _dispatch_backtrack(self, index: int, chunk: Chunk | None, entry: np.ndarray):
        dtype = self.precision.dtype_of(index)
        chunk, args = self._kernel_inputs(index, chunk, dtype)
        return chunk, self._backtrack_kernel(chunk, args, dtype, entry,
                                             index < self.reader.last_chunk())

    def backtrack(self) -> None:
        """Trace the path back through the chunks in reverse order."""
        reader = self.reader
        n_chunks, done, _ = self.start_backward()
        top = n_chunks - 1 - done
        if top < 0:
            return
        entry = np.zeros((reader.n_seq, *self.samples), np.int32)
        if done:
            entry[:] = self.manifest.data["entry"]
        total = n_chunks * reader.chunk_size
        with self.pass_bar(f"{self.algorithm} backtrack", total, done * reader.chunk_size) as bar:
            chunk, out = self._dispatch_backtrack(top, None, entry)
            for index in range(top, -1, -1):
                before = (reader.read(index - 1, self.precision.dtype_of(index - 1)) if index
                          else None)
                path, entry = (np.asarray(a) for a in jax.block_until_ready(out))
                if before is not None:
                    chunk_before, out = self._dispatch_backtrack(index - 1, before, entry)
                self._write_path(chunk, path)
                self.commit(backward_done=n_chunks - index, entry=entry.tolist())
                bar.update(reader.chunk_size)
                if before is not None:
                    chunk = chunk_before

    def _write_path(self, chunk: Chunk, path: np.ndarray) -> None:
        """Write (and in a memmap run flush) the real rows of one chunk's path.

        Their checksum is taken before the flush, which drops their pages:
        reading them after it would map them again.
        """
        # one row per step: memmap rows by offset
        flat = self.path.reshape(-1, *self.samples)
        starts = np.arange(len(chunk.n_valid)) * self.path.shape[1] + chunk.start
        for start, n, rows in zip(starts, chunk.n_valid, path):
            flat[start:start + n] = rows[:n]
        self.record_rows({"path": self.path}, chunk.index, chunk.start, chunk.n_valid)
        for start, n in zip(starts, chunk.n_valid):
            sync_rows(flat, int(start), int(start + n))

    # -- results -----------------------------------------------------------
    def complete_paths(self) -> tuple[dict, np.ndarray]:
        """Fill the rows past each length with -1 and mark a memmap run complete.

        Returns the :class:`~xhmm.engine.runstate.RunResult` fields and each
        sequence's ``math.fsum`` of its chunks' log scales.
        """
        lengths = self.reader.lengths.copy()
        last_chunk = self.reader.last_chunk()
        log_sums = np.empty(len(lengths))
        for b, n in enumerate(lengths):
            self.path[b, n:] = -1
            log_sums[b] = math.fsum(self.log_scale[:last_chunk[b] + 1, b])
        self.complete(self.path)
        fields = dict(lengths=lengths, memmap_dir=self.memmap_dir, run_id=self.run_id,
                      transition=self.transition.describe(),
                      float64_chunks=self.precision.float64_chunks)
        return fields, log_sums

    def finish(self) -> ViterbiResult:
        """Mark a memmap run complete and hand over the path."""
        fields, log_probability = self.complete_paths()
        return ViterbiResult(path=self.path, path_log_probability=log_probability, **fields)


def run_viterbi(
    log_likelihood,
    transition: EngineTransition,
    initial: np.ndarray,
    config: Config,
    *,
    lengths=None,
    columns: np.ndarray | None = None,
    metadata: dict | None = None,
    sequence_ids=None,
    scheduler: str | None = None,
) -> ViterbiResult:
    """The most likely path of each of ``B`` sequences (Viterbi), chunk by chunk.

    The arguments are those of :func:`xhmm.engine.loop.run_engine` (without
    the smoother's outputs): of ``config``, ``chunk_size``, ``compute_dtype``
    (see the module docstring), ``use_memmap`` / ``memmap_dir`` /
    ``overwrite`` / ``resume`` and ``progress`` apply; ``chunk_size="auto"``
    is resolved as there.

    Returns
    -------
    ViterbiResult

    Raises
    ------
    LikelihoodError
        Bad likelihood rows (see :class:`xhmm.engine.reader.LikelihoodReader`),
        or a step at which every path has probability zero, naming it.
    ResumeError, StorageError
        As for the smoother's memmap runs.
    """
    config, reader = run_reader(log_likelihood, columns, config, lengths, sequence_ids,
                                scheduler)
    with run_folder(config) as folder:
        decoder = PathDecoder(reader, transition, initial, config, folder, metadata)
        return drive(decoder, decoder.forward, decoder.backtrack, finish=decoder.finish)
