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

``x`` is the operator's per-step input for the *destination* step (the
transition that moves step ``t - 1`` to step ``t`` is the input of step
``t``), and ``xs`` the inputs of consecutive steps with a leading axis.
A static operator has ``None`` inputs. A time-varying operator gets its
inputs chunk by chunk from the engine (a chunk of ``C`` rows receives
``C + 1`` inputs: those of its rows and of the row after it), so the scans
stay the same whatever the operator; adding a transition kind touches only
this layer.

Every operator here is exact: no truncation, products in the compute dtype.

Large dense matrices on the CPU backend
---------------------------------------
From :data:`HOST_BLAS_MIN_BINS` bins on, when JAX runs on the CPU, a dense
operator's products go to the host's BLAS (NumPy's ``matmul``) through
:func:`jax.pure_callback`: XLA's CPU matrix-vector product streams a matrix
of hundreds of MB slower than OpenBLAS. The matrix then lives once, in host
memory (:class:`HostMatrix`), and the operator carries only its number, a
traced scalar: the kernels compile once per shape whatever the matrix, and a
dropped operator frees its matrix.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from .maxproduct import max_rows

__all__ = [
    "TransitionOperator",
    "DenseOperator",
    "HostMatrix",
    "HOST_BLAS_MIN_BINS",
    "dense_operator",
    "uses_host_blas",
    "step_slice",
]

#: Dense matrices with at least this many bins run their products in the
#: host BLAS when JAX's default backend is the CPU.
HOST_BLAS_MIN_BINS = 4_000


class TransitionOperator(Protocol):
    """What the kernels need of a transition (see the module docstring)."""

    def predict(self, p: jax.Array, x: Any) -> jax.Array:
        """``p @ A`` row by row; ``p`` is (B, K)."""

    def pullback(self, r: jax.Array, x: Any) -> jax.Array:
        """``A @ r[b]`` row by row; ``r`` is (B, K)."""

    def predict_chunk(self, rows: jax.Array, xs: Any) -> jax.Array:
        """``rows[:, i] @ A_i`` for a (B, C, K) chunk, ``xs`` with leading C."""

    def transition_counts(self, filtered: jax.Array, ratios: jax.Array, xs: Any,
                          states: jax.Array) -> jax.Array:
        """Expected state-to-state transitions of a chunk, (B, S, S).

        ``sum_c sum_{i in s, j in s'} filtered[b, c, i] A_c[i, j] ratios[b, c, j]``
        for (B, C, K) ``filtered`` and ``ratios`` (smoothed over predicted of
        the next step, zero where there is none) and ``states`` (K, S) the
        bins' state membership.
        """

    def max_predict(self, p: jax.Array, x: Any) -> tuple[jax.Array, jax.Array]:
        """``max_i p[b, i] * A[i, j]`` and its int32 argmax (lowest on ties)."""


def step_slice(xs: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of per-step operator inputs (``None`` stays ``None``)."""
    return jax.tree_util.tree_map(lambda a: a[start:stop], xs)


class HostMatrix:
    """A transition matrix in host memory, for products in the host BLAS.

    Compiled code finds it by :attr:`number` in a registry of weak
    references, so it lives exactly as long as the operators holding it.

    Parameters
    ----------
    matrix : (K, K) ndarray
        In the compute dtype; copied to C order if needed.
    """

    _registry: weakref.WeakValueDictionary[int, "HostMatrix"] = weakref.WeakValueDictionary()
    _numbers = itertools.count()

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = np.ascontiguousarray(matrix)
        self.number = next(self._numbers)
        self._registry[self.number] = self

    @classmethod
    def lookup(cls, number: int) -> np.ndarray:
        """The matrix of the live :class:`HostMatrix` numbered ``number``."""
        return cls._registry[int(number)].matrix


def _host_product(transposed: bool, values: np.ndarray, number: np.ndarray) -> np.ndarray:
    """``values @ A`` (``values @ A.T`` if ``transposed``) row by row in NumPy's BLAS.

    One row is a vector-matrix product (``gemv``), as in the NumPy loop;
    more rows are one matrix-matrix product. ``values`` arrives as a JAX
    array: it is viewed as a NumPy array first, or ``@`` would run in JAX
    and copy the matrix to the device at every call.
    """
    values = np.asarray(values)
    matrix = HostMatrix.lookup(number)
    if transposed:
        matrix = matrix.T
    if values.shape[0] == 1:
        return (values[0] @ matrix)[None]
    return values @ matrix


def _host_max_product(values: np.ndarray, number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``max_i values[b, i] * A[i, j]`` and its lowest argmax, in NumPy, column block by block."""
    values = np.asarray(values)
    matrix = HostMatrix.lookup(number)
    best = np.empty_like(values)
    where = np.empty(values.shape, dtype=np.int32)
    step = max(1, 2**24 // max(1, matrix.shape[0]))
    for b, row in enumerate(values):
        for lo in range(0, matrix.shape[1], step):
            products = row[:, None] * matrix[:, lo:lo + step]
            where[b, lo:lo + step] = np.argmax(products, axis=0)  # first maximum
            best[b, lo:lo + step] = products.max(axis=0)
    return best, where


def _on_host(number: jax.Array, transposed: bool, values: jax.Array) -> jax.Array:
    """A (n, K) product with host matrix ``number``, called from compiled code."""
    return jax.pure_callback(functools.partial(_host_product, transposed),
                             jax.ShapeDtypeStruct(values.shape, values.dtype), values, number)


@jax.tree_util.register_pytree_node_class
class DenseOperator:
    """A dense (K, K) row-stochastic matrix, the same at every step.

    Parameters
    ----------
    matrix : (K, K) array or None
        ``matrix[i, j]`` = P(bin j at t + 1 | bin i at t), on the device;
        None when the products run in the host BLAS (``host``).
    matrix_t : (K, K) array or None
        ``matrix.T`` stored row-major, for a single sequence's filter:
        ``matrix_t @ p`` reads contiguous rows, which on CPU is 1.2x faster
        than ``p @ matrix`` at K = 1,000 and 1.4-1.8x at K = 2,000-4,000.
        None when the batch has more than one sequence (``p @ matrix`` is
        then a matrix-matrix product and needs no transposed copy) or the
        products run on the host.
    host : () int32 array or None
        Number of the :class:`HostMatrix` whose products run in the host
        BLAS, or None for products in XLA.
    host_matrix : HostMatrix or None
        That matrix, held so it lives as long as this operator (not part of
        the pytree: copies made while tracing do not need it).
    """

    def __init__(self, matrix: jax.Array | None, matrix_t: jax.Array | None,
                 host: jax.Array | None = None,
                 host_matrix: HostMatrix | None = None) -> None:
        self.matrix = matrix
        self.matrix_t = matrix_t
        self.host = host
        self.host_matrix = host_matrix

    def tree_flatten(self):
        return (self.matrix, self.matrix_t, self.host), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def predict(self, p: jax.Array, x: Any = None) -> jax.Array:
        if self.host is not None:
            return _on_host(self.host, False, p)
        if self.matrix_t is not None and p.shape[0] == 1:
            return (self.matrix_t @ p[0])[None]
        return p @ self.matrix

    def pullback(self, r: jax.Array, x: Any = None) -> jax.Array:
        if self.host is not None:
            return _on_host(self.host, True, r)
        # Contracts the matrix's second (contiguous) axis with each row: no
        # transposed copy of the matrix inside the scan.
        if r.shape[0] == 1:
            return (self.matrix @ r[0])[None]
        return jnp.einsum("ij,bj->bi", self.matrix, r)

    def predict_chunk(self, rows: jax.Array, xs: Any = None) -> jax.Array:
        n_seq, n_rows, n_bins = rows.shape
        flat = rows.reshape(n_seq * n_rows, n_bins)
        if self.host is not None:
            return _on_host(self.host, False, flat).reshape(rows.shape)
        return (flat @ self.matrix).reshape(rows.shape)

    def transition_counts(self, filtered: jax.Array, ratios: jax.Array, xs: Any,
                          states: jax.Array) -> jax.Array:
        # One pullback of the whole chunk per to-state: A @ (ratios on s').
        n_seq, n_rows, n_bins = ratios.shape
        columns = []
        for target in range(states.shape[1]):
            masked = (ratios * states[:, target]).reshape(n_seq * n_rows, n_bins)
            pulled = (_on_host(self.host, True, masked) if self.host is not None
                      else masked @ self.matrix.T).reshape(ratios.shape)
            columns.append(jnp.sum(filtered * pulled, axis=1) @ states)
        return jnp.stack(columns, axis=-1)

    def max_predict(self, p: jax.Array, x: Any = None) -> tuple[jax.Array, jax.Array]:
        """``max_i p[b, i] * A[i, j]`` and its argmax, row by row (``p`` is (B, K))."""
        if self.host is not None:
            shapes = (jax.ShapeDtypeStruct(p.shape, p.dtype),
                      jax.ShapeDtypeStruct(p.shape, jnp.int32))
            return jax.pure_callback(_host_max_product, shapes, p, self.host)
        return max_rows(p[:, :, None] * self.matrix)


def uses_host_blas(n_bins: int) -> bool:
    """Whether a dense matrix of ``n_bins`` bins runs its products in the host BLAS.

    True from :data:`HOST_BLAS_MIN_BINS` bins on when JAX's default backend
    is the CPU.
    """
    return n_bins >= HOST_BLAS_MIN_BINS and jax.default_backend() == "cpu"


def dense_operator(matrix: np.ndarray, dtype: np.dtype | str, n_sequences: int) -> DenseOperator:
    """Put a dense transition where its products run fastest, in their layout.

    Parameters
    ----------
    matrix : (K, K) ndarray
        Row-stochastic transition over the interior bins.
    dtype : dtype
        Compute dtype.
    n_sequences : int
        Sequences per batch; on the device, one sequence also stores the
        transposed matrix (transposed on the device, no host temporary of
        K * K values).

    Returns
    -------
    DenseOperator
        With a :class:`HostMatrix` (kept alive by the operator) when
        :func:`uses_host_blas`, else with the matrix on the device.
    """
    host = np.asarray(matrix, dtype=dtype)
    if uses_host_blas(host.shape[0]):
        kept = HostMatrix(host)
        return DenseOperator(None, None, host=jnp.asarray(kept.number, dtype=jnp.int32),
                             host_matrix=kept)
    device = jax.device_put(host)
    return DenseOperator(device, jnp.transpose(device) if n_sequences == 1 else None)
