"""The chunked forward filter and reverse-order backward smoother.

One engine for one and many sequences: every run is ``B`` sequences of a
``(B, T, N)`` log-likelihood (a single recording is ``B = 1``), read one time
chunk of all ``B`` sequences at a time (:mod:`xhmm.engine.reader`). Data
never live on the device for more than one chunk: each chunk goes to the
device as one ``(B, C, K)`` block, the jitted kernels run, the real rows of
each sequence are copied into preallocated ``(B, T, K)`` host buffers (RAM or
memmap) in the storage dtype, and the device arrays are dropped. The next
chunk is read and dispatched while the host writes the current one (JAX
dispatch is asynchronous). No time chunks are ever concatenated.

Memmap runs keep a manifest (:mod:`xhmm.engine.manifest`) updated after each
chunk's data are flushed, so ``resume=True`` continues a killed run from its
last completed chunk with bit-identical results.

The backward pass needs each chunk's filtered rows in the dtype the chunk
ran in. A causal buffer stored in the attempt dtype holds them; otherwise
(uint16 or float16 storage, ``persist_causal=False``, the float64 chunks of
``compute_dtype="auto"``) the chunk is read (a second pass over a dask
input's blocks) and filtered again from its checkpoint, which costs about what keeping the rows in a scratch file would
(measured in benchmarks/results/HISTORY.md) without its disk space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import jax
import numpy as np

from ..config import Config
from ..errors import ConfigError, NumericalError
from ..kernels.hmm import backward_chunk, forward_chunk, summarize_chunk
from ..kernels.hpd import consistency_chunk, hpd_chunk
from .manifest import array_digest, fingerprint
from .precision import FLOAT64, Precision
from .reader import Chunk, LikelihoodReader, first_true, run_reader
from .runstate import RunResult, RunState, drive, precision, run_folder
from .storage import alloc_out, sync_rows, write_rows
from .transition import EngineTransition

__all__ = ["EngineResult", "run_engine", "FINAL_SUMMARIES"]

#: Summaries of the posterior a run ends with (the smoothed one, or the
#: filtered one of a filter run), each ``(B, T)`` or ``(B, T, S)``.
FINAL_SUMMARIES = ("map_index", "entropy", "hpd_threshold", "hpd_size", "hpd_area",
                   "hpd_state_size", "hpd_state_area", "posterior_consistency_kl",
                   "posterior_consistency_hpd_overlap")


@dataclass(kw_only=True)
class EngineResult(RunResult):
    """What one engine run produced (interior bins only), besides
    :class:`~xhmm.engine.runstate.RunResult`'s fields.

    Attributes
    ----------
    causal : (B, T, K) ndarray or None
        Filtered posteriors in the storage dtype; rows past a sequence's
        length are unwritten. None when not persisted.
    acausal : (B, T, K) ndarray or None
        Smoothed posteriors (None for a filter run or when not stored).
    log_normalizers : (B, T) float64 ndarray
        Per-step log p(y_t | y_<t); NaN past each length.
    marginal_log_likelihood : (B,) float64 ndarray
        ``math.fsum`` of each sequence's log normalisers.
    summaries : dict of str to ndarray
        Any of ``causal_state_probabilities``, ``acausal_state_probabilities``
        (B, T, S), ``map_index`` (B, T) index into the interior bins,
        ``entropy`` (B, T), and the HPD and consistency summaries
        (:data:`FINAL_SUMMARIES`: ``hpd_threshold``, ``hpd_size``,
        ``hpd_area`` (B, T), ``hpd_state_size``, ``hpd_state_area`` (B, T,
        S), ``posterior_consistency_kl``,
        ``posterior_consistency_hpd_overlap`` (B, T)), all float32;
        ``predictive_state_probabilities`` (B, T, S) and
        ``step_transition_counts`` (B, T, S, S) float64, each step's expected
        move to the next (``emit_step_transition_counts``).
    transition_counts : (B, S, S) float64 ndarray or None
        Expected state-to-state transitions of each sequence
        (``emit_transition_counts``).
    initial_posterior : (B, K) float64 ndarray or None
        Smoothed posterior of each sequence's first step
        (``emit_transition_counts``), for re-estimating ``initial``.
    """

    causal: np.ndarray | None
    acausal: np.ndarray | None
    log_normalizers: np.ndarray
    marginal_log_likelihood: np.ndarray
    summaries: dict[str, np.ndarray] = field(default_factory=dict)
    transition_counts: np.ndarray | None = None
    initial_posterior: np.ndarray | None = None


#: Chunk-boundary carries (checkpoints) are kept in float64: exact whatever
#: dtype a chunk ran in.
CARRY_DTYPE = np.float64
#: Reused host buffers per dtype for chunks going to the device (read, or
#: filtered rows taken back for the backward pass). Two are enough: each
#: pass waits for a chunk's kernels to finish before it reads (or takes
#: back) the chunk after the next one. A smoother with ``emit_consistency``
#: also reads each chunk's likelihood rows in the backward pass, two takes a
#: chunk: it gets one more.
HOST_BUFFERS = 2


class _Run(RunState):
    """State of one engine run: buffers, device constants, manifest.

    Each chunk's dtype follows :class:`xhmm.engine.precision.Precision`;
    the backward pass runs each chunk in the dtype its forward pass used.
    """

    def __init__(self, reader: LikelihoodReader, transition, initial, config: Config,
                 folder, smooth: bool, state_onehot, store_acausal: bool, metadata,
                 bin_sizes) -> None:
        super().__init__(reader, transition, initial, config, folder)
        self.smooth = smooth
        self.bin_sizes = None if config.emit_hpd is None else bin_sizes
        # the sizes the HPD kernel sums (zeros when there is no hpd_area to keep)
        self.size_values = np.zeros(reader.n_bins) if bin_sizes is None else bin_sizes
        self.base = np.dtype(config.attempt_dtype)
        self.want_states = state_onehot is not None and config.emit_state_aggregates
        self.want_steps = config.emit_step_transition_counts
        self.want_counts = config.emit_transition_counts or self.want_steps
        if self.want_counts and (state_onehot is None or not smooth):
            field = "emit_step_transition_counts" if self.want_steps else "emit_transition_counts"
            raise ConfigError(
                f"Config.{field} needs a smoother run (smooth, not filter) "
                "and a 'state' coordinate along state_bins naming each bin's discrete state"
            )
        if state_onehot is not None:
            self.onehot_values = state_onehot
        n_chunks = reader.n_chunks
        self.precision = Precision(config.compute_dtype, n_chunks)
        mode = "w+"
        if config.use_memmap:
            inputs = fingerprint(reader.source, transition.digest(), initial,
                                 reader.columns, state_onehot, smooth=smooth,
                                 store_acausal=store_acausal,
                                 read_rows=partial(reader.sample, keep=not config.resume),
                                 lengths=None if reader.infer else reader.lengths)
            if self.bin_sizes is not None:
                inputs["bin_sizes"] = array_digest(np.asarray(self.bin_sizes, np.float64))
            mode = self.open_folder(inputs)
            if self.manifest is not None:
                self.precision.restore(self.manifest.data)
        self._allocate(mode, 0 if state_onehot is None else state_onehot.shape[1],
                       store_acausal)
        if mode == "r+":
            self.check_outputs()
        if config.use_memmap and not config.resume:
            metadata = {**(metadata or {}), "transition": transition.describe()}
            self.start_manifest(self.buffers(), inputs, metadata, self.precision.state())
        # The causal buffer holds float32 chunks' filtered rows exactly when
        # it is float32 (float64 chunks are recomputed from checkpoints).
        self.causal_exact = (self.causal is not None
                             and np.dtype(config.storage_dtype) == self.base)

    def _allocate(self, mode: str, n_states: int, store_acausal: bool) -> None:
        B, T, K = self.reader.n_seq, self.reader.n_rows, self.reader.n_bins
        storage = self.config.storage_dtype

        def alloc(shape, dtype, name):
            return alloc_out(shape, dtype, name, self.memmap_dir, mode)

        self.causal = (alloc((B, T, K), storage, "causal_posterior")
                       if self.config.persist_causal else None)
        self.acausal = (alloc((B, T, K), storage, "acausal_posterior")
                        if self.smooth and store_acausal else None)
        self.log_norm = alloc((B, T), np.float64, "log_normalizer")
        n_chunks = self.reader.n_chunks
        # Filtered distribution before each chunk (the forward carry) and the
        # smoothed distribution of each chunk's first row (the backward carry).
        self.checkpoints = alloc((n_chunks, B, K), CARRY_DTYPE, "checkpoints")
        self.smooth_checkpoints = (
            alloc((n_chunks, B, K), CARRY_DTYPE, "smooth_checkpoints")
            if self.smooth else None
        )
        self.summaries: dict[str, np.ndarray] = {}
        if self.want_states:
            for kind in ("causal", "acausal") if self.smooth else ("causal",):
                name = f"{kind}_state_probabilities"
                self.summaries[name] = alloc((B, T, n_states), np.float32, name)
        if self.config.emit_map:
            self.summaries["map_index"] = alloc((B, T), np.int32, "map_index")
        if self.config.emit_entropy:
            self.summaries["entropy"] = alloc((B, T), np.float32, "entropy")
        if self.config.emit_hpd is not None:
            area = self.bin_sizes is not None
            for name in ["hpd_threshold", "hpd_size"] + ["hpd_area"] * area:
                self.summaries[name] = alloc((B, T), np.float32, name)
            for name in (["hpd_state_size"] + ["hpd_state_area"] * area) * bool(n_states):
                self.summaries[name] = alloc((B, T, n_states), np.float32, name)
        if self.config.emit_consistency:
            for name in ("posterior_consistency_kl", "posterior_consistency_hpd_overlap"):
                self.summaries[name] = alloc((B, T), np.float32, name)
        self.counts = None
        if self.want_counts:
            name = "predictive_state_probabilities"
            self.summaries[name] = alloc((B, T, n_states), np.float32, name)
            self.counts = alloc((B, n_states, n_states), np.float64, "transition_counts")
            if self.want_steps:
                self.summaries["step_transition_counts"] = alloc(
                    (B, T, n_states, n_states), np.float64, "step_transition_counts")
            if mode == "w+":
                self.counts[:] = 0
                # the first step's prediction is the initial distribution
                self.summaries[name][:, 0] = (
                    np.broadcast_to(self.initial_values, (B, K)) @ self.onehot_values)

    def buffers(self) -> dict[str, np.ndarray]:
        """Every allocated output, by name."""
        named = {
            "causal_posterior": self.causal,
            "acausal_posterior": self.acausal,
            "log_normalizer": self.log_norm,
            "checkpoints": self.checkpoints,
            "smooth_checkpoints": self.smooth_checkpoints,
            "transition_counts": self.counts,
            **self.summaries,
        }
        return {name: buf for name, buf in named.items() if buf is not None}

    def _row_buffers(self, kind: str) -> dict[str, np.ndarray]:
        """The outputs the ``kind`` pass writes one chunk of rows at a time, by name."""
        names = [f"{kind}_posterior"] + (["log_normalizer"] if kind == "causal" else [])
        names += [name for name in self.summaries
                  if name.startswith(kind) or (name in FINAL_SUMMARIES
                                               and (kind == "acausal") == self.smooth)]
        buffers = self.buffers()
        return {name: buffers[name] for name in names if name in buffers}

    def _sync(self, buffers, start: int, n_valid: np.ndarray, flush: bool = True) -> None:
        """Flush each sequence's rows just written (memmap only) and drop their pages.

        ``flush=False`` only drops the pages (for rows already on disk or
        not needed there).
        """
        if self.memmap_dir is None:
            return
        for buffer in buffers:
            n_seq, n_time = buffer.shape[:2]
            flat = buffer.reshape(n_seq * n_time, *buffer.shape[2:])
            for b, n in enumerate(n_valid):
                sync_rows(flat, b * n_time + start, b * n_time + start + int(n), flush)

    def _commit(self, start: int, n_valid: np.ndarray, buffers: dict[str, np.ndarray],
                **manifest_changes) -> None:
        """Flush the rows just written, then record progress (and their checksums)."""
        if self.manifest is None:
            return
        self._sync(buffers.values(), start, n_valid)
        self.commit(**manifest_changes)

    def _forward_kernel(self, prev, is_first: bool, chunk: Chunk, dtype: np.dtype):
        """Dispatch one chunk's filter in ``dtype`` (``prev`` is cast to it)."""
        if chunk.log_lik.dtype != dtype:  # shifted in float64 again, rounded once
            chunk = self.reader.read(chunk.index, dtype)
        consts = self.device(dtype)
        xs = self.transition.step_inputs(chunk.start, self.reader.chunk_size + 1, dtype)
        with precision(dtype.name):
            return forward_chunk(jax.numpy.asarray(prev, dtype), is_first, chunk.log_lik,
                                 chunk.n_valid, consts.operator, xs, consts.initial)

    @staticmethod
    def _write(out: np.ndarray, start: int, rows: np.ndarray, n_valid: np.ndarray) -> None:
        for b, n in enumerate(n_valid):
            if n:
                write_rows(out[b], start, rows[b, :n])

    # -- forward -----------------------------------------------------------
    def forward(self) -> None:
        reader = self.reader
        first, crcs, prev = self.start_forward(self.checkpoints)
        if prev is None:
            return
        with self.pass_bar("forward", reader.n_rows, reader.bounds(first)[0]) as bar:
            chunk = reader.read(first)
            dtype = self.precision.next_dtype(first)
            out = self._forward_kernel(prev, first == 0, chunk, dtype)
            for index in range(first, reader.n_chunks):
                # overlaps device work; an error is raised once this chunk is committed
                next_chunk, pending = reader.read_ahead(index + 1)
                filtered, log_norm, prev, flags = jax.block_until_ready(out)
                log_norm, flags = np.asarray(log_norm), np.asarray(flags)
                lost = self.precision.lost(chunk, log_norm, flags, dtype)
                if lost:
                    rows = np.asarray(filtered)
                    del filtered, out
                    prev, exact = self._redo_float64(self.precision.redo_start(index), index,
                                                     crcs)
                    n_rows = chunk.stop - chunk.start
                    self.precision.verify(
                        rows[:, :n_rows], exact[:, :n_rows], chunk.valid,
                        lambda b, row: self.reader.where(b, chunk.start + row),
                        "the filtered posterior")
                    del rows, exact
                else:
                    self.precision.record(index, dtype, flags)
                    summaries = self._summaries(filtered, "causal", not self.smooth, dtype,
                                                chunk.log_lik)
                dtype = self.precision.next_dtype(index + 1)
                if next_chunk is not None:
                    out = self._forward_kernel(prev, False, next_chunk, dtype)
                if not lost:  # host work overlapping the next chunk's filter
                    self._forward_outputs(chunk, filtered, log_norm, prev, crcs, dtype,
                                          summaries)
                    del filtered, log_norm, summaries
                self._commit(chunk.start, chunk.n_valid, self._row_buffers("causal"),
                             forward_done=index + 1, forward_checkpoint_crc=crcs,
                             reader=reader.inferred_state())
                bar.update(chunk.stop - chunk.start)
                if pending is not None:
                    raise pending
                chunk = next_chunk
        del prev

    def _redo_float64(self, start: int, stop: int, crcs: dict):
        """Recompute chunks ``start..stop`` in float64 from the checkpoint of ``start``.

        Returns the carry after ``stop`` and the filtered rows of ``stop``.
        """
        prev = self.verified_checkpoint(self.checkpoints, start, "forward")
        self.roll_back_forward(start, crcs)
        for index in range(start, stop + 1):
            chunk = self.reader.read(index, FLOAT64)
            filtered, log_norm, prev, flags = jax.block_until_ready(
                self._forward_kernel(prev, index == 0, chunk, FLOAT64))
            self.precision.record(index, FLOAT64, flags)
            self._forward_outputs(chunk, filtered, np.asarray(log_norm), prev, crcs, FLOAT64,
                                  self._summaries(filtered, "causal", not self.smooth,
                                                  FLOAT64, chunk.log_lik))
        return prev, np.asarray(filtered)

    def _forward_outputs(self, chunk: Chunk, filtered, log_norm: np.ndarray, prev, crcs,
                         dtype: np.dtype, summaries: list) -> None:
        """Check and write one chunk's filtered rows, summaries and next checkpoint.

        ``summaries`` are the chunk's dispatched summaries (:meth:`_summaries`).
        """
        self._store_summaries(summaries, chunk.start, chunk.n_valid)
        self._check_forward(chunk, log_norm, dtype)
        if self.causal is not None:
            self._write(self.causal, chunk.start, np.asarray(filtered), chunk.n_valid)
        if chunk.index + 1 < self.reader.n_chunks:
            self.store_checkpoint(self.checkpoints, chunk.index + 1, prev, crcs)
        self.record_rows(self._row_buffers("causal"), chunk.index, chunk.start, chunk.n_valid)

    def _check_forward(self, chunk: Chunk, log_norm: np.ndarray, dtype: np.dtype) -> None:
        values = self.checked_log_scales(
            chunk, log_norm, dtype,
            impossible="no state bin is possible at {where}: the likelihood is zero (-inf) "
                       "wherever the model's prediction is non-zero",
            near_underflow="at {where} the model gave the observed likelihood a prediction "
                           "of about exp({log:.0f}), near the float64 underflow limit: "
                           "posteriors may have lost precision",
        )
        for b, n in enumerate(chunk.n_valid):
            self.log_norm[b, chunk.start:chunk.start + n] = values[b, :n]

    # -- backward ----------------------------------------------------------
    def backward(self) -> None:
        reader = self.reader
        last_chunk = reader.last_chunk()
        n_chunks, done, crcs = self.start_backward()
        top = n_chunks - 1 - done
        if top < 0:
            return
        if done == 0:
            carry = np.zeros((reader.n_seq, reader.n_bins), CARRY_DTYPE)
        else:
            carry = self.verified_checkpoint(self.smooth_checkpoints, top + 1, "backward")

        def dispatch(carry, index: int, filtered):
            dtype = self.precision.dtype_of(index)
            consts = self.device(dtype)
            xs = self.transition.step_inputs(reader.bounds(index)[0],
                                             reader.chunk_size + 1, dtype)
            with precision(dtype.name):
                return backward_chunk(jax.numpy.asarray(carry, dtype), index < last_chunk,
                                      filtered, reader.n_valid(index), consts.operator, xs,
                                      consts.onehot if self.want_counts else None,
                                      per_step=self.want_steps)

        total = reader.bounds(n_chunks - 1)[1]  # rows, not padded chunks
        with self.pass_bar("backward", total, total - reader.bounds(top)[1]) as bar:
            out = dispatch(carry, top, self._filtered(top))
            for index in range(top, -1, -1):
                start = reader.bounds(index)[0]
                n_valid = reader.n_valid(index)
                dtype = self.precision.dtype_of(index)
                # This chunk's likelihood rows (read before the previous chunk's,
                # so a dask block is computed once), then the previous chunk's
                # filtered rows, prepared while the device smooths this one.
                log_lik = (reader.read(index, dtype).log_lik if self.config.emit_consistency
                           else None)
                filtered = self._filtered(index - 1) if index > 0 else None
                smoothed, carry, counted = jax.block_until_ready(out)
                # The device runs computations in order: summaries first, then
                # the previous chunk, whose device work overlaps the host work below.
                summaries = self._summaries(smoothed, "acausal", True, dtype, log_lik)
                if filtered is not None:
                    out = dispatch(carry, index - 1, filtered)
                self._store_summaries(summaries, start, n_valid)
                del summaries, log_lik
                rows = np.asarray(smoothed)
                self._check_backward(rows, start, n_valid)
                if self.acausal is not None:
                    self._write(self.acausal, start, rows, n_valid)
                self.store_checkpoint(self.smooth_checkpoints, index, carry, crcs)
                del smoothed, filtered, rows
                if counted is not None:
                    self._add_counts(counted, index, start, n_valid)
                del counted
                self.record_rows(self._row_buffers("acausal"), index, start, n_valid)
                self._commit(start, n_valid, self._row_buffers("acausal"),
                             backward_done=n_chunks - index, backward_checkpoint_crc=crcs)
                bar.update(reader.bounds(index)[1] - start)
        del carry

    def _add_counts(self, counted, index: int, start: int, n_valid: np.ndarray) -> None:
        """Add a chunk's transition counts (float64 on the host) and predictions.

        Per-step counts (``emit_step_transition_counts``) are written to
        their rows, and their sum over the real rows added.
        """
        counts, predicted = (np.asarray(a) for a in counted)
        if self.want_steps:
            steps = self.summaries["step_transition_counts"]
            self._write(steps, start, counts, n_valid)
            counts = np.stack([counts[b, :n].sum(axis=0, dtype=np.float64)
                               for b, n in enumerate(n_valid)])
            self._sync([steps], start, n_valid)
            self.record_rows({"step_transition_counts": steps}, index, start, n_valid)
        self.counts += counts
        out = self.summaries["predictive_state_probabilities"]
        # row i predicts step start + i + 1, which exists up to the length
        stop = np.minimum(start + n_valid + 1, self.reader.lengths) - start - 1
        for b, n in enumerate(stop):
            out[b, start + 1:start + 1 + n] = predicted[b, :n]
        if self.memmap_dir is not None:
            sync_rows(self.counts, 0, self.counts.shape[0])
            self._sync([out], start, stop + 1)
            self.record_crc("transition_counts", self.counts)

    def _check_backward(self, rows: np.ndarray, start: int, n_valid: np.ndarray) -> None:
        valid = np.arange(rows.shape[1])[None, :] < n_valid[:, None]
        found = first_true(valid & ~np.isfinite(rows).all(axis=2))
        if found is not None:
            b, row = found
            raise NumericalError(
                f"the smoothed posterior at {self.reader.where(b, start + row)} is not "
                f"finite ({rows.dtype.name} underflow); retry with "
                "compute_dtype='float64'"
            )

    def _filtered(self, index: int):
        """Filtered rows of chunk ``index`` on the device, in the chunk's dtype.

        Taken from the causal buffer when it holds them exactly, else
        filtered again from the chunk's checkpoint, checked against its CRC.
        """
        reader = self.reader
        dtype = self.precision.dtype_of(index)
        if self.causal_exact and dtype == self.base:
            source = self.causal
            start = reader.bounds(index)[0]
            n_valid = reader.n_valid(index)
            # the reader's buffers: each backward step takes one, as reading does
            rows = reader.buffers.take(dtype)
            for b, n in enumerate(n_valid):
                rows[b, :n] = source[b, start:start + n]
                rows[b, n:] = 0
            self._sync([source], start, n_valid, flush=False)  # pages read back
            with precision(dtype.name):
                return jax.device_put(rows)
        chunk = reader.read(index, dtype)
        prev = self.verified_checkpoint(self.checkpoints, index, "forward")
        filtered, _, _, _ = self._forward_kernel(prev, index == 0, chunk, dtype)
        return filtered

    # -- summaries ---------------------------------------------------------
    def _summaries(self, posterior, kind: str, final: bool, dtype: np.dtype,
                   log_lik=None) -> list:
        """Dispatch the summaries of a chunk of ``kind`` posteriors.

        Returns ``(buffer, device values)`` pairs for :meth:`_store_summaries`;
        only the summaries wanted are computed (``final``: the posterior the
        :data:`FINAL_SUMMARIES` are taken of). ``log_lik`` is the chunk's
        likelihood rows, for ``emit_consistency`` (final only).
        """
        want_map = final and self.config.emit_map
        want_entropy = final and self.config.emit_entropy
        outputs = []
        if final:
            outputs += self._region_summaries(posterior, dtype, log_lik)
        if not (self.want_states or want_map or want_entropy):
            return outputs
        with precision(dtype.name):
            argmax, entropy, states = summarize_chunk(
                posterior, self.device(dtype).onehot, argmax=want_map,
                entropy=want_entropy, states=self.want_states)
        if self.want_states:
            outputs.append((self.summaries[f"{kind}_state_probabilities"], states))
        if want_map:
            outputs.append((self.summaries["map_index"], argmax))
        if want_entropy:
            outputs.append((self.summaries["entropy"], entropy))
        return outputs

    def _region_summaries(self, posterior, dtype: np.dtype, log_lik) -> list:
        """Dispatch the HPD and consistency summaries of a chunk (those asked for)."""
        level = self.config.hpd_level
        outputs = []
        with precision(dtype.name):
            if self.config.emit_hpd is not None:
                values = hpd_chunk(posterior, level, jax.numpy.asarray(self.size_values, dtype),
                                   self.device(dtype).onehot)
                names = ("hpd_threshold", "hpd_size", "hpd_area", "hpd_state_size",
                         "hpd_state_area")
                outputs += [(self.summaries[name], value) for name, value in zip(names, values)
                            if name in self.summaries]
            if self.config.emit_consistency:
                values = consistency_chunk(posterior, log_lik, level)
                names = ("posterior_consistency_kl", "posterior_consistency_hpd_overlap")
                outputs += [(self.summaries[name], value) for name, value in zip(names, values)]
        return outputs

    @staticmethod
    def _store_summaries(outputs: list, start: int, n_valid: np.ndarray) -> None:
        """Copy dispatched summaries (:meth:`_summaries`) into their buffers."""
        for buffer, values in outputs:
            values = np.asarray(values)
            for b, n in enumerate(n_valid):
                buffer[b, start:start + n] = values[b, :n]

    def finish(self) -> EngineResult:
        """Mark a memmap run complete and hand over its buffers."""
        lengths = self.reader.lengths.copy()
        marginal = np.empty(len(lengths), dtype=np.float64)
        for b, n in enumerate(lengths):
            self.log_norm[b, n:] = np.nan
            marginal[b] = math.fsum(self.log_norm[b, :n])
        if self.counts is not None:  # its rows are one step after their chunk's
            name = "predictive_state_probabilities"
            self.record_crc(name, self.summaries[name])
        self.complete(self.log_norm)
        return EngineResult(
            lengths=lengths,
            causal=self.causal,
            acausal=self.acausal,
            log_normalizers=self.log_norm,
            marginal_log_likelihood=marginal,
            summaries=self.summaries,
            memmap_dir=self.memmap_dir,
            run_id=self.run_id,
            transition=self.transition.describe(),
            float64_chunks=self.precision.float64_chunks,
            transition_counts=None if self.counts is None else np.array(self.counts),
            initial_posterior=(None if self.counts is None
                               else self.verified_checkpoint(self.smooth_checkpoints, 0,
                                                             "backward")),
        )


