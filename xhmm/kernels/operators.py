"""Transition operators: the products of a transition matrix the scans need.

The forward filter and backward smoother never touch a transition matrix
directly; they call an *operator*, a JAX pytree with three products over
rows of probabilities (``B`` sequences, ``K`` interior bins):

``predict(p, x)``
    ``p @ A`` for each row of ``p`` (B, K): the prediction of the next step.
``pullback(r, x)``
    ``A @ r[b]`` for each row of ``r`` (B, K): the smoother's backward step.
``predict_chunk(P, xs)``
    ``P[:, i] @ A_i`` for every row of a whole chunk ``P`` (B, C, K) at
    once (the smoother's predictions do not depend on its carry, so they
    are one matrix-matrix product per chunk where the operator allows).
``transition_counts(F, R, xs, states)``
    the expected state-to-state transitions of a chunk (EM statistics).
``max_predict(p, x)``
    ``max_i p[b, i] * A[i, j]`` and its argmax ``i`` (int32, ties to the
    lowest index) for each row of ``p`` (B, K): the max-product step of the
    Viterbi decoder (:mod:`xhmm.kernels.viterbi`), built on
    :mod:`xhmm.kernels.maxproduct`.
``max_column(p, j, x)``
    the same for one to-bin ``j[b]`` per row of ``p``: ``max_i p[b, i] *
    A[i, j[b]]`` and its argmax, each equal (bit for bit) to entry
    ``j[b]`` of ``max_predict``'s, at the cost of one column (the Viterbi
    backtrack's back-pointer of the path's state).

``x`` is the operator's per-step input for the *destination* step (the
transition that moves step ``t - 1`` to step ``t`` is the input of step
``t``), and ``xs`` the inputs of consecutive steps with a leading axis.
A static operator has ``None`` inputs. A time-varying operator gets its
inputs chunk by chunk from the engine (a chunk of ``C`` rows receives
``C + 1`` inputs: those of its rows and of the row after it), so the scans
stay the same whatever the operator; adding a transition kind touches only
this layer.

Every operator here is exact: no truncation, products in the compute dtype.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from .maxproduct import column_max, max_rows

__all__ = ["TransitionOperator", "DenseOperator", "dense_operator", "dense_predict",
           "device_matrix", "gather", "step_slice", "HIGHEST"]

#: The precision of every matrix product in the kernels: true float32 (or
#: float64). JAX's default lets NVIDIA GPUs from Ampere on round float32
#: operands to TensorFloat-32 (about 1e-3 relative), far beyond the float32
#: targets; on CPU the two are the same.
HIGHEST = jax.lax.Precision.HIGHEST


class TransitionOperator(Protocol):
    """What the kernels need of a transition (see the module docstring)."""

    def predict(self, p: jax.Array, x: Any) -> jax.Array:
        """``p @ A`` row by row; ``p`` is (B, K)."""

    def pullback(self, r: jax.Array, x: Any) -> jax.Array:
        """``A @ r[b]`` row by row; ``r`` is (B, K)."""

    def predict_chunk(self, rows: jax.Array, xs: Any) -> jax.Array:
        """``rows[:, i] @ A_i`` for a (B, C, K) chunk, ``xs`` with leading C."""

    def transition_counts(self, filtered: jax.Array, ratios: jax.Array, xs: Any,
                          states: jax.Array, per_step: bool = False) -> jax.Array:
        """Expected state-to-state transitions of a chunk, (B, S, S).

        ``sum_c sum_{i in s, j in s'} filtered[b, c, i] A_c[i, j] ratios[b, c, j]``
        for (B, C, K) ``filtered`` and ``ratios`` (smoothed over predicted of
        the next step, zero where there is none) and ``states`` (K, S) the
        bins' state membership. ``per_step``: each row's, (B, C, S, S), not
        summed over ``c``.
        """

    def max_predict(self, p: jax.Array, x: Any) -> tuple[jax.Array, jax.Array]:
        """``max_i p[b, i] * A[i, j]`` and its int32 argmax (lowest on ties)."""

    def max_column(self, p: jax.Array, j: jax.Array, x: Any) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of ``max_predict(p, x)`` for each row ``b``, each (B,)."""

    # Optional: ``columns(j, x)``, the columns ``A[:, j[m]]`` as (M, K) rows, where
    # reading them is cheaper than ``pullback`` of one-hot rows (the path sampler
    # falls back to that).


def step_slice(xs: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of per-step operator inputs (``None`` stays ``None``)."""
    return jax.tree_util.tree_map(lambda a: a[start:stop], xs)


@jax.tree_util.register_pytree_node_class
class DenseOperator:
    """A dense (K, K) row-stochastic matrix, the same at every step.

    Parameters
    ----------
    matrix : (K, K) array
        ``matrix[i, j]`` = P(bin j at t + 1 | bin i at t).
    matrix_t : (K, K) array or None
        ``matrix.T`` stored row-major, for a single sequence's filter:
        ``matrix_t @ p`` reads contiguous rows, which on CPU is 1.2x faster
        than ``p @ matrix`` at K = 1,000 and 1.4-1.8x at K = 2,000-4,000.
        None when the batch has more than one sequence (``p @ matrix`` is
        then a matrix-matrix product and needs no transposed copy).
    """

    def __init__(self, matrix: jax.Array, matrix_t: jax.Array | None) -> None:
        self.matrix = matrix
        self.matrix_t = matrix_t

    def tree_flatten(self):
        return (self.matrix, self.matrix_t), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def predict(self, p: jax.Array, x: Any = None) -> jax.Array:
        return dense_predict(p, self.matrix, self.matrix_t)

    def pullback(self, r: jax.Array, x: Any = None) -> jax.Array:
        # Contracts the matrix's second (contiguous) axis with each row: no
        # transposed copy of the matrix inside the scan.
        if r.shape[0] == 1:
            return jnp.matmul(self.matrix, r[0], precision=HIGHEST)[None]
        return jnp.einsum("ij,bj->bi", self.matrix, r, precision=HIGHEST)

    def columns(self, j: jax.Array, x: Any = None) -> jax.Array:
        """The columns ``A[:, j[m]]`` as (M, K) rows (read, not multiplied)."""
        if self.matrix_t is not None:
            return self.matrix_t[j]
        return jnp.take(self.matrix, j, axis=1).T

    def predict_chunk(self, rows: jax.Array, xs: Any = None) -> jax.Array:
        n_seq, n_rows, n_bins = rows.shape
        flat = rows.reshape(n_seq * n_rows, n_bins)
        return jnp.matmul(flat, self.matrix, precision=HIGHEST).reshape(rows.shape)

    def transition_counts(self, filtered: jax.Array, ratios: jax.Array, xs: Any,
                          states: jax.Array, per_step: bool = False) -> jax.Array:
        # One pullback of the whole chunk per to-state: A @ (ratios on s').
        columns = []
        for target in range(states.shape[1]):
            pulled = jnp.einsum("ij,bcj->bci", self.matrix, ratios * states[:, target],
                                precision=HIGHEST)
            joint = filtered * pulled
            columns.append(jnp.matmul(joint if per_step else jnp.sum(joint, axis=1), states,
                                      precision=HIGHEST))
        return jnp.stack(columns, axis=-1)

    def max_predict(self, p: jax.Array, x: Any = None) -> tuple[jax.Array, jax.Array]:
        """``max_i p[b, i] * A[i, j]`` and its argmax, row by row (``p`` is (B, K))."""
        return max_rows(p[:, :, None] * self.matrix)

    def max_column(self, p: jax.Array, j: jax.Array, x: Any = None
                   ) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_predict` for each row ``b`` (one column each)."""
        return column_max(p, self.matrix, self.matrix_t, j)


def dense_predict(p: jax.Array, matrix: jax.Array, matrix_t: jax.Array | None) -> jax.Array:
    """``p @ matrix`` over the last axis of ``p``, in the layout that is fastest.

    XLA's matrix-vector product on the stored transpose for one row (it
    reads the transpose's contiguous rows), else its matrix product. Used
    by :class:`DenseOperator` and the structured operators' dense blocks.
    """
    if matrix_t is not None and p.shape[:-1] == (1,):
        return jnp.matmul(matrix_t, p[0], precision=HIGHEST)[None]
    return jnp.matmul(p, matrix, precision=HIGHEST)


def device_matrix(matrix: np.ndarray, dtype: np.dtype | str, n_sequences: int
                  ) -> tuple[jax.Array, jax.Array | None]:
    """``matrix`` on the device in ``dtype``, and its transpose where products want it.

    The transpose is stored for one sequence (whose matrix-vector products
    read it, see :func:`dense_predict`), transposed on the device (no host
    temporary of the matrix's size); otherwise None.
    """
    device = jax.device_put(np.asarray(matrix, dtype=dtype))
    return device, jnp.transpose(device) if n_sequences == 1 else None


def dense_operator(matrix: np.ndarray, dtype: np.dtype | str, n_sequences: int) -> DenseOperator:
    """Put a dense transition on the device in the layout its products want.

    Parameters
    ----------
    matrix : (K, K) ndarray
        Row-stochastic transition over the interior bins.
    dtype : dtype
        Compute dtype.
    n_sequences : int
        Sequences per batch; one sequence also stores the transposed matrix
        (transposed on the device, no host temporary of K * K values).

    Returns
    -------
    DenseOperator
    """
    return DenseOperator(*device_matrix(matrix, dtype, n_sequences))


def gather(values: jax.Array, index: jax.Array) -> jax.Array:
    """``values[..., index]``; an index equal to ``values.shape[-1]`` reads 0."""
    return jnp.take(values, index, axis=-1, mode="fill", fill_value=0)
