"""xhmm.events: runs of a state's probability at or above a threshold, found in one pass."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.frontend import events as events_module
from xhmm.synthetic import simulate_decoding

from conftest import NoCompute

# -- a plain NumPy reference, step by step ------------------------------------


def reference_events(p, threshold, dt, merge_gap=0.0, min_duration=0.0, xy=None):
    """Events by a run-length loop over ``p`` (and paths over ``xy``, ``(T, d)``)."""
    runs, start = [], None
    for t, value in enumerate(p):
        if value >= threshold and start is None:
            start = t
        if value < threshold and start is not None:
            runs.append([start, t - 1])
            start = None
    if start is not None:
        runs.append([start, len(p) - 1])
    merged = []
    for run in runs:
        if merged and (run[0] - merged[-1][1] - 1) * dt <= merge_gap + 1e-12:
            merged[-1][1] = run[1]
        else:
            merged.append(list(run))
    rows = []
    for a, b in merged:
        if (b - a + 1) * dt < min_duration - 1e-12:
            continue
        row = {"start_index": a, "stop_index": b, "duration": (b - a + 1) * dt,
               "peak_probability": p[a:b + 1].max(), "mean_probability": p[a:b + 1].mean()}
        if xy is not None:
            length, pairs = 0.0, 0
            for t in range(a + 1, b + 1):
                d = np.sqrt(((xy[t] - xy[t - 1]) ** 2).sum())
                if np.isfinite(d):
                    length, pairs = length + d, pairs + 1
            row["path_length"] = length
            row["mean_speed"] = length / (pairs * dt) if pairs else np.nan
        rows.append(row)
    return rows


def assert_matches(found: xr.Dataset, expected: list[dict], probability_atol=1e-12) -> None:
    assert found.sizes["event"] == len(expected)
    for name in expected[0] if expected else ():
        atol = probability_atol if name.endswith("probability") else 1e-12
        np.testing.assert_allclose(found[name].values, [row[name] for row in expected],
                                   rtol=1e-9, atol=atol, err_msg=name)


# -- the demo's decoding ------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    sim = simulate_decoding(4.0, seed=0)  # 2,000 steps
    return sim, sim.hmm.smooth(emit_map=True, progress=False)


def test_demo_events_equal_thresholding_the_eager_posterior(demo):
    sim, res = demo
    posterior = res.acausal_posterior.values.astype(np.float64)
    p = np.nansum(posterior[:, sim.state.values == "fragmented"], axis=1)
    threshold = 0.8
    assert np.abs(p - threshold).min() > 1e-5  # no step sits on the threshold
    dt = float(sim.time[1] - sim.time[0])
    expected = reference_events(p, threshold, dt, merge_gap=0.01, min_duration=0.02,
                                xy=res.map_position.values[:, None])
    assert len(expected) >= 2  # the fragmented epochs of the simulation
    found = xhmm.events(res, "fragmented", threshold=threshold, merge_gap=0.01,
                        min_duration=0.02)
    # the state probabilities are float32 sums of the bins; the reference sums in float64
    assert_matches(found, expected, probability_atol=1e-6)
    np.testing.assert_array_equal(found.start, sim.time.values[found.start_index])
    # the events are where the simulation was fragmented, mostly
    truth = sim.true_state.values == "fragmented"
    inside = np.concatenate([truth[a:b + 1] for a, b in zip(found.start_index.values,
                                                           found.stop_index.values)])
    assert inside.mean() > 0.8


@pytest.mark.parametrize("rows", [1, 7, None])
def test_block_edges_do_not_change_the_events(demo, rows):
    res = demo[1].isel(time=slice(250, 900))  # two events, ending at 430 and 856
    options = dict(state="fragmented", threshold=0.6, merge_gap=0.004)
    whole = xhmm.events(res, **options)
    assert whole.sizes["event"] >= 2
    chunked = res.chunk(time=rows or -1)
    xr.testing.assert_allclose(xhmm.events(chunked, **options), whole, rtol=1e-12)


def test_numpy_backed_probabilities_are_read_in_blocks(demo, monkeypatch):
    _, res = demo
    options = dict(state="fragmented", threshold=0.6)
    whole = xhmm.events(res, **options)
    seen = []
    real_add = events_module._Runs.add
    monkeypatch.setattr(events_module, "NUMPY_BLOCK_ROWS", 7)
    monkeypatch.setattr(events_module._Runs, "add",
                        lambda self, p, xy: seen.append(p.size) or real_add(self, p, xy))
    xr.testing.assert_allclose(xhmm.events(res, **options), whole, rtol=1e-12)
    assert max(seen) == 7 and sum(seen) == res.sizes["time"]


def test_reopened_and_memmap_results_give_the_same_events(demo, tmp_path):
    sim, res = demo
    options = dict(state="fragmented", threshold=0.7, variable="causal_state_probabilities")
    fresh = xhmm.events(res, **options)
    xhmm.save_results(res, tmp_path / "r.nc", progress=False)
    reopened = xhmm.open_results(tmp_path / "r.nc")
    assert reopened.causal_state_probabilities.chunks is not None
    xr.testing.assert_allclose(xhmm.events(reopened, **options), fresh, rtol=1e-12)
    memmap = sim.hmm.smooth(emit_map=True, progress=False, memmap_dir=tmp_path / "run")
    xr.testing.assert_allclose(xhmm.events(memmap, **options), fresh, rtol=1e-5)


# -- a hand-made probability array --------------------------------------------

DT = 0.5
P_A = np.array([0.75, 1.0, 0.25, 1.0, 0.25, 0.25, 1.0, 1.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.75])
P_B = np.array([0.0] * 10 + [0.5, 0.5, 0.5, 0.0])
# runs of "a" at >= 0.75: steps 0-1, 3, 6-8, 13; gaps of 1, 2 and 4 steps (0.5, 1, 2 s)


def hand_made(time_dim="time", rows=None, xy=None) -> xr.Dataset:
    probs = xr.DataArray(np.c_[P_A, P_B], dims=(time_dim, "states"),
                         coords={"states": ["a", "b"], time_dim: 10 + DT * np.arange(14)})
    ds = xr.Dataset({"acausal_state_probabilities": probs})
    if xy is not None:
        ds["map_x_position"] = (time_dim, xy[:, 0])
        ds["map_y_position"] = (time_dim, xy[:, 1])
    if time_dim != "time":
        ds.attrs["xhmm_time_dim"] = time_dim
    return ds.chunk({time_dim: rows}) if rows else ds


@pytest.mark.parametrize("rows", [None, 1, 3])
@pytest.mark.parametrize("merge_gap, min_duration, spans", [
    (0.0, 0.0, [(0, 1), (3, 3), (6, 8), (13, 13)]),
    (0.5, 0.0, [(0, 3), (6, 8), (13, 13)]),      # a gap of one step (0.5) merges
    (0.9, 0.0, [(0, 3), (6, 8), (13, 13)]),
    (1.0, 0.0, [(0, 8), (13, 13)]),              # gaps <= merge_gap merge
    (0.0, 1.0, [(0, 1), (6, 8)]),                # durations >= min_duration stay
    (0.5, 2.0, [(0, 3)]),                        # filtered after merging: 4 steps, 2.0
])
def test_merge_gap_and_min_duration(rows, merge_gap, min_duration, spans):
    found = xhmm.events(hand_made(rows=rows), "a", threshold=0.75, merge_gap=merge_gap,
                        min_duration=min_duration)
    assert list(zip(found.start_index.values, found.stop_index.values)) == spans
    starts, stops = (np.array(s) for s in zip(*spans))
    np.testing.assert_array_equal(found.start, 10 + DT * starts)
    np.testing.assert_array_equal(found.stop, 10 + DT * stops)
    np.testing.assert_array_equal(found.duration, DT * (stops - starts + 1))
    np.testing.assert_allclose(found.mean_probability,
                               [P_A[a:b + 1].mean() for a, b in spans])
    np.testing.assert_array_equal(found.peak_probability,
                                  [P_A[a:b + 1].max() for a, b in spans])


def test_a_run_across_block_edges_is_held_as_one_run():
    """Memory of O(runs), not O(runs + blocks): a run open at a block's end is carried."""
    runs = events_module._Runs(0.75, n_dims=0)
    for t in range(P_A.size):
        runs.add(P_A[t:t + 1], np.zeros((1, 0)))
    firsts, lasts = runs.closed()
    np.testing.assert_array_equal(firsts[:, 0], [0, 3, 6, 13])
    np.testing.assert_array_equal(lasts[:, 0], [1, 3, 8, 13])


