"""Figures: the right panels, labelled axes, correct aggregation, clear errors."""

import json
import subprocess
import sys
import warnings

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
    animate_posterior_map,
    plot_decoding,
    plot_posterior,
    plot_posterior_map,
    plot_state_probabilities,
    posterior_map,
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
        (lambda r: plot_posterior(r, width_px=0), "width_px must be a positive int"),
        (lambda r: plot_posterior(r, reduce="median"), "reduce must be 'max' or 'mean'"),
        (lambda r: plot_posterior(r, time=5.0), "time must be a slice"),
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


def _column_reference(values: np.ndarray, factor: int, reduce) -> np.ndarray:
    """Each run of ``factor`` rows reduced by ``reduce`` (a NaN-ignoring NumPy function)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        return np.stack([reduce(values[a:a + factor], axis=0)
                         for a in range(0, len(values), factor)])


@pytest.mark.parametrize("blocks", [None, 37])  # 37: runs of steps cross block edges
@pytest.mark.parametrize("width_px, reduce, numpy_reduce",
                         [(50, "max", np.nanmax), (60, "mean", np.nanmean)])
def test_plot_posterior_reduces_to_pixel_columns(data, width_px, reduce, numpy_reduce,
                                                 blocks):
    ds, res = data
    drawn_from = res if blocks is None else res.chunk({"time": blocks})
    ax = plot_posterior(drawn_from, width_px=width_px, reduce=reduce, show_map=False,
                        colorbar=False)
    n_pos = ds.sizes["state_bins"] // 2
    post = res.acausal_posterior.values
    factor = -(-res.sizes["time"] // width_px)
    expected = _column_reference(post[:, :n_pos] + post[:, n_pos:], factor, numpy_reduce)
    drawn = ax.get_images()[0].get_array().filled(np.nan).T
    assert drawn.shape == expected.shape == (-(-res.sizes["time"] // factor), n_pos)
    np.testing.assert_allclose(drawn, expected, rtol=1e-5, atol=1e-7)
    assert f"{reduce} of {factor} steps per column" in ax.get_title(loc="left")


def test_plot_posterior_map_trace_is_the_column_envelope(data):
    _, res = data
    ax = plot_posterior(res, width_px=25, colorbar=False)
    grid = posterior_over_position(res).values
    best = res.position.values[: grid.shape[1]][np.nanargmax(grid, axis=1)]
    factor = -(-res.sizes["time"] // 25)
    expected = np.stack([_column_reference(best, factor, np.nanmin),
                         _column_reference(best, factor, np.nanmax)], axis=1).ravel()
    (line,) = [line for line in ax.get_lines() if line.get_label() == "MAP position"]
    np.testing.assert_array_equal(line.get_ydata(), expected)


@pytest.mark.parametrize("blocks", [None, 37])
def test_plot_state_probabilities_envelope(data, blocks):
    _, res = data
    ax = plot_state_probabilities(res if blocks is None else res.chunk({"time": blocks}),
                                  width_px=40)
    probs = res.acausal_state_probabilities.values
    factor = -(-res.sizes["time"] // 40)
    for k, line in enumerate(ax.get_lines()):
        expected = np.stack([_column_reference(probs[:, k], factor, np.nanmin),
                             _column_reference(probs[:, k], factor, np.nanmax)],
                            axis=1).ravel()
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-6)


def test_plot_a_time_window(data):
    ds, res = data
    fig = plot_decoding(res, time=slice(0.2, 0.4), true_position=ds.true_position,
                        true_state=ds.true_state)
    heat, states = fig.axes[:2]
    inside = (res.time.values >= 0.2) & (res.time.values <= 0.4)
    np.testing.assert_allclose(heat.get_xlim(), res.time.values[inside][[0, -1]])
    truth = heat.get_lines()[0]
    assert truth.get_label() == "true position"
    np.testing.assert_array_equal(truth.get_ydata(), ds.true_position.values[inside])
    np.testing.assert_array_equal(truth.get_xdata(), res.time.values[inside])
    assert states.get_lines()[0].get_xdata().size == inside.sum()
    grid = posterior_over_position(res, time=slice(0.2, 0.4))
    np.testing.assert_array_equal(grid.time.values, res.time.values[inside])


def _map_result(n_time: int = 12, seed: int = 0) -> xr.Dataset:
    """A 2-D model's result: Local (no position), then two states on a 4 x 3 grid.

    One grid cell is exterior (NaN in both states); the posterior is random.
    """
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(4) * 2.0, np.arange(3) * 3.0, indexing="ij")
    cells = np.column_stack([gx.ravel(), gy.ravel()])
    n_cells = len(cells)
    x = np.concatenate([[np.nan], cells[:, 0], cells[:, 0]])
    y = np.concatenate([[np.nan], cells[:, 1], cells[:, 1]])
    labels = ["Local"] + ["Continuous"] * n_cells + ["Fragmented"] * n_cells
    post = rng.dirichlet(np.ones(x.size), size=n_time).astype(np.float32)
    post[:, [1 + 5, 1 + n_cells + 5]] = np.nan
    return xr.Dataset(
        {"acausal_posterior": (("time", "state_bins"), post)},
        coords={"time": np.arange(n_time) * 0.5,
                "x_position": ("state_bins", x, {"units": "cm"}),
                "y_position": ("state_bins", y, {"units": "cm"}),
                "state": ("state_bins", labels)},
    )


def _map_reference(res: xr.Dataset, steps, state=None) -> np.ndarray:
    """``(y, x)`` sum of the posterior over the bins at each position and over ``steps``."""
    post = res.acausal_posterior.values[steps]
    x, y = res.x_position.values, res.y_position.values
    labels = res.state.values
    xs, ys = np.unique(x[np.isfinite(x)]), np.unique(y[np.isfinite(y)])
    out = np.full((ys.size, xs.size), np.nan)
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            bins = (x == xv) & (y == yv) & ((labels == state) if state else True)
            values = post[..., bins]
            if not np.isnan(values).all():
                out[i, j] = np.nansum(values)
    return out


@pytest.mark.parametrize("chunks", [None, 5])
@pytest.mark.parametrize("time, steps, state", [
    (None, slice(None), None),
    (slice(1.0, 3.5), slice(2, 8), None),
    (2.4, 5, None),                       # one time: the nearest step
    (slice(1.0, 3.5), slice(2, 8), "Fragmented"),
])
def test_posterior_map_equals_the_summed_posterior(chunks, time, steps, state):
    res = _map_result()
    if chunks:
        res = res.chunk({"time": chunks})
    image = posterior_map(res, time=time, state=state)
    assert image.dims == ("y_position", "x_position")
    np.testing.assert_array_equal(image.x_position, np.arange(4) * 2.0)
    np.testing.assert_array_equal(image.y_position, np.arange(3) * 3.0)
    assert image.x_position.attrs["units"] == "cm"
    np.testing.assert_allclose(image.values, _map_reference(_map_result(), steps, state),
                               rtol=1e-5, equal_nan=True)
    assert np.isnan(image.values[2, 1])  # the exterior cell (x = 2, y = 6)


def test_plot_posterior_map_overlays():
    res = _map_result()
    truth = np.column_stack([np.linspace(0, 6, 12), np.linspace(0, 6, 12)])
    ax = plot_posterior_map(res, time=slice(1.0, 3.5), true_position=truth)
    drawn = ax.get_images()[0].get_array().filled(np.nan)
    np.testing.assert_allclose(drawn, _map_reference(res, slice(2, 8)), rtol=1e-5,
                               equal_nan=True)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["true position"].get_xydata(), truth[2:8])
    post = res.acausal_posterior.values[2:8]
    summed = _map_reference_per_step(res, post)
    best = np.array([np.unravel_index(np.nanargmax(s), s.shape) for s in summed])
    np.testing.assert_array_equal(lines["MAP position"].get_xdata(), best[:, 1] * 2.0)
    np.testing.assert_array_equal(lines["MAP position"].get_ydata(), best[:, 0] * 3.0)
    assert ax.get_xlabel() == "x_position (cm)" and ax.get_ylabel() == "y_position (cm)"
    assert "6 steps" in ax.get_title(loc="left")


def _map_reference_per_step(res: xr.Dataset, post: np.ndarray) -> np.ndarray:
    return np.stack([_map_reference(res.isel(time=[0]).copy(data={
        "acausal_posterior": row[None]}), slice(None)) for row in post])


def test_animate_posterior_map_writes_every_frame(tmp_path):
    from PIL import Image

    res = _map_result().chunk({"time": 4})  # frames of 3 steps cross block edges
    truth = np.column_stack([np.linspace(0, 6, 12), np.linspace(0, 6, 12)])
    path = animate_posterior_map(res, tmp_path / "replay.gif", time=slice(0.5, 5.0),
                                 steps_per_frame=3, true_position=truth)
    assert path == tmp_path / "replay.gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 4  # steps 1..10: frames of 3, 3, 3 and 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay.gif"]


@pytest.mark.parametrize("call, error, match", [
    (lambda r, p: animate_posterior_map(r, p / "a.png"), xhmm.InputError, "must end in .gif"),
    (lambda r, p: animate_posterior_map(r, p / "a.gif", max_frames=5), xhmm.InputError,
     "12 frames of 1 step"),
    (lambda r, p: animate_posterior_map(r, p / "a.gif", steps_per_frame=0), xhmm.InputError,
     "steps_per_frame must be a positive int"),
    (lambda r, p: animate_posterior_map(r, p / "no" / "a.gif"), xhmm.StorageError,
     "does not exist"),
    (lambda r, p: posterior_map(r, x="x"), xhmm.InputError, "no coordinate 'x'"),
    (lambda r, p: posterior_map(r, time=slice(20, 30)), xhmm.InputError,
     "no time step of the results lies in time=slice"),
    (lambda r, p: plot_posterior_map(r, true_position=np.zeros(12)), xhmm.InputError,
     r"one \(x, y\) pair per time step \(12, 2\)"),
])
def test_map_errors_name_the_problem(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(_map_result(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_animation_does_not_replace_a_file(tmp_path):
    (tmp_path / "a.gif").write_text("mine")
    with pytest.raises(xhmm.StorageError, match="exists; pass overwrite=True"):
        animate_posterior_map(_map_result(), tmp_path / "a.gif")
    assert (tmp_path / "a.gif").read_text() == "mine"


@pytest.mark.parametrize("how, numpy_reduce", [("max", np.nanmax), ("min", np.nanmin),
                                               ("mean", np.nanmean), ("sum", np.nansum)])
def test_runs_of_steps_merge_across_blocks(how, numpy_reduce):
    import dask.array as da

    from xhmm.plot import _compute, _Runs

    values = np.random.default_rng(3).random((100, 4))
    values[10:20, 1] = np.nan  # a run of NaN stays NaN (steps 10..19 are run 1 of 10)
    values[33, :] = np.nan
    lazy = da.from_array(values, chunks=((7, 30, 13, 50), (4,)))
    (reduced,) = _compute(_Runs.of(lazy, 10, how))
    expected = _column_reference(values, 10, numpy_reduce)
    expected[1, 1] = np.nan  # np.nansum gives 0 for an all-NaN run
    np.testing.assert_allclose(reduced, expected, equal_nan=True)


def _fake_paths(res: xr.Dataset, names: tuple[str, ...], n_samples: int = 30,
                n_time: int | None = None) -> xr.Dataset:
    """Random ``sampled_<name>`` (sample, time) values, as sample_paths names them."""
    rng = np.random.default_rng(5)
    n_time = res.sizes["time"] if n_time is None else n_time
    return xr.Dataset({f"sampled_{name}": (("sample", "time"),
                                           rng.uniform(0, 10, (n_samples, n_time)))
                       for name in names})


def _sampled_lines(ax) -> list:
    lines = [line for line in ax.get_lines() if line.get_color() == "tab:green"]
    labels = [line.get_label() for line in lines if not line.get_label().startswith("_")]
    assert labels == [f"sampled paths ({len(lines)})"]
    return lines


def test_paths_are_drawn_over_the_window(data):
    ds, res = data
    paths = _fake_paths(res, ("position",))
    ax = plot_posterior(res, time=slice(0.2, 0.4), paths=paths, max_paths=7)
    inside = (res.time.values >= 0.2) & (res.time.values <= 0.4)
    lines = _sampled_lines(ax)
    assert len(lines) == 7
    for line, row in zip(lines, paths.sampled_position.values[:7], strict=True):
        np.testing.assert_array_equal(line.get_xdata(), res.time.values[inside])
        np.testing.assert_array_equal(line.get_ydata(), row[inside])


def test_paths_on_a_map_are_the_windows_xy():
    res = _map_result(n_time=12)
    paths = _fake_paths(res, ("x_position", "y_position"), n_samples=3)
    ax = plot_posterior_map(res, time=slice(1.0, 3.5), paths=paths)
    lines = _sampled_lines(ax)
    assert len(lines) == 3
    for b, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_xdata(), paths.sampled_x_position[b, 2:8])
        np.testing.assert_array_equal(line.get_ydata(), paths.sampled_y_position[b, 2:8])


def test_paths_of_another_recording_or_name_are_refused(data):
    ds, res = data
    with pytest.raises(xhmm.InputError, match=r"paths' 'sampled_position' has dims .* "
                       r"expected \('sample', 'time'\) over the 500 time steps"):
        plot_posterior(res, paths=_fake_paths(res, ("position",), n_time=499))
    with pytest.raises(xhmm.InputError, match="no variable 'sampled_position'"):
        plot_posterior(res, paths=_fake_paths(res, ("x",)))
    with pytest.raises(xhmm.InputError, match="max_paths must be a positive int, got 0"):
        plot_posterior(res, paths=_fake_paths(res, ("position",)), max_paths=0)


def test_plot_event_draws_the_event_with_its_margin(data):
    ds, res = data
    events = xhmm.events(res, "continuous", threshold=0.5)
    fig = xhmm.plot.plot_event(res, events, 0, paths=_fake_paths(res, ("position",)),
                               pad=0.1, true_position=ds.true_position)
    heat, states = [ax for ax in fig.axes if ax.get_visible()][:2]
    start, stop = float(events.start[0]), float(events.stop[0])
    times = res.time.values
    shown = times[(times >= start - 0.1) & (times <= stop + 0.1)]
    np.testing.assert_allclose(heat.get_xlim(), shown[[0, -1]])
    assert len(_sampled_lines(heat)) == 20
    edges = [line.get_xdata()[0] for line in states.get_lines() if line.get_linestyle() == "--"]
    np.testing.assert_allclose(edges, [start, stop])
    assert fig._suptitle.get_text().startswith(f"event 0: {start:g} to {stop:g}")


def test_plot_event_on_a_map_sums_the_events_steps():
    res = _map_result(n_time=12)
    probability = np.r_[np.zeros(4), np.ones(3), np.zeros(5)]
    res["acausal_state_probabilities"] = (("time", "states"),
                                          np.c_[1 - probability, probability])
    res = res.assign_coords(states=["Continuous", "Fragmented"])
    events = xhmm.events(res, "Fragmented", threshold=0.5)
    assert events.sizes["event"] == 1
    fig = xhmm.plot.plot_event(res, events, 0)
    drawn = fig.axes[0].get_images()[0].get_array().filled(np.nan)
    np.testing.assert_allclose(drawn, _map_reference(res, slice(4, 7)), rtol=1e-5,
                               equal_nan=True)
    assert "3 steps" in fig.axes[0].get_title(loc="left")


@pytest.mark.parametrize("event, message", [
    (5, "event must be an int position along the 1 events, got 5"),
    (True, "event must be an int position along the 1 events, got True"),
])
def test_plot_event_refuses_a_bad_event(data, event, message):
    ds, res = data
    events = xhmm.events(res, "continuous", threshold=0.5).isel(event=[0])
    with pytest.raises(xhmm.InputError, match=message):
        xhmm.plot.plot_event(res, events, event)


def test_plot_event_needs_position_coordinates(data):
    ds, res = data
    events = xhmm.events(res, "continuous", threshold=0.5)
    with pytest.raises(xhmm.InputError, match="no 'place' coordinate, nor 'x_position' and "
                       "'y_position' ones"):
        xhmm.plot.plot_event(res, events, 0, position="place")
