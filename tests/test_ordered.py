"""Fixed-order float32 products (xhmm.kernels.ordered) and what they buy:
a sequence's results do not depend on the batch it runs in."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import jax.numpy as jnp

from xhmm.bench.workload import Problem
from xhmm.kernels import ordered
from xhmm.sequences import smooth_sequences

pytestmark = pytest.mark.skipif(not ordered.active(np.float32),
                                reason="fixed-order kernels run on CPU only")


def _banded(K, width=30.0, floor=1e-3):
    x = np.arange(K)
    A = np.exp(-0.5 * ((x[:, None] - x[None]) / width) ** 2) + floor / K
    return A / A.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("K,N", [(7, 5), (70, 67), (200, 200), (1031, 1), (1000, 1000)])
def test_rows_do_not_depend_on_the_other_rows(K, N):
    rng = np.random.default_rng(K + N)
    x = rng.random((6, K)).astype(np.float32)
    m = rng.random((K, N)).astype(np.float32)
    reference = x.astype(np.float64) @ m.astype(np.float64)
    for product, matrix in ((ordered.matmul, m), (ordered.matmul_t, np.ascontiguousarray(m.T))):
        whole = np.asarray(product(jnp.asarray(x), jnp.asarray(matrix)))
        np.testing.assert_allclose(whole, reference, rtol=2e-6)
        # each row alone, and every batch size up to 6, gives the same bits
        # (the kernels take rows in fours, so 1..6 covers both paths)
        for n_rows in range(1, 7):
            part = np.asarray(product(jnp.asarray(x[:n_rows]), jnp.asarray(matrix)))
            np.testing.assert_array_equal(part, whole[:n_rows])
        alone = np.concatenate([np.asarray(product(jnp.asarray(x[i:i + 1]), jnp.asarray(matrix)))
                                for i in range(6)])
        np.testing.assert_array_equal(alone, whole)


@pytest.mark.parametrize("G,K,N", [(3, 9, 5), (21, 72, 24), (4, 130, 17)])
def test_grouped_products_sum_each_group_as_the_plain_ones(G, K, N):
    """tile_matmul_t (one matrix per group: the banded blocks) and left_matmul
    (one shared matrix, read transposed or not: the random walk's grid) give
    each group the bits of the plain product of that group alone, whatever
    the number of leading rows."""
    rng = np.random.default_rng(G * K + N)
    x = rng.random((5, G, K)).astype(np.float32)
    m = rng.random((G, N, K)).astype(np.float32)
    tiles = np.asarray(ordered.tile_matmul_t(jnp.asarray(x), jnp.asarray(m)))
    np.testing.assert_allclose(tiles, np.einsum("bgk,gnk->bgn", x.astype(np.float64), m),
                               rtol=2e-6)
    for g in range(G):
        plain = np.asarray(ordered.matmul_t(jnp.asarray(x[:, g]), jnp.asarray(m[g])))
        np.testing.assert_array_equal(tiles[:, g], plain)
    for n_rows in range(1, 5):
        part = np.asarray(ordered.tile_matmul_t(jnp.asarray(x[:n_rows]), jnp.asarray(m)))
        np.testing.assert_array_equal(part, tiles[:n_rows])

    a = rng.random((N, K)).astype(np.float32)  # rows N, contraction K
    y = rng.random((5, 2, K, N + 3)).astype(np.float32)
    for transpose, left in ((False, a), (True, np.ascontiguousarray(a.T))):
        got = np.asarray(ordered.left_matmul(jnp.asarray(left), jnp.asarray(y), transpose))
        np.testing.assert_allclose(got, np.einsum("nk,bgkj->bgnj", a.astype(np.float64), y),
                                   rtol=2e-6)
        for b in range(5):
            for g in range(2):
                plain = np.asarray(ordered.matmul(jnp.asarray(a), jnp.asarray(y[b, g])))
                np.testing.assert_array_equal(got[b, g], plain)
        one = np.asarray(ordered.left_matmul(jnp.asarray(left), jnp.asarray(y[:1, :1]), transpose))
        np.testing.assert_array_equal(one, got[:1, :1])


def test_the_order_is_the_documented_one():
    """matmul: blocks of BLOCK terms by fused multiply-adds from zero, block sums
    added in order; checked against that order written out in float32 with
    fused multiply-adds emulated exactly in float64 (a float32 product is
    exact in float64, one rounding per step)."""
    rng = np.random.default_rng(5)
    K = 3 * ordered.BLOCK + 5
    x = rng.random((1, K)).astype(np.float32)
    m = rng.random((K, 3)).astype(np.float32)
    got = np.asarray(ordered.matmul(jnp.asarray(x), jnp.asarray(m)))[0]

    def fma(a, b, c):
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))

    for j in range(3):
        total = None
        for start in range(0, K, ordered.BLOCK):
            part = np.float32(0)
            for i in range(start, min(start + ordered.BLOCK, K)):
                part = fma(x[0, i], m[i, j], part)
            total = part if total is None else np.float32(total + part)
        assert got[j] == total


def test_split_over_threads_changes_nothing():
    # 1,000 x 1,000 is above the size at which the product is cut into
    # column parts on XLA's pool; 100 columns at a time stay below it
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.random((2, 1000)).astype(np.float32))
    m = rng.random((1000, 1000)).astype(np.float32)
    whole = np.asarray(ordered.matmul(x, jnp.asarray(m)))
    pieces = np.concatenate([np.asarray(ordered.matmul(x, jnp.asarray(m[:, j:j + 100])))
                             for j in range(0, 1000, 100)], axis=1)
    np.testing.assert_array_equal(whole, pieces)


def test_float64_and_other_dtypes_fall_back():
    assert not ordered.active(np.float64)
    x = np.arange(6.0).reshape(2, 3)
    m = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(np.asarray(ordered.matmul(jnp.asarray(x), jnp.asarray(m))),
                                  x @ m)


@pytest.mark.parametrize("K", [176, 1000])
def test_batched_float32_equals_one_by_one(K):
    """Issue 11: in the default float32, a batch of sequences gives each one
    the filtered posteriors and marginal log-likelihood it gets alone, bit
    for bit, and its smoothed posteriors to 1e-6."""
    rng = np.random.default_rng(K)
    S, T = 3, 700
    A = _banded(K)
    ll = rng.normal(size=(S, T, K)).astype(np.float32) * 3
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), ll)},
                    coords={"sequence": ["a", "b", "c"]})
    kw = dict(transition=A, initial=np.full(K, 1 / K), chunk_size=300, progress=False)
    _check_batched_equals_alone(ds, kw)


def _check_batched_equals_alone(ds: xr.Dataset, kw: dict) -> xr.Dataset:
    """Smooth ``ds``'s sequences in one batch and each alone; compare them."""
    res = smooth_sequences(ds, batch_size=ds.sizes["sequence"], **kw)
    for s in range(ds.sizes["sequence"]):
        one = ds.isel(sequence=s).drop_vars("sequence", errors="ignore").hmm.smooth(**kw)
        # the filter's products and sums are the fixed-order ones: same bits
        np.testing.assert_array_equal(res.causal_posterior[s].values, one.causal_posterior.values)
        # the smoother's chunk predictions are XLA's products (see the
        # operators' predict_chunk): equal to float32 rounding
        np.testing.assert_allclose(res.acausal_posterior[s].values, one.acausal_posterior.values,
                                   rtol=0, atol=1e-6)
        mll, ref = float(res.marginal_log_likelihood[s]), float(one.marginal_log_likelihood)
        assert mll == ref
    return res


@pytest.mark.parametrize("model,K", [("contfrag-1d", 200), ("contfrag-1d", 1000),
                                     ("nonlocal-2d", 202), ("contfrag-1d-tv", 200)])
def test_structured_batched_float32_equals_one_by_one(model, K):
    """The same for the structured operators: dense and banded blocks, the
    2-D random walk, uniform blocks, a time-varying discrete transition."""
    problems = [Problem(600, K, seed=s, model=model) for s in range(3)]
    ll = np.stack([p.in_ram() for p in problems])
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), ll)},
                    coords=problems[0].coords())
    kw = dict(transition=problems[0].transition, initial=problems[0].initial, chunk_size=250,
              progress=False)
    res = _check_batched_equals_alone(ds, kw)
    assert res.attrs["xhmm_transition"].count('"kind": "blocks"') == 1
