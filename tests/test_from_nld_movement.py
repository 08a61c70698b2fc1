"""``from_non_local_detector`` on non_local_detector's movement models.

Against :mod:`fake_detector` laid over the environments of
``tests/data/nld_movement.npz`` (``FakeNonLocalDetector(movement=key)``):
the detector's Non-Local Continuous -> Non-Local Continuous block is
non_local_detector 0.6.9's own matrix of the stored case, so the block the
mapping picks is checked against an independent reference. Each must map to
its block kind (not the detector's matrix as ``Dense``) and ``to_dense`` of
the mapped transition must equal the detector's on the interior: to 1e-6 in
the movement block (the stored matrices drop entries below 1e-12; rows nld
leaks from are nld's renormalised, and a row nld never leaves stays in
place, see :mod:`xhmm.transitions.empirical`), to float64 rounding
elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import reference_forward_backward
from fake_detector import FakeNonLocalDetector, movement_data, nld_transition
from tolerances import F32_ATOL
from xhmm.errors import TransitionError
from xhmm.transitions import Dense, from_non_local_detector, to_dense
from xhmm.transitions.directional import DirectionalRandomWalk
from xhmm.transitions.empirical import EmpiricalMovement
from xhmm.transitions.track_graph import TrackGraphRandomWalk

DATA = movement_data()
CONT = "Non-Local Continuous"
T = 40

#: (stored case, the kind it maps to, fields the block must have).
CASES = [
    ("linear_direction1", DirectionalRandomWalk, {"direction": "increasing",
                                                  "movement_var": 6.0}),
    ("linear_direction2", DirectionalRandomWalk, {"direction": "decreasing",
                                                  "movement_var": 6.0}),
    ("field_direction1", DirectionalRandomWalk, {"direction": "increasing",
                                                 "movement_var": 40.0}),
    ("w_random_walk", TrackGraphRandomWalk, {"direction": None, "movement_var": 6.0,
                                             "movement_mean": 0.5}),
    ("w_direction1", TrackGraphRandomWalk, {"direction": "increasing", "movement_mean": 0.0}),
    ("w_direction2", TrackGraphRandomWalk, {"direction": "decreasing", "movement_mean": 0.0}),
    *[(f"linear_empirical_{s}_{r}", EmpiricalMovement,
       {"speedup": s, "is_time_reversed": bool(r)}) for s in (1, 4) for r in (0, 1)],
    *[(f"field_empirical_{s}_{r}", EmpiricalMovement,
       {"speedup": s, "is_time_reversed": bool(r)}) for s, r in ((1, 0), (3, 1))],
]


def _data(key: str) -> dict:
    """What ``from_non_local_detector`` needs beyond the detector: positions for empirical."""
    return {"position": DATA[key.split("_")[0] + "_position"]} if "empirical" in key else {}


def _inputs(det: FakeNonLocalDetector) -> tuple[np.ndarray, np.ndarray]:
    time = np.arange(T) / 500
    return det.compute_log_likelihood(time, time, None, []), time


def _renormalised(block: np.ndarray) -> np.ndarray:
    """nld's interior block as an xhmm block has it: rows normalised, empty rows stay."""
    sums = block.sum(axis=1, keepdims=True)
    out = np.divide(block, sums, out=np.zeros_like(block), where=sums > 0)
    empty = np.flatnonzero(sums[:, 0] == 0)
    out[empty, empty] = 1.0
    return out


def _expected(det: FakeNonLocalDetector) -> np.ndarray:
    """The detector's interior transition with its movement block as :func:`_renormalised`."""
    want = nld_transition(det)
    ix = np.flatnonzero(det.is_track_interior_state_bins_)
    cont = det.state_ind_[ix] == 2
    discrete = np.asarray(det.discrete_state_transitions_)[2, 2]
    want[np.ix_(cont, cont)] = discrete * _renormalised(want[np.ix_(cont, cont)] / discrete)
    return want


