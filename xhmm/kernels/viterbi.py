"""JAX kernels of the Viterbi decoder for one time chunk of ``B`` sequences.

The decoder runs out of core by checkpointed recomputation
(:mod:`xhmm.engine.viterbi`): :func:`viterbi_forward_chunk` carries the
max-message through a chunk, keeping nothing per row but its log scale;
:func:`viterbi_backtrack_chunk` recomputes the same chunk from its
checkpoint, this time keeping on the device the max-message entering each
row (``C x K`` values, like the smoother's filtered chunk), and traces the
path back: the back-pointer of the path's state ``j`` at a row is the
lowest ``i`` maximising ``m(i) * A[i, j]`` for the message ``m`` entering
it (the operator's ``max_column``: one column, ``O(K)``), the same products
and tie rule as the operator's ``max_predict`` in the forward pass, so the
same pointer as the full ``C x K`` argmax, which is never computed.

Conventions are those of :mod:`xhmm.kernels.hmm` (rows "from", columns
"to"; ``log_lik`` rows shifted on the host to a maximum of 0; ``n_valid``
real rows per sequence, padded rows never change a carry; the transition
enters only through an operator and its per-step inputs ``xs``).

Numerics: max-product in probability space, rescaled like the filter. The
message of step ``t`` is ``m_t(j) = max_i m_{t-1}(i) A[i, j] * exp(ll[t, j])``
divided by its maximum, whose logarithm (the step's *log scale*, relative to
the host shift) is returned; the best path's log-probability is the sum of
the log scales and shifts. The prediction of the first step is ``initial``.
The precision flags are the filter's (:data:`xhmm.kernels.hmm.HEADROOM`,
:data:`xhmm.kernels.hmm.RELEVANT_NATS`), applied to the max-product
predictions: a prediction near float32's underflow limit where the
likelihood is high means float32 may have lost the path there.

Ties go to the lowest index: in the operators' ``max_predict`` and
``max_column`` (the back-pointers) and in the last step's best bin.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .hmm import rescaled_scan
from .operators import step_slice

__all__ = ["viterbi_forward_chunk", "viterbi_backtrack_chunk"]


def _time_major(array: jax.Array) -> jax.Array:
    """(B, C, ...) -> (C, B, ...) for a scan over rows."""
    return jnp.swapaxes(array, 0, 1)


def _max_scan(prev, is_first, log_lik, n_valid, operator, xs, initial):
    """The max-product recursion over a chunk's rows (shared by both kernels).

    Returns the carry after the last real row of each sequence and, per row
    (time-major), the log scale, the precision flags and the message
    entering the row (each output a caller does not use is not computed:
    the argmax of ``max_predict`` never is).
    """
    def best(message, x):
        return operator.max_predict(message, x)[0]

    def keep(rescaled, peak):
        return rescaled, peak

    last, (_, log_scale, flags, entering), valid = rescaled_scan(
        prev, is_first, log_lik, n_valid, xs, initial, best, keep)
    return last, log_scale, flags, entering, valid


@jax.jit
def viterbi_forward_chunk(prev, is_first, log_lik, n_valid, operator, xs, initial):
    """Carry the max-message of ``B`` sequences through one chunk.

    Parameters
    ----------
    prev : (B, K) array
        Rescaled max-message of each sequence at the step before the chunk
        (ignored when ``is_first``).
    is_first : bool scalar
        True for the chunk that starts at time 0.
    log_lik : (B, C, K) array
        Host-shifted log-likelihood rows.
    n_valid : (B,) int array
        Real rows of each sequence in this chunk.
    operator : TransitionOperator
    xs : pytree or None
        Per-step operator inputs, leading axis ``C + 1``.
    initial : (B, K) array
        Prediction of each sequence's first step.

    Returns
    -------
    last : (B, K) array
        Each sequence's rescaled max-message at its last real row so far.
    log_scale : (B, C) array
        ``log max_j`` of each row's unscaled message, relative to the host
        shift; ``-inf`` or NaN where no path reaches the row.
    flags : (B, C, 2) bool array
        ``tiny`` and ``risk`` of each row (see the module docstring).
    """
    last, log_scale, flags, _, _ = _max_scan(prev, is_first, log_lik, n_valid, operator,
                                             xs, initial)
    return last, jnp.swapaxes(log_scale, 0, 1), _time_major(flags)


@jax.jit
def viterbi_backtrack_chunk(prev, is_first, log_lik, n_valid, operator, xs, initial,
                            entry, has_next):
    """Recompute one chunk's max-messages from its checkpoint and trace the path back.

    Parameters
    ----------
    prev, is_first, log_lik, n_valid, operator, xs, initial
        As for :func:`viterbi_forward_chunk` (``prev`` is the chunk's
        checkpoint).
    entry : (B,) int32 array
        State of each sequence at the chunk's last row, handed back by the
        chunk after it (ignored where ``has_next`` is False).
    has_next : (B,) bool array
        False for the chunk holding a sequence's last time step (and after
        it): the path then starts at the best bin of the last real row.

    Returns
    -------
    path : (B, C) int32 array
        The state of each real row; -1 on padded rows.
    exit : (B,) int32 array
        Each sequence's state at the row before the chunk (the previous
        chunk's ``entry``).
    """
    last, _, _, entering, valid = _max_scan(prev, is_first, log_lik, n_valid, operator,
                                            xs, initial)
    start = jnp.where(has_next, entry, jnp.argmax(last, axis=1).astype(jnp.int32))

    def step(state, inputs):
        message, row_valid, x = inputs
        _, before = operator.max_column(message, state, x)
        here = jnp.where(row_valid, state, -1)
        return jnp.where(row_valid, before, state), here

    exit_state, path = jax.lax.scan(
        step, start, (entering, valid, step_slice(xs, 0, log_lik.shape[1])), reverse=True)
    return jnp.swapaxes(path, 0, 1), exit_state
