"""Figures of decoding results: posterior over position, state probabilities.

Each function takes a result Dataset of ``ds.hmm.smooth`` / ``filter`` (or one
reopened with :func:`xhmm.open_results`) and computes only the variables it
draws. Select a time window first for long recordings, e.g.
``plot_posterior(res.sel(time=slice(10, 20)))``: the posterior of the window
is loaded to draw it.

matplotlib (the ``plot`` extra, ``pip install "xhmm[plot]"``) is imported
when a figure is drawn, not with this module, so ``xhmm.plot`` is reachable
after ``import xhmm`` at no cost; drawing without it raises
:class:`xhmm.MissingExtraError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from .errors import InputError
from .extras import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "posterior_over_position",
    "plot_posterior",
    "plot_state_probabilities",
    "plot_decoding",
]

#: Colour of bins outside the track interior (NaN in the posterior).
EXTERIOR_COLOR = "#f3dfc9"


def _pyplot():
    """``matplotlib.pyplot``, or a :class:`xhmm.MissingExtraError` naming the extra."""
    return require("matplotlib.pyplot", "plot", "drawing a figure")


def _variable(results: xr.Dataset, name: str) -> xr.DataArray:
    if name not in results.variables:
        found = ", ".join(map(str, results.data_vars)) or "no data variables"
        raise InputError(f"the results have no variable {name!r}; found: {found}")
    return results[name]


def posterior_over_position(
    results: xr.Dataset,
    *,
    variable: str = "acausal_posterior",
    position: str = "position",
    state: str | None = None,
) -> xr.DataArray:
    """Posterior over a position coordinate, summed over discrete states.

    Parameters
    ----------
    results : xr.Dataset
        Results with ``variable`` over ``(time, state_bins)`` and a numeric
        coordinate ``position`` along ``state_bins``.
    variable : str, default "acausal_posterior"
    position : str, default "position"
        Coordinate of ``state_bins`` to put on the vertical axis.
    state : str, optional
        Keep only the bins whose ``state`` coordinate equals this label. By
        default bins that share a position are summed over all states.

    Returns
    -------
    xr.DataArray
        ``(time, position)``, NaN where every bin of that position is
        exterior.

    Raises
    ------
    xhmm.InputError
        If the variable, the coordinate or the state label is missing.
    """
    posterior = _variable(results, variable)
    if "state_bins" not in posterior.dims or "time" not in posterior.dims:
        raise InputError(
            f"{variable!r} must have dims ('time', 'state_bins'), got {posterior.dims}"
        )
    if position not in posterior.coords or posterior[position].dims != ("state_bins",):
        raise InputError(
            f"{variable!r} has no coordinate {position!r} along 'state_bins'; pass "
            "position= the name of a numeric coordinate of state_bins"
        )
    if state is not None:
        if "state" not in posterior.coords:
            raise InputError("state= was given but the results have no 'state' coordinate")
        labels = np.asarray(posterior["state"].values)
        keep = np.flatnonzero(labels == state)
        if keep.size == 0:
            known = ", ".join(map(repr, dict.fromkeys(labels.tolist())))
            raise InputError(f"no state {state!r} in the results; states: {known}")
        posterior = posterior.isel(state_bins=keep)
    where = np.asarray(posterior[position].values)
    if not np.issubdtype(where.dtype, np.number):
        raise InputError(f"coordinate {position!r} must be numeric, got dtype {where.dtype}")
    values, column = np.unique(where, return_inverse=True)
    onehot = np.zeros((where.size, values.size), dtype=np.float32)
    onehot[np.arange(where.size), column] = 1.0
    dense = np.asarray(posterior.transpose("time", "state_bins").values, dtype=np.float32)
    known = ~np.isnan(dense)
    summed = np.where(known, dense, 0.0) @ onehot
    summed[(known.astype(np.float32) @ onehot) == 0] = np.nan
    return xr.DataArray(
        summed,
        dims=("time", position),
        coords={
            "time": ("time", posterior["time"].values, posterior["time"].attrs),
            position: (position, values, posterior[position].attrs),
        },
        attrs={"long_name": posterior.attrs.get("long_name", variable)},
    )


def _per_step(results: xr.Dataset, value, name: str, dtype) -> np.ndarray:
    """``value`` as an array with one entry per time step of ``results``."""
    array = np.asarray(value, dtype=dtype)
    n_time = results.sizes.get("time", 0)
    if array.shape != (n_time,):
        raise InputError(
            f"{name} has shape {array.shape}; expected one value per time step "
            f"({n_time},)"
        )
    return array


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


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints, extended at both ends)."""
    if centers.size == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    mid = 0.5 * (centers[1:] + centers[:-1])
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def _evenly_spaced(values: np.ndarray) -> bool:
    steps = np.diff(values)
    return steps.size == 0 or bool(np.allclose(steps, steps[0], rtol=1e-6, atol=0.0))


