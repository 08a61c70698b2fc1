"""Selections, unstacking and Zarr output of results, lazy or reopened.

Every selection idiom in the fenced Python blocks of README.md and
docs/usage.md is executed on fresh lazy results, on results of dask input and
on results reopened from NetCDF and Zarr, and compared with the same idiom on
an eager (NumPy) result.
"""

from __future__ import annotations

import importlib.util
import ast
import re
import sys
import threading
import time

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xhmm
from xhmm.frontend.coords import numpy_coords
from xhmm.synthetic import simulate_decoding

from conftest import make_dataset, random_model
from doc_examples import code_blocks

DOC_PAGES = ("README.md", "docs/usage.md")
HAS_ZARR = importlib.util.find_spec("zarr") is not None
needs_zarr = pytest.mark.skipif(not HAS_ZARR, reason="zarr is not installed")
UINT16_STEP = 1 / 65534


def doc_idioms() -> list[str]:
    """The selection expressions of the docs' Python blocks, as written."""
    idioms = []
    for page in DOC_PAGES:
        for block in code_blocks(page):
            if block.language != "python":
                continue
            for line in block.code.splitlines():
                code = line.split("#")[0].strip()
                if re.search(r"\.(sel|isel|groupby)\(|unstack", code):
                    idioms.append(re.sub(r"^\w+ = ", "", code))
    return [idiom for idiom in idioms if _names(idiom) <= RESULT_NAMES]


#: The names an idiom may use to be run here: a result ``res`` and builtins.
RESULT_NAMES = {"res", "xhmm", "slice"}


def _names(idiom: str) -> set[str]:
    """The variable names an expression reads (``steps`` in ``res.isel(time=steps)``)."""
    return {node.id for node in ast.walk(ast.parse(idiom)) if isinstance(node, ast.Name)}


#: Idioms that need a MultiIndex over state_bins.
MULTIINDEX_ONLY = ("unstack", "sel(state=")
LAYOUTS = ("flat", "multiindex")
VARIANTS = (
    "fresh", "dask input", "reopened netcdf",
    pytest.param("reopened zarr", marks=needs_zarr),
)


