"""The transition operators are plain JAX: ``jax.vmap`` and ``jax.grad`` go
through their products, and a sequence run in a batch agrees with the same
sequence run alone within the float32 (or float64) error bound.

Tolerances are derived from the unit roundoff ``u = eps / 2`` and the sizes,
never measured: rounding errors are treated as independent and zero-mean
(Higham & Mary, "A new approach to probabilistic rounding error analysis",
SIAM J. Sci. Comput. 2019), so a sum of ``n`` non-negative terms errs by
about ``sqrt(n) u`` relative rather than the worst case ``n u``; every bound
below then takes ``LAMBDA`` times that.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.bench.workload import Problem, transition_matrix
from xhmm.kernels.operators import dense_operator
from xhmm.transitions.identity import IdentityBlock
from xhmm.transitions.matrix import BandedBlock, DenseBlock
from xhmm.transitions.random_walk import SeparableBlock
from xhmm.transitions.uniform import RankOneBlock
from xhmm.transitions import Blocks, Dense, Identity, RandomWalk, Uniform
from xhmm.transitions.plan import plan_transition

#: Multiple of the probabilistic error ``sqrt(n) u`` of an ``n``-term sum
#: taken as its bound (chosen once, a priori: the chance that a sum of
#: independent zero-mean errors exceeds 4 standard deviations is < 1e-4).
LAMBDA = 4.0


def _unit_roundoff(dtype: np.dtype | type) -> float:
    return float(np.finfo(dtype).eps) / 2


def _product_bound(n_terms: int, dtype: np.dtype | type) -> float:
    """Relative error of one entry of ``p @ A`` in ``dtype`` against exact.

    The inputs rounded to ``dtype`` (``p`` and ``A``: ``2 u``) and an
    ``n_terms``-term sum of non-negative products (``LAMBDA sqrt(n) u``).
    """
    return (LAMBDA * np.sqrt(n_terms) + 2) * _unit_roundoff(dtype)


def _mixed_model() -> tuple[Blocks, np.ndarray, np.ndarray]:
    """A ``Blocks`` transition with every block kind of the structured kernels.

    ``loc`` stays by identity, ``line`` walks on 1-D centres (banded: the
    far entries underflow), ``grid`` walks on a 6 x 5 grid (separable),
    ``frag`` moves through a random dense matrix; every other pair is
    uniform. Every discrete entry is positive, so every predicted entry is.
    """
    rng = np.random.default_rng(7)
    xs, ys = np.meshgrid(np.arange(6.0), np.arange(5.0), indexing="ij")
    sizes = {"loc": 5, "line": 200, "grid": 30, "frag": 20}
    labels = np.concatenate([[name] * n for name, n in sizes.items()])
    blocks = {(a, b): Uniform() for a in sizes for b in sizes}
    blocks["loc", "loc"] = Identity()
    blocks["line", "line"] = RandomWalk(2.0, np.arange(200.0))
    blocks["grid", "grid"] = RandomWalk(3.0, np.c_[xs.ravel(), ys.ravel()])
    dense = rng.random((20, 20)) + 0.01
    blocks["frag", "frag"] = Dense(dense / dense.sum(axis=1, keepdims=True))
    discrete = rng.random((4, 4)) + 4 * np.eye(4)
    transition = Blocks(discrete / discrete.sum(axis=1, keepdims=True), blocks)
    return transition, labels, np.ones(labels.size, bool)


def _operators(n_sequences: int) -> Iterator[tuple[str, Any, np.ndarray]]:
    """(name, float32 operator, float64 dense matrix) for a dense and a mixed model."""
    A = transition_matrix(150)
    yield "dense", dense_operator(A, np.float32, n_sequences), A
    transition, labels, mask = _mixed_model()
    planned = plan_transition(transition, state_labels=labels, is_interior=mask, n_time=10)
    operator = planned.device(np.float32, n_sequences)
    kinds = {type(block) for block in operator.blocks}
    assert kinds == {RankOneBlock, IdentityBlock, BandedBlock, SeparableBlock, DenseBlock}
    yield "blocks", operator, planned.matrix()


def _rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    p = rng.random(shape) + 0.05
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("n_sequences", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_vmap_over_a_leading_batch_equals_row_by_row(n_sequences):
    rng = np.random.default_rng(n_sequences)
    for name, operator, A in _operators(n_sequences):
        K = A.shape[0]
        p = _rows(rng, (4, n_sequences, K))
        batched = np.asarray(jax.jit(jax.vmap(operator.predict))(jnp.asarray(p)))
        assert batched.shape == p.shape and batched.dtype == np.float32
        exact = p.astype(np.float64) @ A
        # each result against the float64 product: one rounded product each
        rtol = _product_bound(K, np.float32)
        np.testing.assert_allclose(batched, exact, rtol=rtol, atol=0, err_msg=name)
        # and against the same rows run one call each (two products, each
        # within rtol of the exact one)
        one = np.stack([np.asarray(operator.predict(jnp.asarray(row))) for row in p])
        np.testing.assert_allclose(batched, one, rtol=2 * rtol, atol=0, err_msg=name)
        pulled = np.asarray(jax.vmap(operator.pullback)(jnp.asarray(p)))
        np.testing.assert_allclose(pulled, p.astype(np.float64) @ A.T, rtol=rtol, atol=0,
                                   err_msg=name)


def test_grad_of_log_predict_matches_float64():
    """d/dp sum(log(p @ A)) = (1 / (p @ A)) @ A.T, in float32 through either operator."""
    rng = np.random.default_rng(5)
    for name, operator, A in _operators(2):
        K = A.shape[0]
        p = _rows(rng, (2, K))

        def loss(q):
            return jnp.sum(jnp.log(operator.predict(q)))

        grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(p)))
        assert grad.shape == p.shape and grad.dtype == np.float32
        q = p.astype(np.float64) @ A
        exact = (1 / q) @ A.T
        # q (one product), its reciprocal (one rounding), a second product
        rtol = 2 * _product_bound(K, np.float32) + _unit_roundoff(np.float32)
        np.testing.assert_allclose(grad, exact, rtol=rtol, atol=0, err_msg=name)
        # a central difference in float64 along a random direction agrees
        # with the float64 gradient (its truncation error is O(h^2))
        direction = rng.normal(size=p.shape)
        h = 1e-6

        def loss64(pp):
            return np.sum(np.log(pp @ A))

        p64 = p.astype(np.float64)
        slope = (loss64(p64 + h * direction) - loss64(p64 - h * direction)) / (2 * h)
        assert slope == pytest.approx(np.sum(exact * direction), rel=1e-6)
        assert np.sum(grad * direction) == pytest.approx(slope, rel=1e-4)


def _tolerances(K: int, T: int, dtype: np.dtype) -> tuple[float, float, float]:
    """(filtered, smoothed, log-likelihood) bounds on batched against alone.

    Per step the filter rounds two ``K``-term sums of non-negative terms
    (the prediction's entries and the normalising sum) and two products
    (the likelihood, the division): relative ``(2 LAMBDA sqrt(K) + 2) u``
    for one run, twice that between two runs that sum in different orders
    (``delta``). A positive matrix never expands the largest relative
    difference between two rows (Birkhoff), nor do the likelihood and the
    normalisation, so the differences of the steps add up, as zero-mean
    errors: ``sqrt(T) delta`` on every filtered entry (absolute, since an
    entry is at most 1). The smoother adds a backward pass of as many
    steps with the same sums: ``sqrt(2 T) delta``, twice for the ratio of
    smoothed to predicted rows. The marginal log-likelihood is the sum of
    the ``T`` log normalisers, each within ``delta``: ``T delta``
    absolute, taken as if every step erred the same way.
    """
    delta = 2 * (2 * LAMBDA * np.sqrt(K) + 2) * _unit_roundoff(dtype)
    return np.sqrt(T) * delta, 2 * np.sqrt(2 * T) * delta, T * delta


def _check_batched_against_alone(ds: xr.Dataset, K: int, kw: dict, dtype: np.dtype
                                 ) -> xr.Dataset:
    """Smooth ``ds``'s sequences in one batch and each alone; compare within the bounds."""
    T = ds.sizes["time"]
    filtered_tol, smoothed_tol, mll_tol = _tolerances(K, T, dtype)
    # posteriors are stored in float32 whatever the compute dtype: one
    # float32 rounding each (at most one float32 ulp apart, <= eps32)
    storage = float(np.finfo(np.float32).eps)
    res = xhmm.smooth(ds, batch_size=ds.sizes["sequence"], **kw)
    for s in range(ds.sizes["sequence"]):
        one = ds.isel(sequence=s).drop_vars("sequence", errors="ignore").hmm.smooth(**kw)
        for name, tol in (("causal_posterior", filtered_tol),
                          ("acausal_posterior", smoothed_tol)):
            np.testing.assert_allclose(res[name][s].values, one[name].values,
                                       rtol=storage, atol=tol, err_msg=name)
        mll, ref = float(res.marginal_log_likelihood[s]), float(one.marginal_log_likelihood)
        assert abs(mll - ref) <= mll_tol, (mll, ref, mll_tol)
    return res


@pytest.mark.parametrize("dtype", ["float32",
                                   # the same comparison in float64: `make test-all`
                                   pytest.param("float64", marks=pytest.mark.slow)])
@pytest.mark.parametrize("K", [176, 1000])
def test_dense_batched_agrees_with_alone(K, dtype):
    rng = np.random.default_rng(K)
    S, T = 3, 700
    ll = rng.normal(size=(S, T, K)).astype(np.float32) * 3
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), ll)},
                    coords={"sequence": ["a", "b", "c"]})
    kw = dict(transition=transition_matrix(K), initial=np.full(K, 1 / K), chunk_size=300,
              progress=False, compute_dtype=dtype, posterior_out_dtype=dtype)
    _check_batched_against_alone(ds, K, kw, np.dtype(dtype))


@pytest.mark.parametrize("dtype", ["float32",
                                   # the same comparison in float64: `make test-all`
                                   pytest.param("float64", marks=pytest.mark.slow)])
@pytest.mark.parametrize("model,K", [("contfrag-1d", 200), ("contfrag-1d", 1000),
                                     ("nonlocal-2d", 202), ("contfrag-1d-tv", 200)])
def test_structured_batched_agrees_with_alone(model, K, dtype):
    """Banded, dense and uniform blocks, the 2-D random walk, a time-varying discrete."""
    problems = [Problem(600, K, seed=s, model=model) for s in range(3)]
    ll = np.stack([p.in_ram() for p in problems])
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), ll)},
                    coords=problems[0].coords())
    kw = dict(transition=problems[0].transition, initial=problems[0].initial, chunk_size=250,
              progress=False, compute_dtype=dtype, posterior_out_dtype=dtype)
    res = _check_batched_against_alone(ds, K, kw, np.dtype(dtype))
    assert res.attrs["xhmm_transition"].count('"kind": "blocks"') == 1
