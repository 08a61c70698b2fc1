"""The viewer: its window reductions against NumPy, the page's wiring, the server, and
the page itself in a real headless browser (Debian's chromium and chromedriver).

The browser tests start ``xhmm view`` on generated 1-D and 2-D results, check
from the DOM (Bokeh's document, the table's rows) and from the pixels of a
screenshot that the posterior, the state probabilities and the event list
are drawn, pan and zoom, click an event and the state figure, and measure
how long the server takes to answer a range change (printed and recorded as
a property of the test; never asserted). They are skipped where no browser
is installed, and marked slow (a browser and two viewer processes take about
20 s on 2 cores): ``make test-all`` (CI) runs them. With
``XHMM_UPDATE_SCREENSHOTS=1`` they also write the screenshots shown in
docs/view.md (docs/images/view-1d.png, view-2d.png).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.synthetic import simulate_decoding

pytest.importorskip("bokeh")

from bokeh.document import Document  # noqa: E402

from xhmm.viewer import serve  # noqa: E402
from xhmm.viewer.page import WIDTH, Page  # noqa: E402
from xhmm.viewer.recording import MIN_WINDOW_STEPS, Recording  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--force-device-scale-factor=1", "--window-size=1200,1000")
URL_LINE = re.compile(r"xhmm view: (?P<title>\S+) at (?P<url>http://127\.0\.0\.1:\d+/) "
                      r"\(Ctrl-C stops it\)$")
SCREENSHOTS = os.environ.get("XHMM_UPDATE_SCREENSHOTS") == "1"


def line_result(duration: float = 20.0) -> tuple[xr.Dataset, xr.Dataset]:
    """A 1-D two-state result of the synthetic track (gaps: exterior bins) and its input."""
    ds = simulate_decoding(duration, seed=3)
    return ds, ds.hmm.smooth(progress=False, chunk_size=2_000)


def plane_result(n_time: int = 1_500, side: int = 10) -> xr.Dataset:
    """A 2-D result: continuous (a random walk) and fragmented (uniform) states on a
    ``side`` x ``side`` grid, the animal circling; steps 500-599 report random places,
    so the fragmented state holds there. ``true_position`` is ``(time, 2)``."""
    x, y = (g.ravel() for g in np.meshgrid(np.arange(side) * 4.0, np.arange(side) * 4.0))
    k = x.size
    walk = np.exp(-((x[:, None] - x) ** 2 + (y[:, None] - y) ** 2) / (2 * 3.0**2))
    walk /= walk.sum(axis=1, keepdims=True)
    flat = np.full((k, k), 1 / k)
    transition = np.block([[0.995 * walk, 0.005 * flat], [0.05 * flat, 0.95 * flat]])
    t = np.arange(n_time) * 0.002
    middle = 2.0 * (side - 1)
    truth = middle + 0.8 * middle * np.column_stack([np.cos(np.pi * t), np.sin(np.pi * t)])
    rng = np.random.default_rng(0)
    reported = truth.copy()
    reported[500:600] = rng.uniform(0, 4.0 * (side - 1), size=(100, 2))
    ll = -((x - reported[:, :1]) ** 2 + (y - reported[:, 1:]) ** 2) / (2 * 3.0**2)
    ll = np.concatenate([ll, ll], axis=1) + rng.normal(scale=0.2, size=(n_time, 2 * k))
    ds = xr.Dataset(
        {"log_likelihood": (("time", "state_bins"), ll.astype(np.float32))},
        coords={"time": t,
                "x_position": ("state_bins", np.tile(x, 2), {"units": "cm"}),
                "y_position": ("state_bins", np.tile(y, 2), {"units": "cm"}),
                "state": ("state_bins", np.repeat(["continuous", "fragmented"], k))},
    )
    res = ds.hmm.smooth(transition=transition, initial=np.full(2 * k, 1 / (2 * k)),
                        progress=False)
    return res.assign(true_position=(("time", "xy"), truth))


@pytest.fixture(scope="module")
def line():
    return line_result()


@pytest.fixture(scope="module")
def plane():
    return plane_result()


def summed_by(post: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``post`` (T, K) summed over the bins sharing a key (rows of ``keys``, NaN-free
    keys only), NaN where all of a key's bins are NaN; the distinct keys, sorted."""
    finite = np.isfinite(keys).all(axis=1)
    distinct = np.unique(keys[finite], axis=0)
    out = np.full((post.shape[0], len(distinct)), np.nan)
    for j, key in enumerate(distinct):
        bins = finite & (keys == key).all(axis=1)
        values = post[:, bins]
        known = ~np.isnan(values).all(axis=1)
        out[known, j] = np.nansum(values[known], axis=1)
    return out, distinct


