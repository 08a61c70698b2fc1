"""Reference implementations the harness times beside xhmm.

``numpy`` is a plain NumPy/BLAS forward-backward loop doing the same
per-step work as xhmm's kernels (one vector-matrix product per filter step;
per smoother step one matrix-vector product, with the predictions of a chunk
of filtered rows as one matrix-matrix product): the practical roofline of
this machine. The peers, ``non_local_detector`` (``core.chunked_filter_smoother``)
and ``dynamax`` (``hmm_smoother``), run only where they are installed (the
``bench-peers`` extra).
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import numpy as np

__all__ = ["BASELINES", "PEER_MODULES", "missing_note", "numpy_forward_backward"]

#: Import name of each optional peer.
PEER_MODULES = {"non_local_detector": "non_local_detector", "dynamax": "dynamax"}


def missing_note(name: str) -> str | None:
    """Why baseline ``name`` cannot run here, or None when it can."""
    module = PEER_MODULES.get(name)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return (f"{name} is not installed (pip install 'xhmm[bench-peers]' to include it); "
            "skipped")


def numpy_forward_backward(
    log_lik: np.ndarray,
    transition: np.ndarray,
    initial: np.ndarray,
    chunk_size: int,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Forward filter and backward smoother in plain NumPy.

    Rescales each step by the maximum of ``log(prediction) + log_lik`` like
    xhmm. Where a prediction is zero (a random walk's far entries underflow)
    the smoother's ratio is zero, as in xhmm; it skips xhmm's other checks.

    Parameters
    ----------
    log_lik : (T, K) ndarray
    transition : (K, K) ndarray
        Row-stochastic, row = from.
    initial : (K,) ndarray
    chunk_size : int
        Rows per matrix-matrix product of the smoother's predictions.
    dtype : {"float32", "float64"}
        Compute and output dtype.

    Returns
    -------
    filtered, smoothed : (T, K) ndarray
    marginal_log_likelihood : float
    """
    A = np.ascontiguousarray(transition, dtype=dtype)
    n_time, n_bins = log_lik.shape
    filtered = np.empty((n_time, n_bins), dtype=dtype)
    smoothed = np.empty((n_time, n_bins), dtype=dtype)
    log_norm = np.empty(n_time, dtype=np.float64)
    predicted = np.asarray(initial, dtype=dtype)
    weights = np.empty(n_bins, dtype=dtype)
    ratio = np.empty(n_bins, dtype=dtype)
    with np.errstate(divide="ignore"):  # log(0) = -inf: an impossible bin
        for t in range(n_time):
            np.log(predicted, out=weights)
            weights += log_lik[t]
            peak = weights.max()
            weights -= peak
            np.exp(weights, out=weights)
            total = weights.sum()
            np.divide(weights, total, out=filtered[t])
            log_norm[t] = float(peak) + np.log(float(total))
            predicted = filtered[t] @ A
    smoothed[-1] = filtered[-1]
    for stop in range(n_time - 1, 0, -chunk_size):
        start = max(0, stop - chunk_size)
        predicted_rows = filtered[start:stop] @ A
        for t in range(stop - 1, start - 1, -1):
            pred = predicted_rows[t - start]
            np.divide(smoothed[t + 1], pred, out=ratio, where=pred > 0)
            ratio[pred <= 0] = 0
            row = filtered[t] * (A @ ratio)
            np.divide(row, row.sum(), out=smoothed[t])
    return filtered, smoothed, float(log_norm.sum())


def _non_local_detector(log_lik, transition, initial, chunk_size, dtype):
    from non_local_detector.core import chunked_filter_smoother

    n_time, n_bins = log_lik.shape
    out = chunked_filter_smoother(
        time=np.arange(n_time),
        state_ind=np.zeros(n_bins, dtype=np.int64),
        initial_distribution=np.asarray(initial, dtype=dtype),
        transition_matrix=np.asarray(transition, dtype=dtype),
        log_likelihood_func=None,
        log_likelihood_args=(),
        n_chunks=-(-n_time // chunk_size),
        log_likelihoods=log_lik,
    )
    return (np.asarray(out[0]),), float(out[2])


def _dynamax(log_lik, transition, initial, chunk_size, dtype):
    import jax.numpy as jnp
    from dynamax.hidden_markov_model import hmm_smoother

    # dynamax's default also sums the expected transition counts; asking it
    # not to (compute_trans_probs=False) fails under its jit in dynamax 1.0.
    post = hmm_smoother(
        jnp.asarray(initial, dtype=dtype),
        jnp.asarray(transition, dtype=dtype),
        jnp.asarray(log_lik, dtype=dtype),
    )
    return ((np.asarray(post.filtered_probs), np.asarray(post.smoothed_probs)),
            float(post.marginal_loglik))


def _numpy(log_lik, transition, initial, chunk_size, dtype):
    filtered, smoothed, marginal = numpy_forward_backward(
        log_lik, transition, initial, chunk_size, dtype)
    return (filtered, smoothed), marginal


#: Every baseline: name -> callable(log_lik, transition, initial, chunk_size,
#: dtype) returning (output arrays, marginal log-likelihood).
BASELINES: dict[str, Callable] = {
    "numpy": _numpy,
    "non_local_detector": _non_local_detector,
    "dynamax": _dynamax,
}
