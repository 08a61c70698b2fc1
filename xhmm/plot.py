"""Figures of decoding results, drawn at screen resolution.

Each function takes a result Dataset of ``ds.hmm.smooth`` / ``filter`` (or one
reopened with :func:`xhmm.open_results` or :func:`xhmm.open_run`) and reads
only the time window it draws (``time=slice(start, stop)``, in the units of
the ``time`` coordinate; the whole result by default). Plots against time
reduce that window lazily, block by block, to about one column per pixel
of the axes (``width_px``): the maximum (or mean) of each column's time
steps for the posterior image, the minimum and maximum for line traces. So
only the reduced image and traces are ever held in memory, and drawing a
recording of millions of steps costs about what a short one does.

2-D models (bins with ``x_position`` and ``y_position`` coordinates) get a
posterior map over a window or at one time (:func:`plot_posterior_map`) and
an animation of a short window written to a GIF file
(:func:`animate_posterior_map`).

matplotlib (the ``plot`` extra, ``pip install "xhmm[plot]"``) is imported
when a figure is drawn (in :func:`_matplotlib`, the module's one import of
it), not with this module, so ``xhmm.plot`` is reachable after ``import
xhmm`` at no cost; drawing without it raises :class:`xhmm.MissingExtraError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .errors import InputError, StorageError
from .extras import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "posterior_over_position",
    "posterior_map",
    "plot_posterior",
    "plot_state_probabilities",
    "plot_decoding",
    "plot_posterior_map",
    "plot_event",
    "animate_posterior_map",
]

#: Colour of bins outside the track interior (NaN in the posterior).
EXTERIOR_COLOR = "#f3dfc9"
#: Bytes of a NumPy-backed result reduced at once (a dask-backed one keeps its blocks).
_BLOCK_BYTES = 16 * 2**20
#: Most points of a 2-D path drawn; a longer path is thinned evenly.
_MAX_PATH_POINTS = 5_000

#: A ``time=`` argument: a slice of time values, one time value (maps), or None (all).
Window = slice | float | int | np.datetime64 | None
#: Ground truth given to a plot: one value (or ``(x, y)`` pair) per time step.
Truth = Sequence | np.ndarray | xr.DataArray | None


def _matplotlib() -> ModuleType:
    """matplotlib with pyplot, patches and animation loaded: the module's one import of it.

    Raises :class:`xhmm.MissingExtraError` naming the ``plot`` extra when
    matplotlib is not installed.
    """
    for module in ("matplotlib.pyplot", "matplotlib.patches", "matplotlib.animation"):
        require(module, "plot", "drawing a figure")
    return require("matplotlib", "plot", "drawing a figure")


def _variable(results: xr.Dataset, name: str) -> xr.DataArray:
    if name not in results.variables:
        found = ", ".join(map(str, results.data_vars)) or "no data variables"
        raise InputError(f"the results have no variable {name!r}; found: {found}")
    return results[name]


def _window(results: xr.Dataset, time: Window, *, one_time: bool = False) -> slice:
    """The step indices of ``results`` inside ``time``, as a slice.

    ``time`` is None (every step), a slice of ``time`` coordinate values
    (both ends included, as ``.sel``) or, where ``one_time``, one time
    value (the nearest step).
    """
    if "time" not in results.dims:
        raise InputError(f"the results have no 'time' dimension; dims: {tuple(results.dims)}")
    index = results.get_index("time")
    if time is None:
        steps = slice(0, index.size)
    elif isinstance(time, slice) and time.step is None:
        try:
            steps = index.slice_indexer(time.start, time.stop)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"cannot select time={time!r} from the results' time "
                             f"coordinate: {err}") from None
    elif one_time and not isinstance(time, slice):
        try:
            nearest = int(index.get_indexer([time], method="nearest")[0])
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"cannot find time={time!r} in the results' time "
                             f"coordinate: {err}") from None
        steps = slice(nearest, nearest + 1)
    else:
        what = "a slice of time values or one time value" if one_time else "a slice"
        raise InputError(f"time must be {what}, e.g. time=slice(10, 20), got {time!r}")
    start, stop, _ = steps.indices(index.size)
    if stop <= start:
        span = f"{index[0]} to {index[-1]}" if index.size else "no steps"
        raise InputError(f"no time step of the results lies in time={time!r} "
                         f"(the results run from {span})")
    return slice(start, stop)


def _per_step(results: xr.Dataset, value, name: str, dtype, steps: slice,
              tail: tuple[int, ...] = ()) -> np.ndarray:
    """``value`` with one entry per time step of ``results``, cut to ``steps``."""
    array = np.asarray(value, dtype=dtype)
    expected = (results.sizes.get("time", 0), *tail)
    if array.shape != expected:
        what = "value" if not tail else "(x, y) pair"
        raise InputError(f"{name} has shape {array.shape}; expected one {what} per time "
                         f"step {expected}")
    return array[steps]


def _posterior(results: xr.Dataset, variable: str, steps: slice) -> xr.DataArray:
    posterior = _variable(results, variable)
    if set(posterior.dims) != {"time", "state_bins"}:
        raise InputError(
            f"{variable!r} must have dims ('time', 'state_bins'), got {posterior.dims}"
        )
    return posterior.transpose("time", "state_bins").isel(time=steps)


class _Cells(NamedTuple):
    """State bins grouped by their position: ``values[c]`` is cell ``c``'s position.

    ``order[starts[c]:starts[c + 1]]`` are the bins of cell ``c``.
    """

    order: np.ndarray
    starts: np.ndarray
    values: np.ndarray


def _cells(posterior: xr.DataArray, names: tuple[str, ...], state: str | None,
           variable: str, hint: str) -> _Cells:
    """Group the bins of ``posterior`` by their coordinates ``names``.

    Bins of another state than ``state`` (when given) and bins with a NaN
    coordinate (e.g. non_local_detector's Local bin) are in no cell.
    """
    keep = np.ones(posterior.sizes["state_bins"], dtype=bool)
    if state is not None:
        if "state" not in posterior.coords:
            raise InputError("state= was given but the results have no 'state' coordinate")
        labels = np.asarray(posterior["state"].values)
        keep = labels == state
        if not keep.any():
            known = ", ".join(map(repr, dict.fromkeys(labels.tolist())))
            raise InputError(f"no state {state!r} in the results; states: {known}")
    columns = []
    for name in names:
        if name not in posterior.coords or posterior[name].dims != ("state_bins",):
            raise InputError(f"{variable!r} has no coordinate {name!r} along 'state_bins'; "
                             f"{hint}")
        values = np.asarray(posterior[name].values)
        if not np.issubdtype(values.dtype, np.number):
            raise InputError(f"coordinate {name!r} must be numeric, got dtype {values.dtype}")
        columns.append(values.astype(np.float64))
    where = np.stack(columns, axis=1)
    keep &= np.isfinite(where).all(axis=1)
    if not keep.any():
        raise InputError(f"no state bin of {variable!r} has a finite {' and '.join(names)}")
    bins = np.flatnonzero(keep)
    values, cell = np.unique(where[bins], axis=0, return_inverse=True)
    cell = cell.ravel()
    by_cell = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[by_cell], np.arange(values.shape[0]))
    return _Cells(bins[by_cell], starts, values)


def _lazy(array: xr.DataArray) -> da.Array:
    """``array`` as a dask array in blocks of rows (time), whole along the other dims.

    A NumPy- or file-backed array is wrapped in blocks of about
    :data:`_BLOCK_BYTES`, nothing loaded; a dask-backed one keeps its rows.
    """
    if array.chunks is None:
        row = max(1, array.nbytes // max(1, array.sizes["time"]))
        array = array.chunk({"time": max(1, _BLOCK_BYTES // row)})
    data = array.data
    return data.rechunk({axis: -1 for axis in range(1, data.ndim)})


def _sum_cells(block: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each row of ``block`` summed over the bins of each cell; NaN where all are NaN."""
    picked = np.asarray(block, dtype=np.float32)[:, order]
    known = ~np.isnan(picked)
    picked[~known] = 0.0
    total = np.add.reduceat(picked, starts, axis=1)
    total[~np.logical_or.reduceat(known, starts, axis=1)] = np.nan
    return total


def _state_sum(posterior: xr.DataArray, cells: _Cells) -> da.Array:
    """Lazy ``(time, cell)`` posterior summed over the bins of each cell."""
    data = _lazy(posterior)
    return data.map_blocks(_sum_cells, cells.order, cells.starts, dtype=np.float32,
                           chunks=(data.chunks[0], (cells.values.shape[0],)))


def _most_probable(block: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position (a row of ``values``) of each row's largest entry; NaN for an all-NaN row."""
    known = ~np.isnan(block).all(axis=1)
    out = np.full((block.shape[0], values.shape[1]), np.nan)
    out[known] = values[np.nanargmax(block[known], axis=1)]
    return out


def _map_path(summed: da.Array, values: np.ndarray) -> da.Array:
    """Lazy ``(time, d)`` position (a row of ``values``) of each step's most probable cell."""
    return summed.map_blocks(_most_probable, values, dtype=np.float64,
                             chunks=(summed.chunks[0], (values.shape[1],)))


def _reduce_rows(block: np.ndarray, starts: np.ndarray, how: str) -> np.ndarray:
    """Reduce the runs of rows of ``block`` that begin at ``starts``, ignoring NaN.

    ``how`` is ``"max"``, ``"min"``, ``"sum"`` (NaN where a run is all
    NaN) or ``"count"`` (of the values that are not NaN).
    """
    block = np.asarray(block, dtype=np.result_type(block.dtype, np.float32))
    if how == "max":
        return np.fmax.reduceat(block, starts, axis=0)
    if how == "min":
        return np.fmin.reduceat(block, starts, axis=0)
    known = ~np.isnan(block)
    if how == "count":
        return np.add.reduceat(known.astype(block.dtype), starts, axis=0)
    total = np.add.reduceat(np.where(known, block, 0.0), starts, axis=0)
    total[~np.logical_or.reduceat(known, starts, axis=0)] = np.nan
    return total


def _cuts(start: int, n_rows: int, factor: int) -> np.ndarray:
    """Where runs begin in rows ``start:start + n_rows``: the first row and each
    row at a multiple of ``factor``."""
    return np.union1d([0], np.arange(-start % factor, n_rows, factor))


def _reduce_block(block: np.ndarray, factor: int, how: str, block_info=None) -> np.ndarray:
    start = block_info[0]["array-location"][0][0]
    return _reduce_rows(block, _cuts(start, block.shape[0], factor), how)


class _Runs(NamedTuple):
    """A lazy reduction of each run of ``factor`` rows (a column of the plot).

    Each block of rows is reduced on its own (its first and last runs may be
    parts of runs that continue in the next block), so every block is read,
    reduced and dropped in turn; :meth:`finish` merges the parts of a run.
    """

    parts: tuple[da.Array, ...]
    run: np.ndarray | None
    how: str

    @classmethod
    def of(cls, data: da.Array, factor: int, how: str) -> _Runs:
        """Reduce runs of ``factor`` rows of ``data`` by ``how`` (max, min, mean, sum)."""
        if factor == 1:
            return cls((data,), None, how)
        bounds = np.cumsum((0, *data.chunks[0]))
        cuts = [_cuts(int(a), int(b - a), factor) for a, b in zip(bounds[:-1], bounds[1:])]
        run = np.concatenate([(a + c) // factor for a, c in zip(bounds[:-1], cuts)])
        chunks = (tuple(c.size for c in cuts), *data.chunks[1:])
        dtype = np.result_type(data.dtype, np.float32)
        parts = tuple(data.map_blocks(_reduce_block, factor, part, dtype=dtype, chunks=chunks)
                      for part in (("sum", "count") if how == "mean" else (how,)))
        return cls(parts, run, how)

    def finish(self, values: list[np.ndarray]) -> np.ndarray:
        """One row per run from the computed ``parts``."""
        if self.run is None:
            return values[0]
        starts = np.flatnonzero(np.r_[True, self.run[1:] != self.run[:-1]])
        if self.how != "mean":
            return _reduce_rows(values[0], starts, self.how)
        total, count = (_reduce_rows(v, starts, "sum") for v in values)
        with np.errstate(invalid="ignore"):
            return total / count


def _compute(*items: _Runs | da.Array) -> list[np.ndarray]:
    """Compute lazy reductions together, reading each block of the result once.

    One task at a time (dask's synchronous scheduler, depth first): memory
    holds about one block of rows whatever the length of the window, where
    threads would each hold blocks read ahead.
    """
    runs = [item if isinstance(item, _Runs) else _Runs((item,), None, "") for item in items]
    values = iter(dask.compute(*(part for r in runs for part in r.parts),
                               scheduler="synchronous"))
    return [r.finish([next(values) for _ in r.parts]) for r in runs]


def _seconds(time: xr.DataArray) -> tuple[np.ndarray, str]:
    """Numeric time values and the axis label."""
    values = np.asarray(time.values)
    if np.issubdtype(values.dtype, np.datetime64):
        start = values[0]
        seconds = (values - start) / np.timedelta64(1, "s")
        return seconds, f"time (s from {np.datetime_as_string(start, unit='s')})"
    if np.issubdtype(values.dtype, np.timedelta64):
        return values / np.timedelta64(1, "s"), "time (s)"
    units = time.attrs.get("units")
    return values.astype(np.float64), f"time ({units})" if units else "time"


class _TimeColumns(NamedTuple):
    """Time steps drawn in columns of ``factor`` steps each (about one per pixel).

    Only the times of each column's first step and of the last step are
    read, so a long window costs no per-step arrays.
    """

    starts: np.ndarray
    last: float
    step: float
    label: str
    factor: int

    @classmethod
    def of(cls, time: xr.DataArray, width_px: int) -> _TimeColumns:
        n_time = time.size
        factor = max(1, -(-n_time // width_px))
        picked, label = _seconds(time.isel(time=np.append(np.arange(0, n_time, factor),
                                                          n_time - 1)))
        head, _ = _seconds(time.isel(time=slice(0, 1_001)))
        step = float(np.median(np.diff(head))) if head.size > 1 else 1.0
        return cls(picked[:-1], float(picked[-1]), step, label, factor)

    @property
    def edges(self) -> np.ndarray:
        """Column edges: half a step before each column's first step, after the last step."""
        half = 0.5 * self.step
        return np.append(self.starts - half, self.last + half)

    def trace(self, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x, y of a line through each column's lowest and highest value (each step's value
        when a column is one step)."""
        if self.factor == 1:
            return self.starts, low
        edges = self.edges
        middle = 0.5 * (edges[:-1] + edges[1:])
        both = np.stack([low, high], axis=1)
        return np.repeat(middle, 2), both.reshape(-1, *low.shape[1:])

    def modes(self, labels: np.ndarray) -> np.ndarray:
        """The most frequent of ``labels`` (one per step) in each column."""
        kinds, codes = np.unique(labels, return_inverse=True)
        starts = np.arange(0, codes.size, self.factor)
        counts = np.stack([np.add.reduceat((codes.ravel() == k).astype(np.int64), starts)
                           for k in range(kinds.size)], axis=1)
        return kinds[counts.argmax(axis=1)]


def _width_px(ax: Axes, width_px: int | None) -> int:
    """Columns to draw: ``width_px``, by default the width of ``ax`` in pixels."""
    if width_px is None:
        return max(1, int(ax.get_window_extent().width))
    if isinstance(width_px, bool) or not isinstance(width_px, int | np.integer) or width_px < 1:
        raise InputError(f"width_px must be a positive int, got {width_px!r}")
    return int(width_px)


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints, extended at both ends)."""
    if centers.size == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    mid = 0.5 * (centers[1:] + centers[:-1])
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def _evenly_spaced(values: np.ndarray) -> bool:
    steps = np.diff(values)
    return steps.size == 0 or bool(np.allclose(steps, steps[0], rtol=1e-6, atol=0.0))


def _heatmap(ax: Axes, x_edges: np.ndarray, y_edges: np.ndarray, values: np.ndarray,
             scale: dict, **image):
    """Draw ``values`` (y, x) between cell edges: an image on an even grid, else a mesh.

    The last cell along x may be shorter (a last column of fewer steps): the
    image draws it full width, and the axes' limits cut it. An image is
    resampled to the screen; uneven coordinates need the (slower) mesh.
    """
    masked = np.ma.masked_invalid(values)
    if _evenly_spaced(x_edges[:-1]) and _evenly_spaced(y_edges):
        right = x_edges[0] + (x_edges[1] - x_edges[0]) * (x_edges.size - 1)
        return ax.imshow(masked, origin="lower", extent=(x_edges[0], right, y_edges[0],
                                                         y_edges[-1]), **image, **scale)
    return ax.pcolormesh(x_edges, y_edges, masked, shading="flat", rasterized=True, **scale)


def _top(values: np.ndarray) -> float:
    """Top of a colour scale: the 99th percentile of the finite ``values`` (1 without any),
    so a few very sharp steps do not wash out the rest."""
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, 99)) if finite.size else 1.0


def _scale(values: np.ndarray, cmap: str, vmax: float | None) -> dict:
    """Colour scale from 0 to ``vmax``, by default the 99th percentile of ``values``."""
    top = vmax if vmax is not None else _top(values)
    colormap = _matplotlib().pyplot.get_cmap(cmap).with_extremes(bad=EXTERIOR_COLOR)
    return {"cmap": colormap, "vmin": 0.0, "vmax": max(top, np.finfo(np.float32).tiny)}


def _label(coord: xr.DataArray, name: str) -> str:
    units = coord.attrs.get("units")
    return f"{name} ({units})" if units else name


def _check_reduce(reduce: str) -> None:
    if reduce not in ("max", "mean"):
        raise InputError(f"reduce must be 'max' or 'mean', got {reduce!r}")


def _over_position(results: xr.Dataset, time: slice | None, variable: str, position: str,
                   state: str | None) -> tuple[xr.DataArray, _Cells, da.Array]:
    """Window of the posterior, its positions and the lazy ``(time, position)`` sum."""
    posterior = _posterior(results, variable, _window(results, time))
    cells = _cells(posterior, (position,), state, variable,
                   "pass position= the name of a numeric coordinate of state_bins")
    return posterior, cells, _state_sum(posterior, cells)


def _posterior_columns(summed: da.Array, cells: _Cells, factor: int, reduce: str,
                       show_map: bool) -> list[np.ndarray]:
    """The posterior image reduced to columns of ``factor`` steps, ``(columns, cells)``,
    and with ``show_map`` each column's lowest and highest MAP position."""
    parts = [_Runs.of(summed, factor, reduce)]
    if show_map:
        best = _map_path(summed, cells.values)[:, 0]
        parts += [_Runs.of(best, factor, "min"), _Runs.of(best, factor, "max")]
    return _compute(*parts)


def posterior_over_position(
    results: xr.Dataset,
    *,
    time: slice | None = None,
    variable: str = "acausal_posterior",
    position: str = "position",
    state: str | None = None,
) -> xr.DataArray:
    """Posterior over a position coordinate, summed over discrete states (lazy).

    Parameters
    ----------
    results : xr.Dataset
        Results with ``variable`` over ``(time, state_bins)`` and a numeric
        coordinate ``position`` along ``state_bins``.
    time : slice, optional
        Window of ``time`` coordinate values (both ends included); by default
        every step.
    variable : str, default "acausal_posterior"
    position : str, default "position"
        Coordinate of ``state_bins`` to group the bins by. Bins whose
        position is NaN (e.g. a Local state's) are left out.
    state : str, optional
        Keep only the bins whose ``state`` coordinate equals this label. By
        default bins that share a position are summed over all states.

    Returns
    -------
    xr.DataArray
        ``(time, position)``, dask-backed (computed block by block when
        read), NaN where every bin of that position is NaN (exterior).

    Raises
    ------
    xhmm.InputError
        If the variable, the coordinate or the state label is missing, or
        the window holds no step.
    """
    posterior, cells, summed = _over_position(results, time, variable, position, state)
    return xr.DataArray(
        summed,
        dims=("time", position),
        coords={"time": posterior["time"],
                position: (position, cells.values[:, 0], posterior[position].attrs)},
        attrs={"long_name": posterior.attrs.get("long_name", variable)},
    )


def plot_posterior(
    results: xr.Dataset,
    *,
    time: slice | None = None,
    variable: str = "acausal_posterior",
    position: str = "position",
    state: str | None = None,
    true_position: Truth = None,
    show_map: bool = True,
    paths: xr.Dataset | None = None,
    max_paths: int = 20,
    ax: Axes | None = None,
    cmap: str = "bone_r",
    vmax: float | None = None,
    colorbar: bool = True,
    width_px: int | None = None,
    reduce: str = "max",
) -> Axes:
    """Heat map of the posterior over position against time, at screen resolution.

    Reads only the steps of the ``time`` window and reduces them lazily,
    block by block, to ``width_px`` columns: each column shows the
    ``reduce`` (max or mean) of its steps' posterior, so only that small
    image is computed into memory.

    Parameters
    ----------
    results : xr.Dataset
        Output of ``ds.hmm.smooth`` / ``filter`` or :func:`xhmm.open_results`.
    time : slice, optional
        Window of ``time`` values to draw (both ends included); by default
        every step.
    variable : str, default "acausal_posterior"
        ``"causal_posterior"`` draws the filtered posterior.
    position : str, default "position"
        Numeric coordinate of ``state_bins`` for the vertical axis.
    state : str, optional
        Draw one discrete state's bins only; by default states are summed
        (see :func:`posterior_over_position`).
    true_position : array-like, optional
        True position at each time step of ``results`` (the window's part
        is drawn), as a line through each column's lowest and highest value.
    show_map : bool, default True
        Overlay the most probable position of each step (each column's
        lowest and highest).
    paths : xr.Dataset, optional
        Paths drawn from the posterior (:func:`xhmm.sample_paths` of the
        same recording): the window's part of the first ``max_paths`` of
        their ``sampled_<position>`` is drawn as thin lines.
    max_paths : int, default 20
    ax : matplotlib Axes, optional
        Axes to draw in; a new figure is made by default.
    cmap : str, default "bone_r"
    vmax : float, optional
        Top of the colour scale; by default the 99th percentile of the drawn
        image, so a few very sharp steps do not wash out the rest.
    colorbar : bool, default True
    width_px : int, optional
        Columns to reduce the window to; by default the width of ``ax`` in
        pixels. A window of fewer steps draws every step.
    reduce : {"max", "mean"}, default "max"
        How a column combines its steps: ``"max"`` keeps brief events
        (a replay of a few steps) visible at any zoom.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    xhmm.InputError
        As :func:`posterior_over_position`, or if ``true_position`` does not
        have one value per time step, for a bad ``width_px`` or ``reduce``,
        or ``paths`` of another recording.
    """
    _check_reduce(reduce)
    steps = _window(results, time)
    truth = None if true_position is None else _per_step(
        results, true_position, "true_position", np.float64, steps
    )
    sampled = _sampled_paths(results, paths, (position,), steps, max_paths)
    posterior, cells, summed = _over_position(results, time, variable, position, state)
    centers = cells.values[:, 0]
    mpl = _matplotlib()
    if ax is None:
        _, ax = mpl.pyplot.subplots(figsize=(10, 4), layout="constrained")
    columns = _TimeColumns.of(posterior["time"], _width_px(ax, width_px))
    values, *best = _posterior_columns(summed, cells, columns.factor, reduce, show_map)
    scale = _scale(values, cmap, vmax)
    image = _heatmap(ax, columns.edges, _edges(centers), values.T, scale, aspect="auto",
                     interpolation="antialiased")
    if truth is not None:
        low, high = (_reduce_rows(truth, np.arange(0, truth.size, columns.factor), how)
                     for how in ("min", "max"))
        ax.plot(*columns.trace(low, high), color="tab:orange", lw=1.0, alpha=0.9,
                label="true position")
    if sampled is not None:
        seconds, _ = _seconds(posterior["time"])
        _draw_paths(ax, seconds[::_path_stride(steps)], sampled[..., 0].T)
    if show_map:
        ax.plot(*columns.trace(*best), ".", color="tab:blue", ms=1.0, alpha=0.5,
                label="MAP position", rasterized=True)
    handles, _ = ax.get_legend_handles_labels()
    if np.isnan(values).all(axis=0).any():
        handles.append(mpl.patches.Patch(color=EXTERIOR_COLOR, label="off the track (exterior)"))
    if handles:
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                  ncols=len(handles), markerscale=8, frameon=False, fontsize="small",
                  borderaxespad=0.2)
    ax.set_xlabel(columns.label)
    ax.set_ylabel(_label(posterior[position], position))
    ax.set_xlim(columns.starts[0], columns.last)
    which = ", summed over states" if state is None else f", state {state!r}"
    per = "" if columns.factor == 1 else f", {reduce} of {columns.factor} steps per column"
    ax.set_title(f"{variable}{which}{per}", loc="left", fontsize="medium")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="probability", pad=0.01, extend="max")
    return ax


def _runs(labels: np.ndarray) -> list[tuple[object, int, int]]:
    """``(label, start, stop)`` of each run of equal consecutive labels."""
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [(labels[a], int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _low_high(values: xr.DataArray, factor: int) -> list[np.ndarray]:
    """The lowest and highest of ``values`` (time first) in each column of ``factor`` steps."""
    data = _lazy(values)
    return _compute(_Runs.of(data, factor, "min"), _Runs.of(data, factor, "max"))


def plot_state_probabilities(
    results: xr.Dataset,
    *,
    time: slice | None = None,
    variable: str = "acausal_state_probabilities",
    true_state: Truth = None,
    ax: Axes | None = None,
    width_px: int | None = None,
) -> Axes:
    """Probability of each discrete state against time, at screen resolution.

    Reads only the steps of the ``time`` window; a column of several steps
    draws a vertical stroke from their lowest to their highest probability,
    so the curve looks as at full resolution.

    Parameters
    ----------
    results : xr.Dataset
        Results holding ``variable`` over ``(time, states)``.
    time : slice, optional
        Window of ``time`` values to draw (both ends included).
    variable : str, default "acausal_state_probabilities"
        ``"causal_state_probabilities"`` draws the filtered ones.
    true_state : array-like, optional
        True state label at each time step of ``results``, drawn as a
        coloured band under the curves (in each state's line colour; the
        most frequent label of each column).
    ax : matplotlib Axes, optional
    width_px : int, optional
        Columns to reduce the window to; by default the width of ``ax`` in
        pixels.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    xhmm.InputError
        If the variable is missing, ``true_state`` has the wrong length or
        the window holds no step.
    """
    probs = _variable(results, variable)
    if set(probs.dims) != {"time", "states"}:
        raise InputError(f"{variable!r} must have dims ('time', 'states'), got {probs.dims}")
    steps = _window(results, time)
    truth = None if true_state is None else _per_step(results, true_state, "true_state",
                                                      None, steps)
    probs = probs.transpose("time", "states").isel(time=steps)
    if ax is None:
        _, ax = _matplotlib().pyplot.subplots(figsize=(10, 2.5), layout="constrained")
    columns = _TimeColumns.of(probs["time"], _width_px(ax, width_px))
    x, values = columns.trace(*_low_high(probs, columns.factor))
    colors = {}
    for k, label in enumerate(probs["states"].values):
        (line,) = ax.plot(x, values[:, k], lw=1.0, label=str(label))
        colors[label] = line.get_color()
    bottom = 0.0
    if truth is not None:
        edges = columns.edges
        bottom = -0.16
        spans: dict[object, list[tuple[float, float]]] = {}
        for label, start, stop in _runs(columns.modes(truth)):
            spans.setdefault(label, []).append((edges[start], edges[stop] - edges[start]))
        for label, label_spans in spans.items():
            ax.broken_barh(label_spans, (-0.14, 0.08), facecolors=colors.get(label, "0.5"),
                           linewidth=0)
        ax.text(columns.starts[0], -0.10, " true ", va="center", ha="right",
                fontsize="x-small")
    ax.set_ylim(bottom, 1.02)
    ax.set_yticks([0.0, 0.5, 1.0])
    ax.set_xlim(columns.starts[0], columns.last)
    ax.set_xlabel(columns.label)
    ax.set_ylabel("probability")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(colors),
              frameon=False, fontsize="small", borderaxespad=0.2)
    return ax


def plot_decoding(
    results: xr.Dataset,
    *,
    time: slice | None = None,
    true_position: Truth = None,
    true_state: Truth = None,
    position: str = "position",
    title: str | None = None,
    width_px: int | None = None,
) -> Figure:
    """Posterior over position above the state probabilities, sharing time.

    Draws the smoothed posterior when the results have one, else the
    filtered one; the state panel is drawn when the matching
    ``*_state_probabilities`` exist (bins labelled by a ``state`` coordinate).

    Parameters
    ----------
    results : xr.Dataset
    time : slice, optional
        Window of ``time`` values to draw (both ends included).
    true_position, true_state : array-like, optional
        Ground truth at each step of ``results`` to overlay (see
        :func:`plot_posterior` and :func:`plot_state_probabilities`).
    position : str, default "position"
    title : str, optional
        Figure title.
    width_px : int, optional
        Columns to reduce the window to; by default the width of the panels
        in pixels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    kind = "acausal" if "acausal_posterior" in results.variables else "causal"
    states = f"{kind}_state_probabilities"
    with_states = states in results.variables
    plt = _matplotlib().pyplot
    if with_states:
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 1), layout="constrained"
        )
    else:
        fig, top = plt.subplots(figsize=(11, 4.5), layout="constrained")
    plot_posterior(results, time=time, variable=f"{kind}_posterior", position=position,
                   true_position=true_position, ax=top, width_px=width_px)
    if with_states:
        plot_state_probabilities(results, time=time, variable=states,
                                 true_state=true_state, ax=bottom, width_px=width_px)
        top.set_xlabel("")
    if title:
        fig.suptitle(title)
    return fig


def plot_event(
    results: xr.Dataset,
    events: xr.Dataset,
    event: int,
    *,
    paths: xr.Dataset | None = None,
    max_paths: int = 20,
    pad: float | None = None,
    position: str = "position",
    x: str = "x_position",
    y: str = "y_position",
    true_position: Truth = None,
) -> Figure:
    """One event of :func:`xhmm.events`: its posterior, sampled paths and state probabilities.

    A 1-D model (a ``position`` coordinate on ``state_bins``) gets the
    posterior over position against time (:func:`plot_posterior`); a 2-D one
    (``x`` and ``y`` coordinates) the map of the posterior summed over the
    event's steps (:func:`plot_posterior_map`). Both overlay ``paths`` (the
    draws of :func:`xhmm.sample_paths` of the same recording) and sit above
    the state probabilities, over the event and ``pad`` on either side.

    Parameters
    ----------
    results : xr.Dataset
        The result the events were found in.
    events : xr.Dataset
        Output of :func:`xhmm.events`.
    event : int
        Position along the ``event`` dim.
    paths : xr.Dataset, optional
    max_paths : int, default 20
    pad : float, optional
        Time drawn before and after the event (the time coordinate's
        units; for the 2-D map the event's steps only); by default half
        the event's duration.
    position, x, y : str
        Names of the position coordinates (1-D; 2-D).
    true_position : array-like, optional
        One value (1-D) or ``(x, y)`` pair (2-D) per time step of ``results``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    xhmm.InputError
        If ``event`` is not a position along ``events``' ``event`` dim, or
        the results have neither ``position`` nor ``x`` and ``y``
        coordinates, or as the plots it draws.
    """
    n_events = events.sizes.get("event", 0)
    if isinstance(event, bool) or not isinstance(event, int | np.integer) \
            or not -n_events <= event < n_events:
        raise InputError(f"event must be an int position along the {n_events} events, "
                         f"got {event!r}")
    row = events.isel(event=event)
    start, stop = row["start"].item(), row["stop"].item()
    pad = 0.5 * row["duration"].item() if pad is None else pad
    around = slice(start - pad, stop + pad)
    kind = "acausal" if "acausal_posterior" in results.variables else "causal"
    states = f"{kind}_state_probabilities"
    plt = _matplotlib().pyplot
    if position in results.coords:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                          height_ratios=(3, 1), layout="constrained")
        plot_posterior(results, time=around, variable=f"{kind}_posterior", position=position,
                       true_position=true_position, paths=paths, max_paths=max_paths, ax=top)
        top.set_xlabel("")
    elif x in results.coords and y in results.coords:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 8), height_ratios=(3, 1),
                                          layout="constrained")
        plot_posterior_map(results, time=slice(start, stop), variable=f"{kind}_posterior",
                           x=x, y=y, true_position=true_position, paths=paths,
                           max_paths=max_paths, ax=top)
    else:
        raise InputError(f"the results have no {position!r} coordinate, nor {x!r} and {y!r} "
                         "ones, on state_bins: pass position= (1-D) or x= and y= (2-D)")
    if states in results.variables:
        plot_state_probabilities(results, time=around, variable=states, ax=bottom)
        for edge in (start, stop):  # events have a numeric time coordinate
            bottom.axvline(edge, color="k", lw=0.8, ls="--")
    else:
        bottom.set_visible(False)
    fig.suptitle(f"event {event}: {start:g} to {stop:g} "
                 f"(peak probability {row['peak_probability'].item():.3f})")
    return fig


def _map_inputs(results: xr.Dataset, time: Window, variable: str, x: str, y: str,
                state: str | None, one_time: bool) -> tuple[slice, xr.DataArray, _Cells, da.Array]:
    """Window, posterior, cells and the lazy ``(time, cell)`` posterior of a 2-D map."""
    steps = _window(results, time, one_time=one_time)
    posterior = _posterior(results, variable, steps)
    cells = _cells(posterior, (x, y), state, variable,
                   "pass x= and y= the names of the numeric coordinates of state_bins")
    return steps, posterior, cells, _state_sum(posterior, cells)


def _grid(values: np.ndarray, cells: _Cells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xs, ys, image)``: per-cell ``values (..., C)`` laid on the grid ``(..., y, x)``."""
    xs, ix = np.unique(cells.values[:, 0], return_inverse=True)
    ys, iy = np.unique(cells.values[:, 1], return_inverse=True)
    image = np.full(values.shape[:-1] + (ys.size, xs.size), np.nan, dtype=np.float32)
    image[..., iy.ravel(), ix.ravel()] = values
    return xs, ys, image


def _window_total(summed: da.Array) -> tuple[da.Array, da.Array]:
    """Lazy per-cell sum over the steps, and whether any step is not NaN there."""
    return da.nansum(summed, axis=0), (~da.isnan(summed)).any(axis=0)


def _span(seconds: np.ndarray, label: str) -> str:
    """The time of one step, or the first and last of several, for a title."""
    unit = label.removeprefix("time").strip()
    if seconds.size == 1:
        return f"at t = {seconds[0]:.6g} {unit}".rstrip()
    return f"{seconds.size} steps, t = {seconds[0]:.6g} to {seconds[-1]:.6g} {unit}".rstrip()


def posterior_map(
    results: xr.Dataset,
    *,
    time: Window = None,
    variable: str = "acausal_posterior",
    x: str = "x_position",
    y: str = "y_position",
    state: str | None = None,
) -> xr.DataArray:
    """Posterior of a 2-D model over ``(y, x)``, summed over discrete states and a window.

    Parameters
    ----------
    results : xr.Dataset
        Results with ``variable`` over ``(time, state_bins)`` and numeric
        coordinates ``x`` and ``y`` along ``state_bins``.
    time : slice or time value, optional
        A window of ``time`` values (both ends included), or one time (the
        nearest step); by default every step. Only these steps are read,
        block by block.
    variable : str, default "acausal_posterior"
    x, y : str, default "x_position", "y_position"
        Coordinates of ``state_bins`` giving each bin's position. Bins with
        a NaN position (non_local_detector's Local and No-Spike) are left out.
    state : str, optional
        Keep only the bins of this discrete state.

    Returns
    -------
    xr.DataArray
        ``(y, x)`` over the distinct coordinate values: the posterior of the
        bins at each position, summed over states and the window's steps;
        NaN at positions that are NaN throughout (exterior) or hold no bin.

    Raises
    ------
    xhmm.InputError
        If the variable, a coordinate or the state label is missing, or the
        window holds no step.
    """
    steps, posterior, cells, summed = _map_inputs(results, time, variable, x, y, state,
                                                  one_time=True)
    total, seen = _compute(*_window_total(summed))
    xs, ys, image = _grid(np.where(seen, total, np.nan), cells)
    seconds, label = _seconds(posterior["time"])
    return xr.DataArray(
        image, dims=(y, x),
        coords={x: (x, xs, posterior[x].attrs), y: (y, ys, posterior[y].attrs)},
        attrs={"long_name": f"{variable} summed over states, {_span(seconds, label)}"},
        name=variable,
    )


def _map_figure(ax: Axes | None, posterior: xr.DataArray, x: str, y: str) -> Axes:
    """Axes for a map: a new figure by default; equal scales, labelled by the coordinates."""
    if ax is None:
        _, ax = _matplotlib().pyplot.subplots(figsize=(5.5, 4.5), layout="constrained")
    ax.set_xlabel(_label(posterior[x], x))
    ax.set_ylabel(_label(posterior[y], y))
    return ax


def plot_posterior_map(
    results: xr.Dataset,
    *,
    time: Window = None,
    variable: str = "acausal_posterior",
    x: str = "x_position",
    y: str = "y_position",
    state: str | None = None,
    true_position: Truth = None,
    show_map: bool = True,
    paths: xr.Dataset | None = None,
    max_paths: int = 20,
    ax: Axes | None = None,
    cmap: str = "bone_r",
    vmax: float | None = None,
    colorbar: bool = True,
) -> Axes:
    """Map of a 2-D model's posterior at one time or summed over a window.

    Draws :func:`posterior_map` as an image over ``x`` and ``y``, with the
    path of each step's most probable position (MAP) and the true path.

    Parameters
    ----------
    results : xr.Dataset
    time : slice or time value, optional
        A window of ``time`` values (both ends included) or one time (the
        nearest step); by default every step.
    variable, x, y, state
        As :func:`posterior_map`.
    true_position : (T, 2) array-like, optional
        True ``(x, y)`` at each time step of ``results``; the window's part
        is drawn.
    show_map : bool, default True
        Draw the path of each step's most probable position (the posterior
        summed over states).
    paths : xr.Dataset, optional
        Paths drawn from the posterior (:func:`xhmm.sample_paths` of the
        same recording): the window's part of the first ``max_paths`` of
        ``sampled_<x>`` and ``sampled_<y>`` is drawn as thin lines.
    max_paths : int, default 20
    ax : matplotlib Axes, optional
    cmap : str, default "bone_r"
    vmax : float, optional
        Top of the colour scale; by default the 99th percentile of the map.
    colorbar : bool, default True

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    xhmm.InputError
        As :func:`posterior_map`, or if ``true_position`` is not one
        ``(x, y)`` pair per time step, or ``paths`` of another recording.
    """
    steps, posterior, cells, summed = _map_inputs(results, time, variable, x, y, state,
                                                  one_time=True)
    truth = None if true_position is None else _per_step(
        results, true_position, "true_position", np.float64, steps, tail=(2,))
    sampled = _sampled_paths(results, paths, (x, y), steps, max_paths)
    stride = -(-summed.shape[0] // _MAX_PATH_POINTS)
    parts = [*_window_total(summed)]
    if show_map:
        parts.append(_map_path(summed, cells.values)[::stride])
    total, seen, *best = _compute(*parts)
    xs, ys, image = _grid(np.where(seen, total, np.nan), cells)
    ax = _map_figure(ax, posterior, x, y)
    scale = _scale(image, cmap, vmax)
    drawn = _heatmap(ax, _edges(xs), _edges(ys), image, scale, interpolation="nearest")
    if truth is not None:
        ax.plot(*truth[::stride].T, "o-", color="tab:orange", lw=1.0, ms=2.5,
                label="true position")
    if sampled is not None:
        _draw_paths(ax, sampled[..., 0].T, sampled[..., 1].T)
    if show_map:
        ax.plot(*best[0].T, "o-", color="tab:blue", lw=0.8, ms=2.0, alpha=0.8,
                label="MAP position")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize="small")
    seconds, label = _seconds(posterior["time"])
    which = "summed over states" if state is None else f"state {state!r}"
    ax.set_title(f"{variable}, {which}\n{_span(seconds, label)}", loc="left",
                 fontsize="medium")
    ax.set_aspect("equal")
    if colorbar:
        ax.figure.colorbar(drawn, ax=ax, label=_map_scale_label(summed.shape[0]), pad=0.01,
                           extend="max")
    return ax


def _sampled_paths(results: xr.Dataset, paths: xr.Dataset | None, names: tuple[str, ...],
                   steps: slice, max_paths: int) -> np.ndarray | None:
    """``(paths, steps, len(names))``: the window's part of the first ``max_paths``
    paths' ``sampled_<name>``, thinned evenly to at most ``_MAX_PATH_POINTS`` steps."""
    if paths is None:
        return None
    _check_positive("max_paths", max_paths)
    variables = [_variable(paths, f"sampled_{name}") for name in names]
    n_time = results.sizes["time"]
    for variable in variables:
        if set(variable.dims) != {"sample", "time"} or variable.sizes["time"] != n_time:
            raise InputError(
                f"paths' {variable.name!r} has dims {dict(variable.sizes)}; expected "
                f"('sample', 'time') over the {n_time} time steps of the results (the "
                "sample_paths of the same recording)")
    window = {"sample": slice(0, max_paths),
              "time": slice(steps.start, steps.stop, _path_stride(steps))}
    return np.stack([np.asarray(v.transpose("sample", "time").isel(window), dtype=float)
                     for v in variables], axis=-1)


def _path_stride(steps: slice) -> int:
    """Every how many steps a path of the window ``steps`` is drawn."""
    return -(-(steps.stop - steps.start) // _MAX_PATH_POINTS)


def _draw_paths(ax: Axes, xs: np.ndarray, ys: np.ndarray) -> None:
    """Thin lines of sampled paths (one per column of ``xs``/``ys``), labelled once."""
    lines = ax.plot(xs, ys, "-", color="tab:green", lw=0.6, alpha=0.45)
    lines[0].set_label(f"sampled paths ({len(lines)})")


def _map_scale_label(n_steps: int) -> str:
    return "probability" if n_steps == 1 else "probability, summed over the steps"


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")


def animate_posterior_map(
    results: xr.Dataset,
    path: str | os.PathLike,
    *,
    time: slice | None = None,
    steps_per_frame: int = 1,
    fps: int = 10,
    max_frames: int = 500,
    variable: str = "acausal_posterior",
    x: str = "x_position",
    y: str = "y_position",
    state: str | None = None,
    true_position: Truth = None,
    show_map: bool = True,
    cmap: str = "bone_r",
    vmax: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an animated GIF of a 2-D model's posterior over a short window.

    Each frame is :func:`posterior_map` of ``steps_per_frame`` consecutive
    steps, with the MAP path and the true path up to that frame. Only the
    window's steps are read; the frames are computed together, once.

    Parameters
    ----------
    results : xr.Dataset
    path : path
        The ``.gif`` file to write (with Pillow). It is written under a
        temporary name beside it and renamed when complete.
    time : slice, optional
        Window of ``time`` values (both ends included), e.g. a replay event.
    steps_per_frame : int, default 1
        Steps summed into each frame.
    fps : int, default 10
        Frames per second.
    max_frames : int, default 500
        Refuse a window of more frames (select a shorter one, or sum more
        steps per frame).
    variable, x, y, state
        As :func:`posterior_map`.
    true_position : (T, 2) array-like, optional
        True ``(x, y)`` at each time step of ``results``.
    show_map : bool, default True
        Draw the path of the most probable position.
    cmap : str, default "bone_r"
    vmax : float, optional
        Top of the colour scale, the same in every frame; by default the
        99th percentile of all frames.
    overwrite : bool, default False
        Replace an existing file at ``path``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    xhmm.InputError
        As :func:`plot_posterior_map`, for a path not ending in ``.gif``, a
        bad ``steps_per_frame``, ``fps`` or ``max_frames``, or a window of
        more than ``max_frames`` frames.
    xhmm.StorageError
        If ``path`` exists (without ``overwrite``) or its folder does not.
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise InputError(f"the animation is written as a GIF: path {str(path)!r} must end "
                         "in .gif")
    for name, value in (("steps_per_frame", steps_per_frame), ("fps", fps),
                        ("max_frames", max_frames)):
        _check_positive(name, value)
    if path.exists() and not overwrite:
        raise StorageError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise StorageError(f"folder {str(path.parent)!r} of the animation does not exist")
    steps, posterior, cells, summed = _map_inputs(results, time, variable, x, y, state,
                                                  one_time=False)
    n_steps = summed.shape[0]
    n_frames = -(-n_steps // steps_per_frame)
    if n_frames > max_frames:
        raise InputError(
            f"the window has {n_steps} steps, {n_frames} frames of {steps_per_frame} "
            f"step(s): more than max_frames={max_frames}; choose a shorter time= window "
            "or a larger steps_per_frame"
        )
    truth = None if true_position is None else _per_step(
        results, true_position, "true_position", np.float64, steps, tail=(2,))
    parts = [_Runs.of(summed, steps_per_frame, "sum")]
    if show_map:
        parts.append(_map_path(summed, cells.values))
    frames, *best = _compute(*parts)
    xs, ys, images = _grid(frames, cells)
    seconds, label = _seconds(posterior["time"])
    mpl = _matplotlib()
    fig, ax = mpl.pyplot.subplots(figsize=(5.5, 4.5), layout="constrained")
    try:
        _map_figure(ax, posterior, x, y)
        ax.set_aspect("equal")
        scale = _scale(images, cmap, vmax)
        drawn = _heatmap(ax, _edges(xs), _edges(ys), images[0], scale,
                         interpolation="nearest")
        fig.colorbar(drawn, ax=ax, label=_map_scale_label(steps_per_frame), pad=0.01,
                     extend="max")
        paths = []
        if truth is not None:
            paths.append((ax.plot([], [], "o-", color="tab:orange", lw=1.0, ms=2.5,
                                  label="true position")[0], truth))
        if show_map:
            paths.append((ax.plot([], [], "o-", color="tab:blue", lw=0.8, ms=2.0,
                                  label="MAP position")[0], best[0]))
        if paths:
            ax.legend(loc="upper right", fontsize="small")

        def draw(frame: int) -> None:
            start = frame * steps_per_frame
            stop = min(start + steps_per_frame, n_steps)
            drawn.set_array(np.ma.masked_invalid(images[frame]))
            for line, where in paths:
                line.set_data(where[:stop, 0], where[:stop, 1])
            ax.set_title(f"{variable}\n{_span(seconds[start:stop], label)}", loc="left",
                         fontsize="medium")

        animation = mpl.animation.FuncAnimation(fig, draw, frames=n_frames)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.tmp.gif")
        try:
            animation.save(partial, writer=mpl.animation.PillowWriter(fps=fps))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        mpl.pyplot.close(fig)
    return path
