"""The engine's view of a transition: a device operator and its per-step inputs.

The engine asks a transition for three things and nothing else:

- ``device(dtype, n_sequences)``: the operator pytree the kernels call (see
  :mod:`xhmm.kernels.operators`), built once per run;
- ``step_inputs(start, n_rows, dtype)``: the per-step inputs of time rows
  ``start .. start + n_rows`` (``n_rows = C + 1`` for a chunk of ``C``
  rows), or None for a transition that is the same at every step;
- ``digest()``: a content hash for the resume manifest.

The transitions themselves live in :mod:`xhmm.transitions`: a dense matrix
(:class:`xhmm.transitions.dense_transition.DenseTransition`) and the
structured and time-varying ones
(:class:`xhmm.transitions.structured.StructuredTransition`) implement this
protocol; the engine imports neither.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = ["EngineTransition"]


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
