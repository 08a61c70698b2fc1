"""The engine's view of a transition: a device operator and its per-step inputs.

The engine asks a transition for three things and nothing else:

- ``device(dtype, n_sequences)``: the operator pytree the kernels call (see
  :mod:`xhmm.kernels.operators`), built once per run;
- ``step_inputs(start, n_rows, dtype)``: the per-step inputs of time rows
  ``start .. start + n_rows`` (``n_rows = C + 1`` for a chunk of ``C``
  rows), or None for a transition that is the same at every step;
- ``digest()``: a content hash for the resume manifest.

:class:`DenseTransition` is the dense matrix. Structured and time-varying
transitions implement the same three methods.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..kernels.operators import dense_operator
from .manifest import array_digest

__all__ = ["EngineTransition", "DenseTransition", "as_engine_transition"]


class EngineTransition(Protocol):
    """What the engine needs of a transition (see the module docstring)."""

    n_bins: int

    def device(self, dtype: np.dtype, n_sequences: int) -> Any:
        """The operator pytree for the kernels."""

    def step_inputs(self, start: int, n_rows: int, dtype: np.dtype) -> Any:
        """Per-step inputs of rows ``start .. start + n_rows`` (None if static)."""

    def digest(self) -> str:
        """Content hash for the resume manifest."""

    def describe(self) -> dict[str, Any]:
        """How the transition runs, for the result attributes."""


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


def as_engine_transition(transition) -> EngineTransition:
    """Wrap a matrix as a :class:`DenseTransition`; pass an operator through."""
    if hasattr(transition, "device") and hasattr(transition, "step_inputs"):
        return transition
    return DenseTransition(transition)