def _problem(layout: str) -> xr.Dataset:
    """240 steps of 0.5 s (time up to 119.5 s, as the docs' windows need)."""
    ds = simulate_decoding(duration=120.0, dt=0.5, seed=3)
    ds = ds[["log_likelihood", "transition", "initial", "true_state"]]
    ds = ds.set_coords("true_state")  # a 1-D coordinate along time
    if layout == "multiindex":
        index = pd.MultiIndex.from_arrays(
            [ds.state.values, ds.position.values], names=["state", "position"]
        )
        ds = ds.drop_vars(["state", "position"]).assign_coords(
            xr.Coordinates.from_pandas_multiindex(index, "state_bins")
        )
    return ds


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{(layout, variant): result} and {layout: eager result}, with the HPD summaries."""
    folder = tmp_path_factory.mktemp("selections")
    out, eager = {}, {}
    for layout in LAYOUTS:
        ds = _problem(layout)
        eager[layout] = ds.hmm.smooth(lazy=False, emit_hpd=0.95)
        fresh = ds.hmm.smooth(lazy=True, time_chunks=60, emit_hpd=0.95)
        out[layout, "fresh"] = fresh
        out[layout, "dask input"] = ds.chunk(time=60).hmm.smooth(lazy=True, time_chunks=60,
                                                                  emit_hpd=0.95)
        nc = xhmm.save_results(fresh, folder / f"{layout}.nc")
        out[layout, "reopened netcdf"] = xhmm.open_results(nc)
        if HAS_ZARR:
            store = xhmm.save_results(fresh, folder / f"{layout}.zarr")
            out[layout, "reopened zarr"] = xhmm.open_results(store)
    return out, eager


def _computed(value):
    if isinstance(value, (xr.DataArray, xr.Dataset)):
        return value.compute()
    return np.asarray(value)


def test_docs_show_the_selection_idioms():
    idioms = doc_idioms()
    for expected in (
        'res.acausal_posterior.sel(state_bins=res.state == "continuous")',
        "res.acausal_posterior.isel(state_bins=res.is_interior)",
        "res.acausal_posterior.sel(state_bins=res.position < 10)",
        'res.acausal_posterior.groupby("state").sum()',
        "xhmm.unstack_bins(res.acausal_posterior)",
        'res.acausal_posterior.sel(state="continuous")',
    ):
        assert expected in idioms
    assert len(idioms) == len(set(idioms)) >= 10


IDIOM_CASES = [
    pytest.param(layout, idiom, id=f"{layout}-{idiom}")
    for layout in LAYOUTS
    for idiom in doc_idioms()
    if layout == "multiindex" or not any(part in idiom for part in MULTIINDEX_ONLY)
]


@pytest.mark.parametrize("layout, idiom", IDIOM_CASES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_doc_idiom_matches_eager(results, layout, variant, idiom):
    out, eager = results
    res = out[layout, variant]
    got = eval(idiom, {"res": res, "xhmm": xhmm})
    if "posterior" in idiom and not idiom.endswith(".values"):
        posterior = got if isinstance(got, xr.DataArray) else got.acausal_posterior
        assert dask.is_dask_collection(posterior), "the selection loaded the posterior"
    want = _computed(eval(idiom, {"res": eager[layout], "xhmm": xhmm}))
    got = _computed(got)
    if isinstance(want, np.ndarray):
        assert want.size > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    else:
        assert 0 not in want.sizes.values()
        xr.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_small_coords_are_numpy_and_posteriors_lazy(results, layout, variant):
    res = results[0][layout, variant]
    one_d = [name for name, coord in res.coords.items() if coord.ndim == 1]
    assert {"time", "state", "position", "is_interior", "true_state"} <= set(one_d)
    for name in one_d:
        assert isinstance(res[name].data, np.ndarray), name
    assert dask.is_dask_collection(res.acausal_posterior)
    assert dask.is_dask_collection(res.causal_posterior)


def test_numpy_coords_leaves_its_argument_and_2d_coords_alone():
    lazy = xr.Dataset(
        coords={
            "mask": ("bins", da.from_array(np.array([True, False, True]))),
            "grid": (("t", "bins"), da.zeros((2, 3))),
        }
    )
    coords = numpy_coords(lazy)
    assert isinstance(coords["mask"].data, np.ndarray)
    np.testing.assert_array_equal(coords["mask"].values, [True, False, True])
    assert dask.is_dask_collection(coords["grid"])
    assert dask.is_dask_collection(lazy.mask)


# -- unstacking bins whose level value is NaN ------------------------------


def _four_state_layout(n: int = 5) -> xr.Dataset:
    """Local and No-Spike (one bin each, position NaN), Continuous and Fragmented."""
    states = ["Local", "No-Spike"] + ["Continuous"] * n + ["Fragmented"] * n
    positions = np.concatenate([[np.nan, np.nan], np.arange(n) * 2.0, np.arange(n) * 2.0])
    ll, A, p0 = random_model(np.random.default_rng(11), 80, len(states))
    index = pd.MultiIndex.from_arrays([states, positions], names=["state", "position"])
    ds = make_dataset(ll).assign_coords(
        xr.Coordinates.from_pandas_multiindex(index, "state_bins")
    )
    return ds.assign(transition=(("from", "to"), A), initial=("state_bins", p0))


@pytest.mark.parametrize("lazy", [True, False])
def test_unstack_bins_keeps_bins_with_nan_position(lazy):
    res = _four_state_layout().hmm.smooth(lazy=lazy, time_chunks=30)
    unstacked = xhmm.unstack_bins(res.acausal_posterior)
    assert dask.is_dask_collection(unstacked) == lazy
    assert unstacked.dims == ("time", "state", "position")
    assert np.isnan(unstacked.position.values[-1])
    per_state = unstacked.sum("position").compute()
    truth = res.acausal_state_probabilities
    for state in ("Local", "No-Spike", "Continuous", "Fragmented"):
        np.testing.assert_allclose(per_state.sel(state=state).values,
                                   truth.sel(states=state).values, rtol=0, atol=1e-6)
    assert float(truth.sel(states="Local").max()) > 0.01  # the test can tell
    eager = res.acausal_posterior.values
    local = unstacked.sel(state="Local").isel(position=-1)
    np.testing.assert_array_equal(local.values, eager[:, 0])
    continuous = unstacked.sel(state="Continuous").isel(position=slice(0, -1))
    np.testing.assert_array_equal(continuous.values, eager[:, 2:7])
    assert np.isnan(unstacked.sel(state="Continuous").isel(position=-1).values).all()


def test_unstack_bins_of_a_reopened_dataset(tmp_path):
    res = _four_state_layout().hmm.smooth(lazy=True, time_chunks=30)
    back = xhmm.open_results(xhmm.save_results(res, tmp_path / "r.nc"))
    unstacked = xhmm.unstack_bins(back)
    np.testing.assert_allclose(
        unstacked.acausal_posterior.sum("position").sel(state="No-Spike").values,
        res.acausal_state_probabilities.sel(states="No-Spike").values, atol=1e-6,
    )


def test_unstack_bins_needs_a_multiindex():
    ll, A, p0 = random_model(np.random.default_rng(12), 10, 3)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0)
    with pytest.raises(xhmm.DimensionError, match="'state_bins' has no MultiIndex"):
        xhmm.unstack_bins(res.acausal_posterior)


# -- Zarr output -----------------------------------------------------------


@pytest.fixture(scope="module")
def decoding():
    return _problem("multiindex")


@needs_zarr
@pytest.mark.parametrize("storage", ["float32", "uint16"])
def test_zarr_round_trip(tmp_path, decoding, storage):
    res = decoding.hmm.smooth(lazy=True, time_chunks=60, posterior_dtype=storage)
    reference = decoding.hmm.smooth(lazy=False)
    store = xhmm.save_results(res, tmp_path / "r.zarr")
    assert store == tmp_path / "r.zarr" and store.is_dir()
    back = xhmm.open_results(store)
    assert isinstance(back.indexes["state_bins"], pd.MultiIndex)
    assert back.acausal_posterior.dtype == np.float32
    assert dask.is_dask_collection(back.acausal_posterior)
    atol = 0.5 * UINT16_STEP + 1e-7 if storage == "uint16" else 0
    for name in ("acausal_posterior", "causal_posterior"):
        np.testing.assert_allclose(back[name].values, reference[name].values,
                                   rtol=0, atol=atol)
    np.testing.assert_array_equal(back.acausal_state_probabilities.values,
                                  res.acausal_state_probabilities.values)
    assert float(back.marginal_log_likelihood) == float(res.marginal_log_likelihood)
    assert back.attrs["xhmm_config"] == res.attrs["xhmm_config"]


@needs_zarr
def test_plain_open_zarr_decodes_packed_uint16(tmp_path, decoding):
    import zarr

    res = decoding.hmm.smooth(lazy=True, time_chunks=60, quantize_posteriors=True)
    store = xhmm.save_results(res, tmp_path / "q.zarr")
    array = zarr.open_array(store / "acausal_posterior", mode="r")
    assert array.dtype == np.uint16
    assert array.chunks[0] < array.shape[0]
    assert array.compressors[0].codec_id == "blosc"
    assert array.fill_value == 65535
    assert np.isclose(array.attrs["scale_factor"], UINT16_STEP)
    plain = xr.open_zarr(store)
    post = plain.acausal_posterior
    assert np.issubdtype(post.dtype, np.floating)
    mask = decoding.is_interior.values
    values = post.values
    assert np.isnan(values[:, ~mask]).all() and not np.isnan(values[:, mask]).any()
    exact = decoding.hmm.smooth(lazy=False).acausal_posterior.values
    assert np.nanmax(np.abs(values - exact)) <= 0.5 * UINT16_STEP + 1e-7


@needs_zarr
def test_failed_zarr_save_leaves_nothing(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(13), 40, 4)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, time_chunks=20, lazy=True)
    started, failed = threading.Event(), threading.Event()

    def fail():
        started.wait(10)
        failed.set()
        raise RuntimeError("disk vanished")

    def finish_after_the_failure():
        started.set()
        failed.wait(10)
        time.sleep(0.2)
        return np.full((20, 4), 0.25, dtype=np.float32)

    # One block fails while the other is still being computed and written:
    # nothing that write leaves may outlive the clean-up.
    blocks = [da.from_delayed(dask.delayed(f)(), shape=(20, 4), dtype=np.float32)
              for f in (fail, finish_after_the_failure)]
    broken = res.assign(acausal_posterior=res.acausal_posterior.copy(
        data=da.concatenate(blocks)))
    with dask.config.set(num_workers=2), pytest.raises(RuntimeError, match="disk vanished"):
        xhmm.save_results(broken, tmp_path / "x.zarr")
    time.sleep(0.5)
    assert list(tmp_path.iterdir()) == []


@needs_zarr
def test_zarr_store_needs_overwrite(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(14), 20, 3)
    first = make_dataset(ll).hmm.smooth(transition=A, initial=p0)
    second = make_dataset(ll[::-1].copy()).hmm.smooth(transition=A, initial=p0)
    store = xhmm.save_results(first, tmp_path / "r.zarr")
    with pytest.raises(xhmm.StorageError, match="overwrite=True"):
        xhmm.save_results(second, store)
    np.testing.assert_array_equal(xhmm.open_results(store).acausal_posterior.values,
                                  first.acausal_posterior.values)
    xhmm.save_results(second, store, overwrite=True)
    np.testing.assert_array_equal(xhmm.open_results(store).acausal_posterior.values,
                                  second.acausal_posterior.values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]


@needs_zarr
def test_explicit_zarr_engine_and_suffix_mismatch(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(15), 20, 3)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0)
    store = xhmm.save_results(res, tmp_path / "results", engine="zarr")
    assert store.is_dir()
    np.testing.assert_array_equal(xhmm.open_results(store).acausal_posterior.values,
                                  res.acausal_posterior.values)
    with pytest.raises(xhmm.StorageError, match="engine='h5netcdf' does not match"):
        xhmm.save_results(res, tmp_path / "r.zarr", engine="h5netcdf")
    assert not (tmp_path / "r.zarr").exists()


def test_zarr_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    ll, A, p0 = random_model(np.random.default_rng(16), 20, 3)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0)
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr raises ImportError
    with pytest.raises(xhmm.MissingExtraError, match=r"needs the 'zarr' package.*xhmm\[zarr\]"):
        xhmm.save_results(res, tmp_path / "r.zarr")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.zarr").mkdir()
    with pytest.raises(xhmm.MissingExtraError, match="opening results as Zarr needs the 'zarr'"):
        xhmm.open_results(tmp_path / "old.zarr")
