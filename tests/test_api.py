"""The public functions take any dim and variable names and give them back.

Every method (``xhmm.smooth``, ``filter``, ``map_estimate``,
``most_likely_sequence``, ``fit``) on a Dataset, a DataArray and a NumPy
array with dims ``("t", "bin")`` or ``("trial", "t", "bin")`` and a
log-likelihood variable named ``ll`` gives the canonical-name result with
the caller's names; the accessors are these functions.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.transitions import Blocks, RandomWalk, Uniform, stored_transition

N_BINS = 8
LABELS = np.repeat(["cont", "frag"], N_BINS // 2)
CANONICAL = {"t": "time", "bin": "state_bins", "trial": "sequence"}


def _blocks() -> Blocks:
    centers = np.arange(N_BINS // 2, dtype=float)[:, None]
    return Blocks([[0.9, 0.1], [0.2, 0.8]],
                  {("cont", "cont"): RandomWalk(1.5, centers), ("cont", "frag"): Uniform(),
                   ("frag", "cont"): Uniform(), ("frag", "frag"): Uniform()})


def _canonical_dataset(sequences: bool) -> xr.Dataset:
    rng = np.random.default_rng(3)
    shape = (3, 40, N_BINS) if sequences else (40, N_BINS)
    dims = ("sequence", "time", "state_bins") if sequences else ("time", "state_bins")
    ll = rng.normal(size=shape) * 2
    return xr.Dataset({"log_likelihood": (dims, ll)},
                      coords={"time": np.arange(40.0) / 10,
                              "state": ("state_bins", LABELS),
                              "position": ("state_bins", np.tile(np.arange(4.0), 2))})


def _renamed(ds: xr.Dataset) -> xr.Dataset:
    names = {k: v for k, v in {"log_likelihood": "ll", "time": "t", "state_bins": "bin",
                               "sequence": "trial"}.items() if k in ds.variables or k in ds.dims}
    return ds.rename(names)


METHODS = ["smooth", "filter", "map_estimate", "most_likely_sequence", "sample_paths", "fit"]
P0 = np.full(N_BINS, 1 / N_BINS)
OPTIONS = {"progress": False, "chunk_size": 16, "compute_dtype": "float64",
           "lazy_expand": False}


def _call(method: str, data, **kwargs) -> xr.Dataset:
    extra = {"fit": {"max_iter": 2}, "sample_paths": {"n_samples": 5, "seed": 0}}.get(method, {})
    return getattr(xhmm, method)(data, _blocks(), P0, **OPTIONS, **extra, **kwargs)


def _same(got: xr.Dataset, expected: xr.Dataset) -> None:
    back = expected.rename({v: k for k, v in CANONICAL.items() if v in expected.dims})
    xr.testing.assert_allclose(got.drop_attrs(), back.drop_attrs())


@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_renamed_dims_and_variable_on_a_dataset_a_dataarray_and_an_array(method, sequences):
    ds = _canonical_dataset(sequences)
    expected = _call(method, ds)
    renamed = _renamed(ds)
    naming = {"time_dim": "t", "state_dim": "bin", "sequence_dim": "trial"}
    from_dataset = _call(method, renamed, log_likelihood="ll", **naming)
    _same(from_dataset, expected)
    assert "t" in from_dataset.dims or method == "fit"
    from_dataarray = _call(method, renamed["ll"], **naming)
    _same(from_dataarray, expected)
    array = ds.log_likelihood.values
    dims = ("trial", "t", "bin") if sequences else ("t", "bin")
    from_array = _call(method, array, dims=dims, state=LABELS,
                       **{k: v for k, v in naming.items() if k != "sequence_dim"},
                       sequence_dim="trial")
    no_coords = expected.drop_vars([c for c in ("time", "position") if c in expected.coords])
    no_coords = no_coords.drop_vars([v for v in no_coords.data_vars
                                     if v.endswith("_position")])
    _same(from_array.drop_vars([v for v in from_array.data_vars
                                if v.endswith("_position")]), no_coords)


def test_an_array_takes_the_default_dims():
    ds = _canonical_dataset(False)
    got = xhmm.smooth(ds.log_likelihood.values, _blocks(), P0, state=LABELS, **OPTIONS)
    assert got.acausal_posterior.dims == ("time", "state_bins")
    expected = xhmm.smooth(ds, _blocks(), P0, **OPTIONS)
    np.testing.assert_allclose(got.acausal_posterior, expected.acausal_posterior)
    many = xhmm.smooth(np.stack([ds.log_likelihood.values] * 2), _blocks(), P0,
                       state=LABELS, **OPTIONS)
    assert many.acausal_posterior.dims == ("sequence", "time", "state_bins")


def test_variables_by_name_and_arrays_by_keyword():
    ds = _canonical_dataset(False)
    dense = xhmm.transitions.to_dense(_blocks(), ds)
    mask = np.ones(N_BINS, bool)
    named = _renamed(ds).assign(A=(("from", "to"), dense), p0=("bin", P0),
                                gap=("t", np.arange(40) % 7 == 0))
    named = named.assign_coords(inside=("bin", mask)).rename({"state": "label"})
    got = xhmm.smooth(named, "A", "p0", is_missing="gap", is_interior="inside",
                      state="label", log_likelihood="ll", time_dim="t", state_dim="bin",
                      **OPTIONS)
    expected = xhmm.smooth(ds.assign_coords(is_interior=("state_bins", mask)), dense, P0,
                           is_missing=np.arange(40) % 7 == 0, **OPTIONS)
    assert {"label", "inside", "t"} <= set(got.variables) and "bin" in got.dims
    expected = expected.rename(time="t", state_bins="bin", state="label", is_interior="inside")
    xr.testing.assert_allclose(got.drop_attrs(), expected.drop_attrs())


def test_accessors_are_the_functions():
    ds = _renamed(_canonical_dataset(False))
    naming = {"time_dim": "t", "state_dim": "bin"}
    got = ds.hmm.most_likely_sequence(_blocks(), P0, log_likelihood="ll", **naming, **OPTIONS)
    from_da = ds.ll.hmm.most_likely_sequence(_blocks(), P0, **naming, **OPTIONS)
    expected = xhmm.most_likely_sequence(ds, _blocks(), P0, log_likelihood="ll", **naming,
                                         **OPTIONS)
    xr.testing.assert_identical(got, expected)
    xr.testing.assert_identical(from_da, expected)
    assert xr.Dataset.hmm.smooth.__doc__ == xhmm.smooth.__doc__


def test_names_that_are_not_there_are_errors_naming_them():
    ds = _renamed(_canonical_dataset(False))
    with pytest.raises(xhmm.InputError, match="'log_likelihood'.*found: ll .pass log_likelihood="):
        xhmm.smooth(ds, _blocks(), P0)
    with pytest.raises(xhmm.DimensionError, match="missing 'time', 'state_bins'.*time_dim="):
        xhmm.smooth(ds, _blocks(), P0, log_likelihood="ll")
    with pytest.raises(xhmm.InputError, match="is_missing='gap' names no variable"):
        xhmm.smooth(ds, _blocks(), P0, log_likelihood="ll", time_dim="t", state_dim="bin",
                    is_missing="gap")
    with pytest.raises(xhmm.DimensionError, match="unsupported extra dim.*'trial'"):
        xhmm.smooth(ds.ll.expand_dims(trial=2), _blocks(), P0, time_dim="t",
                    state_dim="bin")
    clash = ds.assign_coords(time=("t", np.arange(40)))
    with pytest.raises(xhmm.InputError, match="'t' is to be read as 'time'"):
        xhmm.smooth(clash, _blocks(), P0, log_likelihood="ll", time_dim="t",
                    state_dim="bin")


def test_default_dim_names_suggest_dims():
    da = xr.DataArray(np.zeros((5, 3)))
    with pytest.raises(xhmm.DimensionError,
                       match=r"dims=\('time', 'state_bins'\)"):
        xhmm.smooth(da, np.full((3, 3), 1 / 3), np.full(3, 1 / 3))
    with pytest.raises(xhmm.DimensionError, match="4 dims"):
        xhmm.smooth(np.zeros((2, 2, 2, 2)), np.eye(2), [0.5, 0.5])
    with pytest.raises(xhmm.InputError, match="dims= names the dims of an array"):
        xhmm.smooth(da.to_dataset(name="log_likelihood"), np.eye(3), np.full(3, 1 / 3),
                    dims=("time", "state_bins"))
    got = xhmm.smooth(da, np.full((3, 3), 1 / 3), np.full(3, 1 / 3),
                      dims=("time", "state_bins"), **OPTIONS)
    assert got.acausal_posterior.dims == ("time", "state_bins")


def test_the_usage_example_of_names_runs():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "usage.md").read_text()
    section = text[text.index("## The functions and the accessors"):]
    code = next(block.split("```")[0] for block in section.split("```python")[1:]
                if "trials" in block)
    exec(compile(code, "docs/usage.md", "exec"), {})


@pytest.mark.parametrize("sequences", [False, True])
def test_one_naming_scheme_for_decoded_bins(sequences):
    ds = _canonical_dataset(sequences)
    est = _call("map_estimate", ds)
    path = _call("most_likely_sequence", ds)
    for prefix, res in (("map", est), ("most_likely", path)):
        assert {f"{prefix}_state_bin", f"{prefix}_state", f"{prefix}_position"} <= set(res)
        index = res[f"{prefix}_state_bin"].values
        np.testing.assert_array_equal(res[f"{prefix}_state"].values,
                                      np.where(index >= 0, LABELS[index], ""))
    assert {"map_state_bin", "map_state", "map_position"} <= set(
        _call("filter", ds, emit_map=True))


@pytest.mark.parametrize("method", ["map_estimate", "most_likely_sequence", "fit"])
def test_save_and_open_round_trip_every_result(method, tmp_path):
    ds = _renamed(_canonical_dataset(False))
    naming = {"log_likelihood": "ll", "time_dim": "t", "state_dim": "bin"}
    res = _call(method, ds, **naming)
    xhmm.save_results(res, tmp_path / f"{method}.nc")
    again = xhmm.open_results(tmp_path / f"{method}.nc").compute()
    xr.testing.assert_identical(again.drop_attrs(), res.compute().drop_attrs())
    if method == "fit":
        fitted = stored_transition(again)
        assert isinstance(fitted, Blocks)
        from_file = xhmm.smooth(ds, fitted, again.initial, **naming, **OPTIONS)
        direct = xhmm.smooth(ds, stored_transition(res), res.initial, **naming, **OPTIONS)
        np.testing.assert_array_equal(from_file.acausal_posterior, direct.acausal_posterior)
        assert again.initial.dims == ("bin",)


def test_the_api_reference_table_is_the_public_surface():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "usage.md").read_text()
    section = text[text.index("## API reference"):]
    listed = re.findall(r"^\| `(xhmm\.[\w.]+)` \|", section, re.M)
    public = [f"xhmm.{name}" for name in xhmm.__all__]
    public += [f"xhmm.transitions.{name}" for name in xhmm.transitions.__all__]
    assert sorted(listed) == sorted(public)
    assert len(listed) == len(set(listed))
    internals = {"plan_blocks", "plan_transition", "StructuredTransition", "SPEC_ATTR",
                 "analyse_dense"}
    assert not internals & set(xhmm.transitions.__all__)
    assert all(hasattr(xhmm, name) for name in xhmm.__all__)


def test_import_xhmm_reaches_plot_without_matplotlib():
    import subprocess
    import sys

    script = ("import sys, xhmm; assert callable(xhmm.plot.plot_posterior); "
              "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("lazy", [True, False])
def test_float64_posteriors_keep_a_float64_run(lazy, tmp_path):
    from conftest import reference_forward_backward

    ds = _canonical_dataset(False)
    dense = xhmm.transitions.to_dense(_blocks(), ds)
    res = xhmm.smooth(ds, dense, P0, compute_dtype="float64", posterior_dtype="float64",
                      lazy_expand=lazy, progress=False, chunk_size=16)
    assert res.acausal_posterior.dtype == np.float64
    _, smoothed, _ = reference_forward_backward(ds.log_likelihood.values, dense, P0)
    np.testing.assert_allclose(res.acausal_posterior.values, smoothed, rtol=0, atol=1e-12)
    xhmm.save_results(res, tmp_path / "f64.nc")
    again = xhmm.open_results(tmp_path / "f64.nc")
    assert again.acausal_posterior.dtype == np.float64
    np.testing.assert_array_equal(again.acausal_posterior.values, res.acausal_posterior.values)


def test_a_time_varying_discrete_transition_along_the_callers_time_dim():
    ds = _canonical_dataset(False)
    rng = np.random.default_rng(4)
    discrete = rng.random((40, 2, 2)) + np.eye(2)
    discrete /= discrete.sum(axis=-1, keepdims=True)
    labels = {"from_state": ["cont", "frag"], "to_state": ["cont", "frag"]}

    def blocks(time_dim):
        return Blocks(xr.DataArray(discrete, dims=(time_dim, "from_state", "to_state"),
                                   coords=labels), _blocks().blocks)

    got = xhmm.smooth(_renamed(ds), blocks("t"), P0, log_likelihood="ll", time_dim="t",
                      state_dim="bin", **OPTIONS)
    expected = xhmm.smooth(ds, blocks("time"), P0, **OPTIONS)
    np.testing.assert_allclose(got.acausal_posterior.values,
                               expected.acausal_posterior.values, rtol=0, atol=1e-12)


def test_save_results_chunks_along_the_callers_time_dim(tmp_path):
    import h5py

    ds = _renamed(_canonical_dataset(False))
    res = xhmm.smooth(ds, _blocks(), P0, log_likelihood="ll", time_dim="t", state_dim="bin",
                      **OPTIONS)
    assert res.attrs["xhmm_time_dim"] == "t"
    xhmm.save_results(res, tmp_path / "r.nc", time_chunk=8)
    with h5py.File(tmp_path / "r.nc") as f:
        assert f["acausal_posterior"].chunks == (8, N_BINS)
    xr.testing.assert_identical(xhmm.open_results(tmp_path / "r.nc").compute().drop_attrs(),
                                res.drop_attrs())


def test_the_likelihood_cache_recipe_of_migrating_runs(tmp_path, monkeypatch):
    """MIGRATING.md's cache: a detector's lazy likelihood saved once, decoded from disk."""
    import dask.array as da
    from doc_examples import section_code
    from fake_detector import FakeNonLocalDetector

    monkeypatch.chdir(tmp_path)
    det = FakeNonLocalDetector(n_dims=2, movement_mean=0.5)
    model = xhmm.transitions.from_non_local_detector(det)
    time = np.arange(60) / 500.0
    ds = model.dataset(da.from_array(det.compute_log_likelihood(time), chunks=(20, -1)), time)
    is_missing = np.zeros(time.size, bool)
    code = next(block for block in section_code("MIGRATING.md", "The call")
                if "save_results" in block)
    namespace = dict(xhmm=xhmm, ds=ds, model=model, is_missing=is_missing)
    exec(compile(code, "MIGRATING.md", "exec"), namespace)
    assert namespace["cached"].indexes["state_bins"].names == ds.indexes["state_bins"].names
    direct = xhmm.smooth(ds, model.transition, model.initial, progress=False)
    np.testing.assert_array_equal(namespace["res"].acausal_posterior.values,
                                  direct.acausal_posterior.values)


def test_a_detectors_bin_labels_are_carried_to_the_results():
    from fake_detector import FakeNonLocalDetector

    det = FakeNonLocalDetector(n_dims=2, movement_mean=0.5)
    model = xhmm.transitions.from_non_local_detector(det)
    time = np.arange(30) / 500.0
    ll = det.compute_log_likelihood(time)  # interior bins only, as nld returns it
    res = xhmm.smooth(model.dataset(ll, time), model.transition, model.initial,
                      progress=False)
    np.testing.assert_array_equal(res.state_ind.values, det.state_ind_)
    names = [m.environment_name for m in det.observation_models]
    np.testing.assert_array_equal(res.environments.values,
                                  np.array(names)[det.state_ind_])
    assert res.encoding_groups.dims == ("state_bins",)


@pytest.mark.parametrize("sequences", [False, True])
def test_open_run_gives_back_the_callers_names(sequences, tmp_path):
    import json

    data = _renamed(_canonical_dataset(sequences)).rename({"state": "kind"})
    res = xhmm.smooth(data, _blocks(), P0, log_likelihood="ll", time_dim="t", state_dim="bin",
                      sequence_dim="trial", state="kind", progress=False, chunk_size=16,
                      use_memmap=True, memmap_dir=tmp_path / "run")
    folder = tmp_path / "run" / "batch-0000" if sequences else tmp_path / "run"
    back = xhmm.open_run(folder)
    assert back.acausal_posterior.dims == res.acausal_posterior.dims
    assert back.acausal_posterior.dims[-2:] == ("t", "bin")
    assert list(back.states.values) == ["cont", "frag"]
    assert back.attrs["xhmm_time_dim"] == "t"
    np.testing.assert_array_equal(back.acausal_posterior.values, res.acausal_posterior.values)
    # a folder written before the names were stored opens with the defaults
    manifest = folder / "manifest.json"
    text = json.loads(manifest.read_text())
    del text["metadata"]["names"]
    manifest.write_text(json.dumps(text))
    assert xhmm.open_run(folder).acausal_posterior.dims[-2:] == ("time", "state_bins")
