"""A planned block held by its non-zeros, run as tiles (:mod:`xhmm.kernels.tiled`).

The movement blocks (:mod:`.empirical`, :mod:`.directional`,
:mod:`.track_graph`) are mostly zero: :class:`PlannedTiled` keeps only the
non-zero entries (float64, row by row), never the ``(n_from, n_to)``
matrix, and on the device runs as a :class:`~xhmm.kernels.tiled.TiledBlock`
over the tiles whose entries are not all zero in the compute dtype, or as
a dense block when that is not cheaper (:func:`tiling`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import jax.numpy as jnp
import numpy as np

from ..errors import TransitionError
from ..kernels.tiled import TiledBlock
from .block import PlannedBlock
from .matrix import BandedBlock, DenseBlock, PlannedDense

__all__ = ["PlannedTiled", "Tiling", "tiling", "stochastic_rows", "check_square", "WIDTHS",
           "ROWS_AT_ONCE"]

#: Tile widths tried, in bins.
WIDTHS = (8, 16, 32, 64, 128)
#: Per from-tile of a to-tile, the overhead of gathering it, counted in
#: multiply-adds per bin of the to-tile. On CPU a product's time follows its
#: multiply-adds (``m * width`` per bin; 0.2 ns each at K = 3,600, a 2-D
#: grid: 95 us a step at width 8 against 375 us at width 128), with little
#: cost per tile.
TILE_OVERHEAD = 8
#: Tiled only when its cost is at most this fraction of the dense product's.
MAX_COST_FRACTION = 0.5
#: Rows of a block computed at once while its non-zeros are collected.
ROWS_AT_ONCE = 256


@dataclass(frozen=True)
class Tiling:
    """The tiles holding a matrix's non-zeros, for one tile width.

    Attributes
    ----------
    width : int
    index : (n_out_tiles, m) int64 ndarray
        For each output tile (of columns), its input tiles (of rows) in
        increasing order, padded with ``n_in_tiles``.
    cost : int
        Multiply-adds per row of a product, with the tiles' overhead.
    """

    width: int
    index: np.ndarray
    cost: int


def _tile_index(out_tiles: np.ndarray, in_tiles: np.ndarray, n_out: int,
                n_in: int) -> np.ndarray:
    """ELL index of the (output tile, input tile) pairs: rows per output tile, padded."""
    pairs = np.unique(out_tiles * (n_in + 1) + in_tiles)
    out, inp = np.divmod(pairs, n_in + 1)
    counts = np.bincount(out, minlength=n_out)
    index = np.full((n_out, max(1, int(counts.max(initial=0)))), n_in, dtype=np.int64)
    slot = np.arange(out.size) - np.repeat(np.cumsum(counts) - counts, counts)
    index[out, slot] = inp
    return index


def tiling(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> Tiling | None:
    """The cheapest tiling of the non-zeros at ``(rows, cols)``, if cheaper than dense.

    Parameters
    ----------
    rows, cols : int ndarrays
        Positions of the non-zeros (in the compute dtype).
    shape : (int, int)
        ``(n_from, n_to)``.

    Returns
    -------
    Tiling or None
        The width of :data:`WIDTHS` with the lowest cost; None when that
        cost exceeds :data:`MAX_COST_FRACTION` of the dense product's
        ``n_from * n_to``.
    """
    n_from, n_to = shape
    best = None
    for width in WIDTHS:
        n_in, n_out = -(-n_from // width), -(-n_to // width)
        index = _tile_index(cols // width, rows // width, n_out, n_in)
        cost = n_out * index.shape[1] * width * (width + TILE_OVERHEAD)
        if best is None or cost < best.cost:
            best = Tiling(width, index, cost)
    if best.cost > MAX_COST_FRACTION * n_from * n_to:
        return None
    return best


def _tiles(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, index: np.ndarray,
           width: int) -> np.ndarray:
    """``tiles[o, k * width + r, c] = matrix[index[o, k] * width + r, o * width + c]``."""
    n_out, m = index.shape
    slot_of = np.full((n_out, int(index.max()) + 1), -1, dtype=np.int64)
    slot_of[np.arange(n_out)[:, None], index] = np.arange(m)
    out_tile, c = np.divmod(cols, width)
    in_tile, r = np.divmod(rows, width)
    tiles = np.zeros((n_out, m * width, width), dtype=values.dtype)
    tiles[out_tile, slot_of[out_tile, in_tile] * width + r, c] = values
    return tiles


def stochastic_rows(chunks: Iterable[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int],
                    name: str, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collect the non-zeros of row-normalised weights, a few rows at a time.

    Parameters
    ----------
    chunks : iterable of (rows, weights)
        Interior from-bins (int ndarray) and their non-negative weights
        ``(rows.size, n_to)`` over the interior to-bins, in order.
    shape : (int, int)
        ``(n_from, n_to)``.
    name, kind : str
        The block and its kind, for error messages.

    Returns
    -------
    rows, cols, values : ndarrays
        The non-zeros of the normalised rows, row by row.

    Raises
    ------
    TransitionError
        If a row has no weight.
    """
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for rows, weights in chunks:
        sums = weights.sum(axis=1)
        if not (sums > 0).all():
            i = int(rows[np.argmin(sums > 0)])
            raise TransitionError(
                f"{name}: {kind} interior bin {i} of the from-state reaches no interior bin "
                "of the to-state"
            )
        at, cols = np.nonzero(weights)
        found.append((rows[at], cols, weights[at, cols] / sums[at]))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return tuple(np.concatenate(parts) for parts in zip(*found))


