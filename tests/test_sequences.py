"""Many sequences: batched kernels and engine, ragged lengths, dask.distributed."""

from __future__ import annotations

import json
import re
import shutil

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.engine.budget import choose_batch_size
from xhmm.kernels.hmm import backward_chunk, forward_chunk
from xhmm.kernels.operators import dense_operator

from conftest import underflow_model

# Batched and single-sequence runs do the same float32 arithmetic per step,
# but XLA sums a (B, K) @ (K, K) product in a different order than a
# (K,) @ (K, K) one: results agree to float32 rounding (a few ulp of 1).
ATOL32 = 1e-6
# Log normalisers are summed in float64 from float32 steps (as in test_smoke).
RTOL_MLL = 1e-6


def _model(rng, S, T, N, spread=3.0):
    A = rng.random((N, N)) + 0.05
    A /= A.sum(axis=1, keepdims=True)
    p0 = rng.random(N) + 0.1
    p0 /= p0.sum()
    ll = rng.normal(size=(S, T, N)) * spread
    return ll, A, p0


def _dataset(ll, lengths=None, mask=None, **coords):
    S, T, N = ll.shape
    data = {"log_likelihood": (("sequence", "time", "state_bins"), ll)}
    if lengths is not None:
        data["sequence_length"] = ("sequence", np.asarray(lengths, dtype=np.int64))
    c = {"time": np.arange(T), "sequence": [f"s{i}" for i in range(S)]}
    if mask is not None:
        c["is_interior"] = ("state_bins", np.asarray(mask, dtype=bool))
    c.update(coords)
    return xr.Dataset(data, coords=c)


def _one_by_one(ds, s, length, **kw):
    single = ds.isel(sequence=s, time=slice(0, length)).drop_vars(
        ["sequence_length"], errors="ignore")
    return single.hmm.smooth(**kw)


def _ragged_case():
    rng = np.random.default_rng(11)
    S, T, N = 4, 45, 9
    ll, _, _ = _model(rng, S, T, N)
    mask = np.ones(N, dtype=bool)
    mask[[0, 5]] = False
    K = int(mask.sum())
    A = rng.random((K, K)) + 0.05
    A /= A.sum(axis=1, keepdims=True)
    p0 = np.full(K, 1 / K)
    ll[:, :, ~mask] = np.nan  # exterior bins are ignored
    lengths = np.array([45, 13, 1, 30])
    labels = np.array(list("aaabbbbcc"))
    ds = _dataset(ll, lengths, mask, state=("state_bins", labels),
                  position=("state_bins", np.arange(N) * 2.0))
    return ds, A, p0, lengths


def test_batched_matches_one_by_one_ragged():
    ds, A, p0, lengths = _ragged_case()
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False,
              emit_map=True, emit_entropy=True)
    res = xhmm.smooth(ds, batch_size=3, **kw)
    assert res.acausal_posterior.dims == ("sequence", "time", "state_bins")
    assert isinstance(res.acausal_posterior.data, da.Array)
    np.testing.assert_array_equal(res.sequence_length.values, lengths)
    for s, L in enumerate(lengths):
        one = _one_by_one(ds, s, L, **kw)
        for name in ("causal_posterior", "acausal_posterior"):
            got = res[name].isel(sequence=s).values
            np.testing.assert_allclose(got[:L], one[name].values, atol=ATOL32)
            assert np.isnan(got[L:]).all(), f"{name} not NaN past the end of sequence {s}"
            assert np.isnan(got[:, ~ds.is_interior.values]).all()
        for name in ("causal_state_probabilities", "acausal_state_probabilities"):
            got = res[name].isel(sequence=s).values
            np.testing.assert_allclose(got[:L], one[name].values, atol=ATOL32)
            assert np.isnan(got[L:]).all()
        mll, ref = float(res.marginal_log_likelihood[s]), float(one.marginal_log_likelihood)
        assert abs(mll - ref) <= RTOL_MLL * abs(ref)
        np.testing.assert_array_equal(res.map_state_bin[s, :L], one.map_state_bin)
        np.testing.assert_array_equal(res.map_position[s, :L], one.map_position)
        assert (res.map_state_bin[s, L:] == -1).all()
        assert res.map_position[s, L:].isnull().all()
        np.testing.assert_allclose(res.entropy[s, :L], one.entropy, atol=1e-5)
        assert res.entropy[s, L:].isnull().all()


