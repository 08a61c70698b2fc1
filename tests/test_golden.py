"""Golden numerics: xhmm against the float64 NumPy reference on fixed fixtures.

Every comparison states its tolerance and why; the shared ones are defined
and justified in ``tolerances.py`` (float32 compute: 1e-5 per entry, row
sums within K float32 ulps, marginal log-likelihood 1e-6 per step of the
device-computed part; float64 compute: one float32 storage rounding).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import xhmm
from conftest import make_dataset, random_model, reference_forward_backward
from tolerances import (
    EPS32,
    F32_ATOL,
    F64_ATOL,
    F64_RTOL,
    assert_rows,
    banded,
    mll_atol,
)


# -- helpers -----------------------------------------------------------------
#: How ``_smooth`` runs a case: "single" (a (time, state_bins) Dataset) or
#: "sequence" (the case as sequence 0 of a ragged (sequence, time,
#: state_bins) Dataset whose sequence 1 is its first half, NaN-padded).
_PATH = {"mode": "single"}


@pytest.fixture(autouse=True, params=["single", "sequence"])
def engine_path(request):
    """Run every golden case through the single and the sequence path."""
    _PATH["mode"] = request.param
    yield request.param
    _PATH["mode"] = "single"


def _smooth(ll, transition, initial, mask=None, coords=None, **config):
    """Run ``ds.hmm.smooth`` on ``ll`` wrapped by ``make_dataset``.

    On the sequence path the case is also checked against its own first
    half run beside it (the same filtered rows, NaN past the half), and the
    result of the full case is returned without the ``sequence`` dim.

    Parameters
    ----------
    ll : (T, N) ndarray
    transition, initial : ndarray
    mask : (N,) bool ndarray, optional
        ``is_interior``.
    coords : dict, optional
        Extra coordinates for :func:`conftest.make_dataset`.
    **config
        Config keywords (progress bars are always off).

    Returns
    -------
    xr.Dataset
    """
    ds = make_dataset(ll, mask, **(coords or {}))
    kwargs = dict(transition=transition, initial=initial, progress=False, **config)
    with warnings.catch_warnings():
        # a result that came with a warning is not an accepted result
        warnings.simplefilter("error", xhmm.NumericalWarning)
        return _smooth_on_path(ds, kwargs)


def _smooth_on_path(ds, kwargs):
    if _PATH["mode"] == "single":
        return ds.hmm.smooth(**kwargs)
    n_time = ds.sizes["time"]
    half = max(1, n_time // 2)
    pair = xr.concat([ds, ds.isel(time=slice(0, half))], dim="sequence", join="outer",
                     coords="minimal", compat="override")
    res = pair.hmm.smooth(**kwargs)
    assert res.sequence_length.values.tolist() == [n_time, half]
    causal = res.causal_posterior.values
    np.testing.assert_allclose(causal[1, :half], causal[0, :half], rtol=0, atol=1e-6)
    assert np.isnan(causal[1, half:]).all() and np.isnan(res.acausal_posterior[1, half:]).all()
    return res.isel(sequence=0)


def _assert_matches_reference(res, ll, A, p0, mask=None):
    """Compare a float32-compute smooth result with the float64 reference.

    Checks causal and acausal posteriors (``F32_ATOL`` per entry; exact zeros
    wherever the reference is exactly zero), normalisation, NaN exterior and
    the marginal log-likelihood (:func:`tolerances.mll_atol`, 1e-6 per step).

    Parameters
    ----------
    res : xr.Dataset
        Output of ``ds.hmm.smooth``.
    ll : (T, K) ndarray
        Interior-bin log-likelihood.
    A : (K, K) ndarray
    p0 : (K,) ndarray
    mask : (N,) bool ndarray, optional
    """
    filt, smooth, mll = reference_forward_backward(ll, A, p0)
    for name, ref in (("causal_posterior", filt), ("acausal_posterior", smooth)):
        got = assert_rows(res[name].values, mask)
        np.testing.assert_allclose(got, ref, rtol=0, atol=F32_ATOL, err_msg=name)
        # an impossible bin (zero prediction or -inf likelihood) stays exactly 0
        assert (got[ref == 0] == 0).all(), name
    got_mll = float(res.marginal_log_likelihood)
    assert abs(got_mll - mll) <= mll_atol(ll, mll, 1e-6)


def _assert_matches_reference_f64(res, ll, A, p0):
    """Compare a ``compute_dtype="float64"`` result with the reference.

    Posteriors: float64 answer rounded once to float32 storage
    (``2**-24`` relative) plus 1e-12 for float64 compute. Marginal
    log-likelihood: :func:`tolerances.mll_atol` with 1e-12 per step.
    """
    filt, smooth, mll = reference_forward_backward(ll, A, p0)
    for name, ref in (("causal_posterior", filt), ("acausal_posterior", smooth)):
        got = assert_rows(res[name].values)
        np.testing.assert_allclose(got, ref, rtol=F64_RTOL, atol=F64_ATOL, err_msg=name)
    assert abs(float(res.marginal_log_likelihood) - mll) <= mll_atol(ll, mll, 1e-12)


# -- dense and banded --------------------------------------------------------
@pytest.mark.parametrize("T, K, chunk", [(2000, 50, 512), (500, 200, 128)])
def test_dense(T, K, chunk):
    ll, A, p0 = random_model(np.random.default_rng(10), T, K)
    res = _smooth(ll, A, p0, chunk_size=chunk)
    _assert_matches_reference(res, ll, A, p0)


def test_dense_float64_compute():
    ll, A, p0 = random_model(np.random.default_rng(11), 500, 200)
    res = _smooth(ll, A, p0, chunk_size=128, compute_dtype="float64")
    _assert_matches_reference_f64(res, ll, A, p0)


def test_banded_with_exact_zeros():
    rng = np.random.default_rng(12)
    A = banded(100, 3, rng)
    ll = rng.normal(size=(2000, 100)) * 3
    p0 = np.full(100, 0.01)
    res = _smooth(ll, A, p0, chunk_size=512)
    _assert_matches_reference(res, ll, A, p0)


# -- impossible bins, shifts -------------------------------------------------
def test_minus_inf_bins():
    rng = np.random.default_rng(13)
    ll, A, p0 = random_model(rng, 1000, 40)
    impossible = rng.random(ll.shape) < 0.3
    impossible[:, 0] = False  # dense A: every step keeps a possible bin
    ll[impossible] = -np.inf
    res = _smooth(ll, A, p0, chunk_size=256)
    _assert_matches_reference(res, ll, A, p0)
    # -inf log-likelihood: exactly impossible, not merely small
    for name in ("causal_posterior", "acausal_posterior"):
        assert (res[name].values[impossible] == 0).all()


@pytest.mark.parametrize("shift", [-1000.0, 1000.0])
def test_shifted_log_likelihood(shift):
    rng = np.random.default_rng(14)
    A = banded(100, 3, rng)
    ll = rng.normal(size=(2000, 100)) * 3
    p0 = np.full(100, 0.01)
    base = _smooth(ll, A, p0, chunk_size=512)
    res = _smooth(ll + shift, A, p0, chunk_size=512)
    _assert_matches_reference(res, ll + shift, A, p0)
    for name in ("causal_posterior", "acausal_posterior"):
        # the shift is removed in float64 on the host: at most one float32
        # rounding of an input entry differs, so within a few ulps of 1
        np.testing.assert_allclose(res[name].values, base[name].values, rtol=0, atol=8 * EPS32)
    # log p(y + c) = log p(y) + T c exactly in real arithmetic; float64 host
    # sums of values ~1e6 in magnitude: 1e-12 relative
    expected = float(base.marginal_log_likelihood) + shift * ll.shape[0]
    assert float(res.marginal_log_likelihood) == pytest.approx(expected, rel=1e-12)


# -- peaked likelihoods under a banded transition ----------------------------
def _peaked(T, K, spread, rng, reach, jitter, p_outlier):
    """Log-likelihood peaked at a random walk, in ``[-spread, +spread]`` nats.

    The walk moves at most one bin per step (always allowed by a band of
    width >= 1); the peak sits ``jitter`` bins off it, and with probability
    ``p_outlier`` half the track away (where the prediction is zero or tiny).

    Parameters
    ----------
    T, K : int
    spread : float
    rng : np.random.Generator
    reach : int
        Bins from the peak at which the log-likelihood reaches ``-spread``.
    jitter : int
    p_outlier : float

    Returns
    -------
    (T, K) float64 ndarray
    """
    walk = np.clip(np.cumsum(rng.integers(-1, 2, T)) + K // 2, 0, K - 1)
    peak = np.clip(walk + rng.integers(-jitter, jitter + 1, T), 0, K - 1)
    peak = np.where(rng.random(T) < p_outlier, (walk + K // 2) % K, peak)
    distance = np.abs(np.arange(K)[None, :] - peak[:, None])
    return spread * (1 - 2 * np.minimum(distance / reach, 1.0))


def _max_loglik_rescaled_peak(ll, A, p0):
    """Per step, the largest term of the usual rescaling (float64).

    ``max_k pred_k * exp(ll_k - max_j ll_j)`` with the reference prediction:
    what non_local_detector / dynamax normalise. Below float32's smallest
    normal number the whole row is subnormal (or flushed to zero) in float32.
    """
    filt, _, _ = reference_forward_backward(ll, A, p0)
    pred = np.vstack([p0[None, :], filt[:-1] @ A])
    return (pred * np.exp(ll - ll.max(axis=1, keepdims=True))).max(axis=1)


@pytest.mark.parametrize("spread", [10.0, 25.0, 40.0, 50.0, 100.0])
def test_peaked_float32(spread):
    rng = np.random.default_rng(15)
    A = banded(100, 2, rng)
    p0 = np.full(100, 0.01)
    ll = _peaked(1000, 100, spread, rng, reach=5, jitter=1, p_outlier=0.05)
    if spread >= 50:
        # the fixture defeats max-of-loglik rescaling in float32
        assert _max_loglik_rescaled_peak(ll, A, p0).min() < np.finfo(np.float32).tiny
    res = _smooth(ll, A, p0, chunk_size=256)
    _assert_matches_reference(res, ll, A, p0)


def _wide_peaked(spread):
    """A peaked fixture whose answer rests on tails below float32's range.

    Returns
    -------
    ll, A, p0 : ndarray
    """
    rng = np.random.default_rng(16)
    A = banded(100, 2, rng)
    ll = _peaked(1000, 100, spread, rng, reach=3, jitter=2, p_outlier=0.05)
    return ll, A, np.full(100, 0.01)


@pytest.mark.parametrize("spread", [50.0, 100.0, 200.0])
def test_peaked_float64_compute(spread):
    ll, A, p0 = _wide_peaked(spread)
    res = _smooth(ll, A, p0, chunk_size=256, compute_dtype="float64")
    _assert_matches_reference_f64(res, ll, A, p0)


@pytest.mark.parametrize("spread", [50.0, 100.0, 200.0])
def test_peaked_beyond_float32_is_right_by_default(spread):
    # float32's range runs out here: the default compute_dtype ("auto")
    # recomputes the chunks where float32 lost the answer in float64 and says so
    ll, A, p0 = _wide_peaked(spread)
    res = _smooth(ll, A, p0, chunk_size=256)
    _assert_matches_reference(res, ll, A, p0)
    assert res.attrs["xhmm_float64_chunks"] > 0


def test_banded_peaked_with_impossible_bins_is_right_by_default():
    # banded with exact zeros, likelihood spread ~30 nats, 5 % impossible
    # bins: explicit float32 was off by 1.0 here (with only a warning)
    rng = np.random.default_rng(30)
    T, K = 3000, 300
    A = banded(K, 2, rng)
    ll = _peaked(T, K, 30.0, rng, reach=4, jitter=1, p_outlier=0.05)
    ll[rng.random((T, K)) < 0.05] = -np.inf
    peaks = ll.argmax(axis=1)
    ll[np.arange(T), peaks] = 30.0  # every step keeps a possible bin
    p0 = np.full(K, 1 / K)
    res = _smooth(ll, A, p0, chunk_size=500)
    _assert_matches_reference(res, ll, A, p0)
    assert res.attrs["xhmm_float64_chunks"] > 0


# -- masked two-state model --------------------------------------------------
def _two_state_model(rng, T=400, n_pos=25):
    """Two discrete states over a track with holes; exterior bins NaN/+inf.

    Returns
    -------
    ll : (T, 2 * n_pos) ndarray
        Exterior bins hold NaN and +inf (must be ignored).
    A_full : (N, N) ndarray
        Over all bins; exterior rows are identity rows, exterior columns 0.
    p0_full : (N,) ndarray
        Zero on exterior bins.
    mask : (N,) bool ndarray
    labels : (N,) ndarray of str
    """
    n = 2 * n_pos
    track = np.ones(n_pos, bool)
    track[[0, 1, 11, 12, n_pos - 1]] = False
    mask = np.concatenate([track, track])
    labels = np.repeat(np.array(["continuous", "fragmented"]), n_pos)
    inner = np.flatnonzero(mask)
    k = inner.size
    walk = banded(k // 2, 2, rng)
    A_int = np.zeros((k, k))
    A_int[: k // 2, : k // 2] = 0.98 * walk
    A_int[k // 2:, k // 2:] = 0.9 * np.full((k // 2, k // 2), 2.0 / k)
    A_int[: k // 2, k // 2:] = 0.02 * 2.0 / k
    A_int[k // 2:, : k // 2] = 0.1 * walk
    A_full = np.eye(n)
    A_full[np.ix_(inner, inner)] = A_int
    p0_full = np.where(mask, 1.0, 0.0) / mask.sum()
    ll = rng.normal(size=(T, n)) * 2
    ll[:, ~mask] = np.nan
    ll[::3, np.flatnonzero(~mask)[0]] = np.inf
    return ll, A_full, p0_full, mask, labels


@pytest.mark.parametrize("over", ["all_bins", "interior_bins"])
def test_masked_two_state_model(over):
    rng = np.random.default_rng(17)
    ll, A_full, p0_full, mask, labels = _two_state_model(rng)
    inner = np.flatnonzero(mask)
    A_int = A_full[np.ix_(inner, inner)]
    A, p0 = (A_full, p0_full) if over == "all_bins" else (A_int, p0_full[inner])
    position = np.tile(np.arange(mask.size // 2, dtype=float), 2)
    res = _smooth(ll, A, p0, mask=mask, chunk_size=96,
                  coords={"state": ("state_bins", labels),
                          "position": ("state_bins", position)})
    _assert_matches_reference(res, ll[:, inner], A_int, p0_full[inner], mask=mask)

    np.testing.assert_array_equal(res.coords["state"].values, labels)
    np.testing.assert_array_equal(res.coords["position"].values, position)
    np.testing.assert_array_equal(res.coords["is_interior"].values, mask)
    filt, smooth, _ = reference_forward_backward(ll[:, inner], A_int, p0_full[inner])
    for kind, ref in (("causal", filt), ("acausal", smooth)):
        probs = res[f"{kind}_state_probabilities"]
        assert probs.dims == ("time", "states")
        np.testing.assert_array_equal(probs.coords["states"].values,
                                      ["continuous", "fragmented"])
        expected = np.stack([ref[:, labels[inner] == s].sum(axis=1)
                             for s in ("continuous", "fragmented")], axis=1)
        # sums of at most K posterior entries, each within F32_ATOL
        np.testing.assert_allclose(probs.values, expected, rtol=0,
                                   atol=inner.size / 2 * F32_ATOL)
        # the two states exhaust the interior: 1 within K float32 ulps
        np.testing.assert_allclose(probs.values.sum(axis=1), 1.0, rtol=0,
                                   atol=inner.size * EPS32)


def test_single_interior_bin():
    rng = np.random.default_rng(18)
    mask = np.array([False, False, True, False, False])
    ll = rng.normal(size=(50, 5))
    ll[:, ~mask] = np.nan
    res = _smooth(ll, [[1.0]], [1.0], mask=mask, chunk_size=16)
    for name in ("causal_posterior", "acausal_posterior"):
        values = res[name].values
        assert np.isnan(values[:, ~mask]).all()
        # x / x == 1 exactly in IEEE arithmetic
        assert (values[:, 2] == 1.0).all()
    # the device part of every log normaliser is log(1) = 0: only the float64
    # host sum of ll[:, 2] remains
    assert float(res.marginal_log_likelihood) == pytest.approx(ll[:, 2].sum(), rel=1e-12)


# -- short recordings --------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 64])
def test_single_time_step(chunk):
    ll, A, p0 = random_model(np.random.default_rng(19), 1, 30)
    res = _smooth(ll, A, p0, chunk_size=chunk)
    _assert_matches_reference(res, ll, A, p0)
    # the smoother's last row is the filtered row itself
    np.testing.assert_array_equal(res.acausal_posterior.values, res.causal_posterior.values)
    # log sum_k p0_k exp(ll_k), float32 device part of a few nats: 1e-6
    expected = np.log(np.sum(p0 * np.exp(ll[0])))
    assert float(res.marginal_log_likelihood) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("chunk", [1, 2, 64])
def test_two_time_steps(chunk):
    ll, A, p0 = random_model(np.random.default_rng(20), 2, 30)
    res = _smooth(ll, A, p0, chunk_size=chunk)
    _assert_matches_reference(res, ll, A, p0)


# -- absorbing states, initial zeros -----------------------------------------
def test_absorbing_states():
    rng = np.random.default_rng(21)
    K = 12
    A = banded(K, 1, rng)
    for k in (0, K - 1):
        A[k] = 0.0
        A[k, k] = 1.0
    ll = rng.normal(size=(300, K))
    ll[200:, K - 1] += 3.0  # late evidence for the absorbing end bin
    p0 = np.full(K, 1.0 / K)
    res = _smooth(ll, A, p0, chunk_size=64)
    _assert_matches_reference(res, ll, A, p0)
    # once absorbed the chain stays: the smoothed mass of the end bin never
    # decreases over time (two entries, each within F32_ATOL)
    end = res.acausal_posterior.values[:, K - 1].astype(np.float64)
    assert (np.diff(end) >= -2 * F32_ATOL).all()


def test_initial_with_zeros():
    rng = np.random.default_rng(22)
    K, width, start = 61, 2, 30
    A = banded(K, width, rng)
    p0 = np.zeros(K)
    p0[start] = 0.7
    p0[start + 1] = 0.3
    ll = rng.normal(size=(300, K)) * 2
    res = _smooth(ll, A, p0, chunk_size=64)
    _assert_matches_reference(res, ll, A, p0)
    # structural zeros: at step t only bins within width * t of the start
    # are reachable, and unreachable bins are exactly 0 in both posteriors
    t = np.arange(ll.shape[0])[:, None]
    k = np.arange(K)[None, :]
    unreachable = (k < start - width * t) | (k > start + 1 + width * t)
    assert unreachable.sum() > 0
    for name in ("causal_posterior", "acausal_posterior"):
        assert (res[name].values[unreachable] == 0).all()


def test_filter_matches_smooth_forward(engine_path):
    ll, A, p0 = random_model(np.random.default_rng(23), 300, 20)
    smooth = _smooth(ll, A, p0, chunk_size=64)
    filt = make_dataset(ll).hmm.filter(transition=A, initial=p0, chunk_size=64,
                                       progress=False)
    assert "acausal_posterior" not in filt
    if engine_path == "single":
        # the same forward pass: bit-identical
        np.testing.assert_array_equal(filt.causal_posterior.values,
                                      smooth.causal_posterior.values)
        assert float(filt.marginal_log_likelihood) == float(smooth.marginal_log_likelihood)
    else:
        # a batch of two multiplies (2, K) @ (K, K): float32 rounding apart
        # (per step, as the device-computed part of the likelihood)
        np.testing.assert_allclose(filt.causal_posterior.values,
                                   smooth.causal_posterior.values, rtol=0, atol=1e-6)
        mll = float(smooth.marginal_log_likelihood)
        assert abs(float(filt.marginal_log_likelihood) - mll) <= mll_atol(ll, mll, 1e-6)
