"""``Dense``: an explicit matrix between the bins of two states (banded where it can).

The block kind (see :mod:`xhmm.transitions.block`): :class:`Dense` plans a
:class:`PlannedDense` (also what the random walk off a grid, and the
analysis of a dense matrix, plan), which runs on the device as a
:class:`BandedBlock` where its non-zeros lie in a band
(:mod:`xhmm.transitions.bands`), else as a :class:`DenseBlock`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import TransitionError
from ..kernels.maxproduct import column_max, first_max, max_rows
from ..kernels.operators import HIGHEST, dense_predict, device_matrix
from ..names import STOCHASTIC_ATOL
from .bands import band_width, windows
from .block import PlannedBlock, TransitionBlock
from .layout import StateBins

__all__ = ["Dense", "PlannedDense", "DenseBlock", "BandedBlock"]


@dataclass(frozen=True, eq=False)
class Dense(TransitionBlock):
    """An explicit matrix from the from-state's bins to the to-state's bins.

    Parameters
    ----------
    matrix : (n_from, n_to) array-like
        Over all bins of each state or over their interior bins only (each
        axis either way); rows of interior from-bins sum to 1 within
        :data:`~xhmm.names.STOCHASTIC_ATOL` and put no more than that on
        exterior to-bins.
    note : str, optional
        Where the matrix came from, shown after the block's plan in
        ``describe()`` (the ``xhmm_transition`` attribute of the results).
    """

    kind = "dense"
    array_fields = ("matrix",)

    matrix: np.ndarray
    note: str = ""

    def __post_init__(self) -> None:
        try:
            matrix = np.asarray(self.matrix, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TransitionError(f"Dense matrix must be a numeric array: {exc}") from exc
        if matrix.ndim != 2:
            raise TransitionError(f"Dense matrix must be 2-D, got shape {matrix.shape}")
        object.__setattr__(self, "matrix", matrix)

    @property
    def _what(self) -> str:
        """The block in messages: "Dense matrix", with its note if it has one."""
        return "Dense matrix" + (f" ({self.note})" if self.note else "")

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block over interior bins, rows renormalised.

        Raises
        ------
        TransitionError
            Wrong shape, non-finite or negative entries, a row not summing
            to 1, or probability moved to exterior bins.
        """
        n_rows, n_cols = self.matrix.shape
        if n_rows not in (src.n_bins, src.n_interior) or n_cols not in (dst.n_bins,
                                                                        dst.n_interior):
            raise TransitionError(
                f"{name}: {self._what} has shape {self.matrix.shape}; expected "
                f"({src.n_bins} or {src.n_interior} interior) x ({dst.n_bins} or "
                f"{dst.n_interior} interior) bins of {src.label!r} x {dst.label!r}"
            )
        rows = self.matrix[src.interior] if n_rows == src.n_bins else self.matrix
        if not np.isfinite(rows).all() or (rows < 0).any():
            raise TransitionError(f"{name}: {self._what} must be finite and non-negative")
        sums = rows.sum(axis=1)
        bad = np.abs(sums - 1) > STOCHASTIC_ATOL
        if bad.any():
            i = int(np.argmax(bad))
            raise TransitionError(
                f"{name}: {self._what}, row {i} (interior bin {i} of {src.label!r}) sums to "
                f"{sums[i]:.9g}; rows must sum to 1 within {STOCHASTIC_ATOL:g}"
            )
        kept = rows[:, dst.interior] if n_cols == dst.n_bins else rows
        kept_sums = kept.sum(axis=1)
        lost = sums - kept_sums
        if (lost > STOCHASTIC_ATOL).any():
            i = int(np.argmax(lost))
            raise TransitionError(
                f"{name}: {self._what}, row {i} moves probability {lost[i]:.6g} to exterior bins "
                f"of {dst.label!r}; exterior bins must be unreachable"
            )
        return PlannedDense(kept / kept_sums[:, None], self.note)


@dataclass(frozen=True, eq=False)
class PlannedDense(PlannedBlock):
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


jax.tree_util.register_dataclass(DenseBlock, data_fields=["matrix", "matrix_t"], meta_fields=[])
jax.tree_util.register_dataclass(BandedBlock, data_fields=["forward_windows", "backward_windows"],
                                 meta_fields=["n"])
