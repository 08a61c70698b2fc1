"""The viewer's page: a Bokeh document per browser session, fed by a :class:`Recording`.

The page holds an overview of the whole recording (the state
probabilities, decimated once) with a range tool that selects the window,
the window itself (1-D: the posterior over position against time with the
MAP, most likely and true paths; 2-D: the posterior map at the cursor time
with the paths of the window), the state probabilities of the window, and
the event list. Whenever the window's range changes (pan, zoom, the range
tool, a click on an event), one update is scheduled a few milliseconds
later, so a burst of changes (a drag) costs one read; the update reads the
visible window only, reduced on the server to the figure's width in pixels,
and sends those few columns to the browser.

The ``status`` model's ``tags`` hold ``[start, end, milliseconds]`` of the
last window drawn: the range it answered and how long the update took
(read by the browser test).
"""

from __future__ import annotations

import time

import numpy as np
from bokeh.document import Document
from bokeh.events import Tap
from bokeh.layouts import column, row
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    DataTable,
    Div,
    LinearColorMapper,
    NumberFormatter,
    Range1d,
    RangeTool,
    Span,
    TableColumn,
)
from bokeh.palettes import Category10_10, Viridis256
from bokeh.plotting import figure

from ..plot import EXTERIOR_COLOR, _edges, _top
from .recording import TRUTH_LABEL, Recording, Window

__all__ = ["Page", "make_document"]

#: Width in pixels of the time figures (and so the columns of a window).
WIDTH = 1_100
#: Milliseconds between a range change and the update it schedules.
THROTTLE_MS = 40
#: Steps the narrowest window shows, and the first window.
MIN_STEPS = 10
INITIAL_STEPS = 5_000
#: Line colours of the paths.
PATH_COLORS = {"MAP position": "#e377c2", "most likely path": "#17becf",
               TRUTH_LABEL: "#ff7f0e"}
TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"


def _color_top(values: np.ndarray) -> float:
    """Top of the colour scale (:func:`xhmm.plot._top`), above 0."""
    return max(_top(values), 1e-6)


