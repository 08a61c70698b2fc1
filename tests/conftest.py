"""Shared fixtures: the float64 NumPy reference and small random models."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xhmm  # noqa: F401  (registers ds.hmm)


def reference_forward_backward(log_lik, transition, initial):
    """Float64 NumPy forward-backward, the golden reference.

    Returns filtered (T, K), smoothed (T, K) and the marginal log-likelihood.
    Bins where prediction and likelihood are both impossible get 0.
    """
    log_lik = np.asarray(log_lik, dtype=np.float64)
    A = np.asarray(transition, dtype=np.float64)
    T, K = log_lik.shape
    filtered = np.zeros((T, K))
    total = 0.0
    predicted = np.asarray(initial, dtype=np.float64)
    for t in range(T):
        with np.errstate(divide="ignore"):
            log_w = np.log(predicted) + log_lik[t]
        peak = log_w.max()
        w = np.exp(log_w - peak)
        filtered[t] = w / w.sum()
        total += peak + np.log(w.sum())
        predicted = filtered[t] @ A
    smoothed = np.zeros((T, K))
    smoothed[-1] = filtered[-1]
    for t in range(T - 2, -1, -1):
        pred = filtered[t] @ A
        ratio = np.divide(smoothed[t + 1], pred, out=np.zeros(K), where=pred > 0)
        s = filtered[t] * (A @ ratio)
        smoothed[t] = s / s.sum()
    return filtered, smoothed, total


@pytest.fixture
def reference():
    return reference_forward_backward


def random_model(rng, T, K, spread=3.0):
    """A dense random model: (log_lik, transition, initial)."""
    A = rng.random((K, K)) + 0.05
    A /= A.sum(axis=1, keepdims=True)
    p0 = rng.random(K) + 0.1
    p0 /= p0.sum()
    ll = rng.normal(size=(T, K)) * spread
    return ll, A, p0


def make_dataset(ll, mask=None, **coords):
    """Wrap a (T, N) log-likelihood in a Dataset with optional is_interior."""
    T, N = ll.shape
    c = {"time": np.arange(T)}
    if mask is not None:
        c["is_interior"] = ("state_bins", np.asarray(mask, dtype=bool))
    c.update(coords)
    return xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)}, coords=c)