@pytest.mark.parametrize("key, kind, fields", CASES, ids=[case[0] for case in CASES])
def test_movement_maps_to_its_kind_and_nlds_matrix(key, kind, fields):
    det = FakeNonLocalDetector(movement=key)
    model = from_non_local_detector(det, **_data(key))
    block = model.transition.blocks[CONT, CONT]
    assert type(block) is kind
    for name, value in fields.items():
        assert getattr(block, name) == value, name
    ds = model.dataset(*_inputs(det))
    mask = model.is_interior
    got = to_dense(model.transition, ds)[np.ix_(mask, mask)]
    np.testing.assert_allclose(got, _expected(det), rtol=0, atol=1e-6)
    # Outside the movement block the detector's matrix, to float64 rounding.
    cont = det.state_ind_[mask] == 2
    other = ~np.outer(cont, cont)
    np.testing.assert_allclose(got[other], nld_transition(det)[other], rtol=1e-12, atol=1e-15)


def test_cases_include_leaky_and_empty_rows():
    """Some stored empirical cases need the renormalisation and the stay-in-place rows."""
    sums = {}
    for key in ("linear_empirical_4_0", "field_empirical_1_0"):
        det = FakeNonLocalDetector(movement=key)
        cont = det.is_track_interior_state_bins_ & (det.state_ind_ == 2)
        sums[key] = det.continuous_state_transitions_[np.ix_(cont, cont)].sum(axis=1)
    assert (sums["linear_empirical_4_0"] < 0.99).any()
    assert (sums["field_empirical_1_0"] == 0).any()


def test_empirical_takes_the_fitting_selection():
    """``is_training`` and ``encoding_group_labels`` drop samples as nld does before counting."""
    key = "linear_empirical_1_0"
    position = DATA["linear_position"]
    extra = np.random.default_rng(4).uniform(0, 100, (500, 1))
    det = FakeNonLocalDetector(movement=key)
    det.continuous_transition_types[2][2].encoding_group = 1
    group = np.concatenate([np.ones(len(position), int), np.zeros(250, int), np.ones(250, int)])
    training = np.concatenate([np.ones(len(position) + 250, bool), np.zeros(250, bool)])
    model = from_non_local_detector(det, position=np.concatenate([position, extra]),
                                    encoding_group_labels=group, is_training=training)
    assert isinstance(model.transition.blocks[CONT, CONT], EmpiricalMovement)
    ds = model.dataset(*_inputs(det))
    mask = model.is_interior
    np.testing.assert_allclose(to_dense(model.transition, ds)[np.ix_(mask, mask)],
                               _expected(det), rtol=0, atol=1e-6)


def test_empirical_without_position_is_the_detectors_matrix():
    """No positions: ``Dense`` of nld's matrix, noted; its leaky rows then do not plan."""
    det = FakeNonLocalDetector(movement="linear_empirical_4_1")
    model = from_non_local_detector(det)
    block = model.transition.blocks[CONT, CONT]
    assert isinstance(block, Dense)
    assert block.note == "the detector's EmpiricalMovement matrix"
    cont = det.state_ind_ == 2
    np.testing.assert_array_equal(block.matrix,
                                  det.continuous_state_transitions_[np.ix_(cont, cont)])
    ds = model.dataset(*_inputs(det))
    # nld normalises over all bins: interior rows move probability to exterior bins.
    with pytest.raises(TransitionError, match=r"Dense matrix \(the detector's EmpiricalMovement "
                       r"matrix\), row \d+ moves probability .* to exterior"):
        to_dense(model.transition, ds)


def test_smooth_with_the_mapped_walk_matches_the_detectors_matrix():
    """A smooth with the track graph walk equals float64 forward-backward on nld's matrix."""
    det = FakeNonLocalDetector(movement="w_random_walk")
    model = from_non_local_detector(det)
    ll, time = _inputs(det)
    res = model.dataset(ll, time).hmm.smooth(transition=model.transition,
                                             initial=model.initial, chunk_size=16,
                                             progress=False)
    # 80 bins: planned dense (tiles would not be cheaper), built from the walk.
    assert ("Non-Local Continuous->Non-Local Continuous: dense 80x80 (track graph random walk)"
            in res.attrs["xhmm_transition"])
    ix = model.is_interior
    p0 = model.initial[ix] / model.initial[ix].sum()
    filt, smooth, mll = reference_forward_backward(ll.astype(np.float64), nld_transition(det),
                                                   p0)
    np.testing.assert_allclose(res.causal_posterior.values[:, ix], filt, rtol=0, atol=F32_ATOL)
    np.testing.assert_allclose(res.acausal_posterior.values[:, ix], smooth, rtol=0,
                               atol=F32_ATOL)
    assert abs(float(res.marginal_log_likelihood) - mll) <= 1e-6 * T + 1e-9 * abs(mll)