def test_threshold_is_inclusive_and_a_list_of_states_is_summed():
    ds = hand_made()
    found = xhmm.events(ds, "a", threshold=0.76)
    assert list(found.start_index.values) == [1, 3, 6]  # 0.75 at steps 0 and 13 is out
    both = xhmm.events(ds, ["a", "b"], threshold=0.75)
    assert list(zip(both.start_index.values, both.stop_index.values)) == [
        (0, 1), (3, 3), (6, 8), (10, 13)]
    assert both.attrs["state"] == ["a", "b"]


@pytest.mark.parametrize("rows", [None, 1, 4])
def test_path_length_and_speed_against_numpy(rows):
    xy = np.random.default_rng(0).normal(scale=5.0, size=(14, 2))
    xy[7] = np.nan  # a step without a known position (a Local bin's)
    found = xhmm.events(hand_made(rows=rows, xy=xy), "a", threshold=0.75, merge_gap=0.5)
    assert found.attrs["position"] == ["map_x_position", "map_y_position"]
    expected = reference_events(P_A, 0.75, DT, merge_gap=0.5, xy=xy)
    assert_matches(found, expected)
    assert np.isnan(found.mean_speed[-1])  # one step: no displacement


def test_a_renamed_time_dim():
    plain = xhmm.events(hand_made(), "a", threshold=0.75)
    renamed = xhmm.events(hand_made("t", rows=3), "a", threshold=0.75)  # xhmm_time_dim
    xr.testing.assert_identical(renamed, plain)
    given = hand_made("t")
    del given.attrs["xhmm_time_dim"]
    xr.testing.assert_identical(xhmm.events(given, "a", threshold=0.75, time_dim="t"), plain)


