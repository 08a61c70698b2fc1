"""The chunked forward filter and reverse-order backward smoother.

Data never lives on the device for more than one chunk: each chunk's
log-likelihood rows go to the device, the jitted kernel runs, its rows are
copied into preallocated host buffers (RAM or memmap) in the storage dtype,
and the device arrays are dropped. The next chunk is read from the input while
the device works (JAX dispatch is asynchronous).

Memmap runs keep a manifest (:mod:`xhmm.engine.manifest`) updated after each
chunk's data are flushed, so ``resume=True`` continues a killed run from its
last completed chunk with bit-identical results.
"""

from __future__ import annotations

import math
import sys
import tempfile
import warnings
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from ..config import Config
from ..errors import (
    LikelihoodError,
    NumericalError,
    NumericalWarning,
    ResumeError,
    StorageError,
    XHMMError,
)
from ..kernels.hmm import backward_chunk, forward_chunk_t, summarize_chunk
from .manifest import MANIFEST, Manifest, crc, fingerprint, load_manifest
from .progress import progress_bar, progress_enabled
from .reader import Chunk, LikelihoodReader
from .storage import _alloc_out, prepare_memmap_dir, sync_rows, write_rows

__all__ = ["EngineResult", "run_engine"]


@dataclass
class EngineResult:
    """What one engine run produced (interior bins only).

    Attributes
    ----------
    causal : (T, K) ndarray or None
        Filtered posterior in the storage dtype (None if not persisted).
    acausal : (T, K) ndarray or None
        Smoothed posterior in the storage dtype (None for a filter run or
        when not stored).
    log_normalizers : (T,) float64 ndarray
        Per-step log p(y_t | y_<t).
    marginal_log_likelihood : float
        ``math.fsum(log_normalizers)``.
    summaries : dict of str to ndarray
        Any of ``causal_state_probabilities``, ``acausal_state_probabilities``
        (T, S), ``map_index`` (T,) index into the interior bins, ``entropy``.
    memmap_dir : Path or None
        Folder of the memmap files.
    """

    causal: np.ndarray | None
    acausal: np.ndarray | None
    log_normalizers: np.ndarray
    marginal_log_likelihood: float
    summaries: dict[str, np.ndarray] = field(default_factory=dict)
    memmap_dir: Path | None = None


