"""A dense matrix over the interior bins, as the engine runs it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.manifest import array_digest
from ..kernels.operators import dense_operator

__all__ = ["DenseTransition"]


class DenseTransition:
    """A dense (K, K) row-stochastic matrix over the interior bins.

    Parameters
    ----------
    matrix : (K, K) ndarray
    """

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = np.asarray(matrix)
        self.n_bins = int(self.matrix.shape[0])

    def device(self, dtype: np.dtype, n_sequences: int):
        """A :class:`xhmm.kernels.operators.DenseOperator` in ``dtype``."""
        return dense_operator(self.matrix, dtype, n_sequences)

    def step_inputs(self, start: int, n_rows: int, dtype: np.dtype) -> None:
        """None: the matrix is the same at every step."""
        return None

    def digest(self) -> str:
        """Hash of the matrix in float64."""
        return array_digest(np.asarray(self.matrix, dtype=np.float64))

    def describe(self) -> dict[str, Any]:
        """``{"kind": "dense", "n_bins": K}``."""
        return {"kind": "dense", "n_bins": self.n_bins}
