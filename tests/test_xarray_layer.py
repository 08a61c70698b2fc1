"""The xarray layer: lazy masked posteriors, coordinates, summaries, inputs."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.callbacks import Callback

import xhmm
from xhmm.frontend.lazy import SequenceRows, eager_masked_posterior, lazy_masked_posterior

from conftest import make_dataset, random_model


class CountTasks(Callback):
    """Counts dask tasks executed while active."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def _posttask(self, key, result, dsk, state, id):
        self.count += 1


def _masked_model(seed=0, T=130, n_per_state=12):
    rng = np.random.default_rng(seed)
    N = 2 * n_per_state
    mask = np.ones(N, bool)
    mask[[0, 5, n_per_state + 3]] = False
    K = int(mask.sum())
    ll_int, A, p0 = random_model(rng, T, K)
    ll = np.full((T, N), np.nan)
    ll[:, mask] = ll_int
    coords = {
        "state": ("state_bins", np.repeat(["continuous", "fragmented"], n_per_state)),
        "x_position": ("state_bins", np.tile(np.arange(n_per_state) * 2.5, 2)),
    }
    return make_dataset(ll, mask, **coords), A, p0, ll_int, mask


@pytest.mark.parametrize("storage", ["float32", "float16", "uint16"])
@pytest.mark.parametrize("memmap", [False, True])
@pytest.mark.parametrize("time_chunks", [26, 40])  # divides T=130 / does not
def test_lazy_equals_eager(tmp_path, storage, memmap, time_chunks):
    ds, A, p0, _, mask = _masked_model()
    kw = dict(transition=A, initial=p0, chunk_size=32, posterior_dtype=storage,
              time_chunks=time_chunks)
    if memmap:
        kw.update(use_memmap=True, memmap_dir=tmp_path / "lazy")
    lazy = ds.hmm.smooth(lazy=True, **kw)
    if memmap:
        kw["memmap_dir"] = tmp_path / "eager"
    eager = ds.hmm.smooth(lazy=False, **kw)
    for name in ("causal_posterior", "acausal_posterior"):
        assert isinstance(lazy[name].data, da.Array)
        assert isinstance(eager[name].data, np.ndarray)
        assert lazy[name].chunks[0] == tuple(
            min(time_chunks, 130 - s) for s in range(0, 130, time_chunks))
        np.testing.assert_array_equal(lazy[name].values, eager[name].values)
        assert np.isnan(eager[name].values[:, ~mask]).all()
        assert not np.isnan(eager[name].values[:, mask]).any()


def test_building_lazy_result_computes_nothing():
    ds, A, p0, _, _ = _masked_model()
    res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=32, time_chunks=20, lazy=True)
    counter = CountTasks()
    with counter:
        post = res.acausal_posterior
        sub = post.isel(time=slice(0, 20)).sel(state_bins=post.state == "continuous")
        assert counter.count == 0
        sub.values
    # one source block and one expansion block (plus selection tasks)
    assert 2 <= counter.count <= 6


def test_lazy_block_reads_only_its_rows():
    interior = np.arange(30 * 4, dtype=np.float32).reshape(30, 4)
    mask = np.array([True, False, True, True, False, True])
    rows = SequenceRows(interior[None], 0, 30, 30)
    lazy = lazy_masked_posterior(rows, mask, 7, "float64")
    assert lazy.chunks == ((7, 7, 7, 7, 2), (6,))
    assert lazy.dtype == np.float64
    block = lazy.blocks[2].compute()
    np.testing.assert_array_equal(block[:, mask], interior[14:21])
    assert np.isnan(block[:, ~mask]).all()
    np.testing.assert_array_equal(lazy.compute(), eager_masked_posterior(rows, mask, "float64"))


