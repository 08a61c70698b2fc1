"""Hypothesis property tests over random small models.

Models: T <= 40 steps, N <= 8 state bins with a random ``is_interior`` mask
(at least one interior bin, NaN log-likelihood outside it), dense or banded
(exact zeros) transitions, initial distributions with zeros, -inf bins,
random chunk sizes, storage dtypes and compute dtypes. Tolerances are the
shared ones of ``tolerances.py``, plus the storage dtype's own rounding.

The settings profile is registered here and applied per test (not loaded
globally), so other test files keep their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import examples, make_dataset, reference_forward_backward
from tolerances import (
    EPS32,
    F32_ATOL,
    F64_ATOL,
    F64_RTOL,
    assert_backward_close,
    assert_rows,
    banded,
    mll_atol,
    storage_error,
)

settings.register_profile(
    "xhmm-properties",
    max_examples=examples(fast=10, full=30),
    deadline=None,  # the first run of each shape compiles JAX kernels
    derandomize=True,  # the same examples on every CI run
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("xhmm-properties")


@dataclass
class Model:
    """A small HMM over ``N`` bins, ``K`` of them interior.

    Attributes
    ----------
    ll : (T, N) ndarray
        NaN outside the interior.
    transition : (K, K) ndarray
    initial : (K,) ndarray
    mask : (N,) bool ndarray
    """

    ll: np.ndarray
    transition: np.ndarray
    initial: np.ndarray
    mask: np.ndarray

    @property
    def interior_ll(self):
        """The (T, K) log-likelihood of the interior bins."""
        return self.ll[:, self.mask]

    def smooth(self, **config):
        """``ds.hmm.smooth`` of this model with progress bars off."""
        ds = make_dataset(self.ll, self.mask)
        return ds.hmm.smooth(transition=self.transition, initial=self.initial,
                             progress=False, **config)


@st.composite
def models(draw):
    """Draw a :class:`Model`.

    Every step keeps a possible bin: dense transitions are strictly
    positive, so after the first step any finite interior log-likelihood
    will do, and -inf bins are drawn only with them (sparing one bin per
    step, at step 0 one the initial distribution allows). Banded transitions
    (width 1, exact zeros) get finite log-likelihoods. Initial distributions
    may hold zeros.
    """
    n_bins = draw(st.integers(1, 8), label="n_bins")
    mask = np.array(draw(st.lists(st.booleans(), min_size=n_bins, max_size=n_bins),
                         label="mask"))
    mask[draw(st.integers(0, n_bins - 1), label="forced interior bin")] = True
    n_time = draw(st.integers(1, 40), label="T")
    kind = draw(st.sampled_from(["dense", "banded", "dense with -inf"]), label="kind")
    spread = draw(st.sampled_from([0.5, 3.0, 10.0]), label="spread")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    K = int(mask.sum())
    if kind == "banded":
        A = banded(K, 1, rng)
    else:
        A = rng.random((K, K)) + 0.05
        A /= A.sum(axis=1, keepdims=True)
    p0 = rng.random(K) * (rng.random(K) < 0.7)
    p0[rng.integers(K)] += 0.5
    ll = rng.normal(size=(n_time, n_bins)) * spread
    if kind == "dense with -inf":
        inner = ll[:, mask]
        keep = rng.integers(K, size=n_time)
        keep[0] = np.argmax(p0)  # step 0 is weighted by the initial distribution
        impossible = rng.random(inner.shape) < 0.3
        impossible[np.arange(n_time), keep] = False
        inner[impossible] = -np.inf
        ll[:, mask] = inner
    ll[:, ~mask] = np.nan
    return Model(ll, A, p0 / p0.sum(), mask)


CHUNKS = st.integers(1, 45)


@PROFILE
@given(model=models(), chunk=CHUNKS,
       storage=st.sampled_from(["float32", "float16", "uint16"]),
       compute=st.sampled_from(["float32", "float64"]))
def test_rows_and_reference(model, chunk, storage, compute):
    res = model.smooth(chunk_size=chunk, posterior_dtype=storage, compute_dtype=compute)
    filt, smooth, mll = reference_forward_backward(model.interior_ll, model.transition,
                                                   model.initial)
    K = int(model.mask.sum())
    for name, ref in (("causal_posterior", filt), ("acausal_posterior", smooth)):
        # row sums: K float32 ulps, plus the storage rounding of each entry
        sum_atol = K * EPS32 + storage_error(ref, storage).sum(axis=1).max()
        got = assert_rows(res[name].values, model.mask, sum_atol=sum_atol)
        if compute == "float32":
            bound = F32_ATOL + storage_error(ref, storage)
        else:
            bound = F64_RTOL * np.abs(ref) + F64_ATOL + storage_error(ref, storage)
        excess = np.abs(got - ref) - bound
        assert excess.max() <= 0, f"{name}: largest excess over the bound {excess.max():.3g}"
        # impossible bins (zero prediction or -inf likelihood) stay exactly 0
        assert (got[ref == 0] == 0).all(), name
    per_step = 1e-6 if compute == "float32" else 1e-12
    assert abs(float(res.marginal_log_likelihood) - mll) <= mll_atol(
        model.interior_ll, mll, per_step)


@PROFILE
@given(model=models(), chunk=CHUNKS)
def test_chunk_size_invariance(model, chunk):
    n_time = model.ll.shape[0]
    res = model.smooth(chunk_size=chunk)
    whole = model.smooth(chunk_size=n_time)
    # the forward pass does the same operations per step: bit-identical
    np.testing.assert_array_equal(res.causal_posterior.values, whole.causal_posterior.values)
    # float64 host sum of identical per-step values (1e-12 relative allowed)
    a, b = float(res.marginal_log_likelihood), float(whole.marginal_log_likelihood)
    assert abs(a - b) <= 1e-12 * abs(b)
    assert_backward_close(res.acausal_posterior.values, whole.acausal_posterior.values)
