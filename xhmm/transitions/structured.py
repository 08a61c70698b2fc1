"""The engine's view of a planned block transition.

:class:`StructuredTransition` implements
:class:`xhmm.engine.transition.EngineTransition` for a :class:`Blocks`
transition or an analysed dense matrix: the device operator
(:class:`~xhmm.kernels.structured.BlocksOperator`), the per-step discrete
inputs, the resume digest, the plan for the result attributes, and the
equivalent dense matrix.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.manifest import array_digest
from ..kernels.structured import BlocksOperator
from .block import PlannedBlock
from .discrete import DiscreteSchedule
from .layout import StateLayout

__all__ = ["StructuredTransition"]


class StructuredTransition:
    """A planned block transition (implements ``EngineTransition``).

    Parameters
    ----------
    layout : StateLayout
    discrete : DiscreteSchedule
    planned : dict of (int, int) to PlannedBlock
        The block of each (from, to) state pair that moves probability.
    kind : str
        ``"blocks"`` or ``"dense-analysed"``, for :meth:`describe`.
    fingerprint : callable or None
        Computes :meth:`digest` (default: from the planned blocks).
    """

    def __init__(self, layout: StateLayout, discrete: DiscreteSchedule,
                 planned: dict[tuple[int, int], PlannedBlock], kind: str,
                 fingerprint: Callable[[], str] | None = None) -> None:
        self.layout = layout
        self.discrete = discrete
        self.planned = dict(sorted(planned.items()))
        self.kind = kind
        self.n_bins = layout.n_interior
        self._fingerprint = fingerprint

    def device(self, dtype: np.dtype, n_sequences: int) -> BlocksOperator:
        """The :class:`~xhmm.kernels.structured.BlocksOperator` in ``dtype``."""
        order = np.concatenate([state.columns for state in self.layout.states])
        permuted = not np.array_equal(order, np.arange(self.n_bins))
        static = self.discrete.static
        return BlocksOperator(
            discrete=None if static is None else jnp.asarray(static, dtype=dtype),
            blocks=tuple(block.device(dtype, n_sequences) for block in self.planned.values()),
            perm=jax.device_put(order.astype(np.int32)) if permuted else None,
            inv_perm=jax.device_put(np.argsort(order).astype(np.int32)) if permuted else None,
            offsets=tuple(int(n) for n in np.cumsum(
                [0] + [state.n_interior for state in self.layout.states])),
            pairs=tuple(self.planned),
        )

    def step_inputs(self, start: int, n_rows: int, dtype: np.dtype) -> np.ndarray | None:
        """(n_rows, S, S) discrete inputs of steps ``start ..`` (None if static)."""
        return self.discrete.inputs(start, n_rows, dtype)

    def digest(self) -> str:
        """Content hash of the layout, the discrete transition and the blocks."""
        if self._fingerprint is not None:
            return self._fingerprint()
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.kind, self.layout.labels, self.discrete.fingerprint)).encode())
        for state in self.layout.states:
            h.update(array_digest(state.columns).encode())
        for (s, t), block in self.planned.items():
            h.update(f"{s},{t},{block.label}".encode())
            for array in block.arrays():
                h.update(array_digest(array).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """How the transition runs: kind, bins, states, discrete, each block's plan."""
        labels = self.layout.labels
        return {
            "kind": self.kind,
            "n_bins": self.n_bins,
            "states": ", ".join(map(str, labels)),
            "discrete": "time-varying" if self.discrete.time_varying else "static",
            "blocks": "; ".join(f"{labels[s]}->{labels[t]}: {block.label}"
                                for (s, t), block in self.planned.items()),
        }

    def matrix(self, time_index: int | None = None) -> np.ndarray:
        """The (K, K) float64 matrix over the interior bins.

        Parameters
        ----------
        time_index : int, optional
            For a time-varying discrete transition, the step ``t`` that the
            matrix moves to ``t + 1``.
        """
        discrete = self.discrete.at(time_index)
        out = np.zeros((self.n_bins, self.n_bins))
        states = self.layout.states
        for (s, t), block in self.planned.items():
            out[np.ix_(states[s].columns, states[t].columns)] = discrete[s, t] * block.dense()
        return out
