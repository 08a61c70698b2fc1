"""``Uniform``: move to any interior bin of the to-state with equal probability.

The block kind (see :mod:`xhmm.transitions.block`): :class:`Uniform` plans
a :class:`PlannedRankOne` (every row the same; also what the analysis of a
dense matrix finds for rank-one state blocks), which runs on the device as
a :class:`RankOneBlock`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.maxproduct import first_max
from ..kernels.operators import HIGHEST
from .block import PlannedBlock, TransitionBlock
from .layout import StateBins

__all__ = ["Uniform", "PlannedRankOne", "RankOneBlock"]


@dataclass(frozen=True)
class Uniform(TransitionBlock):
    """Move to any interior bin of the to-state with equal probability.

    A rank-one block: the product is the from-state's total probability
    spread evenly, whatever the bins.
    """

    kind = "uniform"
    nld_names = ("Uniform",)

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block (:class:`PlannedRankOne`)."""
        return PlannedRankOne(None, src.n_interior, dst.n_interior)

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "Uniform":
        """non_local_detector's ``Uniform``: the same block."""
        return cls()


@dataclass(frozen=True, eq=False)
class PlannedRankOne(PlannedBlock):
    """Every row the same (``vector``; None for uniform ``1 / n_to``)."""

    vector: np.ndarray | None
    n_from: int
    n_to: int

    @property
    def label(self) -> str:
        """How the block runs, for ``describe()``."""
        return "uniform" if self.vector is None else "rank-one"

    @property
    def cost(self) -> int:
        """Multiply-adds per row of a product."""
        return self.n_from + self.n_to

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays that identify the block (for the digest)."""
        return () if self.vector is None else (self.vector,)

    def dense(self) -> np.ndarray:
        """The (n_from, n_to) float64 matrix over interior bins."""
        row = np.full(self.n_to, 1 / self.n_to) if self.vector is None else self.vector
        return np.broadcast_to(row, (self.n_from, self.n_to)).copy()

    def device(self, dtype: np.dtype, n_sequences: int) -> RankOneBlock:
        """The kernel block in ``dtype`` (see :class:`xhmm.kernels.structured.BlocksOperator`)."""
        vector = None if self.vector is None else jnp.asarray(self.vector, dtype=dtype)
        return RankOneBlock(vector, self.n_to)


@dataclass(frozen=True)
class RankOneBlock:
    """Every row the same: ``p @ block = sum(p) * vector``.

    Parameters
    ----------
    vector : (n_to,) array or None
        The common row; None for the uniform row ``1 / n_to``.
    n_to : int
        Interior bins of the to-state (static).
    """

    vector: jax.Array | None
    n_to: int

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ block`` over the last axis (uniform: a trailing axis of 1)."""
        mass = jnp.sum(p, axis=-1, keepdims=True)
        return mass / self.n_to if self.vector is None else mass * self.vector

    def backward(self, r: jax.Array) -> jax.Array:
        """``block @ r`` over the last axis, a trailing axis of 1 (all rows equal)."""
        if self.vector is None:
            return jnp.sum(r, axis=-1, keepdims=True) / self.n_to
        return jnp.matmul(r, self.vector, precision=HIGHEST)[..., None]

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``max_i p[i] * block[i, j]`` and its argmax: ``max(p) * vector``, ``argmax(p)``.

        Uniform: a trailing axis of 1, as :meth:`forward`.
        """
        peak, source = first_max(p)
        if self.vector is None:
            return peak / self.n_to, source
        shape = peak.shape[:-1] + self.vector.shape
        return peak * self.vector, jnp.broadcast_to(source, shape)

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n_from)."""
        peak, source = (a[:, 0] for a in first_max(p))
        if self.vector is None:
            return peak / self.n_to, source
        return peak * jnp.take(self.vector, j), source


jax.tree_util.register_dataclass(RankOneBlock, data_fields=["vector"], meta_fields=["n_to"])
