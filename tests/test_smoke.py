"""End-to-end checks of the public contract on a small model."""

import numpy as np
import pytest

import xhmm
from conftest import make_dataset, random_model


def test_smooth_matches_reference(reference):
    rng = np.random.default_rng(1)
    ll, A, p0 = random_model(rng, 200, 12)
    filt, smooth, mll = reference(ll, A, p0)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, chunk_size=37)
    # float32 compute: per-entry error well under 1e-5 on this well-scaled model
    np.testing.assert_allclose(res.causal_posterior.values, filt, atol=2e-6)
    np.testing.assert_allclose(res.acausal_posterior.values, smooth, atol=2e-6)
    # log normalisers summed in float64 from float32 steps: 1e-6 relative
    assert abs(float(res.marginal_log_likelihood) - mll) <= 1e-6 * abs(mll)


def test_filter_has_no_acausal():
    rng = np.random.default_rng(2)
    ll, A, p0 = random_model(rng, 30, 5)
    res = make_dataset(ll).hmm.filter(transition=A, initial=p0)
    assert "causal_posterior" in res and "acausal_posterior" not in res
    assert res.marginal_log_likelihood.dtype == np.float64


def test_bad_transition_is_named():
    rng = np.random.default_rng(3)
    ll, A, p0 = random_model(rng, 10, 4)
    A[2, 1] += 0.5
    with pytest.raises(xhmm.TransitionError, match="row 2"):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0)