# --- the window reductions, against NumPy -------------------------------------------------

@pytest.mark.parametrize("first, n_steps, width", [(1_234, 3_000, 250), (0, 400, 1_000),
                                                   (9_000, 1_000, 300)])
def test_a_1d_window_is_the_max_of_each_column_of_steps(line, first, n_steps, width):
    ds, res = line
    rec = Recording(res, true_position=ds.true_position)
    time = res.time.values
    window = rec.window(time[first], time[first + n_steps - 1], width)
    assert (window.n_steps, window.start) == (n_steps, time[first])
    factor = -(-n_steps // width)
    assert window.factor == factor
    post = res.acausal_posterior.values[first:first + n_steps]
    by_position, positions = summed_by(post, res.position.values[:, None])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: exterior
        columns = np.stack([np.nanmax(by_position[a:a + factor], axis=0)
                            for a in range(0, n_steps, factor)], axis=1)
    np.testing.assert_allclose(window.image, columns, rtol=1e-6)
    x0, dw, y0, dh = window.extent
    assert x0 == pytest.approx(time[first] - 0.001) and y0 + dh == pytest.approx(
        positions[-1, 0] + 1.0)
    # the state probabilities, the true position and the MAP position (each step's most
    # probable position): each column's lowest and highest value, in turn
    cuts = np.arange(0, n_steps, factor)

    def traced(values):
        if factor == 1:
            return values
        low, high = np.minimum.reduceat(values, cuts), np.maximum.reduceat(values, cuts)
        return np.stack([low, high], axis=1).reshape(-1, *values.shape[1:])

    probs = res.acausal_state_probabilities.values[first:first + n_steps]
    np.testing.assert_array_equal(window.states.y, traced(probs))
    truth = ds.true_position.values[first:first + n_steps]
    np.testing.assert_array_equal(window.paths["true position"][1], traced(truth))
    best = positions[np.argmax(np.nan_to_num(by_position, nan=-1), axis=1), 0]
    np.testing.assert_array_equal(window.paths["MAP position"][1], traced(best))
    middles = time[first + cuts] + 0.5 * (factor - 1) * 0.002
    np.testing.assert_allclose(window.paths["MAP position"][0],
                               middles if factor == 1 else np.repeat(middles, 2))


def _guarded(values: np.ndarray, rows: int, seen: list) -> da.Array:
    """``values`` as a dask array of blocks of ``rows`` rows recording which rows are read."""

    def read(block, block_info=None):
        if block_info is not None:
            seen.append(tuple(block_info[0]["array-location"][0]))
        return block

    data = da.from_array(values, chunks=(rows, values.shape[1]))
    return data.map_blocks(read, dtype=values.dtype)


def test_only_the_visible_window_is_read(line):
    _, res = line
    seen: list[tuple[int, int]] = []
    lazy = res.assign(acausal_posterior=(res.acausal_posterior.dims, _guarded(
        res.acausal_posterior.values, 500, seen)))
    rec = Recording(lazy)
    assert seen == []  # opening, the events and the overview read no posterior row
    time = res.time.values
    rec.window(time[4_100], time[4_899], WIDTH)
    assert seen and all(4_000 <= start and stop <= 5_000 for start, stop in seen)
    seen.clear()
    Page(rec, Document(), "guarded")  # the first window: the first INITIAL_STEPS steps
    assert seen and max(stop for _, stop in seen) <= 5_000


def test_a_long_window_is_cut_around_its_middle(line):
    _, res = line
    rec = Recording(res, max_window_bytes=1)
    assert rec.max_steps == MIN_WINDOW_STEPS
    time = res.time.values
    window = rec.window(time[0], time[-1], WIDTH)
    middle = (res.sizes["time"] - MIN_WINDOW_STEPS) // 2
    assert (window.n_steps, window.start) == (MIN_WINDOW_STEPS, time[middle])
    assert Recording(res).max_steps > MIN_WINDOW_STEPS  # 32 MiB of 220-bin rows


def test_a_2d_map_at_the_cursor_and_the_paths_of_the_window(plane):
    rec = Recording(plane, true_position="true_position")
    assert rec.is_2d and rec.axes == ("x_position", "y_position")
    time = plane.time.values
    when, xs, ys, image = rec.map_at(time[321] + 0.0004)  # the nearest step: 321
    assert when == time[321]
    keys = np.column_stack([plane.x_position.values, plane.y_position.values])
    by_cell, cells = summed_by(plane.acausal_posterior.values[[321]], keys)
    for (x, y), value in zip(cells, by_cell[0], strict=True):
        assert image[list(ys).index(y), list(xs).index(x)] == pytest.approx(value, rel=1e-6)
    window = rec.window(time[400], time[799], WIDTH)
    by_cell, cells = summed_by(plane.acausal_posterior.values[400:800], keys)
    best = cells[by_cell.argmax(axis=1)]
    np.testing.assert_array_equal(np.column_stack(window.paths["MAP position"]), best)
    np.testing.assert_array_equal(np.column_stack(window.paths["true position"]),
                                  plane.true_position.values[400:800])


def test_a_2d_result_carrying_its_map_path_draws_it_and_reads_no_posterior(plane):
    carried = plane.assign(map_x_position=("time", np.arange(plane.sizes["time"]) * 1.0),
                           map_y_position=("time", np.zeros(plane.sizes["time"])))
    rec = Recording(carried)
    assert rec.max_steps > Recording(plane).max_steps
    time = plane.time.values
    paths = rec.window(time[10], time[19], WIDTH).paths
    np.testing.assert_array_equal(paths["MAP position"][0], np.arange(10, 20))
    # the result's true_position variable is drawn by default
    np.testing.assert_array_equal(np.column_stack(paths["true position"]),
                                  plane.true_position.values[10:20])


def test_without_positions_the_bins_are_drawn_by_index():
    post = np.random.default_rng(1).dirichlet(np.ones(6), size=50).astype(np.float32)
    rec = Recording(xr.Dataset({"causal_posterior": (("time", "state_bins"), post)}))
    assert rec.axes == ("state_bin",) and rec.time_label == "time (steps)"
    window = rec.window(0, 49, WIDTH)
    np.testing.assert_array_equal(window.image, post.T)
    assert window.states is None and rec.events["start"].size == 0


# --- the page, without a browser ----------------------------------------------------------

def test_the_page_lists_every_event_and_a_click_shows_it(line):
    _, res = line
    rec = Recording(res)
    doc = Document()
    page = Page(rec, doc, "line")
    for name in ("overview", "posterior", "states", "events", "status"):
        assert doc.get_model_by_name(name) is not None, name
    expected = sorted((float(start), label) for label in ("continuous", "fragmented")
                      for start in xhmm.events(res, label, threshold=0.8).start.values)
    table = page.table_source.data
    assert list(zip(table["start"], table["state"], strict=True)) == expected
    row = int(np.flatnonzero(table["state"] == "fragmented")[2])
    page._jump("indices", [], [row])
    start, end = page.x_range.start, page.x_range.end
    assert start < table["start"][row] <= table["stop"][row] < end
    page.refresh()
    assert page.status.tags[:2] == [start, end]
    (image,) = page.image_source.data["image"]
    assert image.shape[0] == np.unique(res.position.values).size
    assert page.image_source.data["x"][0] <= table["start"][row]


def test_a_click_on_a_2d_page_moves_the_cursor(plane):
    rec = Recording(plane)
    page = Page(rec, Document(), "plane")
    page._set_cursor(float(plane.time.values[250]))
    assert page.cursor.location == plane.time.values[250]
    assert page.map_fig.title.text == f"posterior at t = {plane.time.values[250]:.6g}"
    fragmented = np.flatnonzero(page.table_source.data["state"] == "fragmented")
    assert fragmented.size  # steps 500-599
    page._jump("indices", [], [int(fragmented[0])])
    page.refresh()
    assert page.cursor.location == page.table_source.data["start"][fragmented[0]]


@pytest.mark.parametrize("change, kwargs, message", [
    (lambda r: r.drop_vars(["acausal_posterior", "causal_posterior"]), {},
     "the viewer needs a posterior"),
    (lambda r: r, {"true_position": np.zeros(7)}, r"true_position has shape \(7,\)"),
    (lambda r: r, {"true_position": "nowhere"}, "true_position='nowhere'"),
    (lambda r: r, {"events": xr.Dataset({"start": ("event", [1.0])})},
     "events must be results of xhmm.events"),
    (lambda r: r.assign_coords(time=r.time.values[::-1]), {}, "to increase"),
])
def test_bad_input_is_named(line, change, kwargs, message):
    _, res = line
    with pytest.raises(xhmm.InputError, match=message):
        Recording(change(res), **kwargs)


def test_a_bad_or_busy_port_is_named(line):
    _, res = line
    rec = Recording(res.isel(time=slice(0, 100)), events=[])
    with pytest.raises(xhmm.InputError, match="port must be an int"):
        serve(rec, title="x", port=-1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(xhmm.InputError, match=r"cannot serve on 127\.0\.0\.1:"):
            serve(rec, title="x", port=busy.getsockname()[1])


def test_in_a_running_event_loop_view_returns_the_running_server(line, monkeypatch, capsys):
    """As in a notebook: the server runs on the caller's loop; the page is shown inline."""
    ipython_display = pytest.importorskip("IPython.display")
    from tornado.httpclient import AsyncHTTPClient

    shown = []
    monkeypatch.setattr(ipython_display, "display", shown.append)
    _, res = line

    async def browse():
        server = xhmm.view(res.isel(time=slice(0, 500)), title="nb")
        try:
            response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{server.port}/")
        finally:
            server.stop()
        return server, response

    server, response = asyncio.run(browse())
    assert response.code == 200 and b"bokeh" in response.body
    assert capsys.readouterr().out == f"xhmm view: nb at http://127.0.0.1:{server.port}/\n"
    assert [frame.src for frame in shown] == [f"http://127.0.0.1:{server.port}/"]


# --- the command line ---------------------------------------------------------------------

def launch_viewer(path: Path, *args: str) -> subprocess.Popen:
    """``xhmm view PATH --no-browser ARGS`` in a subprocess."""
    return subprocess.Popen([sys.executable, "-m", "xhmm", "view", str(path), "--no-browser",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def address(proc: subprocess.Popen) -> str:
    """The address a launched viewer prints in its first line (killed if it prints none)."""
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    match = URL_LINE.match(line.strip())
    if match is None:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r}\n{proc.stderr.read()[-3000:]}")
    return match["url"]


def stop_viewer(proc: subprocess.Popen) -> tuple[int, str]:
    """Ctrl-C (SIGINT) the viewer; its exit status and the rest of its output."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_the_command_serves_a_memmap_run_and_ctrl_c_stops_it(tmp_path):
    from urllib.request import urlopen

    ds = simulate_decoding(2.0, seed=4)
    ds.hmm.smooth(use_memmap=True, memmap_dir=str(tmp_path / "run"), progress=False)
    proc = launch_viewer(tmp_path / "run", "--event-state", "fragmented")
    try:
        url = address(proc)
        with urlopen(url, timeout=30) as page:
            assert page.status == 200 and b"xhmm view: run" in page.read()
    finally:
        status, out = stop_viewer(proc)
    assert (status, out) == (0, "xhmm view: stopped\n")


# --- in a real browser --------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless chromium driven by selenium (skipped without them)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"no browser to test the page in: {', '.join(missing)} missing "
                    "(apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)),
                              options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(browser, line, plane, tmp_path_factory):
    """``xhmm view`` of the 1-D result (NetCDF, with its true position) and of the 2-D
    result (NetCDF), started together; their addresses."""
    folder = tmp_path_factory.mktemp("served")
    ds, res = line
    xhmm.save_results(res.assign(true_position=ds.true_position), folder / "line.nc")
    xhmm.save_results(plane, folder / "plane.nc")
    procs = {name: launch_viewer(folder / f"{name}.nc") for name in ("line", "plane")}
    try:
        yield {name: address(proc) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                stop_viewer(proc)


def load(driver, url: str) -> None:
    """Open the page and wait until the server's first window is drawn."""
    driver.get(url)
    driver.set_script_timeout(60)
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const poll = () => {
            const doc = window.Bokeh && Bokeh.documents[0];
            const status = doc && doc.get_model_by_name("status");
            if (status && status.tags.length) setTimeout(done, 300); else setTimeout(poll, 20);
        };
        poll();""")


#: Sets the window's range and waits for the server's answer (the status model's tags
#: naming that range); returns the milliseconds from the change to the answer in the
#: page, and those the server's update took (read, reduce, fill the sources).
RANGE_JS = """
const [start, end, done] = arguments;
const doc = Bokeh.documents[0];
const status = doc.get_model_by_name("status");
const range = doc.get_model_by_name("states").x_range;
const began = performance.now();
range.setv({start: start, end: end});
const poll = () => {
    const [s, e, server] = status.tags;
    if (s === start && e === end) done([performance.now() - began, server]);
    else setTimeout(poll, 2);
};
poll();
"""


def change_range(driver, start: float, end: float) -> list[float]:
    """Move the window; ``[in the page, on the server]`` milliseconds to the answer."""
    return driver.execute_async_script(RANGE_JS, start, end)


def frame_box(driver, name: str) -> tuple[int, int, int, int]:
    """The plotting area of the figure called ``name`` in page pixels: left, top, right,
    bottom."""
    return tuple(driver.execute_script("""
        const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(arguments[0]));
        const r = view.el.getBoundingClientRect();
        const f = view.frame.bbox;
        return [r.x + f.x, r.y + f.y, r.x + f.x + f.width, r.y + f.y + f.height]
            .map(Math.round);""", name))


def pixels(driver, box: tuple[int, int, int, int]) -> np.ndarray:
    """The RGB pixels of a screenshot inside ``box``, ``(n, 3)``."""
    from PIL import Image

    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    left, top, right, bottom = box
    return np.asarray(shot)[top + 2:bottom - 2, left + 2:right - 2].reshape(-1, 3)


def near(pixels: np.ndarray, colors, tolerance: float = 12.0) -> np.ndarray:
    """Whether each pixel is within ``tolerance`` (RGB distance) of one of ``colors``."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=float)
    distinct, where = np.unique(pixels, axis=0, return_inverse=True)
    distance = np.linalg.norm(distinct[:, None, :].astype(float) - rgb[None], axis=2)
    return (distance.min(axis=1) <= tolerance)[where.ravel()]


def check_viridis_image(driver, figure: str) -> None:
    """The figure's plotting area is covered by the colour scale, top colours included."""
    from bokeh.palettes import Viridis256

    from xhmm.plot import EXTERIOR_COLOR

    area = pixels(driver, frame_box(driver, figure))
    on_scale = near(area, Viridis256)
    assert on_scale.mean() > 0.6, f"{figure}: {on_scale.mean():.2f} of the area on the scale"
    assert near(area, Viridis256[192:]).sum() > 20, f"{figure}: no high probability drawn"
    return near(area, [EXTERIOR_COLOR], 6.0)


def check_state_lines(driver) -> None:
    from bokeh.palettes import Category10_10

    area = pixels(driver, frame_box(driver, "states"))
    for color in Category10_10[:2]:
        assert near(area, [color], 30.0).sum() > 50, f"no line of colour {color}"


def report(record_property, name: str, times: dict[str, list[float]]) -> None:
    """Print and record each change's time to the answer in the page (and on the server)."""
    text = ", ".join(f"{what} {page:.0f} ms ({server:.0f} ms on the server)"
                     for what, (page, server) in times.items())
    print(f"\nview response ({name}): {text}")
    record_property("view_response_ms", json.dumps(times))


def table_rows(driver) -> list[str]:
    """The text of the event list's rows drawn in the page."""
    return driver.execute_script("""
        const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name("events"));
        return [...view.shadow_el.querySelectorAll(".slick-row")].map(r => r.innerText);""")


@pytest.mark.slow  # a browser and two viewers: about 20 s
def test_the_1d_page_in_a_browser(browser, served, line, record_property):
    _, res = line
    load(browser, served["line"])
    # DOM: the models, the image of the first window, the rows of the event list
    shape = browser.execute_script("""
        const fig = Bokeh.documents[0].get_model_by_name("posterior");
        const image = fig.renderers.find(r => "image" in r.data_source.data);
        return image.data_source.data.image[0].shape;""")
    assert shape == [np.unique(res.position.values).size, -(-5_000 // (-(-5_000 // WIDTH)))]
    rows = table_rows(browser)
    first = min((float(xhmm.events(res, label, threshold=0.8).start[0]), label)
                for label in ("continuous", "fragmented"))
    assert len(rows) > 5 and rows[0].split()[:2] == [first[1], f"{first[0]:.3f}"]
    # pixels: the posterior on the colour scale, the gaps of the track, the two states
    exterior = check_viridis_image(browser, "posterior")
    assert exterior.mean() > 0.05  # two gaps of 10 cm in 220 cm
    check_state_lines(browser)
    # zoom in, pan, zoom out: the server answers each range with its window
    t = res.time.values
    times = {"zoom in": change_range(browser, t[1_000], t[1_999]),
             "pan": change_range(browser, t[1_500], t[2_499]),
             "zoom out": change_range(browser, t[0], t[3_999])}
    # a click on an event (a real mouse click on the table's row) shows it
    target = browser.execute_script("""
        const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name("events"));
        return view.shadow_el.querySelectorAll(".slick-row")[4].children[1];""")
    event = browser.execute_script("""
        const data = Bokeh.documents[0].get_model_by_name("events").source.data;
        return [data.start[4], data.stop[4]];""")
    assert event[0] > t[3_999]  # not in the window shown
    began = time.perf_counter()
    target.click()
    answered = browser.execute_async_script("""
        const [start, stop, done] = arguments;
        const status = Bokeh.documents[0].get_model_by_name("status");
        const poll = () => {
            const [s, e] = status.tags;
            if (s < start && stop < e) done(status.tags); else setTimeout(poll, 2);
        };
        poll();""", *event)
    times["event click"] = [1e3 * (time.perf_counter() - began), answered[2]]
    assert answered[0] < event[0] and event[1] < answered[1]
    report(record_property, "1-D, 10,000 steps", times)
    if SCREENSHOTS:
        change_range(browser, t[2_500], t[6_499])
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(ROOT / "docs" / "images" / "view-1d.png"))


@pytest.mark.slow  # a browser and two viewers: about 20 s
def test_the_2d_page_in_a_browser(browser, served, plane, record_property):
    from selenium.webdriver.common.action_chains import ActionChains

    load(browser, served["plane"])
    check_viridis_image(browser, "map")
    check_state_lines(browser)
    rows = table_rows(browser)
    assert any(row.startswith("fragmented") for row in rows)
    t = plane.time.values
    times = {"zoom in": change_range(browser, t[400], t[799]),
             "pan": change_range(browser, t[600], t[999])}
    # a click on the state figure moves the cursor, and the map to that time
    left, top, right, bottom = frame_box(browser, "states")
    element = browser.execute_script("""
        return Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name("states")).el;""")
    box = element.rect
    x = left + 0.25 * (right - left)
    click = ActionChains(browser).move_to_element_with_offset(
        element, int(x - box["x"] - box["width"] / 2),
        int((top + bottom) / 2 - box["y"] - box["height"] / 2)).click()
    clicked = t[600] + 0.25 * (t[999] - t[600])
    before = browser.execute_script(
        'return Bokeh.documents[0].get_model_by_name("map").title.text')
    # A loaded machine can delay the button's release past a tap (Bokeh then sees a
    # press): click again, three times at most.
    for _ in range(3):
        click.perform()
        title = browser.execute_async_script("""
            const [before, done] = arguments;
            const map = Bokeh.documents[0].get_model_by_name("map");
            const began = performance.now();
            const poll = () => {
                if (map.title.text !== before || performance.now() - began > 10000)
                    done(map.title.text);
                else setTimeout(poll, 5);
            };
            poll();""", before)
        if title != before:
            break
    assert float(title.removeprefix("posterior at t = ")) == pytest.approx(clicked, abs=0.01)
    report(record_property, "2-D, 1,500 steps", times)
    if SCREENSHOTS:
        change_range(browser, t[380], t[779])
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(ROOT / "docs" / "images" / "view-2d.png"))


@pytest.mark.slow
@pytest.mark.skipif("XHMM_VIEW_RESULTS" not in os.environ, reason="XHMM_VIEW_RESULTS names "
                    "no result to time the page on (e.g. the memmap run of "
                    "benchmarks/view_window.py --run DIR)")
def test_the_response_on_a_result_of_yours(browser, record_property):
    """30 random windows, from 1,000 steps to the longest the viewer reads at once."""
    proc = launch_viewer(Path(os.environ["XHMM_VIEW_RESULTS"]))
    try:
        load(browser, address(proc))
        first, last, longest, step = browser.execute_script("""
            const range = Bokeh.documents[0].get_model_by_name("states").x_range;
            return [...range.bounds, range.max_interval, range.min_interval / 10];""")
        rng = np.random.default_rng(0)
        answers = []
        for _ in range(30):
            span = float(np.exp(rng.uniform(np.log(1_000 * step), np.log(longest))))
            start = float(rng.uniform(first, last - span))
            answers.append(change_range(browser, start, start + span))
    finally:
        stop_viewer(proc)
    page, server = np.array(answers).T
    summary = {f"{stat} of 30 windows": [f(page), f(server)] for stat, f in (
        ("median", np.median), ("90th percentile", lambda v: np.percentile(v, 90)),
        ("max", np.max))}
    report(record_property, os.environ["XHMM_VIEW_RESULTS"], summary)
