"""Host-side blocks of a planned transition, in float64 over interior bins.

Each planned block knows its exact float64 matrix (:meth:`dense`), its cost
per row of a product, the arrays that identify it (for the resume digest)
and how to put itself on the device as a :mod:`xhmm.kernels.structured`
block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.operators import device_matrix
from ..kernels.structured import (
    BandedBlock,
    DenseBlock,
    IdentityBlock,
    RankOneBlock,
    SeparableBlock,
)
from .bands import band_width, windows

__all__ = [
    "PlannedRankOne",
    "PlannedIdentity",
    "PlannedDense",
    "PlannedSeparable",
    "PlannedBlock",
]


def _indices(values: np.ndarray) -> jax.Array:
    return jax.device_put(np.asarray(values, dtype=np.int32))


def _inverse(cells: np.ndarray, n_cells: int) -> np.ndarray:
    """For each of ``n_cells``, its position in ``cells`` (``len(cells)`` if none)."""
    inverse = np.full(n_cells, cells.size, dtype=np.int64)
    inverse[cells] = np.arange(cells.size)
    return inverse


@dataclass(frozen=True, eq=False)
class PlannedRankOne:
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
        """The kernel block in ``dtype`` (see :mod:`xhmm.kernels.structured`)."""
        vector = None if self.vector is None else jnp.asarray(self.vector, dtype=dtype)
        return RankOneBlock(vector, self.n_to)


@dataclass(frozen=True, eq=False)
class PlannedIdentity:
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
        """The kernel block in ``dtype`` (see :mod:`xhmm.kernels.structured`)."""
        n_from = self.from_to.size
        if n_from == self.n_to and np.array_equal(self.from_to, np.arange(n_from)):
            return IdentityBlock(None, None)
        return IdentityBlock(_indices(_inverse(self.from_to, self.n_to)), _indices(self.from_to))


@dataclass(frozen=True, eq=False)
class PlannedDense:
    """An (n_from, n_to) matrix; banded where its zeros allow (:mod:`.bands`).

    ``note`` (where the matrix came from) follows the plan in :attr:`label`.
    """

    matrix: np.ndarray
    note: str = ""

    @property
    def label(self) -> str:
        """How the block runs, for ``describe()`` (banded as judged in float32)."""
        n_from, n_to = self.matrix.shape
        width = band_width(self.matrix.astype(np.float32))
        plan = (f"dense {n_from}x{n_to}" if width is None else
                f"banded {n_from}x{n_to} (tiles of {width} bins)")
        return f"{plan} ({self.note})" if self.note else plan

    @property
    def cost(self) -> int:
        """Multiply-adds per row of a product (dense)."""
        return int(self.matrix.size)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays that identify the block (for the digest)."""
        return (self.matrix,)

    def dense(self) -> np.ndarray:
        """The (n_from, n_to) float64 matrix over interior bins."""
        return np.array(self.matrix, dtype=np.float64)

    def device(self, dtype: np.dtype, n_sequences: int) -> DenseBlock | BandedBlock:
        """A :class:`BandedBlock` if banded in ``dtype``, else a :class:`DenseBlock`."""
        host = np.asarray(self.matrix, dtype=dtype)
        width = band_width(host)
        if width is not None:
            forward, backward = windows(host, width)
            return BandedBlock(jnp.asarray(forward), jnp.asarray(backward), host.shape[0])
        return DenseBlock(*device_matrix(host, dtype, n_sequences))


@dataclass(frozen=True, eq=False)
class PlannedSeparable:
    """A Gaussian random walk on a Cartesian grid (:class:`SeparableBlock`).

    Attributes
    ----------
    gx, gy : (nx, nx), (ny, ny) float64 ndarrays
        One-dimensional Gaussian factors.
    z : (n_from,) float64 ndarray
        Row sums over the interior to-bins.
    from_cells, to_cells : int64 ndarrays
        Grid cell (``a * ny + b``) of each interior from- and to-bin.
    """

    gx: np.ndarray
    gy: np.ndarray
    z: np.ndarray
    from_cells: np.ndarray
    to_cells: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(nx, ny)``."""
        return (self.gx.shape[0], self.gy.shape[0])

    @property
    def label(self) -> str:
        """How the block runs, for ``describe()``."""
        return f"separable {self.shape[0]}x{self.shape[1]}"

    @property
    def cost(self) -> int:
        """Multiply-adds per row of a product."""
        nx, ny = self.shape
        return nx * ny * (nx + ny)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays that identify the block (for the digest)."""
        return (self.gx, self.gy, self.z, self.from_cells, self.to_cells)

    def dense(self) -> np.ndarray:
        """The (n_from, n_to) float64 matrix over interior bins."""
        ny = self.shape[1]
        (ai, bi), (aj, bj) = divmod(self.from_cells, ny), divmod(self.to_cells, ny)
        return self.gx[np.ix_(ai, aj)] * self.gy[np.ix_(bi, bj)] / self.z[:, None]

    def device(self, dtype: np.dtype, n_sequences: int) -> SeparableBlock:
        """The kernel block in ``dtype`` (see :mod:`xhmm.kernels.structured`)."""
        n_cells = self.shape[0] * self.shape[1]
        return SeparableBlock(
            gx=jnp.asarray(self.gx, dtype=dtype),
            gy=jnp.asarray(self.gy, dtype=dtype),
            inv_z=jnp.asarray(1 / self.z, dtype=dtype),
            from_cells=_indices(_inverse(self.from_cells, n_cells)),
            from_bins=_indices(self.from_cells),
            to_cells=_indices(_inverse(self.to_cells, n_cells)),
            to_bins=_indices(self.to_cells),
            shape=self.shape,
        )


PlannedBlock = Union[PlannedRankOne, PlannedIdentity, PlannedDense, PlannedSeparable]