def test_summaries_match_reference(reference):
    ds, A, p0, ll_int, mask = _masked_model(seed=3)
    filt, smooth, _ = reference(ll_int, A, p0)
    res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=29, emit_map=True,
                        emit_entropy=True)
    interior_bins = np.flatnonzero(mask)
    ref_map = interior_bins[smooth.argmax(axis=1)]
    # MAP: equal wherever the reference's top two bins differ by > 1e-5
    top2 = np.sort(smooth, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5
    np.testing.assert_array_equal(res.map_state_bin.values[clear], ref_map[clear])
    x = ds.x_position.values
    np.testing.assert_array_equal(res.map_x_position.values[clear], x[ref_map[clear]])
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_entropy = -np.where(smooth > 0, smooth * np.log(smooth), 0).sum(axis=1)
    # entropy: float32 p log p summed over 21 bins, 1e-5 absolute
    np.testing.assert_allclose(res.entropy.values, ref_entropy, atol=1e-5)
    states = ds.state.values[mask]
    for kind, ref in (("causal", filt), ("acausal", smooth)):
        probs = res[f"{kind}_state_probabilities"]
        assert probs.dims == ("time", "states")
        assert list(probs.states.values) == ["continuous", "fragmented"]
        for label in ("continuous", "fragmented"):
            # float32 posteriors summed per state: 1e-5 absolute
            np.testing.assert_allclose(probs.sel(states=label).values,
                                       ref[:, states == label].sum(axis=1), atol=1e-5)


def test_map_estimate_keeps_no_posterior(reference):
    ds, A, p0, ll_int, mask = _masked_model(seed=4)
    _, smooth, mll = reference(ll_int, A, p0)
    est = ds.hmm.map_estimate(transition=A, initial=p0, chunk_size=50)
    assert set(est.data_vars) == {"map_state_bin", "map_state", "map_x_position",
                                  "marginal_log_likelihood"}
    full = ds.hmm.smooth(transition=A, initial=p0, chunk_size=50, emit_map=True)
    np.testing.assert_array_equal(est.map_state_bin.values, full.map_state_bin.values)
    assert abs(float(est.marginal_log_likelihood) - mll) <= 1e-6 * abs(mll)


def test_coordinates_and_attrs_survive():
    ds, A, p0, _, _ = _masked_model()
    ds.attrs["session"] = "r1-day3"
    ds = ds.assign_coords(time=np.arange(130) * 0.002)
    res = ds.hmm.smooth(transition=A, initial=p0)
    for name in ("state", "x_position", "is_interior", "time"):
        np.testing.assert_array_equal(res[name].values, ds[name].values)
    assert res.attrs["session"] == "r1-day3"
    cfg = xhmm.Config.from_json(res.attrs["xhmm_config"])
    assert cfg.to_json() == res.attrs["xhmm_config"]
    assert cfg.chunk_size == xhmm.Config().chunk_size
    fragmented = res.acausal_posterior.sel(state_bins=res.state == "fragmented")
    assert fragmented.sizes["state_bins"] == 12


def test_multiindex_state_bins():
    rng = np.random.default_rng(5)
    mi = pd.MultiIndex.from_product([["continuous", "fragmented"], np.arange(6) * 3.0],
                                    names=["state", "position"])
    ll, A, p0 = random_model(rng, 40, 12)
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords=xr.Coordinates.from_pandas_multiindex(mi, "state_bins"))
    res = ds.hmm.smooth(transition=A, initial=p0, emit_map=True)
    assert res.indexes["state_bins"].equals(mi)
    un = res.acausal_posterior.unstack("state_bins")
    assert un.dims == ("time", "state", "position")
    np.testing.assert_allclose(un.sum(("state", "position")).values, 1, atol=1e-5)
    assert res.acausal_posterior.sel(state="continuous").dims == ("time", "position")
    np.testing.assert_array_equal(res.map_position.values,
                                  mi.get_level_values("position")[res.map_state_bin.values])
    assert list(res.acausal_state_probabilities.states.values) == ["continuous", "fragmented"]


def test_dask_input_chunked_along_state_bins(reference):
    ds, A, p0, ll_int, _ = _masked_model(seed=6)
    numpy_res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=33)
    chunked = ds.chunk({"time": 17, "state_bins": 5})
    assert len(chunked.log_likelihood.chunks[1]) > 1
    dask_res = chunked.hmm.smooth(transition=A, initial=p0, chunk_size=33)
    np.testing.assert_array_equal(dask_res.acausal_posterior.values,
                                  numpy_res.acausal_posterior.values)
    assert float(dask_res.marginal_log_likelihood) == float(
        numpy_res.marginal_log_likelihood)


def test_dask_input_is_read_one_chunk_at_a_time():
    ds, A, p0, _, _ = _masked_model()
    src = ds.log_likelihood.data
    seen = []

    def spy(block, block_info=None):
        seen.append(block_info[None]["array-location"][0])
        return block

    lazy_ll = da.from_array(src, chunks=(10, -1)).map_blocks(spy, dtype=src.dtype)
    ds = ds.assign(log_likelihood=(("time", "state_bins"), lazy_ll))
    with dask.config.set(scheduler="sync"):
        # (RAM outputs: a memmap run also samples rows for its manifest)
        ds.hmm.filter(transition=A, initial=p0, chunk_size=30, emit_state_aggregates=False,
                      use_memmap=False)
    # every block read exactly once (no whole-array load, no re-reads)
    assert sorted(seen) == [(s, min(s + 10, 130)) for s in range(0, 130, 10)]


def test_transition_and_initial_from_dataset():
    ds, A, p0, _, _ = _masked_model()
    direct = ds.hmm.smooth(transition=A, initial=p0)
    ds2 = ds.assign(transition=(("from_bin", "to_bin"), A), initial=("k", p0))
    from_vars = ds2.hmm.smooth()
    np.testing.assert_array_equal(direct.acausal_posterior.values,
                                  from_vars.acausal_posterior.values)


def test_extra_dims_rejected_until_sequences():
    ll = np.zeros((2, 5, 3))
    ds = xr.Dataset({"log_likelihood": (("trial", "time", "state_bins"), ll)})
    with pytest.raises(xhmm.DimensionError, match="trial"):
        ds.hmm.smooth(transition=np.eye(3), initial=np.full(3, 1 / 3))


def test_lazy_posterior_does_not_copy_its_buffer(tmp_path):
    # dask.array.from_array copies arrays that have a .copy method (memmaps
    # included) up front; the lazy posterior must read the buffer itself.
    buf = np.memmap(tmp_path / "p.dat", dtype=np.float32, mode="w+", shape=(1, 50, 3))
    buf[:] = 0.25
    lazy = lazy_masked_posterior(SequenceRows(buf, 0, 50, 50), np.ones(3, bool), 20, "float32")
    buf[0, 10] = 0.5  # written after the lazy array was built
    assert lazy[10].compute().tolist() == [0.5, 0.5, 0.5]
