"""JAX kernels for one time chunk of the forward filter and backward smoother.

Every kernel works on a batch of ``B`` independent sequences (a single
sequence is ``B = 1``) and a fixed-shape chunk of ``C`` rows, so each compiles
once per (B, C, K, dtype, operator kind). All sequences of a batch start at
time 0 together; each has its own number of real rows per chunk
(``n_valid``), and padded rows (ragged ends, the recording's last chunk) never
change a sequence's carry.

The transition enters only through an operator (see
:mod:`xhmm.kernels.operators`) and its per-step inputs ``xs``; the kernels
never see a matrix.

Conventions
-----------
The transition's rows are "from", its columns "to". ``log_lik`` rows are
already shifted on the host so their maximum is 0; the shift is added back to
the log normalisers on the host in float64.

Numerics: each step works in probability space, rescaled by the maximum of
``log(prediction) + log_lik``, so the largest term is exactly 1 and nothing
underflows unless the whole row is beyond the dtype's range.

Precision flags: the filter also reports, per sequence, whether any
computed prediction came within :data:`HEADROOM` of the dtype's smallest
normal number (``tiny``: mass may have been lost there, CPUs flush smaller
values to zero) and whether such a bin had a likelihood within
:data:`RELEVANT_NATS` of the step's normaliser (``risk``: the lost mass could
matter now or later). The engine's ``compute_dtype="auto"`` recomputes such
chunks in float64. The first step's prediction (``initial``) is exact and
never flagged.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp

from .operators import HIGHEST, step_slice

__all__ = ["forward_chunk", "backward_chunk", "summarize_chunk", "rescaled_scan",
           "HEADROOM", "RELEVANT_NATS", "BACKWARD_BLOCK"]

#: A prediction below ``HEADROOM`` times the dtype's smallest normal number
#: is "tiny": within 8 orders of magnitude of where values are lost.
HEADROOM = 1e8
#: A tiny prediction matters where the likelihood is no more than this many
#: nats below the step's normaliser (else its weight is below 1e-43).
RELEVANT_NATS = 30.0
#: The smoother walks a chunk in blocks of at most this many rows, each
#: block's predictions computed as one product just before its rows: a
#: chunk-wide product of 5,000 rows leaves cache between its computation and
#: its use (contfrag-1d at K = 1,000: 15.2 against 11.1 us a step).
BACKWARD_BLOCK = 500


def _time_major(array: jax.Array) -> jax.Array:
    """(B, C, ...) -> (C, B, ...) for a scan over rows (free when B = 1)."""
    return jnp.swapaxes(array, 0, 1)


def rescaled_scan(prev, is_first, log_lik, n_valid, xs, initial,
                  predict: Callable, normalise: Callable):
    """The recursion the filter and the Viterbi decoder share, over a chunk's rows.

    At each row: ``predicted = predict(carry, x)`` (``initial`` for the
    recording's first row), weights ``predicted * exp(row_ll)`` rescaled to
    a maximum of 1 (in logs, by their ``peak``), then ``normalise(weights,
    peak)`` gives the new carry and the row's log scale; the precision flags
    compare each prediction with :data:`HEADROOM` and each likelihood with
    that log scale (see the module docstring). Padded rows keep the carry
    and are not flagged.

    Parameters
    ----------
    prev, is_first, log_lik, n_valid, xs, initial
        As for :func:`forward_chunk`.
    predict : callable
        ``(carry (B, K), x) -> (B, K)``: the operator's ``predict`` (sum) or
        the values of its ``max_predict`` (max).
    normalise : callable
        ``(weights (B, K), peak (B, 1)) -> (carry (B, K), log_scale (B, 1))``.

    Returns
    -------
    last : (B, K) array
        The carry after each sequence's last real row.
    rows : tuple of time-major arrays
        Per row: the new carries (C, B, K), log scales (C, B), flags
        (C, B, 2) and the carry entering the row (C, B, K); an output a
        caller does not use is not computed.
    valid : (C, B) bool array
        Which rows are real.
    """
    n_rows = log_lik.shape[1]
    valid = jnp.arange(n_rows)[:, None] < n_valid[None, :]
    limit = HEADROOM * jnp.finfo(log_lik.dtype).tiny

    def step(carry, inputs):
        row_ll, row_valid, i, x = inputs
        first = is_first & (i == 0)
        predicted = jnp.where(first, initial, predict(carry, x))
        log_weights = jnp.log(predicted) + row_ll
        peak = jnp.max(log_weights, axis=1, keepdims=True)
        rows, log_scale = normalise(jnp.exp(log_weights - peak), peak)
        small = (predicted < limit) & ~first
        relevant = row_ll > jnp.where(jnp.isfinite(log_scale), log_scale, 0) - RELEVANT_NATS
        flags = jnp.stack([jnp.any(small, axis=1), jnp.any(small & relevant, axis=1)], 1)
        new_carry = jnp.where(row_valid[:, None], rows, carry)
        return new_carry, (rows, log_scale[:, 0], flags & row_valid[:, None], carry)

    last, outputs = jax.lax.scan(
        step, prev,
        (_time_major(log_lik), valid, jnp.arange(n_rows), step_slice(xs, 0, n_rows)),
    )
    return last, outputs, valid


@jax.jit
def forward_chunk(prev, is_first, log_lik, n_valid, operator, xs, initial):
    """Filter one chunk of ``B`` sequences.

    Parameters
    ----------
    prev : (B, K) array
        Filtered distribution of each sequence at the step before the chunk
        (ignored when ``is_first``).
    is_first : bool scalar
        True for the chunk that starts at time 0: ``initial`` is then the
        prediction of its first row.
    log_lik : (B, C, K) array
        Host-shifted log-likelihood rows.
    n_valid : (B,) int array
        Real rows of each sequence in this chunk (0 once a sequence ended).
    operator : TransitionOperator
    xs : pytree or None
        Per-step operator inputs, leading axis ``C + 1`` (row ``i`` of the
        chunk is predicted with ``xs[i]``).
    initial : (B, K) array
        Prediction of each sequence's first step.

    Returns
    -------
    filtered : (B, C, K) array
        Filtered rows (rows at or past ``n_valid`` are garbage).
    log_norm : (B, C) array
        Per-step log normaliser relative to the host shift; ``nan`` or
        ``-inf`` marks a step where no bin is possible.
    last : (B, K) array
        Each sequence's filtered distribution at its last real row so far
        (the next chunk's ``prev``).
    flags : (B, C, 2) bool array
        ``tiny`` and ``risk`` of each row (see the module docstring; False
        on padded rows).
    """
    def normalise(weights, peak):
        total = jnp.sum(weights, axis=1, keepdims=True)
        return weights / total, peak + jnp.log(total)

    last, (filtered, log_norm, flags, _), _ = rescaled_scan(
        prev, is_first, log_lik, n_valid, xs, initial, operator.predict, normalise)
    return _time_major(filtered), jnp.swapaxes(log_norm, 0, 1), last, _time_major(flags)


@partial(jax.jit, static_argnames=("block", "per_step"))
def backward_chunk(next_smoothed, has_next, filtered, n_valid, operator, xs,
                   count_states=None, block=BACKWARD_BLOCK, per_step=False):
    """Smooth one chunk of ``B`` sequences, walking its rows backwards.

    Parameters
    ----------
    next_smoothed : (B, K) array
        Smoothed distribution of each sequence at the step after the chunk
        (ignored where ``has_next`` is False).
    has_next : (B,) bool array
        False for the chunk holding a sequence's last time step.
    filtered : (B, C, K) array
        Filtered rows of the chunk.
    n_valid : (B,) int array
        Real rows of each sequence in this chunk.
    operator : TransitionOperator
    xs : pytree or None
        Per-step operator inputs, leading axis ``C + 1``.
    count_states : (K, S) array, optional
        Membership of each bin in each discrete state: also return the
        expected transition counts between states (a separate compilation).
    block : int, default :data:`BACKWARD_BLOCK`
        Rows per block of the walk (static): the rows are smoothed in
        blocks of at most this many, last block first.
    per_step : bool, default False
        With ``count_states``, the counts of each row (B, C, S, S) instead
        of their sum over the chunk (static).

    Returns
    -------
    smoothed : (B, C, K) array
        Smoothed rows (rows at or past ``n_valid`` are garbage).
    first : (B, K) array
        Each sequence's smoothed distribution at the chunk's first row (the
        previous chunk's ``next_smoothed``).
    counts : tuple or None
        None without ``count_states``; else ``(counts, predicted_states)``:
        ``counts`` (B, S, S) is ``sum_t p(state_t = s, state_{t+1} = s' |
        all data)`` over the chunk's rows ``t`` that have a next step
        (``per_step``: (B, C, S, S), row ``t``'s alone, 0 without one; the
        pair posterior ``filtered_t[i] A[i, j] smoothed_{t+1}[j] /
        predicted_{t+1}[j]`` summed over the bins of each pair of states,
        block by block: see the operators' ``transition_counts``), and
        ``predicted_states`` (B, C, S) the state probabilities of each
        row's prediction of the next step, ``p(state_{t+1} | y_1..t)``.
    """
    n_rows = filtered.shape[1]
    after = step_slice(xs, 1, n_rows + 1)
    # Blocks of at most ``block`` rows (the last padded), walked in reverse:
    # each block's predictions stay in cache for its scan.
    n_blocks = -(-n_rows // block)
    size = -(-n_rows // n_blocks)
    extra = n_blocks * size - n_rows
    padded = jnp.pad(filtered, ((0, 0), (0, extra), (0, 0))) if extra else filtered
    padded_after = jax.tree_util.tree_map(
        lambda a: jnp.pad(a, [(0, extra)] + [(0, 0)] * (a.ndim - 1), mode="edge")
        if extra else a, after)

    def step(carry, inputs):
        filt, pred, i, x = inputs
        is_end = (i == n_valid - 1) & ~has_next
        # ratio = smoothed_{i+1} / predicted_{i+1}; none past a sequence's end
        ratio = jnp.where((pred > 0) & ~is_end[:, None] & (i < n_valid)[:, None],
                          carry / jnp.where(pred > 0, pred, 1), 0)
        smoothed = filt * operator.pullback(ratio, x)
        smoothed = smoothed / jnp.sum(smoothed, axis=1, keepdims=True)
        smoothed = jnp.where(is_end[:, None], filt, smoothed)
        new_carry = jnp.where((i < n_valid)[:, None], smoothed, carry)
        return new_carry, (smoothed, ratio if count_states is not None else None)

    def one_block(carry, start):
        # Predictions of step i + 1 from every filtered row i of the block:
        # they do not depend on the carry, so they are one product.
        rows = jax.lax.dynamic_slice_in_dim(padded, start, size, axis=1)
        xs_rows = jax.tree_util.tree_map(
            lambda a: jax.lax.dynamic_slice_in_dim(a, start, size), padded_after)
        predicted = operator.predict_chunk(rows, xs_rows)
        carry, (smoothed, ratios) = jax.lax.scan(
            step, carry,
            (_time_major(rows), _time_major(predicted), start + jnp.arange(size), xs_rows),
            reverse=True,
        )
        states = (None if count_states is None else
                  jnp.matmul(_time_major(predicted), count_states, precision=HIGHEST))
        return carry, (smoothed, ratios, states)

    first, (smoothed, ratios, states) = jax.lax.scan(
        one_block, next_smoothed, size * jnp.arange(n_blocks), reverse=True)

    def rows_of(blocks):  # (n_blocks, size, B, ...) -> time-major (C, B, ...)
        return blocks.reshape((n_blocks * size,) + blocks.shape[2:])[:n_rows]

    counts = None
    if count_states is not None:
        counts = (operator.transition_counts(filtered, _time_major(rows_of(ratios)), after,
                                             count_states, per_step=per_step),
                  _time_major(rows_of(states)))
    smoothed = rows_of(smoothed)
    return _time_major(smoothed), first, counts


@partial(jax.jit, static_argnames=("argmax", "entropy", "states"))
def summarize_chunk(posterior, state_onehot, *, argmax=True, entropy=True, states=True):
    """Per-row summaries of a chunk of posteriors.

    Each summary left out is not computed (one compilation per choice).

    Parameters
    ----------
    posterior : (B, C, K) array
    state_onehot : (K, S) array
        ``state_onehot[k, s]`` is 1 when bin ``k`` belongs to state ``s``
        (S may be 0).
    argmax, entropy, states : bool, default True
        Which summaries to compute.

    Returns
    -------
    argmax : (B, C) int32 array or None
        Index of the most probable bin of each row.
    entropy : (B, C) array or None
        ``-sum p log p`` of each row, in nats.
    state_probabilities : (B, C, S) array or None
        Probability of each state in each row.
    """
    index = jnp.argmax(posterior, axis=2).astype(jnp.int32) if argmax else None
    nats = None
    if entropy:
        positive = posterior > 0
        plogp = jnp.where(positive, posterior * jnp.log(jnp.where(positive, posterior, 1)), 0)
        nats = -jnp.sum(plogp, axis=2)
    state_probabilities = (jnp.matmul(posterior, state_onehot, precision=HIGHEST)
                           if states else None)
    return index, nats, state_probabilities