def _heatmap(ax: Axes, times: np.ndarray, centers: np.ndarray, values, scale: dict):
    """Draw ``values`` (position, time): an image on an even grid, else a mesh.

    An image is resampled to the screen, so drawing a long recording stays
    fast; uneven coordinates need the (slower) mesh.
    """
    if _evenly_spaced(times) and _evenly_spaced(centers):
        t_edges, p_edges = _edges(times), _edges(centers)
        return ax.imshow(
            values, origin="lower", aspect="auto", interpolation="antialiased",
            extent=(t_edges[0], t_edges[-1], p_edges[0], p_edges[-1]), **scale,
        )
    return ax.pcolormesh(_edges(times), _edges(centers), values, shading="flat",
                         rasterized=True, **scale)


def _label(coord: xr.DataArray, name: str) -> str:
    units = coord.attrs.get("units")
    return f"{name} ({units})" if units else name


def plot_posterior(
    results: xr.Dataset,
    *,
    variable: str = "acausal_posterior",
    position: str = "position",
    state: str | None = None,
    true_position: Sequence[float] | np.ndarray | xr.DataArray | None = None,
    show_map: bool = True,
    ax: Axes | None = None,
    cmap: str = "bone_r",
    vmax: float | None = None,
    colorbar: bool = True,
) -> Axes:
    """Heat map of the posterior over position against time.

    Parameters
    ----------
    results : xr.Dataset
        Output of ``ds.hmm.smooth`` / ``filter`` or :func:`xhmm.open_results`.
    variable : str, default "acausal_posterior"
        ``"causal_posterior"`` draws the filtered posterior.
    position : str, default "position"
        Numeric coordinate of ``state_bins`` for the vertical axis.
    state : str, optional
        Draw one discrete state's bins only; by default states are summed
        (see :func:`posterior_over_position`).
    true_position : array-like, optional
        True position at each time step, drawn as a line.
    show_map : bool, default True
        Overlay the most probable position of the drawn posterior.
    ax : matplotlib Axes, optional
        Axes to draw in; a new figure is made by default.
    cmap : str, default "bone_r"
    vmax : float, optional
        Top of the colour scale; by default the 99th percentile of the drawn
        probabilities, so a few very sharp steps do not wash out the rest.
    colorbar : bool, default True

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    xhmm.InputError
        As :func:`posterior_over_position`, or if ``true_position`` does not
        have one value per time step.
    """
    truth = None if true_position is None else _per_step(
        results, true_position, "true_position", np.float64
    )
    grid = posterior_over_position(results, variable=variable, position=position,
                                   state=state)
    times, time_label = _seconds(grid["time"])
    centers = np.asarray(grid[position].values, dtype=np.float64)
    values = grid.values
    plt = _pyplot()
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    finite = values[np.isfinite(values)]
    top = vmax if vmax is not None else (
        float(np.percentile(finite, 99)) if finite.size else 1.0
    )
    colormap = plt.get_cmap(cmap).with_extremes(bad=EXTERIOR_COLOR)
    scale = {"cmap": colormap, "vmin": 0.0, "vmax": max(top, np.finfo(np.float32).tiny)}
    image = _heatmap(ax, times, centers, np.ma.masked_invalid(values.T), scale)
    if truth is not None:
        ax.plot(times, truth, color="tab:orange", lw=1.0, alpha=0.9, label="true position")
    if show_map:
        rows = np.isfinite(values).any(axis=1)
        best = np.full(times.shape, np.nan)
        best[rows] = centers[np.nanargmax(values[rows], axis=1)]
        ax.plot(times, best, ".", color="tab:blue", ms=1.0, alpha=0.5,
                label="MAP position", rasterized=True)
    handles, _ = ax.get_legend_handles_labels()
    if np.isnan(values).all(axis=0).any():
        handles.append(Patch(color=EXTERIOR_COLOR, label="off the track (exterior)"))
    if handles:
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                  ncols=len(handles), markerscale=8, frameon=False, fontsize="small",
                  borderaxespad=0.2)
    ax.set_xlabel(time_label)
    ax.set_ylabel(_label(results[position], position))
    ax.set_xlim(times[0], times[-1])
    which = ", summed over states" if state is None else f", state {state!r}"
    ax.set_title(f"{variable}{which}", loc="left", fontsize="medium")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="probability", pad=0.01, extend="max")
    return ax