def test_float64_batched_equals_one_by_one_to_rounding():
    ds, A, p0, lengths = _ragged_case()
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False,
              compute_dtype="float64", posterior_out_dtype="float64",
              posterior_dtype="float32")
    res = xhmm.smooth(ds, **kw)
    for s, L in enumerate(lengths):
        one = _one_by_one(ds, s, L, **kw)
        np.testing.assert_allclose(res.acausal_posterior[s, :L], one.acausal_posterior,
                                   rtol=0, atol=1e-7)
        assert float(res.marginal_log_likelihood[s]) == pytest.approx(
            float(one.marginal_log_likelihood), rel=1e-12)


def test_matches_float64_reference(reference):
    rng = np.random.default_rng(3)
    ll, A, p0 = _model(rng, 3, 60, 6)
    res = xhmm.smooth(_dataset(ll), A, p0, chunk_size=16, progress=False)
    for s in range(3):
        filt, smooth, mll = reference(ll[s], A, p0)
        np.testing.assert_allclose(res.causal_posterior[s], filt, atol=2e-6)
        np.testing.assert_allclose(res.acausal_posterior[s], smooth, atol=2e-6)
        assert abs(float(res.marginal_log_likelihood[s]) - mll) <= RTOL_MLL * abs(mll)


def test_float32_precision_loss_names_the_sequence_and_auto_is_right(reference):
    # likelihood jumps far from a banded model's prediction (as in test_errors)
    hard, A = underflow_model()
    K = A.shape[0]
    x = np.arange(K)
    easy = -0.5 * ((x[None, :] - 20) / 8.0) ** 2 * np.ones((60, 1))
    p0 = np.full(K, 1 / K)
    ds = _dataset(np.stack([easy, hard]))
    with pytest.raises(xhmm.NumericalError, match="sequence s1, time index"):
        xhmm.smooth(ds, A, p0, progress=False, compute_dtype="float32")
    for dtype in ("auto", "float64"):
        res = xhmm.smooth(ds, A, p0, progress=False, compute_dtype=dtype)
        for s, ll in enumerate((easy, hard)):
            _, smooth, _ = reference(ll, A, p0)
            # float64 compute, float32 storage: 1e-7 absolute
            np.testing.assert_allclose(res.acausal_posterior[s], smooth, atol=1e-7)


def test_inferred_lengths_equal_given_lengths():
    ds, A, p0, lengths = _ragged_case()
    padded = ds.drop_vars("sequence_length").copy(deep=True)
    for s, L in enumerate(lengths):
        padded["log_likelihood"][s, L:] = np.nan
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False, batch_size=4)
    given = xhmm.smooth(ds, **kw)
    inferred = xhmm.smooth(padded.chunk(time=10), **kw)
    np.testing.assert_array_equal(inferred.sequence_length, lengths)
    xr.testing.assert_equal(given.acausal_posterior, inferred.acausal_posterior)
    xr.testing.assert_equal(given.marginal_log_likelihood, inferred.marginal_log_likelihood)


def test_results_do_not_depend_on_the_batch():
    ds, A, p0, _ = _ragged_case()
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False)
    one = xhmm.smooth(ds, batch_size=1, **kw)
    four = xhmm.smooth(ds, batch_size=4, **kw)
    np.testing.assert_allclose(one.acausal_posterior, four.acausal_posterior, atol=ATOL32)
    np.testing.assert_allclose(one.marginal_log_likelihood, four.marginal_log_likelihood,
                               rtol=RTOL_MLL)


def test_filter_and_per_sequence_initial():
    rng = np.random.default_rng(5)
    ll, A, _ = _model(rng, 3, 20, 5)
    p0 = rng.random((3, 5)) + 0.1
    p0 /= p0.sum(axis=1, keepdims=True)
    ds = _dataset(ll)
    ds["initial"] = (("sequence", "state_bins"), p0)
    res = xhmm.filter(ds, A, chunk_size=7, progress=False)
    assert "acausal_posterior" not in res
    for s in range(3):
        one = ds.isel(sequence=s).drop_vars("initial").hmm.filter(
            transition=A, initial=p0[s], chunk_size=7, progress=False)
        np.testing.assert_allclose(res.causal_posterior[s], one.causal_posterior,
                                   atol=ATOL32)


