"""JAX kernels for one time chunk of the forward filter and backward smoother.

All functions take fixed-shape chunks (``chunk_size`` rows; the last chunk of
a recording is padded and ``n_valid`` says how many rows are real), so each
compiles once per (chunk_size, n_bins, dtype). Padded rows never change the
carry.

Conventions
-----------
``transition[i, j]`` is P(state j at t+1 | state i at t). ``log_lik`` rows are
already shifted on the host so their maximum is 0; the shift is added back to
the log normalisers on the host in float64.

Numerics: each step works in probability space, rescaled by the maximum of
``log(prediction) + log_lik``, so the largest term is exactly 1 and nothing
underflows unless the whole row is beyond the dtype's range.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

__all__ = ["forward_chunk", "forward_chunk_t", "backward_chunk", "summarize_chunk"]


def _filter_step(predict, initial, carry, inputs):
    prev, is_first = carry
    log_lik, valid = inputs
    predicted = jnp.where(is_first, initial, predict(prev))
    log_weights = jnp.log(predicted) + log_lik
    peak = jnp.max(log_weights)
    weights = jnp.exp(log_weights - peak)
    total = jnp.sum(weights)
    filtered = weights / total
    log_norm = peak + jnp.log(total)
    new_prev = jnp.where(valid, filtered, prev)
    return (new_prev, is_first & ~valid), (filtered, log_norm)


def _filter_scan(predict, prev, is_first, log_lik, n_valid, initial):
    valid = jnp.arange(log_lik.shape[0]) < n_valid
    step = partial(_filter_step, predict, initial)
    (last, _), (filtered, log_norm) = jax.lax.scan(
        step, (prev, jnp.asarray(is_first)), (log_lik, valid)
    )
    return filtered, log_norm, last


@jax.jit
def forward_chunk(prev, is_first, log_lik, n_valid, transition, initial):
    """Filter one chunk.

    Each step's prediction is ``prev @ transition``, which :func:`jax.vmap`
    over sequences turns into one matrix-matrix product per step (see
    :mod:`xhmm.kernels.batched`). A single sequence is faster on CPU with
    :func:`forward_chunk_t`.

    Parameters
    ----------
    prev : (K,) array
        Filtered distribution of the step before the chunk (ignored when
        ``is_first``).
    is_first : bool scalar
        True for the chunk that starts at time 0 (``initial`` is then the
        prediction of its first step).
    log_lik : (C, K) array
        Host-shifted log-likelihood rows.
    n_valid : int scalar
        Number of real rows; the rest are padding.
    transition : (K, K) array
    initial : (K,) array

    Returns
    -------
    filtered : (C, K) array
        Filtered rows (padding rows are garbage).
    log_norm : (C,) array
        Per-step log normaliser relative to the host shift; ``nan`` or
        ``-inf`` marks a step where no bin is possible.
    last : (K,) array
        Filtered distribution of the last real row (the next chunk's ``prev``).
    """
    return _filter_scan(lambda p: p @ transition, prev, is_first, log_lik, n_valid,
                        initial)


@jax.jit
def forward_chunk_t(prev, is_first, log_lik, n_valid, transition_t, initial):
    """Filter one chunk of one sequence, given the transposed transition matrix.

    The same filter as :func:`forward_chunk` (``transition_t`` is
    ``transition.T``, stored row-major), so each step's prediction
    ``transition_t @ prev`` is a dot product along contiguous rows. The
    vector-matrix form ``prev @ transition`` strides down columns instead:
    measured on CPU it costs 1.2x per step at K=1,000 and 1.4-1.8x at
    K=2,000-4,000 (the same at K <= 500). Transposing inside the kernel
    instead would let XLA fold the copy into the product for one-row chunks
    and round differently there; a stored transpose gives every chunk size
    the same product and bit-identical rows.

    Returns
    -------
    filtered, log_norm, last
        As :func:`forward_chunk`.
    """
    return _filter_scan(lambda p: transition_t @ p, prev, is_first, log_lik, n_valid,
                        initial)


@jax.jit
def backward_chunk(next_smoothed, has_next, filtered, n_valid, transition):
    """Smooth one chunk, walking its rows backwards.

    Parameters
    ----------
    next_smoothed : (K,) array
        Smoothed distribution of the step after the chunk (ignored when
        ``has_next`` is False).
    has_next : bool scalar
        False for the chunk holding the last time step.
    filtered : (C, K) array
        Filtered rows of the chunk.
    n_valid : int scalar
        Number of real rows.
    transition : (K, K) array

    Returns
    -------
    smoothed : (C, K) array
        Smoothed rows (padding rows are garbage).
    first : (K,) array
        Smoothed distribution of the chunk's first row (the previous chunk's
        ``next_smoothed``).
    """
    n_rows = filtered.shape[0]
    # Predictions of step i+1 from every filtered row i: one matrix-matrix
    # product per chunk instead of one matrix-vector product per step.
    predicted = filtered @ transition
    index = jnp.arange(n_rows)

    def step(carry, inputs):
        filt, pred, i = inputs
        safe = jnp.where(pred > 0, pred, 1)
        ratio = jnp.where(pred > 0, carry / safe, 0)
        smoothed = filt * (transition @ ratio)
        smoothed = smoothed / jnp.sum(smoothed)
        is_end = (i == n_valid - 1) & ~has_next
        smoothed = jnp.where(is_end, filt, smoothed)
        new_carry = jnp.where(i < n_valid, smoothed, carry)
        return new_carry, smoothed

    first, smoothed = jax.lax.scan(
        step, next_smoothed, (filtered, predicted, index), reverse=True
    )
    return smoothed, first


@jax.jit
def summarize_chunk(posterior, state_onehot):
    """Per-row summaries of a posterior chunk.

    Parameters
    ----------
    posterior : (C, K) array
    state_onehot : (K, S) array
        ``state_onehot[k, s]`` is 1 when bin ``k`` belongs to state ``s``
        (S may be 0).

    Returns
    -------
    argmax : (C,) int32 array
        Index of the most probable bin of each row.
    entropy : (C,) array
        ``-sum p log p`` of each row, in nats.
    state_probabilities : (C, S) array
        Probability of each state in each row.
    """
    argmax = jnp.argmax(posterior, axis=1).astype(jnp.int32)
    plogp = jnp.where(posterior > 0, posterior * jnp.log(jnp.where(posterior > 0, posterior, 1)), 0)
    entropy = -jnp.sum(plogp, axis=1)
    state_probabilities = posterior @ state_onehot
    return argmax, entropy, state_probabilities
