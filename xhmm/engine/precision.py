"""The precision policy: which dtype each chunk runs in, for every recursion.

The smoother (:mod:`xhmm.engine.loop`) and the Viterbi decoder
(:mod:`xhmm.engine.viterbi`) follow the same policy, set by
``Config.compute_dtype``:

``"float64"``
    Every chunk runs in float64.
``"auto"`` (the default)
    Each chunk runs in float32. Where the forward kernel's flags say float32
    may have lost the answer (a prediction that underflowed while the
    likelihood is high, or a step float32 cannot represent), the chunks
    since the last chunk without tiny predictions are recomputed in float64
    from their float64 checkpoint, and float64 goes on until a chunk has no
    tiny prediction; then the next chunk returns to float32.
``"float32"``
    As ``"auto"``, but where the flags fire the float32 answer is checked
    against the float64 recomputation: a difference above
    :data:`FLOAT32_TOLERANCE` raises :class:`xhmm.NumericalError` (a flag is
    a suspicion; where float32 was right, the run goes on with the float64
    rows).

The backward pass (smoothing or backtracking) runs each chunk in the dtype
its forward pass used. The per-chunk record is part of a memmap run's
manifest, so a resumed run continues with the same dtypes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import NumericalError
from .reader import Chunk, first_true

__all__ = ["Precision", "FLOAT32_TOLERANCE", "FLOAT32", "FLOAT64"]

#: Largest difference of a float32 result entry (a filtered probability, a
#: max-message rescaled to a maximum of 1) from its float64 recomputation
#: that explicit ``compute_dtype="float32"`` accepts.
FLOAT32_TOLERANCE = 1e-5
FLOAT32 = np.dtype("float32")
FLOAT64 = np.dtype("float64")


class Precision:
    """The dtype of every chunk of one run (see the module docstring).

    Parameters
    ----------
    mode : {"auto", "float32", "float64"}
        ``Config.compute_dtype``.
    n_chunks : int
    """

    def __init__(self, mode: str, n_chunks: int) -> None:
        self.mode = mode
        self.float64 = np.full(n_chunks, mode == "float64")
        self.tiny = np.zeros(n_chunks, dtype=bool)

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the per-chunk record of a resumed run's manifest."""
        self.float64[:] = data["chunk_float64"]
        self.tiny[:] = data["chunk_tiny"]

    def state(self) -> dict[str, list[bool]]:
        """The per-chunk record, for the manifest."""
        return {"chunk_float64": self.float64.tolist(), "chunk_tiny": self.tiny.tolist()}

    @property
    def float64_chunks(self) -> int:
        """Chunks that ran in float64."""
        return int(self.float64.sum())

    def dtype_of(self, index: int) -> np.dtype:
        """The dtype chunk ``index`` ran in (its backward pass runs in it too)."""
        return FLOAT64 if self.float64[index] else FLOAT32

    def next_dtype(self, index: int) -> np.dtype:
        """The dtype a fresh forward pass over chunk ``index`` starts in."""
        if self.mode == "float64":
            return FLOAT64
        previous = index - 1
        keep = previous >= 0 and self.float64[previous] and self.tiny[previous]
        return FLOAT64 if keep else FLOAT32

    def record(self, index: int, dtype: np.dtype, flags: np.ndarray) -> None:
        """Note the dtype chunk ``index`` ran in and whether it had tiny predictions.

        ``flags`` is the forward kernel's ``(B, C, 2)`` ``tiny`` / ``risk``
        per row (:mod:`xhmm.kernels.hmm`).
        """
        self.float64[index] = dtype == FLOAT64
        self.tiny[index] = bool(np.asarray(flags)[..., 0].any())

    @staticmethod
    def lost(chunk: Chunk, log_scale: np.ndarray, flags: np.ndarray, dtype: np.dtype) -> bool:
        """Whether a float32 chunk may have lost the answer.

        ``flags`` as in :meth:`record`; a real row whose log scale is not
        finite counts too.
        """
        if dtype != FLOAT32:
            return False
        n_rows = chunk.stop - chunk.start
        return bool((flags[:, :n_rows, 1]
                     | (chunk.valid & ~np.isfinite(log_scale[:, :n_rows]))).any())

    def redo_start(self, index: int) -> int:
        """First chunk to recompute in float64 when chunk ``index`` lost precision.

        The run of chunks with tiny predictions that ends at ``index``: its
        first chunk starts from a checkpoint that float32 did not spoil.
        """
        start = index
        while start > 0 and self.tiny[start - 1]:
            start -= 1
        return start

    def verify(self, approximate: np.ndarray, exact: np.ndarray, valid: np.ndarray,
               where, what: str) -> None:
        """With ``"float32"``, raise where float32 rows differ from their float64 recomputation.

        Parameters
        ----------
        approximate, exact : (B, R, K) ndarrays
            The float32 rows and their float64 recomputation.
        valid : (B, R) bool ndarray
            Real rows.
        where : callable
            ``where(b, r)`` names row ``r`` of sequence ``b`` in the message.
        what : str
            What the rows are, for the message (e.g. "the filtered posterior").

        Raises
        ------
        NumericalError
            At the first real row off by more than :data:`FLOAT32_TOLERANCE`
            (or not finite).
        """
        if self.mode != "float32":
            return
        with np.errstate(invalid="ignore"):
            error = np.abs(approximate - exact).max(axis=2)
        found = first_true(valid & ~(error <= FLOAT32_TOLERANCE))
        if found is not None:
            b, row = found
            raise NumericalError(
                f"float32 lost the answer at {where(b, row)}: a prediction fell below "
                f"float32's range where the likelihood is high, and {what} is off by "
                f"{float(error[b, row]):.3g} (or not finite); use compute_dtype='auto' "
                "(the default) or 'float64'"
            )
