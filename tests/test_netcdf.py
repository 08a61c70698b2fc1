"""Streamed NetCDF: encoding, plain-xarray decoding, sizes, safety of the write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import dask
import h5py
import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.synthetic import simulate_decoding

from conftest import make_dataset, random_model


@pytest.fixture(scope="module")
def decoding():
    """A realistic decoding posterior: 6 s at 2 ms, two states, track with gaps."""
    ds = simulate_decoding(duration=6.0, seed=1)
    return ds


def _smooth(ds, **kw):
    return ds.hmm.smooth(chunk_size=1_000, time_chunks=1_000, **kw)


def test_plain_xarray_decodes_float32(tmp_path, decoding):
    res = _smooth(decoding)
    path = xhmm.save_results(res, tmp_path / "r.nc")
    script = textwrap.dedent(f"""
        import sys, json, numpy as np, xarray as xr
        assert "xhmm" not in sys.modules
        ds = xr.open_dataset({str(path)!r}, chunks={{}})
        post = ds.acausal_posterior
        print(json.dumps({{"dtype": str(post.dtype), "lazy": post.chunks is not None,
                          "nan_cols": np.isnan(post.values).all(axis=0).tolist(),
                          "sum": float(np.nansum(post.values[0]))}}))
        assert "xhmm" not in sys.modules
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    info = json.loads(out.stdout)
    assert info["dtype"] == "float32" and info["lazy"]
    assert info["nan_cols"] == (~decoding.is_interior.values).tolist()
    assert abs(info["sum"] - 1) < 1e-5
    back = xhmm.open_results(path)
    for name in ("acausal_posterior", "causal_posterior", "acausal_state_probabilities"):
        np.testing.assert_array_equal(back[name].values, res[name].values)
    assert float(back.marginal_log_likelihood) == float(res.marginal_log_likelihood)
    np.testing.assert_array_equal(back.is_interior.values, decoding.is_interior.values)
    assert back.attrs["xhmm_config"] == res.attrs["xhmm_config"]


def test_uint16_is_cf_packed_and_small(tmp_path, decoding):
    f32 = _smooth(decoding)
    q = _smooth(decoding, quantize_posteriors=True)
    p32 = xhmm.save_results(f32, tmp_path / "f32.nc")
    p16 = xhmm.save_results(q, tmp_path / "u16.nc")
    with h5py.File(p16) as f:
        var = f["acausal_posterior"]
        assert var.dtype == np.uint16
        assert var.attrs["_FillValue"] == 65535
        assert np.isclose(var.attrs["scale_factor"], 1 / 65534)
        assert var.compression == "gzip" and var.shuffle
        assert var.chunks is not None
    back = xr.open_dataset(p16, engine="h5netcdf")
    assert back.acausal_posterior.dtype == np.float32
    # quantisation bound: half a step of 1/65534, plus float32 rounding
    err = np.nanmax(np.abs(back.acausal_posterior.values - f32.acausal_posterior.values))
    assert err <= 0.5 / 65534 + 1e-6
    mask = decoding.is_interior.values
    assert np.isnan(back.acausal_posterior.values[:, ~mask]).all()
    raw = f32.acausal_posterior.size * 4 * 2  # causal + acausal as raw float32
    size16 = p16.stat().st_size
    assert size16 <= 0.3 * raw, (size16, raw)
    # lossless float32 compresses far less; recorded, not asserted tight
    assert p32.stat().st_size > size16


def test_float16_kept_as_float16(tmp_path, decoding):
    res = _smooth(decoding, posterior_dtype="float16")
    path = xhmm.save_results(res, tmp_path / "h.nc")
    with h5py.File(path) as f:
        assert f["acausal_posterior"].dtype == np.float16
    back = xhmm.open_results(path)
    np.testing.assert_array_equal(back.acausal_posterior.values.astype(np.float32),
                                  res.acausal_posterior.values)


def test_hdf5_chunks_tile_dask_blocks(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(0), 300, 6)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, time_chunks=120, lazy=True)
    path = xhmm.save_results(res, tmp_path / "c.nc")
    with h5py.File(path) as f:
        rows = f["acausal_posterior"].chunks[0]
    assert 120 % rows == 0
    path2 = xhmm.save_results(res, tmp_path / "c2.nc", time_chunk=50)
    with h5py.File(path2) as f:
        assert f["acausal_posterior"].chunks == (50, 6)
    np.testing.assert_array_equal(xhmm.open_results(path2).acausal_posterior.values,
                                  res.acausal_posterior.values)


def test_compute_false_returns_delayed(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(1), 50, 4)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0)
    target = tmp_path / "later.nc"
    delayed = xhmm.save_results(res, target, compute=False)
    assert not target.exists()
    assert dask.is_dask_collection(delayed)
    assert delayed.compute() == target and target.exists()


def test_failed_save_leaves_nothing(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(2), 60, 4)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, time_chunks=20, lazy=True)

    def boom(block, block_info=None):
        if block_info[None]["chunk-location"][0] == 2:
            raise RuntimeError("disk vanished")
        return block

    broken = res.copy()
    broken["acausal_posterior"] = res.acausal_posterior.copy(
        data=res.acausal_posterior.data.map_blocks(boom, dtype=np.float32))
    with pytest.raises(RuntimeError, match="disk vanished"):
        xhmm.save_results(broken, tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_overwrite(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(3), 20, 3)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0)
    path = tmp_path / "r.nc"
    path.write_text("not a result")
    with pytest.raises(xhmm.StorageError, match="overwrite=True"):
        xhmm.save_results(res, path)
    with pytest.raises(xhmm.StorageError, match="not a results file"):
        xhmm.save_results(res, path, overwrite=True)  # xhmm did not write it
    assert path.read_text() == "not a result"
    path.unlink()
    xhmm.save_results(res, path)
    xhmm.save_results(res, path, overwrite=True)
    assert xhmm.open_results(path).acausal_posterior.shape == (20, 3)


def test_bad_save_arguments(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(4), 10, 3)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0)
    with pytest.raises(xhmm.StorageError, match="engine"):
        xhmm.save_results(res, tmp_path / "a.nc", engine="zarr")
    with pytest.raises(xhmm.StorageError, match="complevel"):
        xhmm.save_results(res, tmp_path / "a.nc", complevel=11)
    with pytest.raises(xhmm.StorageError, match="does not exist"):
        xhmm.save_results(res, tmp_path / "nope" / "a.nc")
    with pytest.raises(xhmm.StorageError, match="no results file"):
        xhmm.open_results(tmp_path / "missing.nc")


def test_netcdf4_engine_if_installed(tmp_path):
    pytest.importorskip("netCDF4")
    ll, A, p0 = random_model(np.random.default_rng(5), 30, 4)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, quantize_posteriors=True)
    path = xhmm.save_results(res, tmp_path / "n.nc", engine="netcdf4")
    back = xr.open_dataset(path, engine="netcdf4")
    assert back.acausal_posterior.dtype == np.float32
    np.testing.assert_allclose(back.acausal_posterior.values,
                               res.acausal_posterior.values, atol=1e-6)
