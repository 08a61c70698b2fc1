"""Tolerances and checks shared by the golden, chunking and property tests.

* ``F32_ATOL = 1e-5`` per posterior entry for float32 compute: a few float32
  roundings per step (K-term sums, one division), which the filter forgets
  instead of accumulating over time; the error measured at likelihood
  spreads of ±40 nats (``docs/design.md``, Numerics) is 9e-6.
* ``compute_dtype="float64"``: the float64 answer rounded once to float32
  storage, ``|x - ref| <= F64_RTOL |ref| + F64_ATOL``.
* Marginal log-likelihood: see :func:`mll_atol`.
* Storage dtypes: see :func:`storage_error`.
"""

from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23
F32_ATOL = 1e-5
F64_RTOL = 2.0**-24
F64_ATOL = 1e-12
#: Smoothed rows of different chunk sizes: a few float32 ulps apart because
#: short chunks use another matrix-product kernel (measured up to 16 ulps of
#: the entry; asserted 32 ulps of the larger entry).
BACKWARD_RTOL = 2.0**-18
UINT16_HALF_STEP = 0.5 / 65534


def banded(n_bins, width, rng):
    """Random row-stochastic band matrix: exact zeros beyond ``width``.

    Parameters
    ----------
    n_bins, width : int
    rng : np.random.Generator

    Returns
    -------
    (n_bins, n_bins) float64 ndarray
    """
    A = np.zeros((n_bins, n_bins))
    for i in range(n_bins):
        lo, hi = max(0, i - width), min(n_bins, i + width + 1)
        A[i, lo:hi] = rng.random(hi - lo) + 0.1
    return A / A.sum(axis=1, keepdims=True)


def mll_atol(ll, mll_ref, per_step):
    """Tolerance of the marginal log-likelihood against the reference.

    Each step's log normaliser is ``max_k ll[t, k] + c_t`` with ``c_t <= 0``
    (the log of a sub-probability). The row maximum is added on the host in
    float64; only ``c_t = peak + log(total)`` is computed on the device, where
    ``|peak| <= |c_t| + log K`` and ``0 <= log(total) <= log K``, so its
    rounding scales with ``|c_t| + log K + 1``; ``sum_t |c_t| = sum_t max_k
    ll[t, k] - mll``. Rounding errors are added over steps (worst case).

    Parameters
    ----------
    ll : (T, K) ndarray
        Interior-bin log-likelihood.
    mll_ref : float
        Reference marginal log-likelihood.
    per_step : float
        Allowed relative rounding of ``|c_t| + log K + 1`` per step: 1e-6
        (about 8 ulps) for float32 compute, 1e-12 for float64.

    Returns
    -------
    float
    """
    n_time, n_bins = ll.shape
    device_part = float(np.sum(np.max(ll, axis=1)) - mll_ref)
    return per_step * (device_part + n_time * (1 + np.log(n_bins)))


def storage_error(values, storage):
    """Largest error the storage dtype adds to float32 posterior values.

    Parameters
    ----------
    values : ndarray
        Posterior values (probabilities).
    storage : {"float32", "float16", "uint16"}
        ``float32``: none beyond the float32 rounding every tolerance already
        allows. ``float16``: round to nearest, ``2**-11`` relative and
        ``2**-25`` (half the subnormal step) absolute. ``uint16``: half a
        quantisation step plus one float32 rounding of the decoded value.

    Returns
    -------
    ndarray
        Per-entry bound, broadcastable against ``values``.
    """
    values = np.abs(np.asarray(values, dtype=np.float64))
    if storage == "float16":
        return 2.0**-11 * values + 2.0**-25
    if storage == "uint16":
        return np.full_like(values, UINT16_HALF_STEP + 2.0**-24)
    return np.zeros_like(values)


def assert_rows(posterior, mask=None, sum_atol=None):
    """Interior rows finite, non-negative, summing to 1; exterior bins NaN.

    Parameters
    ----------
    posterior : (T, N) ndarray
    mask : (N,) bool ndarray, optional
        ``is_interior``; None means every bin is interior.
    sum_atol : float, optional
        Allowed ``|row sum - 1|``. Default ``K * EPS32``: float32
        normalisation of a K-term sum then float32 storage, one ulp per term.

    Returns
    -------
    (T, K) float64 ndarray
        The interior columns.
    """
    posterior = np.asarray(posterior, dtype=np.float64)
    mask = np.ones(posterior.shape[1], bool) if mask is None else np.asarray(mask)
    assert np.isnan(posterior[:, ~mask]).all(), "exterior bins must be NaN"
    inner = posterior[:, mask]
    assert np.isfinite(inner).all(), "interior bins must be finite"
    assert (inner >= 0).all(), "posteriors must be non-negative"
    atol = inner.shape[1] * EPS32 if sum_atol is None else sum_atol
    np.testing.assert_allclose(inner.sum(axis=1), 1.0, rtol=0, atol=atol)
    return inner


def assert_backward_close(got, want, rtol=None):
    """Smoothed posteriors equal within ``rtol`` of the larger entry.

    NaN (exterior) positions must match; below float32's smallest normal
    number the bound is absolute (subnormals carry fewer bits).

    Parameters
    ----------
    got, want : (T, N) ndarray
    rtol : float, optional
        Default ``BACKWARD_RTOL``.
    """
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    inner = ~np.isnan(want)
    scale = np.maximum(np.abs(got[inner]), np.abs(want[inner]))
    rtol = BACKWARD_RTOL if rtol is None else rtol
    bound = rtol * scale + float(np.finfo(np.float32).tiny)
    excess = np.abs(got[inner] - want[inner]) - bound
    assert excess.max(initial=0.0) <= 0, f"largest excess over the bound: {excess.max():.3g}"
