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

Ties go to the lowest index, always (the lowest row equal to the maximum;
between candidates, the larger, then the one with the lower index), so the
Viterbi path is the same on every run, device and chunk size.

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

__all__ = ["max_rows", "first_max", "keep_better", "SMALL_ROWS"]

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
    # The values do not depend on the indices, so a caller that uses only
    # the values (the forward pass) does not compute them.
    return jnp.maximum(values, other), jnp.where(take, other_index, index)
