"""One driver for every method: the same inputs mean the same thing everywhere.

Each test here failed before ``smooth``, ``map_estimate`` and
``most_likely_sequence`` shared :func:`xhmm.frontend.driver.run_job` and one
precision policy: Viterbi ignored an ``is_missing`` variable (and refused
NaN in missing rows), took no ``is_missing=`` / ``batch_size=`` /
``client=``, ``map_estimate`` refused a ``sequence`` dim, and Viterbi kept
float64 for the rest of a run after one difficult chunk where the smoother
returned to float32.

References are independent of the code under test: :func:`numpy_viterbi`
(float64 log-space recursion) on the likelihood with missing rows flat.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xhmm
from conftest import make_dataset, underflow_model
from test_viterbi import numpy_viterbi


def _fake_evidence_model(rng, T=120, K=12):
    """A sticky walk near bin 2, with missing steps whose rows point at bin K - 1.

    Returns (ll, A, p0, missing): ``ll`` at the missing steps holds strong
    fake evidence for the far bin, which a decoder that ignores
    ``is_missing`` follows.
    """
    x = np.arange(K)
    A = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2)
    A /= A.sum(axis=1, keepdims=True)
    p0 = np.full(K, 1 / K)
    ll = -0.5 * (x[None, :] - 2.0) ** 2 + rng.normal(scale=0.1, size=(T, K))
    missing = np.zeros(T, dtype=bool)
    missing[40:80] = True
    ll[missing] = -20.0 * np.abs(x - (K - 1))[None, :]
    return ll, A, p0, missing


def _flat(ll, missing):
    out = np.array(ll, dtype=np.float64)
    out[missing] = 0.0
    return out


def test_most_likely_sequence_honours_an_is_missing_variable():
    ll, A, p0, missing = _fake_evidence_model(np.random.default_rng(0))
    want, _ = numpy_viterbi(_flat(ll, missing), lambda t: A, p0)
    fooled, _ = numpy_viterbi(ll, lambda t: A, p0)
    assert (want != fooled).sum() >= 30  # the fake evidence would mislead
    ds = make_dataset(ll).assign(is_missing=("time", missing))
    res = ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size=32,
                                      progress=False)
    np.testing.assert_array_equal(res.most_likely_state_bin.values, want)


def test_most_likely_sequence_reads_nothing_in_missing_rows():
    """NaN rows at missing steps, as nld writes them: a path, not a LikelihoodError."""
    ll, A, p0, missing = _fake_evidence_model(np.random.default_rng(1))
    want, _ = numpy_viterbi(_flat(ll, missing), lambda t: A, p0)
    ll[missing] = np.nan
    for ds in (make_dataset(ll), make_dataset(ll).chunk(time=50)):
        res = ds.hmm.most_likely_sequence(transition=A, initial=p0, is_missing=missing,
                                          chunk_size=32, progress=False)
        np.testing.assert_array_equal(res.most_likely_state_bin.values, want)


def test_most_likely_sequence_takes_the_batching_options(tmp_path):
    rng = np.random.default_rng(2)
    models = [_fake_evidence_model(rng) for _ in range(3)]
    A, p0 = models[0][1], models[0][2]
    ds = xr.Dataset(
        {"log_likelihood": (("sequence", "time", "state_bins"), np.stack([m[0] for m in models]))},
        coords={"sequence": ["a", "b", "c"]},
    )
    missing = np.stack([m[3] for m in models])
    kw = dict(transition=A, initial=p0, is_missing=missing, chunk_size=32, progress=False)
    res = ds.hmm.most_likely_sequence(batch_size=1, client=False,
                                      memmap_dir=tmp_path / "one", **kw)
    assert len(list((tmp_path / "one").glob("batch-*"))) == 3
    together = ds.hmm.most_likely_sequence(batch_size=3, memmap_dir=tmp_path / "all", **kw)
    assert len(list((tmp_path / "all").glob("batch-*"))) == 1
    for s, (ll, _, _, gaps) in enumerate(models):
        want, _ = numpy_viterbi(_flat(ll, gaps), lambda t: A, p0)
        np.testing.assert_array_equal(res.most_likely_state_bin.values[s], want)
        np.testing.assert_array_equal(together.most_likely_state_bin.values[s], want)
    with pytest.raises(xhmm.InputError, match="batch_size must be a positive int"):
        ds.hmm.most_likely_sequence(batch_size=0, **kw)


def test_map_estimate_takes_a_sequence_dim():
    rng = np.random.default_rng(3)
    S, T, K = 3, 50, 6
    ll = rng.normal(scale=2.0, size=(S, T, K))
    A = rng.random((K, K)) + 0.1
    A /= A.sum(axis=1, keepdims=True)
    p0 = np.full(K, 1 / K)
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), ll)},
                    coords={"position": ("state_bins", np.arange(K) * 3.0)})
    kw = dict(transition=A, initial=p0, chunk_size=16, progress=False)
    estimate = ds.hmm.map_estimate(batch_size=2, **kw)
    assert estimate.map_state_bin.dims == ("sequence", "time")
    for s in range(S):
        alone = ds.isel(sequence=s).hmm.smooth(lazy=False, **kw)
        want = alone.acausal_posterior.values.argmax(axis=1)
        np.testing.assert_array_equal(estimate.map_state_bin.values[s], want)
        np.testing.assert_array_equal(estimate.map_position.values[s], want * 3.0)
        np.testing.assert_allclose(estimate.marginal_log_likelihood.values[s],
                                   float(alone.marginal_log_likelihood), rtol=1e-12)


def test_smoother_and_viterbi_share_one_precision_policy():
    """A difficult stretch, then an easy one: both go back to float32 after it.

    Chunks 0-2 hold the underflow model (float32 may lose the answer), chunks
    3-5 a nearly flat likelihood. The smoother recomputes the difficult chunks in
    float64 and returns to float32; the decoder used to stay in float64 to
    the end.
    """
    hard, A = underflow_model()
    K = A.shape[0]
    # nearly flat: the mass spreads out again and float32 suffices
    easy = np.random.default_rng(4).normal(scale=0.1, size=(60, K))
    ll = np.concatenate([hard, easy])
    p0 = np.full(K, 1 / K)
    ds = make_dataset(ll)
    kw = dict(transition=A, initial=p0, chunk_size=20, progress=False)
    smoothed = ds.hmm.smooth(**kw)
    path = ds.hmm.most_likely_sequence(**kw)
    n_smooth = smoothed.attrs["xhmm_float64_chunks"]
    assert 3 <= n_smooth < 6
    assert path.attrs["xhmm_float64_chunks"] == n_smooth
    want, _ = numpy_viterbi(ll, lambda t: A, p0)
    np.testing.assert_array_equal(path.most_likely_state_bin.values, want)
    # "float32" recomputes the same chunks to check itself: the filtered rows
    # were off (an error), the decoder's messages at the chunk's end were not.
    with pytest.raises(xhmm.NumericalError, match="filtered posterior is off by"):
        ds.hmm.smooth(compute_dtype="float32", **kw)
    path = ds.hmm.most_likely_sequence(compute_dtype="float32", **kw)
    assert path.attrs["xhmm_float64_chunks"] == n_smooth
    np.testing.assert_array_equal(path.most_likely_state_bin.values, want)
    smoothed = ds.hmm.smooth(compute_dtype="float64", **kw)
    path = ds.hmm.most_likely_sequence(compute_dtype="float64", **kw)
    assert path.attrs["xhmm_float64_chunks"] == smoothed.attrs["xhmm_float64_chunks"] == 6
