"""Config settings that used to be silent mistakes: memmap_dir alone, a filter keeping nothing."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xhmm

from conftest import NoCompute, make_dataset, random_model


@pytest.fixture
def model():
    ll, A, p0 = random_model(np.random.default_rng(0), 30, 4)
    return make_dataset(ll), A, p0


@pytest.mark.parametrize("given, expected", [
    ({}, False),
    ({"use_memmap": True}, True),
    ({"memmap_dir": "run"}, True),
    ({"use_memmap": True, "memmap_dir": "run"}, True),
])
def test_memmap_dir_turns_memmap_on(given, expected):
    assert xhmm.Config(**given).use_memmap is expected


def test_memmap_dir_with_use_memmap_false_is_an_error():
    with pytest.raises(xhmm.ConfigError, match="use_memmap=False but memmap_dir='run'"):
        xhmm.Config(use_memmap=False, memmap_dir="run")


def test_replace_follows_memmap_dir_unless_use_memmap_was_given():
    implied = xhmm.Config(memmap_dir="run")
    assert implied.replace(chunk_size=10).use_memmap is True
    assert implied.replace(memmap_dir=None).use_memmap is False
    assert xhmm.Config().replace(memmap_dir="run").use_memmap is True
    assert xhmm.Config(use_memmap=True).replace(memmap_dir=None).use_memmap is True
    with pytest.raises(xhmm.ConfigError, match="use_memmap=False"):
        xhmm.Config(use_memmap=False).replace(memmap_dir="run")


def test_json_round_trip_keeps_the_resolved_setting():
    config = xhmm.Config(memmap_dir="run")
    back = xhmm.Config.from_json(config.to_json())
    assert back == config and back.to_dict()["use_memmap"] is True


def test_chunk_size_defaults_to_auto_and_keeps_an_int():
    assert xhmm.Config().chunk_size == "auto"
    assert xhmm.Config(chunk_size=700).chunk_size == 700
    assert xhmm.Config.from_json(xhmm.Config().to_json()).chunk_size == "auto"


def test_memmap_dir_alone_writes_memmaps(model, tmp_path):
    ds, A, p0 = model
    res = ds.hmm.smooth(transition=A, initial=p0, memmap_dir=tmp_path / "run")
    assert (tmp_path / "run" / "acausal_posterior.dat").is_file()
    assert res.attrs["xhmm_memmap_dir"] == str(tmp_path / "run")


def _lazy(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign(log_likelihood=(ds.log_likelihood.dims,
                                     da.from_array(ds.log_likelihood.values, chunks=10)))


def _with_sequences(ds: xr.Dataset) -> xr.Dataset:
    return xr.concat([ds, ds], dim="sequence").assign_coords(sequence=["a", "b"])


@pytest.mark.parametrize("sequences", [False, True])
def test_filter_keeping_nothing_fails_before_any_work(model, sequences):
    ds, A, p0 = model
    ds = _lazy(_with_sequences(ds) if sequences else ds)
    with NoCompute(), pytest.raises(xhmm.ConfigError,
                                    match="persist_causal=False would keep nothing"):
        ds.hmm.filter(transition=A, initial=p0, persist_causal=False)


def test_filter_keeping_nothing_with_unused_state_labels(model):
    ds, A, p0 = model
    ds = ds.assign_coords(state=("state_bins", ["a", "a", "b", "b"]))
    with pytest.raises(xhmm.ConfigError, match="would keep nothing"):
        ds.hmm.filter(transition=A, initial=p0, persist_causal=False,
                      emit_state_aggregates=False)


@pytest.mark.parametrize("options, kept", [
    ({"emit_map": True}, "map_state_bin"),
    ({"emit_entropy": True}, "entropy"),
    ({"states": True}, "causal_state_probabilities"),
    ({"config": xhmm.Config(persist_causal=False), "emit_map": True}, "map_state_bin"),
])
def test_filter_without_causal_posterior_keeping_a_summary(model, options, kept):
    ds, A, p0 = model
    options = {"persist_causal": False, **options}
    if options.pop("states", False):
        ds = ds.assign_coords(state=("state_bins", ["a", "a", "b", "b"]))
    res = ds.hmm.filter(transition=A, initial=p0, **options)
    assert kept in res and "causal_posterior" not in res


def test_each_result_records_only_its_own_config_fields(model, tmp_path):
    """A filter result's ``xhmm_config`` leaves out the smoother-only fields, fresh and
    reopened with ``open_run``; a smooth result keeps them."""
    import json

    ds, A, p0 = model
    smoother_only = set(xhmm.Config.field_names()) - set(xhmm.Config.field_names("filter"))
    assert smoother_only == {"emit_transition_counts", "emit_step_transition_counts"}
    filtered = ds.hmm.filter(transition=A, initial=p0, memmap_dir=tmp_path / "f")
    smoothed = ds.hmm.smooth(transition=A, initial=p0, memmap_dir=tmp_path / "s")
    for result, kept in [(filtered, False), (xhmm.open_run(tmp_path / "f"), False),
                         (smoothed, True), (xhmm.open_run(tmp_path / "s"), True)]:
        recorded = set(json.loads(result.attrs["xhmm_config"]))
        assert (smoother_only <= recorded) is kept
        assert recorded | smoother_only == set(xhmm.Config.field_names())
