"""JAX kernels for one time chunk of a batch of independent sequences.

These are :func:`jax.vmap` of the single-sequence kernels of
:mod:`xhmm.kernels.hmm` over a leading batch axis of ``B`` sequences, so the
numerics are exactly theirs (per-step rescaling by the maximum of
log-prediction + log-likelihood, padded rows never change the carry). The
transition matrix is shared by the batch (not mapped), which is what turns the
per-step products into matrix-matrix products. In the compiled HLO (checked in
``tests/test_sequences.py``):

- forward, per step: one ``(B, K) @ (K, K)`` product (``prev @ transition``
  for all sequences at once), read of the transition matrix shared by the
  batch;
- backward, per step: one ``(B, K) x (K, K)`` product contracting the
  transition's second axis (``transition @ ratio`` for all sequences), with no
  transposed copy of the matrix inside the loop;
- backward, per chunk: the predictions of every filtered row as one
  ``(B * C, K) @ (K, K)`` product.

All sequences of a batch start at time 0 together; each has its own number of
real rows per chunk (``n_valid``), so ragged lengths are padding at the end of
the shorter sequences.
"""

from __future__ import annotations

import jax

from .hmm import backward_chunk, forward_chunk, summarize_chunk

__all__ = ["forward_batch", "backward_batch", "summarize_batch"]

_forward = jax.vmap(forward_chunk, in_axes=(0, None, 0, 0, None, 0))
_backward = jax.vmap(backward_chunk, in_axes=(0, 0, 0, 0, None))


@jax.jit
def forward_batch(prev, is_first, log_lik, n_valid, transition, initial):
    """Filter one chunk of ``B`` sequences.

    Parameters
    ----------
    prev : (B, K) array
        Filtered distribution of each sequence at the step before the chunk
        (ignored when ``is_first``).
    is_first : bool scalar
        True for the chunk that starts at time 0 (shared: every sequence of
        a batch starts at time 0).
    log_lik : (B, C, K) array
        Host-shifted log-likelihood rows (each row's maximum is 0).
    n_valid : (B,) int array
        Real rows of each sequence in this chunk (0 once a sequence ended).
    transition : (K, K) array
        Shared by all sequences.
    initial : (B, K) array
        Prediction of each sequence's first step.

    Returns
    -------
    filtered : (B, C, K) array
        Filtered rows (rows at or past ``n_valid`` are garbage).
    log_norm : (B, C) array
        Per-step log normaliser relative to the host shift.
    last : (B, K) array
        Each sequence's filtered distribution at its last real row so far.
    """
    return _forward(prev, is_first, log_lik, n_valid, transition, initial)


@jax.jit
def backward_batch(next_smoothed, has_next, filtered, n_valid, transition):
    """Smooth one chunk of ``B`` sequences, walking its rows backwards.

    Parameters
    ----------
    next_smoothed : (B, K) array
        Smoothed distribution of each sequence at the step after the chunk.
    has_next : (B,) bool array
        False for the chunk holding a sequence's last time step.
    filtered : (B, C, K) array
        Filtered rows of the chunk.
    n_valid : (B,) int array
        Real rows of each sequence in this chunk.
    transition : (K, K) array

    Returns
    -------
    smoothed : (B, C, K) array
        Smoothed rows (rows at or past ``n_valid`` are garbage).
    first : (B, K) array
        Each sequence's smoothed distribution at the chunk's first row (the
        previous chunk's ``next_smoothed``).
    """
    return _backward(next_smoothed, has_next, filtered, n_valid, transition)


@jax.jit
def summarize_batch(posterior, state_onehot):
    """Per-row summaries of a batch of posterior chunks.

    Parameters
    ----------
    posterior : (B, C, K) array
    state_onehot : (K, S) array

    Returns
    -------
    argmax : (B, C) int32 array
    entropy : (B, C) array
    state_probabilities : (B, C, S) array
    """
    n_seq, n_rows, n_bins = posterior.shape
    argmax, entropy, states = summarize_chunk(
        posterior.reshape(n_seq * n_rows, n_bins), state_onehot
    )
    return (
        argmax.reshape(n_seq, n_rows),
        entropy.reshape(n_seq, n_rows),
        states.reshape(n_seq, n_rows, state_onehot.shape[1]),
    )
