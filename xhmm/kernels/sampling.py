"""JAX kernel of the posterior path sampler for one time chunk of ``B`` sequences.

Forward filtering, backward sampling (FFBS): the last step of a path is
drawn from the filtered posterior of the last step, then each earlier step
``t`` from

``p(z_t = i | z_{t+1} = j, y_1..t)  ∝  filtered_t(i) * A_t(i, j)``.

:func:`sample_chunk` filters one chunk again from its checkpoint (the
filter's kernel, :func:`xhmm.kernels.hmm.forward_chunk`) and walks its rows
backwards, drawing ``N`` paths of each sequence at once. The column
``A_t(:, j)`` of each path's next state ``j`` is the operator's
``pullback`` of the one-hot row of ``j`` (``A @ e_j``), the product the
smoother applies to its ratios, so every transition kind (dense, blocks,
time-varying, ...) samples through the same code; a dense matrix's columns
are read instead (``DenseOperator.columns``, the same numbers).

Each draw is an inverse-CDF lookup in float64 whatever the chunk's compute
dtype: the columns come from the float64 operator, the weights
``filtered_t(i) * A_t(i, j)`` are float64 products, cumulated, and the draw
is the first bin whose cumulative weight exceeds ``u`` times the total. The
weights of a drawn state never all vanish: the state was drawn because the
filter predicted it from some ``filtered_t(i) > 0`` with ``A_t(i, j) > 0``
(products that are positive in the chunk's dtype are in float64).

The uniforms ``u`` are counter based: those of time step ``t`` of a
sequence come from ``fold_in(key, t)`` of the sequence's key
(:func:`sequence_keys`), so they do not depend on how the recording is cut
into chunks.

Conventions are those of :mod:`xhmm.kernels.hmm` (rows "from", columns
"to"; ``n_valid`` real rows per sequence; the per-step input of a row's
transition to the next row is ``xs[i + 1]``). The kernel must be called
with JAX's 64-bit mode on (:func:`xhmm.engine.runstate.precision`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .hmm import forward_chunk
from .operators import step_slice

__all__ = ["sample_chunk", "sequence_keys"]


def sequence_keys(seed: int, sequences: np.ndarray) -> jax.Array:
    """The (B, 2) uint32 key of each sequence: ``fold_in(PRNGKey(seed), sequence)``.

    Call with JAX's 64-bit mode on, so that all 64 bits of ``seed`` count.

    Parameters
    ----------
    seed : int
        In ``[0, 2**63)``.
    sequences : (B,) int ndarray
        Each sequence's position among all sequences of the job (0 for a
        single recording), below ``2**32``.
    """
    root = jax.random.PRNGKey(seed)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        root, jnp.asarray(sequences, jnp.uint32))


def _uniforms(keys: jax.Array, t: jax.Array, n_samples: int) -> jax.Array:
    """(B, N) float64 uniforms of time step ``t`` of each sequence."""
    high = (t >> 32).astype(jnp.uint32)
    low = (t & 0xFFFFFFFF).astype(jnp.uint32)

    def draw(key):
        key = jax.random.fold_in(jax.random.fold_in(key, high), low)
        return jax.random.uniform(key, (n_samples,), jnp.float64)

    return jax.vmap(draw)(keys)


def _columns(operator, j: jax.Array, x, n_bins: int) -> jax.Array:
    """``A[:, j[m]]`` as (M, K) rows: read where the operator can (``columns``), else
    its ``pullback`` of one-hot rows (the same numbers: a product with a one-hot row
    adds one term)."""
    read = getattr(operator, "columns", None)
    if read is not None:
        return read(j, x)
    return operator.pullback(jax.nn.one_hot(j, n_bins, dtype=jnp.float64), x)


@jax.jit
def sample_chunk(prev, is_first, log_lik, n_valid, operator, xs, initial,
                 entry, has_next, keys, start, operator64, xs64):
    """Filter one chunk again and draw each path's states over its rows, last row first.

    Parameters
    ----------
    prev, is_first, log_lik, n_valid, operator, xs, initial
        As for :func:`xhmm.kernels.hmm.forward_chunk` (``prev`` is the
        chunk's checkpoint), in the chunk's compute dtype.
    entry : (B, N) int32 array
        State of each path at the row after the chunk, drawn by the chunk
        after it (ignored where ``has_next`` is False).
    has_next : (B,) bool array
        False for the chunk holding a sequence's last time step: its paths
        then start from the filtered posterior of the last real row.
    keys : (B, 2) uint32 array
        Each sequence's key (:func:`sequence_keys`).
    start : int64 scalar
        Time index of the chunk's first row.
    operator64, xs64
        The operator and its per-step inputs in float64, for the columns.

    Returns
    -------
    paths : (B, C, N) int32 array
        The state of each path at each real row; -1 on padded rows.
    exit : (B, N) int32 array
        Each path's state at the chunk's first real row (the previous
        chunk's ``entry``).
    """
    filtered, _, _, _ = forward_chunk(prev, is_first, log_lik, n_valid, operator, xs, initial)
    n_seq, n_rows, n_bins = filtered.shape
    n_samples = entry.shape[1]
    after = step_slice(xs64, 1, n_rows + 1)

    # every row's uniforms at once (the same numbers as one row at a time)
    uniforms = jax.vmap(lambda i: _uniforms(keys, start + i, n_samples))(jnp.arange(n_rows))

    def step(state, inputs):
        filt, i, x, u = inputs  # filt: (B, K) row i of every sequence; u: (B, N)
        valid = i < n_valid
        is_end = (i == n_valid - 1) & ~has_next
        column = _columns(operator64, state.reshape(-1), x, n_bins).reshape(
            n_seq, n_samples, n_bins)
        weights = filt.astype(jnp.float64)[:, None, :] * jnp.where(
            is_end[:, None, None], 1.0, column)
        cdf = jnp.cumsum(weights, axis=-1)
        total = cdf[..., -1:]
        target = u[..., None] * total
        # below the total, so the draw is a bin of positive weight
        target = jnp.minimum(target, jnp.nextafter(total, 0))
        draw = jnp.sum(cdf <= target, axis=-1).astype(jnp.int32)
        new_state = jnp.where(valid[:, None], draw, state)
        return new_state, jnp.where(valid[:, None], draw, -1)

    exit_state, paths = jax.lax.scan(
        step, entry, (jnp.swapaxes(filtered, 0, 1), jnp.arange(n_rows), after, uniforms),
        reverse=True)
    return jnp.swapaxes(paths, 0, 1), exit_state