def test_memmap_uint16_dask_input(tmp_path):
    ds, A, p0, lengths = _ragged_case()
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False, batch_size=2)
    ram = xhmm.smooth(ds, **kw)
    res = xhmm.smooth(ds.chunk(time=16), use_memmap=True, memmap_dir=tmp_path / "mm",
                           posterior_dtype="uint16", **kw)
    assert sorted(p.name for p in (tmp_path / "mm").iterdir()) == [".xhmm.lock", "batch-0000",
                                                                   "batch-0001"]
    assert (tmp_path / "mm" / "batch-0000" / "acausal_posterior.dat").exists()
    assert res.attrs["xhmm_memmap_dir"] == str(tmp_path / "mm")
    # uint16 storage: half a quantisation step, plus float32 rounding
    np.testing.assert_allclose(res.acausal_posterior, ram.acausal_posterior,
                               atol=0.5 / 65534 + ATOL32)
    np.testing.assert_array_equal(np.isnan(res.acausal_posterior),
                                  np.isnan(ram.acausal_posterior))
    xr.testing.assert_equal(res.marginal_log_likelihood, ram.marginal_log_likelihood)


def test_nan_row_inside_a_sequence_is_an_error():
    rng = np.random.default_rng(7)
    ll, A, p0 = _model(rng, 3, 20, 4)
    ll[1, 5] = np.nan  # all-NaN row followed by data
    with pytest.raises(xhmm.LikelihoodError,
                       match=r"sequence s1: .* time index 6 .* time index 5"):
        xhmm.smooth(_dataset(ll), A, p0, chunk_size=4, progress=False)
    ll[1, 5:] = np.nan
    ll[2, 3, 0] = np.nan  # a NaN in one bin of a real row
    with pytest.raises(xhmm.LikelihoodError, match="NaN at sequence s2, time index 3, bin 0"):
        xhmm.smooth(_dataset(ll), A, p0, chunk_size=4, progress=False)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda ds: ds.assign(sequence_length=("sequence", [5, 0, 3])), xhmm.InputError,
         "sequence_length of sequence s1 is 0"),
        (lambda ds: ds.assign(sequence_length=("sequence", [5.0, 2.0, 3.0])),
         xhmm.InputError, "must be integer"),
        (lambda ds: ds.assign_coords(is_interior=(("sequence", "state_bins"),
                                                  np.ones((3, 4), bool))),
         xhmm.DimensionError, "is_interior"),
    ],
)
def test_bad_input_is_named(change, error, match):
    rng = np.random.default_rng(8)
    ll, A, p0 = _model(rng, 3, 10, 4)
    with pytest.raises(error, match=match):
        xhmm.smooth(change(_dataset(ll)), A, p0, progress=False)


def test_unsupported_and_bad_options_are_named():
    rng = np.random.default_rng(9)
    ll, A, p0 = _model(rng, 2, 10, 4)
    with pytest.raises(xhmm.TransitionError, match="once per group"):
        xhmm.smooth(_dataset(ll), np.stack([A, A]), p0, progress=False)
    with pytest.raises(xhmm.InitialError, match="initial of sequence s1"):
        xhmm.smooth(_dataset(ll), A, np.stack([p0, -p0]), progress=False)
    with pytest.raises(xhmm.InputError, match="batch_size must be a positive int, got 0"):
        xhmm.smooth(_dataset(ll), A, p0, batch_size=0)


def test_resume_continues_each_batch(tmp_path):
    ds, A, p0, lengths = _ragged_case()
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False, batch_size=2,
              memmap_dir=tmp_path / "run")
    first = xhmm.smooth(ds, **kw)
    want = first.acausal_posterior.values
    # one batch never started, another stopped after its first forward chunk
    shutil.rmtree(tmp_path / "run" / "batch-0001")
    manifest = tmp_path / "run" / "batch-0000" / "manifest.json"
    data = json.loads(manifest.read_text())
    data.update(status="running", forward_done=1, backward_done=0)
    manifest.write_text(json.dumps(data))
    resumed = xhmm.smooth(ds, resume=True, **kw)
    np.testing.assert_array_equal(resumed.acausal_posterior.values, want)
    np.testing.assert_array_equal(resumed.marginal_log_likelihood.values,
                                  first.marginal_log_likelihood.values)
    with pytest.raises(xhmm.ResumeError, match="chunk_size"):
        xhmm.smooth(ds, resume=True, **{**kw, "chunk_size": 16})


