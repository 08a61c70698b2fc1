"""JAX kernels of the HPD-region and posterior-consistency summaries of a chunk.

The highest-posterior-density (HPD) region of a distribution ``p`` over the
bins at level ``a`` is the smallest set of bins holding at least ``a`` of
its mass, taken from the most probable bin down: sort ``p`` in descending
order, find the first place where the running sum reaches ``a`` times the
total, and call the value there the threshold; the region is every bin with
``p >= threshold`` (bins tied with the threshold are all in it). A running
sum that never reaches ``a`` (rounding, for ``a`` near 1) puts the threshold
at the smallest value: every bin is in the region. These are the definitions
of non_local_detector 0.6.9's ``get_highest_posterior_threshold`` and
``posterior_consistency_hpd_overlap``.

Each kernel takes a ``(B, C, K)`` chunk of rows and sorts each row on the
device (``jnp.sort``): a few chunk-sized temporaries, no loop over bins.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .operators import HIGHEST

__all__ = ["hpd_threshold", "hpd_chunk", "consistency_chunk"]


def hpd_threshold(probabilities, level):
    """Threshold of the HPD region of each row at ``level``.

    Parameters
    ----------
    probabilities : (..., K) array
        Non-negative rows (normalised or not: the level is a fraction of
        each row's total).
    level : float scalar
        In (0, 1).

    Returns
    -------
    (...) array
        The value of the row at which the descending running sum first
        reaches ``level`` times the row's total (the row's smallest value
        when it never does).
    """
    descending = jnp.flip(jnp.sort(probabilities, axis=-1), axis=-1)
    total = jnp.sum(probabilities, axis=-1, keepdims=True)
    reached = jnp.cumsum(descending, axis=-1) >= level * total
    last = probabilities.shape[-1] - 1
    index = jnp.where(jnp.any(reached, axis=-1), jnp.argmax(reached, axis=-1), last)
    return jnp.take_along_axis(descending, index[..., None], axis=-1)[..., 0]


@jax.jit
def hpd_chunk(posterior, level, bin_sizes, state_onehot):
    """The HPD region of each row of a chunk of posteriors.

    Parameters
    ----------
    posterior : (B, C, K) array
    level : float scalar
    bin_sizes : (K,) array
        Size of each bin in the units of the position coordinates (0 for a
        bin without one).
    state_onehot : (K, S) array
        Membership of each bin in each discrete state (S may be 0).

    Returns
    -------
    threshold : (B, C) array
    size : (B, C) array
        Bins in the region.
    area : (B, C) array
        Sum of the region's bin sizes.
    state_size, state_area : (B, C, S) array
        The same, over the region's bins of each state.
    """
    threshold = hpd_threshold(posterior, level)
    region = (posterior >= threshold[..., None]).astype(posterior.dtype)
    sized = region * bin_sizes
    return (threshold, jnp.sum(region, axis=2), jnp.sum(sized, axis=2),
            jnp.matmul(region, state_onehot, precision=HIGHEST),
            jnp.matmul(sized, state_onehot, precision=HIGHEST))


@jax.jit
def consistency_chunk(posterior, log_lik, level):
    """How each row of a chunk of posteriors agrees with its likelihood row alone.

    Parameters
    ----------
    posterior : (B, C, K) array
    log_lik : (B, C, K) array
        The log-likelihood rows (any shift per row; ``-inf`` where a bin is
        impossible), normalised here over the K bins.
    level : float scalar
        Level of both HPD regions.

    Returns
    -------
    kl : (B, C) array
        ``KL(posterior || likelihood) = sum_k p_k (log p_k - log q_k)`` in
        nats, with ``q`` the normalised likelihood; a bin with ``p_k = 0``
        adds 0 (``+inf`` where ``p_k > 0`` and ``q_k = 0``).
    overlap : (B, C) array
        Bins in both HPD regions over the bins of the smaller one (at least 1).
    """
    log_lik = log_lik.astype(posterior.dtype)
    log_q = log_lik - jax.scipy.special.logsumexp(log_lik, axis=2, keepdims=True)
    positive = posterior > 0
    terms = posterior * (jnp.log(jnp.where(positive, posterior, 1)) - log_q)
    kl = jnp.sum(jnp.where(positive, terms, 0), axis=2)
    likelihood = jnp.exp(log_q)
    in_posterior = posterior >= hpd_threshold(posterior, level)[..., None]
    in_likelihood = likelihood >= hpd_threshold(likelihood, level)[..., None]
    smaller = jnp.minimum(jnp.sum(in_posterior, axis=2), jnp.sum(in_likelihood, axis=2))
    shared = jnp.sum(in_posterior & in_likelihood, axis=2)
    return kl, shared / jnp.maximum(smaller, 1).astype(posterior.dtype)
