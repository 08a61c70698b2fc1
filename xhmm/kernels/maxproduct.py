"""Max-product reductions with deterministic argmax, for ``max_predict``.

The operators' ``max_predict`` (see :mod:`xhmm.kernels.operators`) needs,
for every destination bin, the largest of a set of non-negative products and
*which* source gave it; their ``max_column`` the same for one destination
bin per sequence (the Viterbi backtrack). These helpers serve every
operator:

:func:`max_rows`
    the maximum over the second-to-last axis of a ``(..., n, m)`` array and
    its argmax;
:func:`first_max`
    the maximum over the last axis and the first index holding it;
:func:`column_max`
    ``max_i p[b, i] * matrix[i, j[b]]`` and its argmax: one column of a
    dense matrix's ``max_rows``, the same products;
:func:`keep_better`
    the better of two candidates that already carry their source index.

Ties go to the lowest index, always (the lowest row equal to the maximum;
between candidates, the larger, then the one with the lower index), so the
Viterbi path is the same on every run, device and chunk size. NaN never
equals the maximum: where it is the maximum, the index is the last one
(``n - 1``) in every helper, so a row and a column reduction agree.

XLA on CPU compiles a ``max`` reduction over a non-minor axis of a large
array into a slow loop and ``argmax`` (a reduction over value-index pairs)
into a far slower one (measured 4x and 50x a matrix-vector product at
K = 1,000). :func:`max_rows` computes the argmax as the lowest row equal to
the maximum (a plain ``min``), and above :data:`SMALL_ROWS` rows it folds
the rows by halves instead of reducing: ``log2(n)`` levels of element-wise
maxima along the contiguous last axis (1.6x the matrix-vector product at
K = 1,000; 6x with the argmax). When only the values are used (the forward
pass), XLA drops the argmax.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

__all__ = ["max_rows", "first_max", "column_max", "keep_better", "SMALL_ROWS"]

#: Up to this many rows plain reductions are cheaper than the folds, whose
#: ``log2(n)`` element-wise levels are separate XLA operations (measured on
#: CPU, one thread, per step of an n x n product: 101 against 162 us at
#: n = 512 with the argmax; 180 against 103 us at n = 1,000 for the maximum).
SMALL_ROWS = 512


def _fold(values: jax.Array, combine) -> jax.Array:
    """Reduce the row axis (-2) by halves: ``combine(first half, second half)``.

    ``log2(n)`` levels of element-wise operations on contiguous rows; an odd
    last row passes to the next level unchanged.
    """
    while values.shape[-2] > 1:
        n_rows = values.shape[-2]
        half = n_rows // 2
        folded = combine(values[..., :half, :], values[..., half:2 * half, :])
        if n_rows % 2:
            folded = jnp.concatenate([folded, values[..., -1:, :]], axis=-2)
        values = folded
    return values[..., 0, :]


def max_rows(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maximum over the row axis (-2) and its argmax, ties to the lowest row.

    Two folds: the maximum, then the lowest row whose value equals it
    (recomputing ``values``, which XLA fuses into both: a product is read
    twice rather than stored).

    Parameters
    ----------
    values : (..., n, m) array
        Candidates (NaN never equals the maximum: its column's argmax is
        ``n - 1``).

    Returns
    -------
    maximum : (..., m) array
    argmax : (..., m) int32 array
        Lowest ``i`` with ``values[..., i, j] == maximum[..., j]``.
    """
    n_rows = values.shape[-2]
    if n_rows <= SMALL_ROWS:
        reduce_max, reduce_min = partial(jnp.max, axis=-2), partial(jnp.min, axis=-2)
    else:
        reduce_max, reduce_min = partial(_fold, combine=jnp.maximum), partial(
            _fold, combine=jnp.minimum)
    best = reduce_max(values)
    rows = jnp.arange(n_rows, dtype=jnp.int16 if n_rows < 2**15 else jnp.int32)[:, None]
    first = reduce_min(jnp.where(values == best[..., None, :], rows, n_rows))
    return best, jnp.minimum(first, n_rows - 1).astype(jnp.int32)


def first_max(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maximum over the last axis and the first index holding it (keeping that axis).

    Two plain reductions (``max``, then ``min`` of the matching indices):
    XLA compiles them far faster than ``argmax``'s paired reduction.

    Parameters
    ----------
    values : (..., n) array
        Candidates (NaN never equals the maximum: the argmax is then
        ``n - 1``, as in :func:`max_rows`).

    Returns
    -------
    maximum : (..., 1) array
    argmax : (..., 1) int32 array
    """
    n = values.shape[-1]
    peak = jnp.max(values, axis=-1, keepdims=True)
    positions = jnp.arange(n, dtype=jnp.int32)
    first = jnp.min(jnp.where(values == peak, positions, n), axis=-1, keepdims=True)
    return peak, jnp.minimum(first, n - 1)


def column_max(p: jax.Array, matrix: jax.Array, matrix_t: jax.Array | None,
               column: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``max_i p[b, i] * matrix[i, column[b]]`` and its lowest argmax, per row of ``p``.

    Column ``column[b]`` of ``max_rows(p[:, :, None] * matrix)`` for each
    ``b``: the same products (one rounding each), so the same maximum and
    argmax, at the cost of ``n`` products instead of ``n * m``.

    Parameters
    ----------
    p : (B, n) array
    matrix : (n, m) array
    matrix_t : (m, n) array or None
        ``matrix.T`` stored row-major (a column is then a contiguous row).
    column : (B,) int array

    Returns
    -------
    maximum : (B,) array
    argmax : (B,) int32 array
    """
    weights = (jnp.take(matrix, column, axis=1).T if matrix_t is None
               else jnp.take(matrix_t, column, axis=0))
    peak, first = first_max(p * weights)
    return peak[:, 0], first[:, 0]


def keep_better(values: jax.Array, index: jax.Array, other: jax.Array,
                other_index: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Element-wise better of two indexed candidates (larger, then lower index).

    Parameters
    ----------
    values, index : arrays
        The current candidates and their source indices.
    other, other_index : arrays
        Challengers, broadcastable against ``values``.

    Returns
    -------
    values, index : arrays
    """
    take = (other > values) | ((other == values) & (other_index < index))
    # The values do not depend on the indices, so a caller that uses only
    # the values (the forward pass) does not compute them.
    return jnp.maximum(values, other), jnp.where(take, other_index, index)