def run_engine(
    log_likelihood,
    transition: EngineTransition,
    initial: np.ndarray,
    config: Config,
    *,
    smooth: bool,
    lengths=None,
    columns: np.ndarray | None = None,
    state_onehot: np.ndarray | None = None,
    store_acausal: bool = True,
    metadata: dict | None = None,
    sequence_ids=None,
    scheduler: str | None = None,
    bin_sizes: np.ndarray | None = None,
) -> EngineResult:
    """Run the chunked filter (and smoother) over ``B`` sequences at once.

    Parameters
    ----------
    log_likelihood : (B, T, N) NumPy, memmap or dask array
        Sequence on axis 0, time on axis 1; read one chunk of rows of every
        sequence at a time. A single recording is ``B = 1``.
    transition : EngineTransition
        The row-stochastic transition over the interior bins, shared by the
        batch (:class:`xhmm.engine.transition.EngineTransition`, e.g.
        :class:`xhmm.transitions.dense_transition.DenseTransition` for a
        matrix).
    initial : (K,) or (B, K) ndarray
        First-step distribution over the interior bins, shared or per sequence.
    config : Config
        With ``use_memmap`` the buffers are ``{config.memmap_dir}/{name}.dat``
        of shape ``(B, T, ...)``.
        ``chunk_size="auto"`` is resolved here
        (:func:`xhmm.engine.chunking.resolve_chunk_size`); a memmap run's
        manifest records the resolved size.
    smooth : bool
        Run the backward pass too.
    lengths : (B,) int array-like, optional
        Real rows of each sequence; None infers them from trailing all-NaN
        rows (see :mod:`xhmm.engine.reader`).
    columns : (K,) int ndarray, optional
        Interior bins among the N; None means all.
    state_onehot : (K, S) ndarray, optional
        Membership of each interior bin in each discrete state, for the
        per-state probabilities.
    store_acausal : bool, default True
        Keep the full smoothed posterior (False keeps only summaries).
    metadata : dict, optional
        JSON-serialisable description stored in a memmap run's manifest.
    sequence_ids : (B,) array-like, optional
        Labels of the sequences in messages; None for a single recording.
    scheduler : str, optional
        dask scheduler for reading a dask input ("sync" inside a
        dask.distributed task computes the chunks in that task).
    bin_sizes : (K,) ndarray, optional
        Size of each interior bin (0 for a bin without a position), for
        ``hpd_area`` and ``hpd_state_area`` (``emit_hpd``); None leaves them out.

    Returns
    -------
    EngineResult
    """
    config, reader = run_reader(
        log_likelihood, columns, config, lengths, sequence_ids, scheduler,
        buffers=HOST_BUFFERS + int(smooth and config.emit_consistency))
    with precision(config.attempt_dtype), run_folder(config) as folder:
        run = _Run(reader, transition, initial, config, folder, smooth,
                   state_onehot, store_acausal, metadata, bin_sizes)
        passes = (run.forward, run.backward) if smooth else (run.forward,)
        return drive(run, *passes, finish=run.finish)
