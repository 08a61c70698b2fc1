"""Figures: the right panels, labelled axes, correct aggregation, clear errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

import xhmm  # noqa: E402
from xhmm.plot import (  # noqa: E402
    plot_decoding,
    plot_posterior,
    plot_state_probabilities,
    posterior_over_position,
)
from xhmm.synthetic import simulate_decoding  # noqa: E402


@pytest.fixture(scope="module")
def data():
    ds = simulate_decoding(1.0, seed=1)
    return ds, ds.hmm.smooth(progress=False, chunk_size=250)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_posterior_over_position_sums_states(data):
    ds, res = data
    grid = posterior_over_position(res)
    n_pos = ds.sizes["state_bins"] // 2
    post = res.acausal_posterior.values
    expected = post[:, :n_pos] + post[:, n_pos:]
    np.testing.assert_allclose(grid.values, expected, atol=1e-6)  # float32 sums
    assert grid.dims == ("time", "position")
    exterior = ~ds.is_interior.values[:n_pos]
    assert np.isnan(grid.values[:, exterior]).all()
    np.testing.assert_allclose(np.nansum(grid.values, axis=1), 1.0, atol=1e-5)
    assert grid["position"].attrs["units"] == "cm"


def test_posterior_over_position_selects_a_state(data):
    ds, res = data
    grid = posterior_over_position(res, state="fragmented")
    n_pos = ds.sizes["state_bins"] // 2
    np.testing.assert_allclose(grid.values, res.acausal_posterior.values[:, n_pos:])


def test_plot_posterior_labels_and_overlays(data):
    ds, res = data
    ax = plot_posterior(res, true_position=ds.true_position)
    assert ax.get_xlabel() == "time (s)"
    assert ax.get_ylabel() == "position (cm)"
    assert any(isinstance(im, AxesImage) for im in ax.get_images())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["true position", "MAP position", "off the track (exterior)"]
    assert "summed over states" in ax.get_title(loc="left")
    assert len(ax.figure.axes) == 2  # the heat map and its colour bar


def test_plot_posterior_uneven_positions_use_a_mesh(data):
    _, res = data
    uneven = res.assign_coords(position=res.position ** 1.5)
    ax = plot_posterior(uneven, show_map=False, colorbar=False)
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    assert ax.get_images() == []


def test_plot_posterior_datetime_time(data):
    _, res = data
    stamped = res.assign_coords(
        time=np.datetime64("2024-01-01T00:00:00") + (res.time.values * 1e9).astype(
            "timedelta64[ns]")
    )
    ax = plot_posterior(stamped, colorbar=False)
    assert ax.get_xlabel() == "time (s from 2024-01-01T00:00:00)"


def test_plot_state_probabilities(data):
    ds, res = data
    ax = plot_state_probabilities(res, true_state=ds.true_state)
    assert ax.get_ylabel() == "probability" and ax.get_xlabel() == "time (s)"
    assert [line.get_label() for line in ax.get_lines()] == ["continuous", "fragmented"]
    assert ax.get_ylim()[0] < 0  # room for the ground-truth band
    assert len(ax.collections) >= 1


def test_plot_decoding_panels(data):
    ds, res = data
    fig = plot_decoding(res, true_position=ds.true_position, true_state=ds.true_state,
                        title="demo")
    heat, states = fig.axes[:2]
    assert heat.get_ylabel() == "position (cm)"
    assert states.get_ylabel() == "probability"
    assert fig.get_suptitle() == "demo"


def test_plot_decoding_without_states_has_one_panel():
    ds = simulate_decoding(0.5, seed=2)
    res = ds.drop_vars("state").hmm.filter(progress=False)
    fig = plot_decoding(res)
    assert len(fig.axes) == 2  # heat map + colour bar, no state panel
    assert fig.axes[0].get_title(loc="left").startswith("causal_posterior")


def test_reopened_results_plot(tmp_path, data):
    _, res = data
    path = xhmm.save_results(res, tmp_path / "r.nc", progress=False)
    ax = plot_posterior(xhmm.open_results(path), colorbar=False)
    assert ax.get_ylabel() == "position (cm)"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda r: posterior_over_position(r, variable="nope"), "no variable 'nope'"),
        (lambda r: posterior_over_position(r, position="x"), "no coordinate 'x'"),
        (lambda r: posterior_over_position(r, state="local"), "no state 'local'"),
        (lambda r: plot_posterior(r, true_position=[1.0, 2.0]), "true_position"),
        (lambda r: plot_state_probabilities(r, true_state=["a"]), "true_state"),
        (lambda r: plot_state_probabilities(r, variable="acausal_posterior"), "dims"),
        (lambda r: posterior_over_position(r, position="state"), "numeric"),
    ],
)
def test_errors_name_the_problem(data, call, match):
    _, res = data
    with pytest.raises(xhmm.InputError, match=match):
        call(res)


def test_state_selection_needs_state_coordinate(data):
    _, res = data
    with pytest.raises(xhmm.InputError, match="no 'state' coordinate"):
        posterior_over_position(res.drop_vars("state"), state="continuous")


def test_dataarray_truth_is_accepted(data):
    ds, res = data
    truth = xr.DataArray(ds.true_position.values, dims="time")
    ax = plot_posterior(res, true_position=truth, show_map=False, colorbar=False)
    assert ax.get_lines()[0].get_label() == "true position"
