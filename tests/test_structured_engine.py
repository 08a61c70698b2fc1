"""Structured and time-varying transitions through every engine path.

The reference is the float64 NumPy forward-backward over the dense matrix
that :func:`xhmm.transitions.to_dense` builds from the definitions (per step
for a time-varying discrete transition), written independently of the
operators' block products.
"""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xhmm
from conftest import reference_forward_backward
from tolerances import F32_ATOL
from xhmm.transitions import Blocks, Dense, Identity, RandomWalk, Uniform, to_dense

N_X, N_Y, T = 9, 7, 150


def _hole(centers):
    return (centers[:, 0] == 4) & (centers[:, 1] >= 2) & (centers[:, 1] <= 4)


def _layout():
    xs, ys = np.meshgrid(np.arange(N_X), np.arange(N_Y), indexing="ij")
    centers = np.c_[xs.ravel(), ys.ravel()].astype(float)
    n = len(centers)
    labels = np.array(["local", "nospike"] + ["cont"] * n + ["frag"] * n)
    mask = np.ones(labels.size, bool)
    hole = _hole(centers)
    mask[2:2 + n][hole] = False
    mask[2 + n:][hole] = False
    return centers, labels, mask


def _blocks(discrete, centers):
    states = ("local", "nospike", "cont", "frag")
    blocks = {(a, b): Uniform() for a in states for b in states}
    blocks["local", "local"] = Identity()
    blocks["nospike", "nospike"] = Identity()
    blocks["cont", "cont"] = RandomWalk(2.5, centers)
    n = len(centers)
    rng = np.random.default_rng(4)
    dense = rng.random((n, n)) * (rng.random((n, n)) < 0.3) + np.eye(n)
    dense[:, _hole(centers)] = 0.0  # exterior bins are unreachable
    blocks["frag", "frag"] = Dense(dense / dense.sum(axis=1, keepdims=True))
    return Blocks(discrete, blocks)


def _discrete(rng, n_time=None):
    shape = (4, 4) if n_time is None else (n_time, 4, 4)
    d = rng.random(shape) + 4 * np.eye(4)
    d[..., 1, 3] = 0.0  # an exact zero: nospike never jumps to frag
    return d / d.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    centers, labels, mask = _layout()
    ll = rng.normal(size=(T, labels.size)) * 4
    ll[rng.random(ll.shape) < 0.03] = -np.inf
    ll[:, ~mask] = np.nan
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"time": np.arange(T), "state": ("state_bins", labels),
                            "is_interior": ("state_bins", mask)})
    p0 = np.where(mask, 1.0, 0.0)
    p0 /= p0.sum()
    return ds, centers, mask, p0


def _reference(ds, mask, p0, transition):
    """Float64 filter and smoother over the dense matrix (per step if time-varying)."""
    ll = ds.log_likelihood.values[:, mask]
    varying = np.ndim(getattr(transition.discrete, "values", transition.discrete)) == 3
    steps = range(T - 1) if varying else [None]
    matrices = [to_dense(transition, ds, time_index=t)[np.ix_(mask, mask)] for t in steps]
    return reference_forward_backward(ll, matrices if varying else matrices[0], p0[mask])


def _check(res, ref, mask, names=("causal_posterior", "acausal_posterior")):
    filt, smooth, mll = ref
    for name, want in zip(("causal_posterior", "acausal_posterior"), (filt, smooth)):
        if name in names:
            got = res[name].values[:, mask]
            np.testing.assert_allclose(got, want, rtol=0, atol=F32_ATOL, err_msg=name)
            assert (got[want == 0] == 0).all(), name
    assert abs(float(res.marginal_log_likelihood) - mll) <= 1e-6 * T + 1e-9 * abs(mll)


@pytest.mark.parametrize("chunk", [1, 37, T])
def test_static_blocks_match_the_dense_reference(model, chunk):
    ds, centers, mask, p0 = model
    transition = _blocks(_discrete(np.random.default_rng(1)), centers)
    res = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=chunk, progress=False)
    _check(res, _reference(ds, mask, p0, transition), mask)
    plan = json.loads(res.attrs["xhmm_transition"])
    assert plan["kind"] == "blocks" and "cont->cont: separable 9x7" in plan["blocks"]


@pytest.mark.parametrize("as_dask", [False, True])
def test_time_varying_discrete_matches_per_step_dense(model, as_dask):
    ds, centers, mask, p0 = model
    values = _discrete(np.random.default_rng(2), T)
    order = ["frag", "cont", "nospike", "local"]  # labelled: any order
    perm = [3, 2, 1, 0]
    data = values[:, perm][:, :, perm]
    if as_dask:
        data = da.from_array(data, chunks=(40, 4, 4))
    discrete = xr.DataArray(data, dims=("time", "from_state", "to_state"),
                            coords={"from_state": order, "to_state": order})
    transition = _blocks(discrete, centers)
    res = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=32, progress=False)
    _check(res, _reference(ds, mask, p0, _blocks(values, centers)), mask)


