"""The synthetic decoding problem: structure, validity of the model, determinism."""

import dask.array as da
import numpy as np
import pytest

import xhmm
from xhmm.synthetic import STATES, simulate_decoding


@pytest.fixture(scope="module")
def ds():
    return simulate_decoding(4.0, seed=3)


def test_layout(ds):
    n_pos = ds.sizes["state_bins"] // 2
    assert ds.sizes["time"] == 2_000  # 4 s at 2 ms
    assert ds.log_likelihood.dims == ("time", "state_bins")
    assert ds.log_likelihood.dtype == np.float32
    assert list(ds.state.values[[0, n_pos]]) == list(STATES)
    # both states share the position grid and the track mask
    np.testing.assert_array_equal(ds.position.values[:n_pos], ds.position.values[n_pos:])
    np.testing.assert_array_equal(ds.is_interior.values[:n_pos], ds.is_interior.values[n_pos:])
    # default track: 3 segments of 80, 60, 60 cm with two 10 cm gaps, 2 cm bins
    assert int(ds.is_interior.sum()) == 2 * 100
    assert (~ds.is_interior.values[:n_pos]).sum() == 10
    assert ds.attrs["track_length_cm"] == 200.0


def test_likelihood_nan_exactly_on_exterior(ds):
    ll = ds.log_likelihood.values
    interior = ds.is_interior.values
    assert np.isnan(ll[:, ~interior]).all()
    assert np.isfinite(ll[:, interior]).all()
    n_pos = interior.size // 2
    np.testing.assert_array_equal(ll[:, :n_pos], ll[:, n_pos:])  # shared likelihood


def test_transition_and_initial_are_valid(ds):
    A = ds.transition.values
    interior = ds.is_interior.values
    np.testing.assert_allclose(A[interior].sum(axis=1), 1.0, atol=1e-12)
    assert (A >= 0).all()
    assert not A[~interior].any() and not A[:, ~interior].any()
    p0 = ds.initial.values
    assert p0.sum() == pytest.approx(1.0, abs=1e-12)
    assert not p0[~interior].any()
    # sticky discrete transition: probability of staying continuous is 0.998
    n_pos = interior.size // 2
    assert A[0, :n_pos].sum() == pytest.approx(0.998, abs=1e-12)


def test_truth_lies_on_the_track(ds):
    truth = ds.true_position.values
    n_pos = ds.sizes["state_bins"] // 2
    centers = ds.position.values[:n_pos]
    nearest = np.abs(truth[:, None] - centers[None, :]).argmin(axis=1)
    assert ds.is_interior.values[nearest].all()
    assert set(np.unique(ds.true_state.values)) <= set(STATES)
    assert ds.spikes.dtype == np.uint8 and ds.spikes.sum() > 0


def test_seed_determinism():
    a = simulate_decoding(1.0, seed=5)
    b = simulate_decoding(1.0, seed=5)
    c = simulate_decoding(1.0, seed=6)
    np.testing.assert_array_equal(a.spikes.values, b.spikes.values)
    assert not np.array_equal(a.spikes.values, c.spikes.values)


def test_time_chunk_gives_the_same_lazy_likelihood(ds):
    lazy = simulate_decoding(4.0, seed=3, time_chunk=300)
    assert isinstance(lazy.log_likelihood.data, da.Array)
    assert lazy.log_likelihood.data.chunks[0][0] == 300
    np.testing.assert_array_equal(lazy.log_likelihood.values, ds.log_likelihood.values)


def test_smooths_directly_and_decodes(ds):
    res = ds.hmm.smooth(emit_map=True, progress=False, chunk_size=512)
    error = np.abs(res.map_position.values - ds.true_position.values)
    # place cells at 2 ms bins: the median error is a few 2 cm bins
    assert np.median(error) < 10.0
    assert res.acausal_state_probabilities.sizes["states"] == 2


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"duration": 0.0}, "duration"),
        ({"dt": -1.0}, "dt"),
        ({"n_cells": 0}, "n_cells"),
        ({"gap": -2.0}, "gap"),
        ({"segment_lengths": (10.0, -1.0)}, "segment_lengths"),
        ({"stay_probability": (1.0, 0.5)}, "stay_probability"),
        ({"time_chunk": 0}, "time_chunk"),
        ({"duration": 0.001}, "duration"),
    ],
)
def test_bad_parameters_are_named(kwargs, name):
    with pytest.raises(xhmm.ConfigError, match=name):
        simulate_decoding(**{"duration": 1.0, **kwargs})
