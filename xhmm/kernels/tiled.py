"""A sparse block as tiles: each tile of to-bins reads a few tiles of from-bins.

The movement models of non_local_detector (a random walk on a track graph,
a directional walk, the animal's empirical movement) are zero, in the
compute dtype, outside a small set of ``width x width`` tiles of the
matrix: a band along the bins of a 1-D track, a few stripes in a 2-D grid
flattened row by row, a band plus a few patches where a track graph's
edges meet. :class:`TiledBlock` keeps, for every tile of to-bins, the
from-tiles whose entries into it are not all zero (at most ``m``, padded
with an all-zero tile), in increasing order:

``p @ block`` for to-tile ``o``
    the ``m`` from-tiles of ``p`` side by side (``m * width`` values),
    times an ``(m * width, width)`` slice of the matrix: one batched matrix
    product over the to-tiles;
``block @ r``
    the same with the transposed matrix's tiles;
``max_forward``
    the ``(m * width, width)`` candidates ``p[i] * block[i, j]`` of each
    to-tile and their maximum over the rows; the rows are in increasing
    from-bin order, so the lowest row holding the maximum is the lowest
    from-bin;
``max_column``
    for to-bin ``j``, the ``m * width`` candidates of its column only: the
    same products, so the same maximum and from-bin, bit for bit.

A product costs ``m * width`` multiply-adds per to-bin instead of
``n_from``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .maxproduct import first_max, max_rows

__all__ = ["TiledBlock"]

_HIGHEST = jax.lax.Precision.HIGHEST


@dataclass(frozen=True)
class TiledBlock:
    """An ``(n_from, n_to)`` matrix stored as the tiles that hold its non-zeros.

    Parameters
    ----------
    forward_index : (n_to_tiles, m) int32 array
        For each tile of to-bins, its from-tiles in increasing order, padded
        with ``n_from_tiles`` (an all-zero tile).
    forward_tiles : (n_to_tiles, m * width, width) array
        ``forward_tiles[o, k * width + r, c] = block[forward_index[o, k] *
        width + r, o * width + c]`` (zero outside the matrix).
    backward_index : (n_from_tiles, m_back) int32 array
        The same for the transposed matrix: for each tile of from-bins, the
        to-tiles it reaches.
    backward_tiles : (n_from_tiles, m_back * width, width) array
        ``backward_tiles[o, k * width + r, c] = block[o * width + c,
        backward_index[o, k] * width + r]``.
    n_from, n_to : int
        Matrix shape (static).
    """

    forward_index: jax.Array
    forward_tiles: jax.Array
    backward_index: jax.Array
    backward_tiles: jax.Array
    n_from: int
    n_to: int

    @property
    def width(self) -> int:
        """Bins per tile."""
        return self.forward_tiles.shape[-1]

    def _tiles(self, values: jax.Array) -> jax.Array:
        """(..., n) -> (..., n_tiles + 1, width): whole tiles and a last all-zero tile."""
        n = values.shape[-1]
        n_tiles = -(-n // self.width)
        pad = (n_tiles + 1) * self.width - n
        padded = jnp.pad(values, [(0, 0)] * (values.ndim - 1) + [(0, pad)])
        return padded.reshape(values.shape[:-1] + (n_tiles + 1, self.width))

    def _gathered(self, values: jax.Array, index: jax.Array) -> jax.Array:
        """(..., n) -> (..., n_out_tiles, m * width): each output tile's input tiles."""
        tiles = jnp.take(self._tiles(values), index, axis=-2)  # (..., o, m, width)
        return tiles.reshape(tiles.shape[:-2] + (-1,))

    def _product(self, values: jax.Array, index: jax.Array, tiles: jax.Array,
                 n_out: int) -> jax.Array:
        out = jnp.einsum("...ok,okc->...oc", self._gathered(values, index), tiles,
                         precision=_HIGHEST)
        return out.reshape(out.shape[:-2] + (-1,))[..., :n_out]

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ block`` over the last axis."""
        return self._product(p, self.forward_index, self.forward_tiles, self.n_to)

    def backward(self, r: jax.Array) -> jax.Array:
        """``block @ r`` over the last axis."""
        return self._product(r, self.backward_index, self.backward_tiles, self.n_from)

    def _from_bins(self, tile_index: jax.Array, rows: jax.Array) -> jax.Array:
        """From-bin of candidate row ``rows`` among the from-tiles ``tile_index``."""
        slot, within = jnp.divmod(rows, self.width)
        return jnp.take_along_axis(tile_index, slot, axis=-1) * self.width + within

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``max_i p[i] * block[i, j]`` over the last axis and its argmax.

        Ties go to the lowest from-bin; the from-bin is 0 where the maximum
        is 0.
        """
        candidates = self._gathered(p, self.forward_index)[..., :, :, None] * self.forward_tiles
        values, rows = max_rows(candidates)  # (..., o, width)
        index = jnp.broadcast_to(self.forward_index[:, None, :],
                                 rows.shape + self.forward_index.shape[-1:])
        source = self._from_bins(index, rows[..., None])[..., 0]
        values = values.reshape(values.shape[:-2] + (-1,))[..., :self.n_to]
        source = source.reshape(source.shape[:-2] + (-1,))[..., :self.n_to]
        return values, jnp.where(values > 0, source, 0).astype(jnp.int32)

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n_from)."""
        tile, within = jnp.divmod(j, self.width)
        index = jnp.take(self.forward_index, tile, axis=0)  # (B, m)
        around = jnp.take_along_axis(self._tiles(p), index[:, :, None], axis=1)
        weights = self.forward_tiles[tile, :, within]  # (B, m * width)
        values, rows = (a[:, 0] for a in first_max(around.reshape(weights.shape) * weights))
        source = self._from_bins(index, rows[:, None])[:, 0]
        return values, jnp.where(values > 0, source, 0).astype(jnp.int32)


jax.tree_util.register_dataclass(
    TiledBlock,
    data_fields=["forward_index", "forward_tiles", "backward_index", "backward_tiles"],
    meta_fields=["n_from", "n_to"],
)