def _runs(labels: np.ndarray) -> list[tuple[object, int, int]]:
    """``(label, start, stop)`` of each run of equal consecutive labels."""
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [(labels[a], int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def plot_state_probabilities(
    results: xr.Dataset,
    *,
    variable: str = "acausal_state_probabilities",
    true_state: Sequence[str] | np.ndarray | xr.DataArray | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Probability of each discrete state against time.

    Parameters
    ----------
    results : xr.Dataset
        Results holding ``variable`` over ``(time, states)``.
    variable : str, default "acausal_state_probabilities"
        ``"causal_state_probabilities"`` draws the filtered ones.
    true_state : array-like, optional
        True state label at each time step, drawn as a coloured band under
        the curves (in each state's line colour).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    xhmm.InputError
        If the variable is missing or ``true_state`` has the wrong length.
    """
    probs = _variable(results, variable)
    truth = None if true_state is None else _per_step(results, true_state, "true_state", None)
    if set(probs.dims) != {"time", "states"}:
        raise InputError(f"{variable!r} must have dims ('time', 'states'), got {probs.dims}")
    probs = probs.transpose("time", "states")
    times, time_label = _seconds(probs["time"])
    if ax is None:
        plt = _pyplot()
        _, ax = plt.subplots(figsize=(10, 2.5), layout="constrained")
    colors = {}
    values = np.asarray(probs.values, dtype=np.float64)
    for k, label in enumerate(probs["states"].values):
        (line,) = ax.plot(times, values[:, k], lw=1.0, label=str(label))
        colors[label] = line.get_color()
    bottom = 0.0
    if truth is not None:
        step = np.median(np.diff(times)) if times.size > 1 else 1.0
        bottom = -0.16
        spans: dict[object, list[tuple[float, float]]] = {}
        for label, start, stop in _runs(truth):
            spans.setdefault(label, []).append(
                (times[start], times[stop - 1] + step - times[start])
            )
        for label, label_spans in spans.items():
            ax.broken_barh(label_spans, (-0.14, 0.08), facecolors=colors.get(label, "0.5"),
                           linewidth=0)
        ax.text(times[0], -0.10, " true ", va="center", ha="right", fontsize="x-small")
    ax.set_ylim(bottom, 1.02)
    ax.set_yticks([0.0, 0.5, 1.0])
    ax.set_xlim(times[0], times[-1])
    ax.set_xlabel(time_label)
    ax.set_ylabel("probability")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(colors),
              frameon=False, fontsize="small", borderaxespad=0.2)
    return ax


def plot_decoding(
    results: xr.Dataset,
    *,
    true_position: Sequence[float] | np.ndarray | xr.DataArray | None = None,
    true_state: Sequence[str] | np.ndarray | xr.DataArray | None = None,
    position: str = "position",
    title: str | None = None,
) -> Figure:
    """Posterior over position above the state probabilities, sharing time.

    Draws the smoothed posterior when the results have one, else the
    filtered one; the state panel is drawn when the matching
    ``*_state_probabilities`` exist (bins labelled by a ``state`` coordinate).

    Parameters
    ----------
    results : xr.Dataset
    true_position, true_state : array-like, optional
        Ground truth to overlay (see :func:`plot_posterior` and
        :func:`plot_state_probabilities`).
    position : str, default "position"
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    kind = "acausal" if "acausal_posterior" in results.variables else "causal"
    states = f"{kind}_state_probabilities"
    with_states = states in results.variables
    plt = _pyplot()

    if with_states:
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 1), layout="constrained"
        )
    else:
        fig, top = plt.subplots(figsize=(11, 4.5), layout="constrained")
    plot_posterior(results, variable=f"{kind}_posterior", position=position,
                   true_position=true_position, ax=top)
    if with_states:
        plot_state_probabilities(results, variable=states, true_state=true_state,
                                 ax=bottom)
        top.set_xlabel("")
    if title:
        fig.suptitle(title)
    return fig