class Page:
    """The figures, sources and callbacks of one session's document.

    Parameters
    ----------
    recording : Recording
        The result, shared by every session.
    doc : bokeh.document.Document
        The session's document; the layout is added to it.
    title : str
        Shown at the top of the page.
    """

    def __init__(self, recording: Recording, doc: Document, title: str) -> None:
        self.rec = recording
        self.doc = doc
        self.pending = False
        self.drawn: tuple[float, float] | None = None
        first, last = float(recording.time[0]), float(recording.time[-1])
        span = min(recording.max_steps, recording.n_steps) * recording.dt
        end = recording.time[min(INITIAL_STEPS, recording.max_steps, recording.n_steps) - 1]
        self.x_range = Range1d(first, max(float(end), first + recording.dt),
                               bounds=(first, last), max_interval=span,
                               min_interval=MIN_STEPS * recording.dt)
        self.mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=1.0,
                                        nan_color=EXTERIOR_COLOR)
        self.status = Div(name="status", width=WIDTH)
        header = Div(text=f"<b>{title}</b> &nbsp; {recording.n_steps:,} steps, "
                     f"{recording.result.sizes['state_bins']:,} state bins, "
                     f"{recording.variable}", width=WIDTH)
        overview = self._overview(first, last)
        states = self._states_figure()
        window = self._plane() if recording.is_2d else self._line()
        table = self._table()
        self.x_range.on_change("start", self._moved)
        self.x_range.on_change("end", self._moved)
        self.refresh()
        doc.add_root(column(header, overview, window, states, self.status, table,
                            name="viewer"))
        doc.title = f"xhmm view: {title}"

    def _time_figure(self, height: int, **kw) -> figure:
        fig = figure(width=WIDTH, height=height, tools=TOOLS, active_scroll="xwheel_zoom",
                     x_axis_label=self.rec.time_label, **kw)
        fig.toolbar.logo = None
        return fig

    def _state_lines(self, fig: figure, source: ColumnDataSource) -> None:
        for k, label in enumerate(self.rec.labels):
            fig.line("x", f"p{k}", source=source, color=Category10_10[k % 10],
                     legend_label=label, line_width=1.2)
        if self.rec.labels:
            fig.legend.location = "top_left"
            fig.legend.orientation = "horizontal"
            fig.legend.background_fill_alpha = 0.6

    def _overview(self, first: float, last: float) -> figure:
        fig = figure(width=WIDTH, height=110, x_range=(first, last), y_range=(0, 1.02),
                     tools="", toolbar_location=None, title="whole recording: drag the "
                     "box to move the window, its edges to resize it", name="overview")
        traces = self.rec.overview(WIDTH)
        if traces is not None:
            self._state_lines(fig, ColumnDataSource(self._state_data(traces)))
            fig.legend.visible = False
        tool = RangeTool(x_range=self.x_range)
        tool.overlay.fill_alpha = 0.25
        fig.add_tools(tool)
        fig.yaxis.visible = False
        return fig

    def _states_figure(self) -> figure:
        fig = self._time_figure(170, x_range=self.x_range, y_range=(0, 1.02),
                                title="state probabilities in the window", name="states")
        fig.yaxis.axis_label = "probability"
        self.states_source = ColumnDataSource(self._state_data(None))
        self._state_lines(fig, self.states_source)
        events = self.rec.events
        colors = {label: Category10_10[k % 10] for k, label in enumerate(self.rec.labels)}
        fig.quad(left=events["start"], right=events["stop"], bottom=0, top=1.02,
                 fill_color=[colors.get(label, "#bbbbbb") for label in events["state"]],
                 fill_alpha=0.08, line_alpha=0)
        self.states_fig = fig
        return fig

    def _state_data(self, traces) -> dict:
        if traces is None:
            return {"x": [], **{f"p{k}": [] for k in range(len(self.rec.labels))}}
        return {"x": traces.x, **{f"p{k}": traces.y[:, k] for k in range(traces.y.shape[1])}}

    def _paths(self, fig: figure, labels, scatter: str | None = None) -> None:
        self.path_sources = {}
        for label in labels:
            source = ColumnDataSource({"x": [], "y": []})
            color = PATH_COLORS.get(label, "#d62728")
            if label == scatter:
                fig.scatter("x", "y", source=source, color=color, size=2.5, alpha=0.8,
                            legend_label=label)
            else:
                fig.line("x", "y", source=source, color=color, line_width=1.5,
                         legend_label=label)
            self.path_sources[label] = source
        if labels:
            fig.legend.orientation = "horizontal"
            fig.add_layout(fig.legend[0], "below")  # off the posterior

    def _path_labels(self) -> list[str]:
        labels = ["MAP position", *(label for label in self.rec.carried
                                    if label != "MAP position")]
        return labels + ([TRUTH_LABEL] if self.rec.truth is not None else [])

    def _line(self) -> figure:
        """1-D: the posterior over position against time."""
        (axis,) = self.rec.axes
        fig = self._time_figure(380, x_range=self.x_range, name="posterior",
                                title=f"{self.rec.variable} over {axis}, summed over states "
                                "(max per pixel column)")
        fig.yaxis.axis_label = axis
        edges = self._finite_edges(axis)
        fig.y_range = Range1d(edges[0], edges[-1])
        self.image_source = self._image(fig)
        return fig

    def _finite_edges(self, axis: str) -> np.ndarray:
        """Bin edges around the distinct finite values of the result's ``axis`` coordinate."""
        centers = np.unique(self.rec.result[axis].values)
        return _edges(centers[np.isfinite(centers)])

    def _image(self, fig):
        """An image glyph with its colour bar and the paths over it; its source."""
        source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=source,
                  color_mapper=self.mapper)
        fig.add_layout(ColorBar(color_mapper=self.mapper, width=10, title="probability"),
                       "right")
        self._paths(fig, self._path_labels(), scatter="MAP position")
        return source

    def _plane(self):
        """2-D: the map at the cursor with the paths of the window."""
        x, y = self.rec.axes
        x_edges, y_edges = self._finite_edges(x), self._finite_edges(y)
        fig = figure(width=460, height=430, x_range=(x_edges[0], x_edges[-1]),
                     y_range=(y_edges[0], y_edges[-1]), match_aspect=True, name="map",
                     tools="pan,wheel_zoom,reset,save", x_axis_label=x, y_axis_label=y)
        fig.toolbar.logo = None
        self.map_source = self._image(fig)
        self.cursor_source = ColumnDataSource({"x": [], "y": []})
        fig.scatter("x", "y", source=self.cursor_source, marker="circle", size=10,
                    fill_color=None, line_color="#ffffff", line_width=2)
        self.map_fig = fig
        self.cursor = Span(location=self.x_range.start, dimension="height",
                           line_color="#d62728", line_width=1.5)
        self.states_fig.add_layout(self.cursor)
        self.states_fig.on_event(Tap, lambda event: self._set_cursor(event.x))
        self.states_fig.title.text = ("state probabilities in the window: click to move the "
                                      "cursor (the map's time)")
        self.cursor_time = 0.5 * (self.x_range.start + self.x_range.end)
        note = Div(text="The map: the posterior at the cursor time, summed over states; the "
                   "lines: the paths over the whole window.", width=560)
        return row(fig, note)

    def _table(self) -> DataTable:
        events = self.rec.events
        self.table_source = ColumnDataSource(dict(events))
        number = NumberFormatter(format="0.000")
        columns = [TableColumn(field="state", title="state"),
                   *(TableColumn(field=name, title=name, formatter=number)
                     for name in ("start", "stop", "duration", "peak_probability"))]
        self.table_source.selected.on_change("indices", self._jump)
        return DataTable(source=self.table_source, columns=columns, width=WIDTH, height=220,
                         index_position=None, name="events")

    def _moved(self, attr, old, new) -> None:
        if not self.pending:
            self.pending = True
            self.doc.add_timeout_callback(self.refresh, THROTTLE_MS)

    def _jump(self, attr, old, new) -> None:
        """Show the clicked event (and move a 2-D cursor to its start)."""
        if not new:
            return
        start, end = self.rec.around(new[0])
        if self.rec.is_2d:
            self.cursor_time = float(self.rec.events["start"][new[0]])
        self.x_range.update(start=start, end=end)

    def _set_cursor(self, when: float | None) -> None:
        if when is not None:
            self.cursor_time = when
            self._draw_map()

    def refresh(self) -> None:
        """Read and draw the window the range shows (nothing when it is the one drawn)."""
        self.pending = False
        wanted = (float(self.x_range.start), float(self.x_range.end))
        if wanted == self.drawn:
            return
        began = time.perf_counter()
        window = self.rec.window(*wanted, WIDTH)
        self.states_source.data = self._state_data(window.states)
        for label, source in self.path_sources.items():
            x, y = window.paths.get(label, ([], []))
            source.data = {"x": x, "y": y}
        if self.rec.is_2d:
            if not window.start <= self.cursor_time <= window.stop:
                self.cursor_time = 0.5 * (window.start + window.stop)
            self._draw_map()
        else:
            x0, dw, y0, dh = window.extent
            self.image_source.data = {"image": [window.image], "x": [x0], "y": [y0],
                                      "dw": [dw], "dh": [dh]}
            self.mapper.high = _color_top(window.image)
        self.drawn = wanted
        elapsed = 1e3 * (time.perf_counter() - began)
        self._say(window, elapsed)
        self.status.tags = [wanted[0], wanted[1], elapsed]

    def _draw_map(self) -> None:
        when, xs, ys, image = self.rec.map_at(self.cursor_time)
        x_edges, y_edges = _edges(xs), _edges(ys)
        self.map_source.data = {"image": [image], "x": [x_edges[0]], "y": [y_edges[0]],
                                "dw": [x_edges[-1] - x_edges[0]],
                                "dh": [y_edges[-1] - y_edges[0]]}
        self.mapper.high = _color_top(image)
        self.cursor.location = when
        best = np.unravel_index(np.nanargmax(np.nan_to_num(image, nan=-1.0)), image.shape)
        self.cursor_source.data = {"x": [xs[best[1]]], "y": [ys[best[0]]]}
        self.map_fig.title.text = f"posterior at t = {when:.6g}"

    def _say(self, window: Window, elapsed: float) -> None:
        per = "every step" if window.factor == 1 else f"{window.factor} steps per column"
        cut = " (cut to the longest window read at once)" \
            if window.n_steps >= self.rec.max_steps else ""
        self.status.text = (f"window {window.start:.6g} to {window.stop:.6g}: "
                            f"{window.n_steps:,} steps{cut}, {per}; read and reduced in "
                            f"{elapsed:.0f} ms")


def make_document(recording: Recording, title: str):
    """A Bokeh application function: builds a :class:`Page` in each session's document."""

    def build(doc: Document) -> None:
        Page(recording, doc, title)

    return build