#: Log normalisers (relative to the row maximum) below these mean the
#: prediction was near the dtype's smallest normal number where the
#: likelihood is high, so some bins may have underflowed to zero.
_UNDERFLOW_LOG = {"float32": -80.0, "float64": -700.0}


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside xhmm (where a warning belongs)."""
    package = Path(__file__).resolve().parents[1]
    frame, level = sys._getframe(1), 1
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(package):
        frame, level = frame.f_back, level + 1
    return level


def _precision(compute_dtype: str):
    """JAX 64-bit mode for a float64 computation only (thread-local)."""
    return jax.enable_x64(True) if compute_dtype == "float64" else nullcontext()


class _Run:
    """State of one engine run: buffers, device constants, manifest."""

    def __init__(self, reader: LikelihoodReader, transition, initial, config: Config,
                 smooth: bool, state_onehot, store_acausal: bool, columns, metadata):
        self.reader = reader
        self.config = config
        self.smooth = smooth
        self.compute = np.dtype(config.compute_dtype)
        self.n_time, self.n_bins = reader.n_time, reader.n_bins
        self.transition = jax.device_put(np.asarray(transition, dtype=self.compute))
        # The filter reads the matrix transposed, along contiguous rows
        # (see forward_chunk_t); the smoother reads it as it is. Transposed on
        # the device: no host temporary of K*K values.
        self.transition_t = jax.numpy.transpose(self.transition)
        self.initial = jax.device_put(np.asarray(initial, dtype=self.compute))
        self.want_states = state_onehot is not None and config.emit_state_aggregates
        self.onehot = jax.device_put(
            np.zeros((self.n_bins, 0), self.compute) if state_onehot is None
            else np.asarray(state_onehot, dtype=self.compute)
        )
        self.progress = progress_enabled(config.progress)
        self.warned = False
        self.memmap_dir: Path | None = None
        self.manifest: Manifest | None = None
        mode = "w+"
        if config.use_memmap:
            inputs = fingerprint(reader.source, transition, initial, columns, state_onehot,
                                 smooth=smooth, store_acausal=store_acausal)
            if config.resume:
                self.memmap_dir = Path(config.memmap_dir)
                self.manifest = load_manifest(self.memmap_dir)
                self.manifest.check_matches(config, inputs)
                mode = "r+"
            else:
                folder = config.memmap_dir or tempfile.mkdtemp(prefix="xhmm-")
                self.memmap_dir = prepare_memmap_dir(folder, overwrite=config.overwrite)
                # An earlier run's manifest must not vouch for files being replaced.
                (self.memmap_dir / MANIFEST).unlink(missing_ok=True)
        self._allocate(mode, 0 if state_onehot is None else state_onehot.shape[1],
                       store_acausal)
        if config.use_memmap and not config.resume:
            self.manifest = Manifest.new(self.memmap_dir, config, inputs,
                                         self._buffers(), reader.n_chunks, metadata)
        self.filtered_exact = (
            self.causal is not None and np.dtype(config.storage_dtype) == self.compute
        )

    def _allocate(self, mode: str, n_states: int, store_acausal: bool) -> None:
        T, K = self.n_time, self.n_bins
        storage = self.config.storage_dtype

        def alloc(shape, dtype, name):
            return _alloc_out(shape, dtype, name, self.memmap_dir, mode)

        self.causal = (alloc((T, K), storage, "causal_posterior")
                       if self.config.persist_causal else None)
        self.acausal = (alloc((T, K), storage, "acausal_posterior")
                        if self.smooth and store_acausal else None)
        self.log_norm = alloc((T,), np.float64, "log_normalizer")
        n_chunks = self.reader.n_chunks
        # Filtered distribution before each chunk (the forward carry) and the
        # smoothed distribution of each chunk's first row (the backward carry).
        self.checkpoints = alloc((n_chunks, K), self.compute, "checkpoints")
        self.smooth_checkpoints = (alloc((n_chunks, K), self.compute, "smooth_checkpoints")
                                   if self.smooth else None)
        self.summaries: dict[str, np.ndarray] = {}
        if self.want_states:
            self.summaries["causal_state_probabilities"] = alloc(
                (T, n_states), np.float32, "causal_state_probabilities")
            if self.smooth:
                self.summaries["acausal_state_probabilities"] = alloc(
                    (T, n_states), np.float32, "acausal_state_probabilities")
        if self.config.emit_map:
            self.summaries["map_index"] = alloc((T,), np.int32, "map_index")
        if self.config.emit_entropy:
            self.summaries["entropy"] = alloc((T,), np.float32, "entropy")

    def _buffers(self) -> dict[str, np.ndarray]:
        named = {
            "causal_posterior": self.causal,
            "acausal_posterior": self.acausal,
            "log_normalizer": self.log_norm,
            "checkpoints": self.checkpoints,
            "smooth_checkpoints": self.smooth_checkpoints,
            **self.summaries,
        }
        return {name: buf for name, buf in named.items() if buf is not None}

    def _done(self, key: str) -> int:
        return 0 if self.manifest is None else int(self.manifest.data[key])

    def _verified_checkpoint(self, buffer: np.ndarray, index: int, kind: str) -> np.ndarray:
        row = np.array(buffer[index])
        stored = self.manifest.data[f"{kind}_checkpoint_crc"].get(str(index))
        if stored is not None and stored != crc(row):
            raise ResumeError(
                f"{kind} checkpoint {index} in {str(self.memmap_dir)!r} is corrupt "
                "(CRC mismatch); start the run again with overwrite=True"
            )
        return row

    def _commit(self, start: int, stop: int, buffers, **manifest_changes) -> None:
        """Flush the rows just written, then record progress in the manifest."""
        if self.manifest is None:
            return
        for buffer in buffers:
            if buffer is not None:
                sync_rows(buffer, start, stop)
        self.manifest.update(**manifest_changes)

    def _row_buffers(self, kind: str) -> list:
        rows = [self.causal if kind == "causal" else self.acausal]
        if kind == "causal":
            rows.append(self.log_norm)
        rows += [buf for name, buf in self.summaries.items()
                 if name.startswith(kind) or (name in ("map_index", "entropy")
                                              and (kind == "acausal") == self.smooth)]
        return rows

    # -- forward -----------------------------------------------------------
    def forward(self) -> None:
        reader = self.reader
        first = self._done("forward_done")
        if first >= reader.n_chunks:
            return
        if first == 0:
            prev = np.zeros(self.n_bins, self.compute)
        else:
            prev = self._verified_checkpoint(self.checkpoints, first, "forward")
        prev = jax.device_put(prev)
        final = not self.smooth
        crcs = {} if self.manifest is None else self.manifest.data["forward_checkpoint_crc"]
        with progress_bar(self.progress, self.n_time, "xhmm forward") as bar:
            bar.update(reader.bounds(first)[0])
            chunk = reader.read(first)
            out = forward_chunk_t(prev, first == 0, chunk.log_lik, chunk.n_valid,
                                  self.transition_t, self.initial)
            for index in range(first, reader.n_chunks):
                next_chunk, pending = None, None
                if index + 1 < reader.n_chunks:
                    try:
                        next_chunk = reader.read(index + 1)  # overlaps device work
                    except XHMMError as exc:  # raised once this chunk is committed
                        pending = exc
                filtered, log_norm, prev = jax.block_until_ready(out)
                # The device runs computations in order: summaries first, then
                # the next chunk, whose device work overlaps the host work below.
                self._summarize(filtered, chunk.start, chunk.stop, "causal", final)
                if next_chunk is not None:
                    out = forward_chunk_t(prev, False, next_chunk.log_lik,
                                          next_chunk.n_valid, self.transition_t,
                                          self.initial)
                self._check_forward(chunk, np.asarray(log_norm))
                n = chunk.n_valid
                if self.causal is not None:
                    write_rows(self.causal, chunk.start, np.asarray(filtered)[:n])
                if index + 1 < reader.n_chunks:
                    self.checkpoints[index + 1] = np.asarray(prev)
                    crcs[str(index + 1)] = crc(self.checkpoints[index + 1])
                    sync_rows(self.checkpoints, index + 1, index + 2)
                del filtered, log_norm
                self._commit(chunk.start, chunk.stop, self._row_buffers("causal"),
                             forward_done=index + 1, forward_checkpoint_crc=crcs)
                bar.update(n)
                if pending is not None:
                    raise pending
                chunk = next_chunk
        del prev

    def _check_forward(self, chunk: Chunk, log_norm: np.ndarray) -> None:
        n = chunk.n_valid
        values = chunk.shift + log_norm[:n].astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            t = chunk.start + int(np.argmax(bad))
            if self.compute == np.float32:
                raise NumericalError(
                    f"no state bin has non-zero probability at time index {t}: the "
                    "likelihood is zero wherever the prediction is non-zero, or "
                    "float32 underflowed; retry with compute_dtype='float64'"
                )
            raise LikelihoodError(
                f"no state bin is possible at time index {t}: the likelihood is "
                "zero (-inf) wherever the model's prediction is non-zero"
            )
        self.log_norm[chunk.start:chunk.stop] = values
        surprise = log_norm[:n] < _UNDERFLOW_LOG[self.compute.name]
        if surprise.any() and not self.warned:
            self.warned = True
            t = chunk.start + int(np.argmax(surprise))
            warnings.warn(
                f"at time index {t} the model gave the observed likelihood a "
                f"prediction of about exp({float(log_norm[:n][surprise][0]):.0f}), near "
                f"the {self.compute.name} underflow limit: posteriors may have lost "
                "precision; use compute_dtype='float64' to be sure",
                NumericalWarning, stacklevel=_caller_stacklevel(),
            )

    # -- backward ----------------------------------------------------------
    def backward(self) -> None:
        reader = self.reader
        done = self._done("backward_done")
        last = reader.n_chunks - 1 - done
        if last < 0:
            return
        if done == 0:
            carry = np.zeros(self.n_bins, self.compute)
        else:
            carry = self._verified_checkpoint(self.smooth_checkpoints, last + 1, "backward")
        carry = jax.device_put(carry)
        crcs = {} if self.manifest is None else self.manifest.data["backward_checkpoint_crc"]
        with progress_bar(self.progress, self.n_time, "xhmm backward") as bar:
            bar.update(self.n_time - reader.bounds(last)[1])
            start, stop = reader.bounds(last)
            out = backward_chunk(carry, last + 1 < reader.n_chunks, self._filtered(last),
                                 stop - start, self.transition)
            for index in range(last, -1, -1):
                start, stop = reader.bounds(index)
                # The previous chunk's filtered rows, prepared while the device
                # smooths this one.
                filtered = self._filtered(index - 1) if index > 0 else None
                smoothed, carry = jax.block_until_ready(out)
                # The device runs computations in order: summaries first, then
                # the previous chunk, whose device work overlaps the host work below.
                self._summarize(smoothed, start, stop, "acausal", True)
                if filtered is not None:
                    before = reader.bounds(index - 1)
                    out = backward_chunk(carry, True, filtered, before[1] - before[0],
                                         self.transition)
                rows = np.asarray(smoothed)[: stop - start]
                if not np.isfinite(rows).all():
                    t = start + int(np.argmax(~np.isfinite(rows).all(axis=1)))
                    raise NumericalError(
                        f"the smoothed posterior at time index {t} is not finite "
                        f"({self.compute.name} underflow); retry with "
                        "compute_dtype='float64'"
                    )
                if self.acausal is not None:
                    write_rows(self.acausal, start, rows)
                self.smooth_checkpoints[index] = np.asarray(carry)
                crcs[str(index)] = crc(self.smooth_checkpoints[index])
                sync_rows(self.smooth_checkpoints, index, index + 1)
                del smoothed, filtered, rows
                self._commit(start, stop, self._row_buffers("acausal"),
                             backward_done=reader.n_chunks - index,
                             backward_checkpoint_crc=crcs)
                if self.filtered_exact:
                    sync_rows(self.causal, start, stop)
                bar.update(stop - start)
        del carry

    def _filtered(self, index: int):
        """Filtered rows of chunk ``index`` on the device, in the compute dtype."""
        start, stop = self.reader.bounds(index)
        if self.filtered_exact:
            rows = np.zeros((self.reader.chunk_size, self.n_bins), self.compute)
            rows[: stop - start] = self.causal[start:stop]
            return jax.device_put(rows)
        chunk = self.reader.read(index)
        prev = jax.device_put(self.checkpoints[index])
        filtered, _, _ = forward_chunk_t(prev, index == 0, chunk.log_lik,
                                         chunk.n_valid, self.transition_t, self.initial)
        return filtered

    # -- summaries ---------------------------------------------------------
    def _summarize(self, posterior, start: int, stop: int, kind: str, final: bool) -> None:
        want_final = final and (self.config.emit_map or self.config.emit_entropy)
        if not (self.want_states or want_final):
            return
        argmax, entropy, states = summarize_chunk(posterior, self.onehot)
        sl = slice(start, stop)
        n = stop - start
        if self.want_states:
            self.summaries[f"{kind}_state_probabilities"][sl] = np.asarray(states)[:n]
        if final and self.config.emit_map:
            self.summaries["map_index"][sl] = np.asarray(argmax)[:n]
        if final and self.config.emit_entropy:
            self.summaries["entropy"][sl] = np.asarray(entropy)[:n]

    def finish(self) -> None:
        """Mark a memmap run complete."""
        if self.manifest is not None:
            self.manifest.update(status="complete", error=None)

    def fail(self, exc: BaseException) -> None:
        """Record in the manifest that the run stopped with ``exc``."""
        if self.manifest is not None:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            with suppress(StorageError):  # keep the original error in view
                self.manifest.update(status=status, error=f"{type(exc).__name__}: {exc}")


def run_engine(
    log_likelihood,
    transition: np.ndarray,
    initial: np.ndarray,
    config: Config,
    *,
    smooth: bool,
    columns: np.ndarray | None = None,
    state_onehot: np.ndarray | None = None,
    store_acausal: bool = True,
    metadata: dict | None = None,
) -> EngineResult:
    """Run the chunked filter (and smoother) over a (T, N) log-likelihood.

    Parameters
    ----------
    log_likelihood : (T, N) NumPy, memmap or dask array
        Time on axis 0; read one chunk of rows at a time.
    transition : (K, K) ndarray
        Row-stochastic transition over the interior bins.
    initial : (K,) ndarray
        Distribution of the first step over the interior bins.
    config : Config
    smooth : bool
        Run the backward pass too.
    columns : (K,) int ndarray, optional
        Interior bins among the N; None means all.
    state_onehot : (K, S) ndarray, optional
        Membership of each interior bin in each discrete state, for the
        per-state probabilities.
    store_acausal : bool, default True
        Keep the full smoothed posterior (False keeps only summaries).
    metadata : dict, optional
        JSON-serialisable description stored in a memmap run's manifest.

    Returns
    -------
    EngineResult
    """
    reader = LikelihoodReader(log_likelihood, columns, config.chunk_size,
                              config.compute_dtype)
    with _precision(config.compute_dtype):
        run = _Run(reader, transition, initial, config, smooth, state_onehot,
                   store_acausal, columns, metadata)
        try:
            run.forward()
            if smooth:
                run.backward()
        except BaseException as exc:
            run.fail(exc)
            raise
        run.finish()
    log_norm = np.asarray(run.log_norm)
    return EngineResult(
        causal=run.causal,
        acausal=run.acausal,
        log_normalizers=log_norm,
        marginal_log_likelihood=math.fsum(log_norm),
        summaries=run.summaries,
        memmap_dir=run.memmap_dir,
    )
