"""Max-product reductions with deterministic argmax, for ``max_predict``.

The operators' ``max_predict`` (see :mod:`xhmm.kernels.operators`) needs,
for every destination bin, the largest of a set of non-negative products and
*which* source gave it. Two helpers serve every operator:

:func:`max_rows`
    the maximum over the second-to-last axis of a ``(..., n, m)`` array and
    its argmax;
:func:`first_max`
    the maximum over the last axis and the first index holding it;
:func:`keep_better`
    the better of two candidates that already carry their source index.

Ties go to the lowest index, always: a candidate replaces another only when
it is strictly larger, or equal with a lower index. So the Viterbi path is
the same on every run, device and chunk size.

XLA on CPU compiles a ``max`` or ``argmax`` reduction over a non-minor axis
into a slow loop (measured 4x and 50x a matrix-vector product at K = 1,000).
:func:`max_rows` instead folds adjacent pairs of rows, ``log2(n)`` levels of
element-wise maxima that vectorise along the contiguous last axis. When only
the values are used (the forward pass), XLA drops the index arithmetic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["max_rows", "first_max", "keep_better", "row_offsets"]


def row_offsets(n_rows: int, n_cols: int, start: int = 0, step: int = 1) -> jax.Array:
    """``(n_rows, n_cols)`` int32 array whose row ``r`` is ``start + r * step``."""
    rows = start + step * jnp.arange(n_rows, dtype=jnp.int32)
    return jnp.broadcast_to(rows[:, None], (n_rows, n_cols))


def _fold(values: jax.Array, index: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Halve the row axis (-2): the better of each pair of adjacent rows.

    The first row of a pair always holds lower source indices than the
    second, so "strictly larger" alone keeps ties at the lowest index. An odd
    last row passes through unchanged.
    """
    n_rows = values.shape[-2]
    half = n_rows // 2
    lead, n_cols = values.shape[:-2], values.shape[-1]

    def pairs(array: jax.Array) -> tuple[jax.Array, jax.Array]:
        paired = array[..., :2 * half, :].reshape(lead + (half, 2, n_cols))
        return paired[..., 0, :], paired[..., 1, :]

    first, second = pairs(values)
    first_index, second_index = pairs(index)
    folded = jnp.maximum(first, second)
    folded_index = jnp.where(second > first, second_index, first_index)
    if n_rows % 2:
        folded = jnp.concatenate([folded, values[..., -1:, :]], axis=-2)
        folded_index = jnp.concatenate([folded_index, index[..., -1:, :]], axis=-2)
    return folded, folded_index


def max_rows(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maximum over the row axis (-2) and its argmax, ties to the lowest row.

    Parameters
    ----------
    values : (..., n, m) array
        Non-negative candidates (NaN never wins a comparison).

    Returns
    -------
    maximum : (..., m) array
    argmax : (..., m) int32 array
        Lowest ``i`` with ``values[..., i, j] == maximum[..., j]``.
    """
    n_rows, n_cols = values.shape[-2:]
    index = jnp.broadcast_to(row_offsets(n_rows, n_cols), values.shape)
    while values.shape[-2] > 1:
        values, index = _fold(values, index)
    return values[..., 0, :], index[..., 0, :]


def first_max(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maximum over the last axis and the first index holding it (keeping that axis).

    Two plain reductions (``max``, then ``min`` of the matching indices):
    XLA compiles them far faster than ``argmax``'s paired reduction.

    Parameters
    ----------
    values : (..., n) array

    Returns
    -------
    maximum : (..., 1) array
    argmax : (..., 1) int32 array
    """
    peak = jnp.max(values, axis=-1, keepdims=True)
    positions = jnp.arange(values.shape[-1], dtype=jnp.int32)
    first = jnp.min(jnp.where(values == peak, positions, values.shape[-1]), axis=-1,
                    keepdims=True)
    return peak, first


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
    return jnp.where(take, other, values), jnp.where(take, other_index, index)
