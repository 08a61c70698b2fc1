"""Figures: the right panels, labelled axes, correct aggregation, clear errors."""

import json
import subprocess
import sys

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


# The memory of a plot must not grow with the length of the result: a lazy,
# memmap-backed posterior of T x 100 float32 (160 MB at T = 400,000) is drawn
# in a fresh process, as is a 20x shorter one; each draw's peak RSS above the
# RSS before it is compared (the kernel's peak counter is reset before each
# draw, and freed heap returned first). Loading the long posterior alone
# would add 160 MB.
_PEAK_SCRIPT = """
import ctypes, gc, io, json, re, sys
import matplotlib
matplotlib.use("Agg")
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from xhmm.frontend.lazy import SequenceRows, StoredArray, lazy_masked_posterior
from xhmm.plot import plot_decoding

def result(folder, n_time, n_bins):
    stored = StoredArray(folder, "acausal_posterior", (1, n_time, n_bins), "float32")
    post = lazy_masked_posterior(SequenceRows(stored, 0, n_time, n_time),
                                 np.ones(n_bins, dtype=bool), 25_000, "float32")
    half = n_bins // 2
    states = da.stack([post[:, :half].sum(axis=1), post[:, half:].sum(axis=1)], axis=1)
    return xr.Dataset(
        {"acausal_posterior": (("time", "state_bins"), post),
         "acausal_state_probabilities": (("time", "states"), states)},
        coords={"time": np.arange(n_time) * 0.002,
                "position": ("state_bins", np.tile(np.arange(half) * 2.0, 2)),
                "state": ("state_bins", np.repeat(["continuous", "fragmented"], half)),
                "states": ["continuous", "fragmented"]})

def kib(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

def draw_peak(res):
    res["truth"] = ("time", np.ones(res.sizes["time"]))  # the caller's, not the plot's
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")  # the peak (VmHWM) starts again from the current RSS
    fig = plot_decoding(res, true_position=res["truth"])
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    return kib("VmHWM") - before

folders, sizes, n_bins = sys.argv[1:-1:2], sys.argv[2:-1:2], int(sys.argv[-1])
small, short, long = (result(f, int(n), n_bins) for f, n in zip(folders, sizes))
draw_peak(small)  # warm up: imports, fonts, compiled kernels
print(json.dumps({"short_kib": draw_peak(short), "long_kib": draw_peak(long)}))
"""


def _write_posterior(folder, n_time: int, n_bins: int) -> None:
    """A (1, n_time, n_bins) float32 posterior file: a bump moving along the bins."""
    folder.mkdir()
    half = n_bins // 2
    centres = np.arange(half)
    bumps = np.exp(-0.5 * ((centres[None, :] - centres[:, None]) / 2.0) ** 2)
    rows = np.concatenate([0.9 * bumps, 0.1 * np.ones_like(bumps)], axis=1)
    rows = (rows / rows.sum(axis=1, keepdims=True)).astype(np.float32)  # one per centre
    with open(folder / "acausal_posterior.dat", "wb") as out:
        for start in range(0, n_time, 20_000):
            t = np.arange(start, min(start + 20_000, n_time))
            at = np.rint((half - 1) * 0.5 * (1 + np.sin(2 * np.pi * t / 5_000))).astype(int)
            out.write(rows[at].tobytes())


def test_plot_memory_does_not_grow_with_the_recording(tmp_path):
    n_bins, sizes = 100, {"small": 2_000, "short": 20_000, "long": 400_000}
    args = []
    for name, n_time in sizes.items():
        _write_posterior(tmp_path / name, n_time, n_bins)
        args += [str(tmp_path / name), str(n_time)]
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, *args, str(n_bins)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS above baseline: {peaks}")
    posterior_kib = sizes["long"] * n_bins * 4 // 1024
    assert peaks["long_kib"] <= 2 * max(peaks["short_kib"], 1024), (peaks, posterior_kib)
