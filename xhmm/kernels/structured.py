"""Structured transition operators: blocks over discrete states.

The state bins (interior only, ``K`` of them) belong to ``S`` discrete
states. The transition factors as

``A[i, j] = discrete[s(i), s(j)] * block[s(i), s(j)][i, j]``

where each block is row-stochastic over the interior bins of its to-state.
:class:`BlocksOperator` implements the products of
:mod:`xhmm.kernels.operators` block by block, so a product costs the sum of
its blocks' costs instead of ``K * K``:

- :class:`RankOneBlock`: every row the same vector (uniform by default):
  the product is the from-state's mass times that vector;
- :class:`IdentityBlock`: bin ``k`` of the from-state moves to bin ``k`` of
  the to-state;
- :class:`DenseBlock`: an ``(n_from, n_to)`` matrix;
- :class:`BandedBlock`: a square matrix whose non-zeros lie within a band
  (the others are exactly zero in the compute dtype), as windowed tiles;
- :class:`SeparableBlock`: a Gaussian random walk on an ``nx * ny`` grid,
  ``p @ C = gather(gx.T @ grid(p / z) @ gy)``, two small dense products.

The discrete matrix is either a leaf of the operator (static) or the
operator's per-step input ``x`` of shape (S, S) (time-varying): the blocks
never depend on the step, so a chunk's block products are computed once and
each row is then scaled by its own discrete entries.

Max-product (``max_predict``, for the Viterbi decoder) goes block by block
too: each block's ``max_forward`` gives, for every to-bin, the largest
``p[i] * block[i, j]`` and its from-bin ``i`` at the same cost as its
product (the random walk in two stages: ``max_a gx[a, c] * max_b p[a, b] *
gy[b, d]``, since every factor is non-negative), and the blocks into each
to-state are compared after scaling by their discrete entries. Ties go to
the lowest index within a block (within each stage for the random walk) and
then to the lowest interior from-bin across blocks. ``max_column`` (the
Viterbi backtrack's back-pointer of one to-bin per sequence) computes the
same candidates for that to-bin only, with the same products and ties:
each block's ``max_column`` is one entry of its ``max_forward``, bit for bit.

Every shape and index array is fixed when the operator is built, so the
scans compile once per layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from .maxproduct import column_max, first_max, keep_better, max_rows
from .operators import HIGHEST, dense_predict

__all__ = [
    "RankOneBlock",
    "IdentityBlock",
    "DenseBlock",
    "BandedBlock",
    "SeparableBlock",
    "Block",
    "BlocksOperator",
]


def _gather(values: jax.Array, index: jax.Array) -> jax.Array:
    """``values[..., index]``; an index equal to ``values.shape[-1]`` reads 0."""
    return jnp.take(values, index, axis=-1, mode="fill", fill_value=0)


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
        return p if self.to_from is None else _gather(p, self.to_from)

    def backward(self, r: jax.Array) -> jax.Array:
        """``block @ r`` over the last axis."""
        return r if self.from_to is None else _gather(r, self.from_to)

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


@dataclass(frozen=True)
class DenseBlock:
    """An (n_from, n_to) matrix.

    Parameters
    ----------
    matrix : (n_from, n_to) array
    matrix_t : (n_to, n_from) array or None
        ``matrix.T`` stored row-major for a single sequence's step (see
        :class:`xhmm.kernels.operators.DenseOperator`), or None.
    """

    matrix: jax.Array
    matrix_t: jax.Array | None

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ matrix`` over the last axis."""
        return dense_predict(p, self.matrix, self.matrix_t)

    def backward(self, r: jax.Array) -> jax.Array:
        """``matrix @ r`` over the last axis (no transposed copy of the matrix)."""
        return jnp.einsum("ij,...j->...i", self.matrix, r, precision=HIGHEST)

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``max_i p[i] * matrix[i, j]`` over the last axis and its argmax."""
        return max_rows(p[..., :, None] * self.matrix)

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n_from)."""
        return column_max(p, self.matrix, self.matrix_t, j)


