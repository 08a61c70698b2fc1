"""Exact posterior path samples of ``B`` sequences, out of core (FFBS).

The sampler is the Viterbi decoder's run (:class:`xhmm.engine.viterbi.PathDecoder`)
with the filter's kernels:

1. **Forward.** The filter runs chunk by chunk
   (:func:`xhmm.kernels.hmm.forward_chunk`), keeping only the filtered
   distribution at each chunk boundary (``checkpoints``, float64) and, per
   chunk, the float64 sum of its rows' log normalisers (``log_scale``,
   whose sum is the marginal log-likelihood).
2. **Backward sampling.** Chunks in reverse order: each chunk's filtered
   rows are recomputed on the device from its checkpoint, and ``N`` paths
   per sequence are drawn over its rows, last row first, each state from
   ``filtered_t(i) * A_t(i, j)`` given the path's next state ``j``
   (:func:`xhmm.kernels.sampling.sample_chunk`); each path's state at the
   chunk's first row is handed to the chunk before it. Only the drawn
   states come back to the host, written as ``(B, T, N)`` int32 rows.

Memory: one chunk on the device (its ``C x K`` filtered rows and the
``N x K`` weights of one row), the checkpoints (``n_chunks x B x K``) and
the paths on the host, all of them memmaps in a memmap run.

The draws use counter-based uniforms keyed on ``(seed, sequence, time
index)`` (:func:`xhmm.kernels.sampling.sequence_keys`): the same seed gives
the same paths whatever the chunk size, the batch size or a resume, up to
draws that fall within rounding of a boundary between two bins.

Precision follows :class:`xhmm.engine.precision.Precision` as the
smoother's does (float32 chunks recomputed in float64 where float32 may have
lost the posterior); each chunk's filtered rows are recomputed in the dtype
its forward pass used, and every draw's weights (those rows times the
float64 transition's columns), cumulative sums and comparison are float64.
The float64 operator is on the device besides the compute dtype's.

Memmap runs resume as the decoder's do: each chunk's paths are flushed
before the manifest records it, with the states handed to the chunk before
(``entry``), so a resumed run draws the identical paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..kernels.hmm import forward_chunk
from ..kernels.sampling import sample_chunk, sequence_keys
from .precision import FLOAT64
from .reader import Chunk, LikelihoodReader, run_reader
from .runstate import RunResult, drive, precision, run_folder
from .transition import EngineTransition
from .viterbi import PathDecoder

__all__ = ["SampleResult", "run_sampler"]


@dataclass(kw_only=True)
class SampleResult(RunResult):
    """What one sampler run produced, besides
    :class:`~xhmm.engine.runstate.RunResult`'s fields.

    Attributes
    ----------
    paths : (B, T, N) int32 ndarray
        Index into the interior bins of each path's state at each step; -1
        past each sequence's length (a memmap in memmap runs).
    marginal_log_likelihood : (B,) float64 ndarray
        ``log p(y_1..T)`` of each sequence.
    """

    paths: np.ndarray
    marginal_log_likelihood: np.ndarray


class _Sampler(PathDecoder):
    """A :class:`PathDecoder` run whose passes filter and sample (module docstring)."""

    algorithm = "sample_paths"
    checkpoint_name = "checkpoints"
    # the smoother's messages: the forward pass is its filter
    impossible = ("no state bin is possible at {where}: the likelihood is zero (-inf) "
                  "wherever the model's prediction is non-zero")
    near_underflow = ("at {where} the model gave the observed likelihood a prediction of "
                      "about exp({log:.0f}), near the float64 underflow limit: posteriors "
                      "may have lost precision")
    compared = "the filtered posterior"

    def __init__(self, reader: LikelihoodReader, transition, initial, config: Config,
                 folder, metadata: dict | None, n_samples: int, seed: int,
                 sequences: np.ndarray) -> None:
        super().__init__(reader, transition, initial, config, folder, metadata,
                         inputs={"n_samples": n_samples, "seed": seed,
                                 "sequences": np.asarray(sequences).tolist()},
                         samples=(n_samples,))
        with precision("float64"):
            self.keys = sequence_keys(seed, np.asarray(sequences))

    def _forward_kernel(self, args: tuple):
        _, log_norm, last, flags = forward_chunk(*args)
        return last, log_norm, flags

    def _backtrack_kernel(self, chunk: Chunk, args: tuple, dtype: np.dtype,
                          entry: np.ndarray, has_next: np.ndarray):
        operator64 = self.device(FLOAT64).operator
        xs64 = self.transition.step_inputs(chunk.start, self.reader.chunk_size + 1, FLOAT64)
        with precision("float64"):  # float64 draws, whatever the chunk's dtype
            return sample_chunk(*args, entry, has_next, self.keys, np.int64(chunk.start),
                                operator64, xs64)

    def finish(self) -> SampleResult:
        """Mark a memmap run complete and hand over the paths."""
        fields, marginal = self.complete_paths()
        return SampleResult(paths=self.path, marginal_log_likelihood=marginal, **fields)


def run_sampler(
    log_likelihood,
    transition: EngineTransition,
    initial: np.ndarray,
    config: Config,
    *,
    n_samples: int,
    seed: int,
    sequences: np.ndarray | None = None,
    lengths=None,
    columns: np.ndarray | None = None,
    metadata: dict | None = None,
    sequence_ids=None,
    scheduler: str | None = None,
) -> SampleResult:
    """``n_samples`` paths of each of ``B`` sequences drawn from the posterior, chunk by chunk.

    The arguments are those of :func:`xhmm.engine.viterbi.run_viterbi`, and:

    Parameters
    ----------
    n_samples : int
        Paths per sequence.
    seed : int
        In ``[0, 2**63)``.
    sequences : (B,) int ndarray, optional
        Each sequence's position among all sequences of the job, which
        keys its uniforms with ``seed`` (default ``0 .. B - 1``).

    Returns
    -------
    SampleResult

    Raises
    ------
    LikelihoodError
        Bad likelihood rows, or a step where no bin is possible.
    ResumeError, StorageError
        As for the smoother's memmap runs.
    """
    config, reader = run_reader(log_likelihood, columns, config, lengths, sequence_ids,
                                scheduler)
    if sequences is None:
        sequences = np.arange(reader.n_seq)
    with run_folder(config) as folder:
        sampler = _Sampler(reader, transition, initial, config, folder, metadata,
                           n_samples, seed, sequences)
        return drive(sampler, sampler.forward, sampler.backtrack, finish=sampler.finish)
