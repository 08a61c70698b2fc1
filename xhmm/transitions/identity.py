"""``Identity``: bin ``k`` of the from-state moves to bin ``k`` of the to-state.

The block kind (see :mod:`xhmm.transitions.block`): :class:`Identity` plans
a :class:`PlannedIdentity`, which runs on the device as an
:class:`IdentityBlock` (a gather).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import TransitionError
from ..kernels.operators import gather
from .block import PlannedBlock, TransitionBlock, device_indices, inverse_index
from .layout import StateBins

__all__ = ["Identity", "PlannedIdentity", "IdentityBlock"]


@dataclass(frozen=True)
class Identity(TransitionBlock):
    """Stay in the same bin: bin ``k`` of the from-state moves to bin ``k`` of the to-state.

    The two states must have the same number of bins, and every interior
    bin of the from-state must be an interior bin of the to-state.
    """

    kind = "identity"
    nld_names = ("Identity",)

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block (:class:`PlannedIdentity`).

        Raises
        ------
        TransitionError
            Unequal states, or an interior bin moving to an exterior one.
        """
        if src.n_bins != dst.n_bins:
            raise TransitionError(
                f"{name}: Identity needs states of equal size; {src.label!r} has "
                f"{src.n_bins} bins, {dst.label!r} has {dst.n_bins}"
            )
        lost = src.interior & ~dst.interior
        if lost.any():
            raise TransitionError(
                f"{name}: Identity moves interior bin {int(np.argmax(lost))} of "
                f"{src.label!r} to an exterior bin of {dst.label!r}"
            )
        position = np.cumsum(dst.interior) - 1
        return PlannedIdentity(position[src.interior].astype(np.int64), dst.n_interior)

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "Identity":
        """non_local_detector's ``Identity``: the same block."""
        return cls()


@dataclass(frozen=True, eq=False)
class PlannedIdentity(PlannedBlock):
    """Interior from-bin ``i`` moves to interior to-bin ``from_to[i]``."""

    from_to: np.ndarray
    n_to: int

    @property
    def label(self) -> str:
        """How the block runs, for ``describe()``."""
        return "identity"

    @property
    def cost(self) -> int:
        """Multiply-adds per row of a product."""
        return self.n_to

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays that identify the block (for the digest)."""
        return (self.from_to,)

    def dense(self) -> np.ndarray:
        """The (n_from, n_to) float64 matrix over interior bins."""
        out = np.zeros((self.from_to.size, self.n_to))
        out[np.arange(self.from_to.size), self.from_to] = 1.0
        return out

    def device(self, dtype: np.dtype, n_sequences: int) -> IdentityBlock:
        """The kernel block in ``dtype`` (see :class:`xhmm.kernels.structured.BlocksOperator`)."""
        n_from = self.from_to.size
        if n_from == self.n_to and np.array_equal(self.from_to, np.arange(n_from)):
            return IdentityBlock(None, None)
        return IdentityBlock(device_indices(inverse_index(self.from_to, self.n_to)), device_indices(self.from_to))


@dataclass(frozen=True)
class IdentityBlock:
    """Bin ``k`` of the from-state moves to bin ``k`` of the to-state.

    Parameters
    ----------
    to_from : (n_to,) int array or None
        For each interior to-bin, the interior from-bin that moves to it
        (``n_from`` where none does); None when it is the identity.
    from_to : (n_from,) int array or None
        For each interior from-bin, the interior to-bin it moves to.
    """

    to_from: jax.Array | None
    from_to: jax.Array | None

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ block`` over the last axis."""
        return p if self.to_from is None else gather(p, self.to_from)

    def backward(self, r: jax.Array) -> jax.Array:
        """``block @ r`` over the last axis."""
        return r if self.from_to is None else gather(r, self.from_to)

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The value moving to each to-bin and its from-bin (0 where none does)."""
        n_from = p.shape[-1]
        if self.to_from is None:
            return p, jnp.broadcast_to(jnp.arange(n_from, dtype=jnp.int32), p.shape)
        source = jnp.minimum(self.to_from, n_from - 1)
        return self.forward(p), jnp.broadcast_to(source, p.shape[:-1] + source.shape)

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n_from)."""
        source = j if self.to_from is None else jnp.take(self.to_from, j)
        value = jnp.take_along_axis(p, source[:, None], axis=-1, mode="fill", fill_value=0)
        return value[:, 0], jnp.minimum(source, p.shape[-1] - 1)


jax.tree_util.register_dataclass(IdentityBlock, data_fields=["to_from", "from_to"],
                                 meta_fields=[])