@dataclass(frozen=True)
class SeparableBlock:
    """A Gaussian random walk on a Cartesian ``nx * ny`` grid of bin centres.

    ``block[i, j] = gx[a(i), a(j)] * gy[b(i), b(j)] * inv_z[i]`` for bin ``i``
    at grid cell ``(a(i), b(i))``; cells that are not interior bins of the
    state are zero in the product.

    Parameters
    ----------
    gx : (nx, nx) array
    gy : (ny, ny) array
        One-dimensional Gaussian factors, ``g[a, c]`` for a move from
        coordinate ``a`` to ``c``.
    inv_z : (n_from,) array
        Reciprocal row sums over the interior to-bins.
    from_cells : (nx * ny,) int array
        For each cell, its interior from-bin (``n_from`` where none).
    from_bins : (n_from,) int array
        The cell of each interior from-bin.
    to_cells : (nx * ny,) int array
        For each cell, its interior to-bin (``n_to`` where none).
    to_bins : (n_to,) int array
        The cell of each interior to-bin.
    shape : (int, int)
        ``(nx, ny)``, static.
    """

    gx: jax.Array
    gy: jax.Array
    inv_z: jax.Array
    from_cells: jax.Array
    from_bins: jax.Array
    to_cells: jax.Array
    to_bins: jax.Array
    shape: tuple[int, int]

    def _grid(self, values: jax.Array, cells: jax.Array) -> jax.Array:
        return _gather(values, cells).reshape(values.shape[:-1] + self.shape)

    def _flat(self, grid: jax.Array, bins: jax.Array) -> jax.Array:
        return jnp.take(grid.reshape(grid.shape[:-2] + (-1,)), bins, axis=-1)

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ block``: ``gx.T @ grid(p * inv_z) @ gy`` at the to-bins."""
        grid = jnp.matmul(self._grid(p * self.inv_z, self.from_cells), self.gy,
                          precision=HIGHEST)
        grid = jnp.einsum("ac,...ad->...cd", self.gx, grid, precision=HIGHEST)
        return self._flat(grid, self.to_bins)

    def backward(self, r: jax.Array) -> jax.Array:
        """``block @ r``: ``gx @ grid(r) @ gy.T`` at the from-bins, times ``inv_z``."""
        grid = jnp.einsum("...cd,bd->...cb", self._grid(r, self.to_cells), self.gy,
                          precision=HIGHEST)
        grid = jnp.einsum("ac,...cb->...ab", self.gx, grid, precision=HIGHEST)
        return self._flat(grid, self.from_bins) * self.inv_z

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``max_{a, b} grid(p * inv_z)[a, b] * gx[a, c] * gy[b, d]`` and its from-bin.

        Two stages, each a max over one grid axis: ``max_b grid[a, b] *
        gy[b, d]`` for every ``(a, d)``, then ``max_a gx[a, c] * (that)``;
        the from-cell of ``(c, d)`` is ``(a*, b*(a*, d))``.
        """
        grid = self._grid(p * self.inv_z, self.from_cells)
        inner, best_b = max_rows(grid[..., :, :, None] * self.gy)  # [a, d]
        outer, best_a = max_rows(jnp.swapaxes(inner, -1, -2)[..., :, :, None] * self.gx)
        outer, best_a = jnp.swapaxes(outer, -1, -2), jnp.swapaxes(best_a, -1, -2)  # [c, d]
        cells = best_a * self.shape[1] + jnp.take_along_axis(best_b, best_a, axis=-2)
        return self._flat(outer, self.to_bins), self._flat(self._from_bin(cells), self.to_bins)

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n_from).

        The two stages at the to-cell ``(c, d)`` only: ``max_b grid[a, b] *
        gy[b, d]`` for every ``a``, then ``max_a gx[a, c] * (that)``.
        """
        grid = self._grid(p * self.inv_z, self.from_cells)  # (B, nx, ny)
        c, d = jnp.divmod(jnp.take(self.to_bins, j), self.shape[1])
        inner, best_b = first_max(grid * jnp.take(self.gy, d, axis=1).T[:, None, :])
        outer, best_a = first_max(inner[..., 0] * jnp.take(self.gx, c, axis=1).T)
        cells = best_a * self.shape[1] + jnp.take_along_axis(best_b[..., 0], best_a, axis=1)
        return outer[:, 0], self._from_bin(cells[:, 0])

    def _from_bin(self, cells: jax.Array) -> jax.Array:
        """Interior from-bin of each from-cell (the last bin for a cell outside)."""
        return jnp.minimum(jnp.take(self.from_cells, cells), self.from_bins.shape[0] - 1)


@dataclass(frozen=True)
class BandedBlock:
    """A square (n, n) matrix whose non-zeros lie within a band.

    Entries outside the band are exactly zero in the compute dtype, so
    skipping them changes nothing (e.g. a 1-D Gaussian random walk, whose
    far entries underflow to 0). The bins are cut into tiles of ``width``
    bins (at least the band's reach, see :mod:`xhmm.transitions.bands`);
    tile ``t`` of a product needs only tiles ``t - 1 .. t + 1`` of the
    vector, so every product is one batched matrix product of the
    ``(3 width)``-bin neighbourhood of each tile with its window. On CPU at
    n = 500, reach 17 (width 24) a filter step costs about 2 us more than
    the step alone, the chunk product about 1.5 us a row.

    Parameters
    ----------
    forward_windows : (n_tiles, width, 3 width) array
        Window of each tile for ``p @ matrix``, transposed:
        ``forward_windows[t, c, r]`` is the entry from row ``r`` of tiles
        ``t - 1 .. t + 1`` into column ``c`` of tile ``t``.
    backward_windows : (n_tiles, width, 3 width) array
        The same for ``matrix @ r``: ``backward_windows[t, c, r] =
        matrix[t width + c, (t - 1) width + r]``.
    n : int
        Matrix size (static).
    """

    forward_windows: jax.Array
    backward_windows: jax.Array
    n: int

    def _around(self, values: jax.Array) -> jax.Array:
        """(..., n) -> (..., n_tiles, 3 width): each tile's neighbourhood, zero outside."""
        n_tiles, width, _ = self.forward_windows.shape
        lead = values.shape[:-1]
        padded = jnp.pad(values, [(0, 0)] * len(lead) + [(width, (n_tiles + 1) * width - self.n)])
        tiles = padded.reshape(lead + (n_tiles + 2, width))
        return jnp.concatenate([tiles[..., :-2, :], tiles[..., 1:-1, :], tiles[..., 2:, :]], -1)

    def _bins(self, tiles: jax.Array) -> jax.Array:
        """(..., n_tiles, width) -> (..., n): the tiles' entries of the matrix's bins."""
        return tiles.reshape(tiles.shape[:-2] + (-1,))[..., :self.n]

    def _product(self, values: jax.Array, windows: jax.Array) -> jax.Array:
        return self._bins(
            jnp.einsum("...tr,tcr->...tc", self._around(values), windows, precision=HIGHEST))

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ matrix`` over the last axis."""
        return self._product(p, self.forward_windows)

    def backward(self, r: jax.Array) -> jax.Array:
        """``matrix @ r`` over the last axis."""
        return self._product(r, self.backward_windows)

    def _from_bins(self, tile: jax.Array, row: jax.Array) -> jax.Array:
        """From-bin of window row ``row`` of tile ``tile`` (may lie outside the matrix)."""
        width = self.forward_windows.shape[1]
        return (tile - 1) * width + row

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``max_i p[i] * matrix[i, j]`` over the last axis and its argmax.

        Ties go to the lowest window row, the lowest from-bin; the from-bin
        is 0 where the maximum is 0 (every product ties there).
        """
        n_tiles = self.forward_windows.shape[0]
        windows = jnp.swapaxes(self.forward_windows, -1, -2)  # [t, r, c]
        values, rows = max_rows(self._around(p)[..., :, :, None] * windows)
        source = self._from_bins(jnp.arange(n_tiles, dtype=jnp.int32)[:, None], rows)
        values, source = self._bins(values), self._bins(source)
        return values, jnp.where(values > 0, source, 0)

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n)."""
        tile, within = jnp.divmod(j, self.forward_windows.shape[1])
        around = jnp.take_along_axis(self._around(p), tile[:, None, None], axis=1)[:, 0]
        values, rows = (a[:, 0] for a in first_max(around * self.forward_windows[tile, within, :]))
        return values, jnp.where(values > 0, self._from_bins(tile, rows), 0)


Block = Union[RankOneBlock, IdentityBlock, DenseBlock, BandedBlock, SeparableBlock]

_register = jax.tree_util.register_dataclass
_register(RankOneBlock, data_fields=["vector"], meta_fields=["n_to"])
_register(IdentityBlock, data_fields=["to_from", "from_to"], meta_fields=[])
_register(DenseBlock, data_fields=["matrix", "matrix_t"], meta_fields=[])
_register(BandedBlock, data_fields=["forward_windows", "backward_windows"], meta_fields=["n"])
_register(
    SeparableBlock,
    data_fields=["gx", "gy", "inv_z", "from_cells", "from_bins", "to_cells", "to_bins"],
    meta_fields=["shape"],
)


@dataclass(frozen=True)
class BlocksOperator:
    """A transition over discrete states made of blocks (module docstring).

    The interior bins are permuted so each state's bins are contiguous
    (``perm``), the blocks act on those slices and the result is permuted
    back (``inv_perm``).

    Parameters
    ----------
    discrete : (S, S) array or None
        The discrete transition; None when it is time-varying and comes as
        the per-step input ``x``.
    blocks : tuple of Block
        One per (from, to) pair of ``pairs``.
    perm, inv_perm : (K,) int arrays or None
        State-ordered position -> interior bin, and back; None when the
        states are already contiguous and in order.
    offsets : tuple of int
        ``S + 1`` bounds of each state's slice in state order, static.
    pairs : tuple of (int, int)
        (from, to) states of each block, static; pairs without a block
        (zero discrete probability) contribute nothing.
    """

    discrete: jax.Array | None
    blocks: tuple[Block, ...]
    perm: jax.Array | None
    inv_perm: jax.Array | None
    offsets: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]

    def predict(self, p: jax.Array, x: Any = None) -> jax.Array:
        """``p @ A`` for each row of ``p`` (B, K); ``x`` is the (S, S) discrete."""
        discrete = self.discrete if x is None else x
        return self._apply(p, lambda s, t: discrete[s, t], forward=True)

    def pullback(self, r: jax.Array, x: Any = None) -> jax.Array:
        """``A @ r[b]`` for each row of ``r`` (B, K); ``x`` is the (S, S) discrete."""
        discrete = self.discrete if x is None else x
        return self._apply(r, lambda s, t: discrete[s, t], forward=False)

    def predict_chunk(self, rows: jax.Array, xs: Any = None) -> jax.Array:
        """``rows[:, i] @ A_i`` for a (B, C, K) chunk; ``xs`` is (C, S, S) or None.

        The block products do not depend on the row, so each is one product
        over the whole chunk; a time-varying discrete then scales row ``i``
        by ``xs[i]``.
        """
        if xs is None:
            return self._apply(rows, lambda s, t: self.discrete[s, t], forward=True)
        return self._apply(rows, lambda s, t: xs[:, s, t][:, None], forward=True)

    def transition_counts(self, filtered: jax.Array, ratios: jax.Array, xs: Any = None,
                          states: Any = None) -> jax.Array:
        """Expected state-to-state transitions of a (B, C, K) chunk, (B, S, S).

        Block by block: ``discrete[s, s'] * sum_c filtered_s . (block @ ratios_s')``,
        one backward block product per pair (the states are the operator's
        own, in the order of ``offsets``; ``states`` is not needed).
        """
        def parts(values):
            arranged = self._ordered(values)
            return [arranged[..., lo:hi] for lo, hi in self._bounds()]

        f_parts, r_parts = parts(filtered), parts(ratios)
        n_states = len(self.offsets) - 1
        counts = jnp.zeros(filtered.shape[:1] + (n_states, n_states), filtered.dtype)
        for (s, t), block in zip(self.pairs, self.blocks):
            per_row = jnp.sum(f_parts[s] * block.backward(r_parts[t]), axis=-1)  # (B, C)
            coef = self.discrete[s, t] if xs is None else xs[:, s, t][None, :]
            counts = counts.at[:, s, t].set(jnp.sum(coef * per_row, axis=-1))
        return counts

    def max_predict(self, p: jax.Array, x: Any = None) -> tuple[jax.Array, jax.Array]:
        """``max_i p[b, i] * A[i, j]`` and its argmax (interior bins) for each row of ``p``.

        Each block's candidates, scaled by their discrete entry, are compared
        in each to-state; ties go to the lowest interior from-bin (0 where
        the maximum is 0).
        """
        bounds = self._bounds()
        best = self._max_candidates(p, x, lambda block, part, t: block.max_forward(part))
        lead = p.shape[:-1]
        values, sources = [], []
        for found, (lo, hi) in zip(best, bounds):
            shape = lead + (hi - lo,)
            values.append(jnp.zeros(shape, p.dtype) if found is None
                          else jnp.broadcast_to(found[0], shape))
            sources.append(jnp.zeros(shape, jnp.int32) if found is None
                           else jnp.broadcast_to(found[1], shape))
        values = jnp.concatenate(values, -1)
        # Where every candidate is 0 they all tie: the lowest from-bin is 0.
        sources = jnp.where(values > 0, jnp.concatenate(sources, -1), 0)
        if self.inv_perm is None:
            return values, sources
        return jnp.take(values, self.inv_perm, axis=-1), jnp.take(sources, self.inv_perm, axis=-1)

    def max_column(self, p: jax.Array, j: jax.Array, x: Any = None
                   ) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_predict` for each row ``b`` of ``p`` (B, K).

        Every block's :meth:`max_column` at ``j[b]``'s place in its to-state
        (clipped into the block's range, so each block runs for every row),
        compared as in :meth:`max_predict`; each row then takes the
        candidates of its own to-state.
        """
        bounds = self._bounds()
        position = j if self.inv_perm is None else jnp.take(self.inv_perm, j)

        def block_max(block, part, t):
            lo, hi = bounds[t]
            return block.max_column(part, jnp.clip(position - lo, 0, hi - lo - 1))

        value = jnp.zeros(p.shape[:1], p.dtype)
        source = jnp.zeros(p.shape[:1], jnp.int32)
        for found, (lo, hi) in zip(self._max_candidates(p, x, block_max), bounds):
            if found is not None:
                inside = (position >= lo) & (position < hi)
                value = jnp.where(inside, found[0], value)
                source = jnp.where(inside, found[1], source)
        # Where every candidate is 0 they all tie: the lowest from-bin is 0.
        return value, jnp.where(value > 0, source, 0)

    def _ordered(self, values: jax.Array) -> jax.Array:
        """``values`` over the interior bins (last axis) in state order."""
        return values if self.perm is None else jnp.take(values, self.perm, axis=-1)

    def _bounds(self) -> list[tuple[int, int]]:
        """Each state's slice of the state-ordered bins."""
        return list(zip(self.offsets[:-1], self.offsets[1:]))

    def _max_candidates(self, p: jax.Array, x: Any, block_max: Callable
                        ) -> list[tuple[jax.Array, jax.Array] | None]:
        """The best scaled block candidate into each to-state (None: no block).

        ``block_max(block, part, t)`` gives a block's values and from-bins
        (relative to the from-state's slice ``part`` of ``p``) for to-state
        ``t``; they are scaled by the discrete entry (``x`` when
        time-varying), the from-bins made interior bins, and the blocks into
        one to-state compared in order (larger, then lower from-bin).
        """
        discrete = self.discrete if x is None else x
        arranged = self._ordered(p)
        bounds = self._bounds()
        best: list[tuple[jax.Array, jax.Array] | None] = [None] * len(bounds)
        for (s, t), block in zip(self.pairs, self.blocks):
            lo, hi = bounds[s]
            values, source = block_max(block, arranged[..., lo:hi], t)
            source = source + lo
            if self.perm is not None:
                source = jnp.take(self.perm, source)
            candidate = (discrete[s, t] * values, source)
            best[t] = candidate if best[t] is None else keep_better(*best[t], *candidate)
        return best

    def _apply(self, values: jax.Array, coef: Callable[[int, int], Any],
               forward: bool) -> jax.Array:
        """Sum ``coef(s, t) * block product`` into each destination state."""
        arranged = self._ordered(values)
        bounds = self._bounds()
        parts = [arranged[..., lo:hi] for lo, hi in bounds]
        sums: list[jax.Array | None] = [None] * len(bounds)
        for (s, t), block in zip(self.pairs, self.blocks):
            if forward:
                dst, product = t, block.forward(parts[s])
            else:
                dst, product = s, block.backward(parts[t])
            term = coef(s, t) * product
            sums[dst] = term if sums[dst] is None else sums[dst] + term
        # The states' sums side by side; a rank-one sum (one value per row)
        # is selected into its slice afterwards instead of broadcast into
        # the concatenate: XLA on CPU fuses a concatenate of broadcast
        # pieces into its consumers as a slow element-by-element loop
        # (contfrag-1d at K = 1,000: smoother step 13.1 us with it, 8.6 us
        # this way; NonLocal at K = 10,650 unchanged).
        lead = arranged.shape[:-1]
        wide = [total is not None and (total.shape[-1] > 1 or hi - lo == 1)
                for total, (lo, hi) in zip(sums, bounds)]
        out = jnp.concatenate([
            total if is_wide else jnp.zeros(lead + (hi - lo,), arranged.dtype)
            for total, is_wide, (lo, hi) in zip(sums, wide, bounds)], axis=-1)
        state = np.repeat(np.arange(len(bounds)), [hi - lo for lo, hi in bounds])
        for t, (total, is_wide) in enumerate(zip(sums, wide)):
            if total is not None and not is_wide:
                out = jnp.where(state == t, total, out)
        return out if self.inv_perm is None else jnp.take(out, self.inv_perm, axis=-1)


_register(
    BlocksOperator,
    data_fields=["discrete", "blocks", "perm", "inv_perm"],
    meta_fields=["offsets", "pairs"],
)