@dataclass(frozen=True, eq=False)
class PlannedTiled(PlannedBlock):
    """An (n_from, n_to) float64 block held by its non-zeros.

    Attributes
    ----------
    rows, cols : (nnz,) int64 ndarrays
        Positions of the non-zeros, row by row.
    values : (nnz,) float64 ndarray
        The non-zeros; each row sums to 1.
    shape : (int, int)
        ``(n_from, n_to)``.
    note : str
        The block's kind and parameters, after the plan in :attr:`label`.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    note: str

    @cached_property
    def _float32_tiling(self) -> Tiling | None:
        kept = self.values.astype(np.float32) != 0
        return tiling(self.rows[kept], self.cols[kept], self.shape)

    @property
    def label(self) -> str:
        """How the block runs, for ``describe()`` (as judged in float32)."""
        n_from, n_to = self.shape
        plan = self._float32_tiling
        if plan is None:
            return f"dense {n_from}x{n_to} ({self.note})"
        return (f"tiled {n_from}x{n_to} (tiles of {plan.width} bins, up to "
                f"{plan.index.shape[1]} per tile) ({self.note})")

    @property
    def cost(self) -> int:
        """Multiply-adds per row of a product (as judged in float32)."""
        plan = self._float32_tiling
        return self.shape[0] * self.shape[1] if plan is None else plan.cost

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays that identify the block (for the digest)."""
        return (self.rows, self.cols, self.values, np.asarray(self.shape))

    def dense(self) -> np.ndarray:
        """The (n_from, n_to) float64 matrix over interior bins."""
        out = np.zeros(self.shape)
        out[self.rows, self.cols] = self.values
        return out

    def device(self, dtype: np.dtype, n_sequences: int
               ) -> TiledBlock | DenseBlock | BandedBlock:
        """A :class:`TiledBlock` of the non-zeros in ``dtype``, or a dense block."""
        values = self.values.astype(dtype)
        kept = values != 0
        rows, cols, values = self.rows[kept], self.cols[kept], values[kept]
        plan = tiling(rows, cols, self.shape)
        if plan is None:
            return PlannedDense(self.dense()).device(dtype, n_sequences)
        back = _tile_index(rows // plan.width, cols // plan.width,
                           -(-self.shape[0] // plan.width), -(-self.shape[1] // plan.width))
        return TiledBlock(
            forward_index=jnp.asarray(plan.index, dtype=jnp.int32),
            forward_tiles=jnp.asarray(_tiles(rows, cols, values, plan.index, plan.width)),
            backward_index=jnp.asarray(back, dtype=jnp.int32),
            backward_tiles=jnp.asarray(_tiles(cols, rows, values, back, plan.width)),
            n_from=self.shape[0],
            n_to=self.shape[1],
        )


def check_square(n_bins: int, src_bins: int, dst_bins: int, name: str, kind: str,
                 what: str) -> None:
    """A :class:`TransitionError` unless both states have ``n_bins`` bins."""
    for bins in (src_bins, dst_bins):
        if bins != n_bins:
            raise TransitionError(
                f"{name}: {kind} {what} describes {n_bins} bins but a state of the block "
                f"has {bins}"
            )
