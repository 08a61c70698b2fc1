"""The algorithm against its definition: every path of a tiny HMM, in float64.

For ``K <= 4`` bins and ``T <= 7`` steps all ``K**T`` paths are enumerated
(independently of any forward-backward recursion): the log-probability of a
path is ``log initial[z_0] + sum_t log A[z_{t-1}, z_t] + sum_t ll[t, z_t]``;
filtered marginals sum the paths' prefixes ending in each bin, smoothed
marginals the whole paths through each bin, and the marginal likelihood all
paths. Random models include exact zeros in the transition and initial
distribution, impossible (-inf) bins and shifts of +-1000 nats.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xhmm
from conftest import examples, make_dataset
from tolerances import F32_ATOL, mll_atol

#: float64 compute stores float32 posteriors: one float32 rounding.
F64_STORED_ATOL = 2.0**-24


def _logsumexp(values: np.ndarray) -> float:
    peak = values.max()
    if not np.isfinite(peak):
        return -np.inf
    return float(peak + np.log(np.exp(values - peak).sum()))


def enumerate_paths(ll, A, p0):
    """Filtered and smoothed marginals and log p(y) by enumerating all paths.

    Returns
    -------
    filtered, smoothed : (T, K) ndarray or None
        None when every path has probability zero.
    log_evidence : float
    """
    T, K = ll.shape
    with np.errstate(divide="ignore"):
        log_a, log_p0 = np.log(A), np.log(p0)
    filtered = np.zeros((T, K))
    for t in range(T):
        prefixes = np.array(list(itertools.product(range(K), repeat=t + 1)))
        score = log_p0[prefixes[:, 0]] + ll[np.arange(t + 1), prefixes].sum(axis=1)
        if t:
            score += log_a[prefixes[:, :-1], prefixes[:, 1:]].sum(axis=1)
        total = _logsumexp(score)
        if not np.isfinite(total):
            return None, None, -np.inf
        for k in range(K):
            end = prefixes[:, -1] == k
            filtered[t, k] = np.exp(_logsumexp(score[end]) - total) if end.any() else 0.0
    paths = prefixes
    evidence = total
    smoothed = np.zeros((T, K))
    for t in range(T):
        for k in range(K):
            through = paths[:, t] == k
            smoothed[t, k] = np.exp(_logsumexp(score[through]) - evidence)
    return filtered, smoothed, evidence


@st.composite
def tiny_models(draw):
    K = draw(st.integers(1, 4), label="K")
    T = draw(st.integers(1, 7), label="T")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    A = rng.random((K, K)) * (rng.random((K, K)) < 0.6)  # exact zeros
    A[np.arange(K), rng.integers(0, K, K)] += 0.1  # no empty row
    A /= A.sum(axis=1, keepdims=True)
    p0 = rng.random(K) * (rng.random(K) < 0.7)
    p0[rng.integers(K)] += 0.1
    p0 /= p0.sum()
    spread = draw(st.sampled_from([1.0, 10.0, 40.0, 120.0]), label="spread")
    ll = rng.uniform(-spread, 0.0, (T, K))
    ll[rng.random((T, K)) < 0.2] = -np.inf  # impossible bins
    ll += draw(st.sampled_from([0.0, 1000.0, -1000.0]), label="shift")
    chunk = draw(st.integers(1, T), label="chunk_size")
    return ll, A, p0, chunk


@settings(max_examples=examples(fast=15, full=60), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(model=tiny_models(), compute=st.sampled_from(["auto", "float32", "float64"]))
def test_posteriors_and_evidence_equal_path_enumeration(model, compute):
    ll, A, p0, chunk = model
    filtered, smoothed, evidence = enumerate_paths(ll, A, p0)
    ds = make_dataset(ll)
    kw = dict(transition=A, initial=p0, chunk_size=chunk, compute_dtype=compute,
              progress=False)
    if filtered is None:  # every path impossible: an error naming the time
        with pytest.raises((xhmm.LikelihoodError, xhmm.NumericalError), match="time index"):
            ds.hmm.smooth(**kw)
        return
    try:
        res = ds.hmm.smooth(**kw)
    except xhmm.NumericalError:
        # explicit float32 may refuse a model it cannot verify; the default may not
        assert compute == "float32"
        return
    atol = F64_STORED_ATOL if compute == "float64" else F32_ATOL
    np.testing.assert_allclose(res.causal_posterior.values, filtered, rtol=0, atol=atol)
    np.testing.assert_allclose(res.acausal_posterior.values, smoothed, rtol=0, atol=atol)
    per_step = 1e-12 if compute == "float64" else 1e-6
    assert abs(float(res.marginal_log_likelihood) - evidence) <= mll_atol(ll, evidence, per_step)
