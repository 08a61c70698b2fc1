"""What the viewer reads from a result, one window at a time, reduced to screen columns.

:class:`Recording` holds a result Dataset (lazy: dask-, memmap- or
file-backed) and answers the page's questions with the block-by-block
reductions of :mod:`xhmm.plot`: the state probabilities over the whole
recording (:meth:`Recording.overview`, once), a time window reduced to about
one column per pixel (:meth:`Recording.window`: the posterior over position
of a 1-D model, the state probabilities, the paths), and a 2-D model's
posterior map at one time (:meth:`Recording.map_at`). Each reads only the
steps of its window (``isel(time=...)`` then reduce), and a window is at
most :attr:`Recording.max_steps` steps long, so the cost of an answer does
not grow with the recording. Nothing here imports Bokeh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import InputError
from ..frontend.events import POSITION_PREFIXES, events
from ..names import BINS, STATES, TIME
from ..plot import (
    _MAX_PATH_POINTS,
    _compute,
    _edges,
    _low_high,
    _map_inputs,
    _map_path,
    _over_position,
    _per_step,
    _posterior,
    _posterior_columns,
    _reduce_rows,
    _seconds,
    _TimeColumns,
    posterior_map,
)

__all__ = ["Recording", "Traces", "Window", "EVENT_THRESHOLD", "MAX_WINDOW_BYTES"]

#: Bytes of per-step values (posterior rows) one window may read; sets :attr:`Recording.max_steps`.
MAX_WINDOW_BYTES = 32 * 2**20
#: Fewest steps a window may be capped to, however wide a step's row.
MIN_WINDOW_STEPS = 1_000
#: Threshold of the default events (each state's runs at or above it).
EVENT_THRESHOLD = 0.8
#: Coordinates of a 2-D model's bins, and of a 1-D model's.
PLANE = ("x_position", "y_position")
LINE = "position"
#: The coordinate given to a result without positions: each bin's index.
BIN_INDEX = "state_bin"
#: The names of the paths drawn, by the prefix of their variables.
PATH_LABELS = {"map_": "MAP position", "most_likely_": "most likely path"}
TRUTH_LABEL = "true position"
#: The variable drawn as the animal's position unless told otherwise.
TRUTH_VARIABLE = "true_position"


@dataclass(frozen=True)
class Traces:
    """Lines against time: ``y[:, j]`` over ``x``, one line per label (NaN breaks a line)."""

    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Window:
    """One window of the recording, reduced to screen columns.

    Attributes
    ----------
    start, stop : float
        Times of the first and last step read.
    n_steps, factor : int
        Steps read, and steps per column.
    states : Traces or None
        Each state's probability (each column's lowest and highest value).
    paths : dict of str to tuple of ndarray
        1-D: ``(time, position)`` of each path (the MAP position, a carried
        most likely path, the true position); 2-D: ``(x, y)`` points of each
        path in the plane, thinned to at most ``_MAX_PATH_POINTS``.
    image : (cells, columns) ndarray or None
        1-D: the posterior over position, each column the ``reduce`` of its
        steps, NaN off the track.
    extent : tuple of float or None
        1-D: ``(x0, width, y0, height)`` of the image in time and position.
    """

    start: float
    stop: float
    n_steps: int
    factor: int
    states: Traces | None
    paths: dict[str, tuple[np.ndarray, np.ndarray]]
    image: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None


def _numeric_time(result: xr.Dataset) -> tuple[xr.Dataset, str]:
    """``result`` with a numeric, increasing ``time`` coordinate, and its axis label.

    No coordinate: the step index; datetimes: seconds from the first step.
    """
    if TIME not in result.dims:
        raise InputError(f"the result has no {TIME!r} dimension; dims: {tuple(result.dims)}")
    if TIME not in result.coords:
        steps = np.arange(result.sizes[TIME], dtype=np.float64)
        return result.assign_coords({TIME: (TIME, steps, {"units": "steps"})}), "time (steps)"
    seconds, label = _seconds(result[TIME])
    if seconds.size > 1 and not np.all(np.diff(seconds) > 0):
        raise InputError(f"the viewer needs the {TIME!r} coordinate to increase from step to "
                         "step")
    if result[TIME].dtype.kind in "mM":
        result = result.assign_coords({TIME: (TIME, seconds, {"units": "s"})})
    return result, label


def _axes(result: xr.Dataset) -> tuple[xr.Dataset, tuple[str, ...]]:
    """The position coordinates of the bins: ``x_position, y_position`` (2-D),
    ``position`` (1-D), else a new ``state_bin`` index."""
    along = {name for name, coord in result.coords.items() if coord.dims == (BINS,)
             and coord.dtype.kind in "iuf"}
    if set(PLANE) <= along:
        return result, PLANE
    if LINE in along:
        return result, (LINE,)
    index = np.arange(result.sizes[BINS], dtype=np.float64)
    return result.assign_coords({BIN_INDEX: (BINS, index)}), (BIN_INDEX,)


def _carried(result: xr.Dataset, axes: tuple[str, ...]) -> dict[str, list[str]]:
    """The decoded paths the result carries: label -> one variable per axis."""
    found = {}
    for prefix in POSITION_PREFIXES:
        names = [prefix + axis for axis in axes]
        if all(name in result.data_vars and result[name].dims == (TIME,) for name in names):
            found[PATH_LABELS[prefix]] = names
    return found


def _truth(result: xr.Dataset, true_position, n_axes: int) -> np.ndarray | None:
    """The true position, one value (or ``(x, y)`` pair) per step (by default the
    variable ``true_position`` when there is one), or None."""
    if true_position is None:
        if TRUTH_VARIABLE not in result.data_vars:
            return None
        true_position = TRUTH_VARIABLE
    if isinstance(true_position, str):
        if true_position not in result.data_vars:
            raise InputError(f"true_position={true_position!r}: the result has no such "
                             f"variable; found: {', '.join(map(str, result.data_vars))}")
        true_position = result[true_position].transpose(TIME, ...)
    tail = () if n_axes == 1 else (n_axes,)
    return _per_step(result, true_position, "true_position", np.float64, slice(None), tail)


def _event_table(result: xr.Dataset, found, states: str | None, event_states,
                 **options) -> dict[str, np.ndarray]:
    """The rows of the event list, by start: every event of ``found`` (one or several
    results of :func:`xhmm.events`), by default those of each of ``event_states`` (each
    state of the variable ``states``) with ``options``."""
    if found is None:
        if event_states is None:
            event_states = [] if states is None else result[STATES].values.tolist()
        found = [events(result, label, variable=states or "acausal_state_probabilities",
                        **options) for label in event_states]
    elif isinstance(found, xr.Dataset):
        found = [found]
    columns = ("start", "stop", "duration", "peak_probability")
    rows: dict[str, list] = {"state": [], **{name: [] for name in columns}}
    for table in found:
        missing = [name for name in columns if name not in table.data_vars]
        if missing:
            raise InputError(f"events must be results of xhmm.events; this one has no "
                             f"{', '.join(missing)}")
        label = table.attrs.get("state", "")
        rows["state"].append(np.full(table.sizes.get("event", 0), ", ".join(
            [label] if isinstance(label, str) else map(str, label)), dtype=object))
        for name in columns:
            rows[name].append(np.asarray(table[name].values, dtype=np.float64))
    table = {name: np.concatenate(values) if values else np.zeros(0)
             for name, values in rows.items()}
    order = np.argsort(table["start"], kind="stable")
    return {name: values[order] for name, values in table.items()}


class Recording:
    """A result as the viewer reads it: lazily, one window at a time.

    Parameters
    ----------
    result : xr.Dataset
        A result of ``smooth`` or ``filter`` (fresh, or reopened with
        :func:`xhmm.open_results` / :func:`xhmm.open_run`) of one recording:
        ``acausal_posterior`` (else ``causal_posterior``) over
        ``(time, state_bins)``.
    true_position : str or array-like, optional
        The animal's position: a variable of ``result`` or one value (2-D:
        one ``(x, y)`` pair) per time step; by default the variable
        ``true_position`` when there is one.
    events : xr.Dataset or sequence of xr.Dataset, optional
        Results of :func:`xhmm.events` to list; by default those of each
        of ``event_states``.
    event_states : sequence of str, optional
        The states whose events are listed when ``events`` is not given;
        by default every state.
    threshold, min_duration : float, default EVENT_THRESHOLD, 0
        Of those events (see :func:`xhmm.events`).
    max_window_bytes : int, default MAX_WINDOW_BYTES
        Bytes of per-step values a window may read (with at least
        :data:`MIN_WINDOW_STEPS` steps): a longer window is cut.

    Raises
    ------
    xhmm.InputError
        No posterior, a posterior not over ``(time, state_bins)``, a time
        coordinate that does not increase, a bad ``true_position`` or
        ``events``; as :func:`xhmm.events` for the default events.
    """

    def __init__(self, result: xr.Dataset, *, true_position=None,
                 events: xr.Dataset | Sequence[xr.Dataset] | None = None,
                 event_states: Sequence[str] | None = None,
                 threshold: float = EVENT_THRESHOLD, min_duration: float = 0.0,
                 max_window_bytes: int = MAX_WINDOW_BYTES) -> None:
        kind = "acausal" if "acausal_posterior" in result.data_vars else "causal"
        self.variable = f"{kind}_posterior"
        if self.variable not in result.data_vars:
            raise InputError("the viewer needs a posterior: the result has no "
                             "'acausal_posterior' or 'causal_posterior'; found: "
                             f"{', '.join(map(str, result.data_vars)) or 'no variables'}")
        result, self.time_label = _numeric_time(result)
        _posterior(result, self.variable, slice(0, 0))  # checks its dims
        self.result, self.axes = _axes(result)
        states = f"{kind}_state_probabilities"
        self.states = states if states in result.data_vars else None
        self.carried = _carried(self.result, self.axes)
        self.truth = _truth(self.result, true_position, len(self.axes))
        self.events = _event_table(self.result, events, self.states, event_states,
                                   threshold=threshold, min_duration=min_duration)
        self.time = np.asarray(self.result[TIME].values, dtype=np.float64)
        self.dt = float(np.median(np.diff(self.time[:1_001]))) if self.time.size > 1 else 1.0
        posterior = self.result[self.variable]
        # A 2-D window with carried MAP paths reads no posterior rows.
        if self.is_2d and "MAP position" in self.carried:
            row = sum(self.result[name].dtype.itemsize for name in self.carried["MAP position"])
        else:
            row = posterior.dtype.itemsize * posterior.sizes[BINS]
        self.max_steps = max(MIN_WINDOW_STEPS, max_window_bytes // max(1, row))
        self._overviews: dict[int, Traces | None] = {}

    @property
    def is_2d(self) -> bool:
        """Whether the bins have ``x_position`` and ``y_position``."""
        return len(self.axes) == 2

    @property
    def n_steps(self) -> int:
        return self.time.size

    @property
    def labels(self) -> tuple[str, ...]:
        """The state labels, or none without state probabilities."""
        if self.states is None:
            return ()
        return tuple(map(str, self.result[self.states][STATES].values))

    def steps(self, start: float, stop: float) -> slice:
        """The steps from ``start`` to ``stop`` (times, both included), at least one and at
        most :attr:`max_steps` (cut around the middle)."""
        first = int(np.searchsorted(self.time, start, side="left"))
        last = int(np.searchsorted(self.time, stop, side="right"))
        first = min(first, self.n_steps - 1)
        last = max(last, first + 1)
        if last - first > self.max_steps:
            first = (first + last - self.max_steps) // 2
            last = first + self.max_steps
        return slice(first, last)

    def span(self, steps: slice) -> slice:
        """``steps`` as a slice of time values, for :mod:`xhmm.plot`'s selections."""
        return slice(self.time[steps.start], self.time[steps.stop - 1])

    def overview(self, width: int) -> Traces | None:
        """The state probabilities over the whole recording, ``width`` columns (read once
        per width, shared by every page)."""
        if self.states is None:
            return None
        if width not in self._overviews:
            self._overviews[width] = self._states(slice(0, self.n_steps), width)[1]
        return self._overviews[width]

    def _states(self, steps: slice, width: int) -> tuple[_TimeColumns, Traces | None]:
        probs = self.result[self.states].transpose(TIME, STATES).isel(time=steps) \
            if self.states else None
        columns = _TimeColumns.of(self.result[TIME].isel(time=steps), width)
        if probs is None:
            return columns, None
        x, values = columns.trace(*_low_high(probs, columns.factor))
        return columns, Traces(x, values, self.labels)

    def window(self, start: float, stop: float, width: int, reduce: str = "max") -> Window:
        """The window from ``start`` to ``stop`` (times), reduced to ``width`` columns.

        1-D: the posterior over position summed over states, each column the
        ``reduce`` ("max" or "mean") of its steps, and each column's lowest and
        highest MAP position; 2-D: the paths in the plane. Both: the state
        probabilities and the carried and true paths.
        """
        steps = self.steps(start, stop)
        columns, states = self._states(steps, width)
        paths = {}
        image = extent = None
        if self.is_2d:
            paths = self._plane_paths(steps)
        else:
            (axis,) = self.axes
            _, cells, summed = _over_position(self.result, self.span(steps), self.variable,
                                              axis, None)
            values, low, high = _posterior_columns(summed, cells, columns.factor, reduce,
                                                   show_map=True)
            paths["MAP position"] = columns.trace(low, high)
            for label, (name,) in self.carried.items():
                if label != "MAP position":
                    variable = self.result[name].isel(time=steps)
                    paths[label] = columns.trace(*_low_high(variable, columns.factor))
            if self.truth is not None:
                truth = self.truth[steps]
                cuts = np.arange(0, truth.size, columns.factor)
                paths[TRUTH_LABEL] = columns.trace(*(_reduce_rows(truth, cuts, how)
                                                     for how in ("min", "max")))
            edges = columns.edges
            y_edges = _edges(cells.values[:, 0])
            width_t = (edges[1] - edges[0]) * values.shape[0]
            image = values.T
            extent = (float(edges[0]), float(width_t), float(y_edges[0]),
                      float(y_edges[-1] - y_edges[0]))
        return Window(float(self.time[steps.start]), float(self.time[steps.stop - 1]),
                      steps.stop - steps.start, columns.factor, states, paths, image, extent)

    def _plane_paths(self, steps: slice) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """2-D paths of the window: carried or computed MAP, most likely, true; thinned."""
        stride = math.ceil((steps.stop - steps.start) / _MAX_PATH_POINTS)
        thinned = slice(steps.start, steps.stop, stride)
        paths = {}
        if "MAP position" not in self.carried:
            _, _, cells, summed = _map_inputs(self.result, self.span(steps), self.variable,
                                              *self.axes, None, one_time=False)
            (best,) = _compute(_map_path(summed, cells.values)[::stride])
            paths["MAP position"] = (best[:, 0], best[:, 1])
        names = [name for label in self.carried for name in self.carried[label]]
        values = _compute(*(self.result[name].isel(time=thinned).data for name in names))
        for k, label in enumerate(self.carried):
            paths[label] = (values[2 * k], values[2 * k + 1])
        if self.truth is not None:
            paths[TRUTH_LABEL] = (self.truth[thinned, 0], self.truth[thinned, 1])
        return paths

    def map_at(self, time: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """A 2-D model's posterior at the step nearest ``time``, summed over states.

        Returns the step's time, the distinct x and y positions and the
        ``(y, x)`` image (NaN off the track).
        """
        when = float(self.time[self.nearest(time)])
        image = posterior_map(self.result, time=when, variable=self.variable,
                              x=self.axes[0], y=self.axes[1])
        x, y = self.axes
        return when, np.asarray(image[x].values), np.asarray(image[y].values), image.values

    def nearest(self, time: float) -> int:
        """The step nearest ``time``."""
        step = int(np.searchsorted(self.time, time))
        candidates = [s for s in (step - 1, step) if 0 <= s < self.n_steps]
        return min(candidates, key=lambda s: abs(self.time[s] - time))

    def around(self, row: int) -> tuple[float, float]:
        """A window showing event ``row`` of :attr:`events` with as much time either side."""
        start, stop = self.events["start"][row], self.events["stop"][row]
        half = max(1.5 * (stop - start), 100 * self.dt)
        middle = 0.5 * (start + stop)
        half = min(half, 0.5 * self.max_steps * self.dt)
        return max(self.time[0], middle - half), min(self.time[-1], middle + half)