def test_batch_size_fits_the_budget():
    K, C = 100, 50
    per_sequence = 6 * C * K * 4
    fixed = 2 * K * K * 4
    assert choose_batch_size(1000, K, C, "float32", fixed + 7 * per_sequence) == 7
    assert choose_batch_size(3, K, C, "float32", fixed + 7 * per_sequence) == 3
    assert choose_batch_size(1000, K, C, "float32", 0) == 1


def _dot_shapes(compiled_text: str) -> list[str]:
    return re.findall(r"= f32\[([\d,]+)\]\{[\d,]+\} dot\(", compiled_text)


def test_compiled_batch_uses_matrix_matrix_products():
    B, C, K = 3, 5, 7
    f32 = np.float32
    op = dense_operator(np.eye(K), f32, B)
    fwd = forward_chunk.lower(
        np.zeros((B, K), f32), True, np.zeros((B, C, K), f32), np.full(B, C, np.int32),
        op, None, np.full((B, K), 1 / K, f32)).compile().as_text()
    bwd = backward_chunk.lower(
        np.zeros((B, K), f32), np.ones(B, bool), np.zeros((B, C, K), f32),
        np.full(B, C, np.int32), op, None).compile().as_text()
    # forward: one (B, K) @ (K, K) per step; backward: one (B, K) x (K, K) per
    # step and one (B*C, K) @ (K, K) per chunk for the predictions
    assert _dot_shapes(fwd) == [f"{B},{K}"]
    assert sorted(_dot_shapes(bwd)) == sorted([f"{B},{K}", f"{B * C},{K}"])
    # and no transposed copy of the transition matrix
    for text in (fwd, bwd):
        assert not re.search(rf"f32\[{K},{K}\]\{{[\d,]+\}} (transpose|copy)\(", text)


@pytest.mark.slow
def test_local_cluster_equals_local_run(tmp_path):
    distributed = pytest.importorskip("distributed")
    ds, A, p0, lengths = _ragged_case()
    p_rows = np.tile(p0, (len(lengths), 1))
    kw = dict(transition=A, initial=p_rows, chunk_size=8, progress=False, batch_size=2)
    local = xhmm.smooth(ds, client=False, **kw)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        in_ram = xhmm.smooth(ds, **kw)  # the active client is picked up
        on_disk = xhmm.smooth(ds.chunk(time=16), client=client, use_memmap=True,
                                   memmap_dir=tmp_path / "mm", **kw)
        # the lazy results read the memmaps by path, on the workers too
        mean_on_cluster = on_disk.acausal_posterior.mean(("time", "state_bins")).values
    for res in (in_ram, on_disk):
        xr.testing.assert_equal(res.acausal_posterior, local.acausal_posterior)
        xr.testing.assert_equal(res.causal_posterior, local.causal_posterior)
        xr.testing.assert_equal(res.marginal_log_likelihood, local.marginal_log_likelihood)
    np.testing.assert_array_equal(
        mean_on_cluster, local.acausal_posterior.mean(("time", "state_bins")).values)


def test_accessor_routes_a_sequence_dim():
    ds, A, p0, lengths = _ragged_case()
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False)
    direct = xhmm.smooth(ds, batch_size=2, **kw)
    via = ds.hmm.smooth(batch_size=2, **kw)
    np.testing.assert_array_equal(via.acausal_posterior.values,
                                  direct.acausal_posterior.values)
    filtered = ds.hmm.filter(lazy=False, **kw)
    assert "acausal_posterior" not in filtered
    assert isinstance(filtered.causal_posterior.data, np.ndarray)
    estimate = ds.hmm.map_estimate(batch_size=2, **kw)
    smoothed = direct.acausal_posterior.fillna(-1).argmax("state_bins")
    valid = np.arange(ds.sizes["time"])[None, :] < lengths[:, None]
    np.testing.assert_array_equal(estimate.map_state_bin.values,
                                  np.where(valid, smoothed.values, -1))