def test_no_time_coordinate_counts_steps_and_no_run_gives_no_event():
    ds = hand_made().drop_vars("time")
    found = xhmm.events(ds, "a", threshold=0.75, min_duration=3)
    assert list(found.start_index.values) == [6]
    assert found.duration.values.tolist() == [3] and found.duration.attrs["units"] == "steps"
    none = xhmm.events(ds, "b", threshold=0.9)
    assert none.sizes["event"] == 0 and none.start.dtype == np.int64


@pytest.mark.parametrize("change, kwargs, error, message", [
    (None, dict(variable="posterior"), xhmm.InputError, "no variable 'posterior'"),
    (None, dict(state="c"), xhmm.InputError, "'c' is not a state"),
    (None, dict(state=["a", "z"]), xhmm.InputError, "'z' is not a state"),
    (None, dict(threshold=0), xhmm.ConfigError, r"threshold must be in \(0, 1\]"),
    (None, dict(threshold=1.5), xhmm.ConfigError, "threshold"),
    (None, dict(threshold=np.nan), xhmm.ConfigError, "threshold"),
    (None, dict(min_duration=-1), xhmm.ConfigError, "min_duration must be"),
    (None, dict(merge_gap=-0.5), xhmm.ConfigError, "merge_gap must be"),
    (None, dict(merge_gap=np.inf), xhmm.ConfigError, "merge_gap must be"),
    (None, dict(position="map_z"), xhmm.InputError, "no variable 'map_z'"),
    (lambda ds: ds.expand_dims(sequence=2), {}, xhmm.DimensionError,
     r"select one recording first, e.g. .isel\(sequence=0\)"),
    (lambda ds: ds.rename(time="t"), {}, xhmm.DimensionError, "time_dim="),
    (lambda ds: ds.assign_coords(time=ds.time[::-1].values), {}, xhmm.InputError,
     "must increase"),
])
def test_bad_arguments_are_named_before_any_compute(change, kwargs, error, message):
    ds = hand_made(rows=3)
    ds = change(ds) if change else ds
    arguments = dict(state="a", threshold=0.75) | kwargs
    with NoCompute(), pytest.raises(error, match=message):
        xhmm.events(ds, **arguments)
