"""``from_non_local_detector``: a fitted detector's model, run by xhmm.

Against :mod:`fake_detector`, which has a fitted 0.6.9 NonLocal detector's
attributes with its ``continuous_state_transitions_`` written from
non_local_detector's definitions. The transition must equal the detector's
own ``continuous[ix, ix] * discrete[si, si]`` to float64 rounding (``rtol =
1e-12``: sums of at most a few dozen terms), and the smoother the float64
reference run on that matrix (tolerances as in ``tests/test_golden.py``).
"""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest

from conftest import reference_forward_backward
from fake_detector import STATE_NAMES, FakeNonLocalDetector, nld_transition
from tolerances import F64_ATOL, F64_RTOL, mll_atol
from xhmm.errors import DimensionError, InputError
from xhmm.transitions import Dense, RandomWalk, Uniform, from_non_local_detector, to_dense

T = 40
F64 = {"compute_dtype": "float64", "posterior_out_dtype": "float64", "progress": False}


def _initial(det, mask):
    """The detector's interior initial, renormalised as xhmm does (it is float32)."""
    p0 = np.asarray(det.initial_conditions_, dtype=np.float64)[mask]
    return p0 / p0.sum()


def _inputs(det, n_time=T):
    time = np.arange(n_time) / 500
    return time, det.compute_log_likelihood(time, time, None, [])


@pytest.mark.parametrize("n_dims", [1, 2])
@pytest.mark.parametrize("movement_mean", [0.0, 1.7])
def test_transition_is_the_detectors(n_dims, movement_mean):
    det = FakeNonLocalDetector(n_dims=n_dims, movement_mean=movement_mean)
    model = from_non_local_detector(det)
    ds = model.dataset(*reversed(_inputs(det)))
    mask = model.is_interior
    dense = to_dense(model.transition, ds)
    np.testing.assert_allclose(dense[np.ix_(mask, mask)], nld_transition(det), rtol=1e-12,
                               atol=1e-15)
    walk = model.transition.blocks["Non-Local Continuous", "Non-Local Continuous"]
    assert isinstance(walk, RandomWalk)
    assert isinstance(model.transition.blocks["Local", "Non-Local Continuous"], Uniform)


def test_smoother_matches_the_reference_on_the_detectors_matrix():
    det = FakeNonLocalDetector(n_dims=2, movement_mean=0.5)
    model = from_non_local_detector(det)
    time, ll = _inputs(det)
    res = model.dataset(ll, time).hmm.smooth(transition=model.transition,
                                             initial=model.initial, chunk_size=16, **F64)
    ix = model.is_interior
    _, smoothed, mll = reference_forward_backward(ll, nld_transition(det), _initial(det, ix))
    np.testing.assert_allclose(res.acausal_posterior.values[:, ix], smoothed, rtol=F64_RTOL,
                               atol=F64_ATOL)
    assert np.isnan(res.acausal_posterior.values[:, ~ix]).all()
    assert abs(float(res.marginal_log_likelihood) - mll) <= mll_atol(ll, mll, 1e-12)
    assert json.loads(res.attrs["xhmm_transition"])["kind"] == "blocks"
    local = res.acausal_state_probabilities.sel(states="Local").values
    np.testing.assert_allclose(local, smoothed[:, 0], rtol=1e-6)


def test_unknown_block_falls_back_to_the_detectors_matrix_and_says_so():
    det = FakeNonLocalDetector(empirical=True)
    model = from_non_local_detector(det)
    block = model.transition.blocks["Non-Local Fragmented", "Non-Local Continuous"]
    assert isinstance(block, Dense)
    time, ll = _inputs(det)
    res = model.dataset(ll, time).hmm.smooth(transition=model.transition,
                                             initial=model.initial, **F64)
    plan = json.loads(res.attrs["xhmm_transition"])["blocks"]
    assert ("Non-Local Fragmented->Non-Local Continuous: dense 21x21 (the detector's "
            "EmpiricalMovement matrix)") in plan
    _, smoothed, _ = reference_forward_backward(ll, nld_transition(det),
                                                _initial(det, model.is_interior))
    np.testing.assert_allclose(res.acausal_posterior.values[:, model.is_interior], smoothed,
                               rtol=F64_RTOL, atol=F64_ATOL)


def test_euclidean_random_walk_declines_a_track_graph():
    """Distances along a track graph are not Euclidean: RandomWalk leaves it to another kind."""
    det = FakeNonLocalDetector()
    det.environments[0].track_graph = object()
    model = det.continuous_transition_types[2][2]
    n = det.environments[0].place_bin_centers_.shape[0]
    assert RandomWalk.from_non_local_detector(model, det, n, n) is None


def test_covariate_dependent_discrete_varies_in_time():
    det = FakeNonLocalDetector(n_time=T, seed=3)
    model = from_non_local_detector(det)
    time, ll = _inputs(det)
    ds = model.dataset(ll, time)
    mask = model.is_interior
    for t in (0, 17, T - 1):
        np.testing.assert_allclose(to_dense(model.transition, ds, t)[np.ix_(mask, mask)],
                                   nld_transition(det, t), rtol=1e-12, atol=1e-15)
    res = ds.hmm.smooth(transition=model.transition, initial=model.initial, **F64)
    assert json.loads(res.attrs["xhmm_transition"])["discrete"] == "time-varying"


def test_dataset_layout_and_state_bins():
    det = FakeNonLocalDetector(n_dims=2)
    model = from_non_local_detector(det)
    time, ll = _inputs(det)
    ds = model.dataset(ll, time)
    assert isinstance(ds.log_likelihood.data, da.Array)  # laid on all bins lazily
    values = ds.log_likelihood.values
    np.testing.assert_array_equal(values[:, model.is_interior], ll)
    assert np.isnan(values[:, ~model.is_interior]).all()
    assert list(model.state_bins.names) == ["state", "x_position", "y_position"]
    assert list(ds.state.to_index().unique()) == STATE_NAMES
    centers = det.environments[0].place_bin_centers_
    cont = ds.sel(state="Non-Local Continuous")
    np.testing.assert_array_equal(cont.x_position.values, centers[:, 0])
    assert np.isnan(ds.sel(state="Local").x_position.values).all()
    full = model.dataset(values, time)  # over all state bins: used as given
    assert isinstance(full.log_likelihood.data, np.ndarray)
    one_dim = from_non_local_detector(FakeNonLocalDetector(n_dims=1)).state_bins
    assert list(one_dim.names) == ["state", "position"]


def test_bad_detector_and_likelihood_are_named():
    det = FakeNonLocalDetector()
    model = from_non_local_detector(det)
    time, ll = _inputs(det)
    with pytest.raises(DimensionError, match=r"log_likelihood has shape \(40, 40\); expected "
                                             r"\(40, 50\) .* or \(40, 44\)"):
        model.dataset(ll[:, :40], time)
    del det.discrete_state_transitions_
    with pytest.raises(InputError, match="discrete_state_transitions_.*fitted"):
        from_non_local_detector(det)
    det = FakeNonLocalDetector()
    det.state_names[3] = det.state_names[2]
    with pytest.raises(InputError, match="state_names must be unique"):
        from_non_local_detector(det)
    det = FakeNonLocalDetector()
    det.observation_models[2].environment_name = "elsewhere"
    with pytest.raises(InputError, match="no environment named 'elsewhere'"):
        from_non_local_detector(det)