def test_filter_summaries_and_no_causal_posterior(model):
    ds, centers, mask, p0 = model
    transition = _blocks(_discrete(np.random.default_rng(3)), centers)
    full = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=40, progress=False,
                         emit_map=True, emit_entropy=True)
    lean = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=40, progress=False,
                         emit_map=True, emit_entropy=True, persist_causal=False)
    assert "causal_posterior" not in lean
    for name in ("acausal_posterior", "map_state_bin", "entropy", "acausal_state_probabilities"):
        np.testing.assert_array_equal(lean[name].values, full[name].values)
    filt = ds.hmm.filter(transition=transition, initial=p0, chunk_size=40, progress=False)
    np.testing.assert_array_equal(filt.causal_posterior.values, full.causal_posterior.values)
    ref = _reference(ds, mask, p0, transition)
    np.testing.assert_allclose(full.acausal_state_probabilities.sel(states="cont").values,
                               ref[1][:, ds.state.values[mask] == "cont"].sum(axis=1),
                               rtol=0, atol=1e-5)


def test_memmap_resume_fingerprints_the_operator(model, tmp_path):
    ds, centers, mask, p0 = model
    transition = _blocks(_discrete(np.random.default_rng(5)), centers)
    kw = dict(initial=p0, chunk_size=32, progress=False, use_memmap=True,
              memmap_dir=tmp_path / "run")
    first = ds.hmm.smooth(transition=transition, **kw)
    again = ds.hmm.smooth(transition=transition, resume=True, **kw)
    np.testing.assert_array_equal(again.acausal_posterior.values, first.acausal_posterior.values)
    other = _blocks(_discrete(np.random.default_rng(6)), centers)
    with pytest.raises(xhmm.ResumeError, match="transition"):
        ds.hmm.smooth(transition=other, resume=True, **kw)


def test_sequences_and_dask_input(model):
    ds, centers, mask, p0 = model
    transition = _blocks(_discrete(np.random.default_rng(7)), centers)
    single = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=32, progress=False)
    pair = xr.concat([ds, ds.isel(time=slice(0, 90))], dim="sequence", join="outer",
                     coords="minimal", compat="override").chunk(time=50)
    res = pair.hmm.smooth(transition=transition, initial=p0, chunk_size=32, progress=False)
    got = res.acausal_posterior.values
    np.testing.assert_allclose(got[0], single.acausal_posterior.values, rtol=0, atol=1e-6)
    assert np.isnan(got[1, 90:]).all()
    short = ds.isel(time=slice(0, 90)).hmm.filter(transition=transition, initial=p0,
                                                  chunk_size=32, progress=False)
    np.testing.assert_allclose(res.causal_posterior.values[1, :90],
                               short.causal_posterior.values, rtol=0, atol=1e-6)


def test_float64_compute(model):
    ds, centers, mask, p0 = model
    transition = _blocks(_discrete(np.random.default_rng(8)), centers)
    res = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=50, progress=False,
                        compute_dtype="float64", posterior_out_dtype="float64",
                        posterior_dtype="float32")
    filt, smooth, mll = _reference(ds, mask, p0, transition)
    np.testing.assert_allclose(res.acausal_posterior.values[:, mask], smooth, rtol=0,
                               atol=2 ** -24)
    assert float(res.marginal_log_likelihood) == pytest.approx(mll, rel=1e-12, abs=1e-9)


def test_dense_input_with_state_labels_is_analysed():
    rng = np.random.default_rng(9)
    n = 150  # two states of 150 bins: K = 300, past the analysis threshold
    labels = np.repeat(["cont", "frag"], n)
    walk = np.exp(-0.5 * (np.arange(n)[:, None] - np.arange(n)[None, :]) ** 2 / 4.0)
    walk /= walk.sum(axis=1, keepdims=True)
    A = np.zeros((2 * n, 2 * n))
    A[:n, :n] = 0.97 * walk
    A[:n, n:] = 0.03 / n
    A[n:, :n] = 0.04 / n
    A[n:, n:] = 0.96 / n
    ll = rng.normal(size=(120, 2 * n)) * 3
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"state": ("state_bins", labels)})
    p0 = np.full(2 * n, 1 / (2 * n))
    res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=64, progress=False)
    plan = json.loads(res.attrs["xhmm_transition"])
    assert plan["kind"] == "dense-analysed", plan
    assert plan["blocks"] == ("cont->cont: dense 150x150; cont->frag: rank-one; "
                              "frag->cont: rank-one; frag->frag: rank-one")
    _check(res, reference_forward_backward(ll, A, p0), np.ones(2 * n, bool))
