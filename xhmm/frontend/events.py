"""Events: the stretches of time in which a discrete state holds, found in one pass.

:func:`events` thresholds the per-state probabilities of a result
(``acausal_state_probabilities`` by default) and returns one row per event:
its start, stop, duration, peak and mean probability and, where the result
holds a decoded position (``map_<coord>`` or ``most_likely_<coord>``), the
path length and mean speed of that position within the event.

It reads the probabilities block by block along time (the dask blocks of the
variable, or blocks of :data:`NUMPY_BLOCK_ROWS` rows of a NumPy or memmap
array), once, carrying a run that is still open across each block's end; it
holds one block and a few numbers per run, never the whole recording.
Per-event sums come from running totals (of probability, path length and
known displacements) recorded at each run's first and last step, so runs
merged across a gap get the sums over the gap's steps too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import dask
import numpy as np
import xarray as xr

from ..errors import ConfigError, DimensionError, InputError
from ..names import STATES, TIME, TIME_DIM_ATTR

__all__ = ["events"]

#: Rows per block when the probabilities are a NumPy (or memmap) array.
NUMPY_BLOCK_ROWS = 65_536
#: Prefixes of the decoded positions, in order of preference (docs/usage.md, naming).
POSITION_PREFIXES = ("map_", "most_likely_")
#: Relative tolerance of converting durations to whole steps.
STEP_RTOL = 1e-9

# Columns of the run records: the first-step side and the last-step side of a run.
# First step: index, probability summed before it, path length and known
# displacements up to it, peak probability of the run.
_START, _SUM_BEFORE, _LENGTH_AT_START, _PAIRS_AT_START, _PEAK = range(5)
# Last step: index, probability summed through it, path length and known displacements.
_STOP, _SUM_THROUGH, _LENGTH_AT_STOP, _PAIRS_AT_STOP = range(4)


class _Runs:
    """Runs of steps at or above the threshold, found block by block.

    ``firsts`` and ``lasts`` hold one row per closed run (the columns above);
    ``open`` is the first-step row of a run that reached the end of the last
    block read. The running totals are those through the last step read.
    """

    def __init__(self, threshold: float, n_dims: int):
        self.threshold = threshold
        self.firsts: list[np.ndarray] = []
        self.lasts: list[np.ndarray] = []
        self.open: np.ndarray | None = None
        self.offset = 0
        self.totals = np.zeros(3)  # probability, path length, known displacements
        self.last_position = np.full((1, n_dims), np.nan)

    def add(self, p: np.ndarray, positions: np.ndarray) -> None:
        """Read the next block: probabilities ``(n,)`` and positions ``(n, n_dims)``."""
        n = p.size
        above = p >= self.threshold
        through = self.totals[0] + np.cumsum(np.nan_to_num(p))
        before = np.r_[self.totals[0], through[:-1]]
        steps = np.sqrt((np.diff(np.vstack([self.last_position, positions]), axis=0) ** 2)
                        .sum(axis=1))
        known = np.isfinite(steps)
        length = self.totals[1] + np.cumsum(np.where(known, steps, 0.0))
        pairs = self.totals[2] + np.cumsum(known)
        starts = np.flatnonzero(above & ~np.r_[False, above[:-1]])
        stops = np.flatnonzero(above & ~np.r_[above[1:], False])
        peaks = np.fmax.reduceat(p, starts) if starts.size else np.zeros(0)
        firsts = np.column_stack([starts + self.offset, before[starts], length[starts],
                                  pairs[starts], peaks])
        lasts = np.column_stack([stops + self.offset, through[stops], length[stops],
                                 pairs[stops]])
        if self.open is not None:
            if above[0]:  # the open run goes on into this block
                self.open[_PEAK] = max(self.open[_PEAK], firsts[0, _PEAK])
                firsts[0] = self.open
            else:  # it ended at the last step of the previous block
                self.firsts.append(self.open[None])
                self.lasts.append(np.r_[self.offset - 1, self.totals][None])
            self.open = None
        if above[-1]:
            self.open, firsts, lasts = firsts[-1].copy(), firsts[:-1], lasts[:-1]
        self.firsts.append(firsts)
        self.lasts.append(lasts)
        self.offset += n
        self.totals = np.array([through[-1], length[-1], pairs[-1]])
        self.last_position = positions[-1:]

    def closed(self) -> tuple[np.ndarray, np.ndarray]:
        """Every run, the one still open ending at the last step read."""
        if self.open is not None:
            self.firsts.append(self.open[None])
            self.lasts.append(np.r_[self.offset - 1, self.totals][None])
            self.open = None
        return (np.concatenate([np.zeros((0, 5)), *self.firsts]),
                np.concatenate([np.zeros((0, 4)), *self.lasts]))


def _merged(firsts: np.ndarray, lasts: np.ndarray, max_gap: int,
            min_steps: int) -> dict[str, np.ndarray]:
    """Runs separated by at most ``max_gap`` steps merged, then those of ``min_steps`` kept."""
    gap = firsts[1:, _START] - lasts[:-1, _STOP] - 1
    first = np.flatnonzero(np.r_[True, gap > max_gap]) if len(firsts) else np.zeros(0, int)
    last = np.r_[first[1:] - 1, len(firsts) - 1].astype(int) if first.size else first
    start, stop = firsts[first, _START], lasts[last, _STOP]
    n_steps = stop - start + 1
    keep = n_steps >= min_steps
    peak = np.fmax.reduceat(firsts[:, _PEAK], first) if first.size else np.zeros(0)
    return {
        "start_index": start[keep].astype(np.int64),
        "stop_index": stop[keep].astype(np.int64),
        "n_steps": n_steps[keep].astype(np.int64),
        "peak": peak[keep],
        "total": (lasts[last, _SUM_THROUGH] - firsts[first, _SUM_BEFORE])[keep],
        "length": (lasts[last, _LENGTH_AT_STOP] - firsts[first, _LENGTH_AT_START])[keep],
        "pairs": (lasts[last, _PAIRS_AT_STOP] - firsts[first, _PAIRS_AT_START])[keep],
    }


def _probabilities(result: xr.Dataset, variable: str, state, time_dim: str) -> xr.DataArray:
    """The probability variable, its time dim first, only the chosen states."""
    if variable not in result.data_vars:
        raise InputError(
            f"the result has no variable {variable!r} (per-state probabilities, dims "
            f"{time_dim}, {STATES}); found: {', '.join(map(str, result.data_vars)) or 'none'}"
            f" (smooth or filter with a 'state' coordinate and emit_state_aggregates=True "
            f"gives them; pass variable= to choose another)"
        )
    probs = result[variable]
    dims = tuple(map(str, probs.dims))
    extra = [dim for dim in dims if dim not in (time_dim, STATES)]
    if set(dims) != {time_dim, STATES}:
        hint = ("; pass time_dim= naming the time dim" if time_dim not in dims else
                f"; select one recording first, e.g. .isel({extra[0]}=0)" if extra else "")
        raise DimensionError(f"{variable} has dims {dims}; events reads ({time_dim!r}, "
                             f"{STATES!r}) of one recording{hint}")
    labels = (list(state) if isinstance(state, (Sequence, np.ndarray))
              and not isinstance(state, str) else [state])
    known = list(probs[STATES].values) if STATES in probs.coords else []
    unknown = [label for label in labels if label not in known]
    if unknown or not labels:
        raise InputError(
            f"state={state!r}: {', '.join(map(repr, unknown)) or 'no label'} is not a "
            f"state of {variable}; its states: {', '.join(map(str, known))}"
        )
    return probs.transpose(time_dim, STATES).isel({STATES: [known.index(s) for s in labels]})


def _positions(result: xr.Dataset, position, time_dim: str) -> list[str]:
    """The names of the decoded position variables: given, or found by their prefix."""
    if position is not None:
        names = [position] if isinstance(position, str) else list(position)
        missing = [name for name in names if name not in result.data_vars]
        if missing:
            raise InputError(
                f"position={position!r}: the result has no variable "
                f"{', '.join(map(repr, missing))}; found: "
                f"{', '.join(map(str, result.data_vars))}"
            )
        wrong = next((name for name in names if result[name].dims != (time_dim,)), None)
        if wrong is not None:
            raise DimensionError(f"position variable {wrong} has dims "
                                 f"{tuple(map(str, result[wrong].dims))}; expected "
                                 f"({time_dim!r},)")
        return names
    for prefix in POSITION_PREFIXES:
        names = [str(name) for name, var in result.data_vars.items()
                 if str(name).startswith(prefix) and var.dims == (time_dim,)
                 and var.dtype.kind in "iuf" and not str(name).endswith("_state_bin")]
        if names:
            return names
    return []


def _step(result: xr.Dataset, time_dim: str) -> float:
    """The time between steps: the median spacing of the time coordinate (else 1)."""
    if time_dim not in result.coords or result.sizes[time_dim] < 2:
        return 1.0
    time = result[time_dim].values
    if time.dtype.kind not in "iuf":
        raise InputError(
            f"events measures durations in the units of the {time_dim!r} coordinate, which "
            f"must be numeric (seconds, say); it has dtype {time.dtype}"
        )
    spacing = np.diff(time.astype(np.float64))
    if not np.all(spacing > 0):
        raise InputError(f"the {time_dim!r} coordinate must increase from step to step")
    return float(np.median(spacing))


def _non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0 \
            or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number >= 0 (in the units of the time "
                          f"coordinate), got {value!r}")
    return float(value)


def _blocks(probs: xr.DataArray, time_dim: str) -> list[int]:
    """The rows of each block read: the dask blocks along time, or NUMPY_BLOCK_ROWS."""
    if probs.chunks is not None:
        return list(probs.chunks[probs.dims.index(time_dim)])
    n = probs.sizes[time_dim]
    return [min(NUMPY_BLOCK_ROWS, n - i) for i in range(0, n, NUMPY_BLOCK_ROWS)]


def events(
    result: xr.Dataset,
    state: str | Sequence[str],
    *,
    threshold: float,
    min_duration: float = 0.0,
    merge_gap: float = 0.0,
    variable: str = "acausal_state_probabilities",
    position: str | Sequence[str] | None = None,
    time_dim: str | None = None,
) -> xr.Dataset:
    """The events in which ``state`` holds with probability ``>= threshold``.

    A run is a maximal stretch of consecutive steps whose probability of
    ``state`` (summed over the labels, for a list) is ``>= threshold``. Runs
    separated by gaps of at most ``merge_gap`` are merged into one event
    (the steps of the gap belong to it); events shorter than
    ``min_duration`` are then dropped. A step lasts ``dt``, the median
    spacing of the time coordinate (1 without one: durations are then in
    steps), so an event of ``n`` steps lasts ``n * dt`` and a gap of ``g``
    steps below the threshold lasts ``g * dt``; both comparisons are made in
    whole steps, with a relative tolerance of 1e-9.

    Parameters
    ----------
    result : xr.Dataset
        A result of ``smooth`` or ``filter`` (fresh, reopened with
        :func:`xhmm.open_results` or :func:`xhmm.open_run`, NumPy, memmap or
        dask-backed) of one recording.
    state : str or sequence of str
        A label of the ``states`` dim, or several (their probabilities summed).
    threshold : float
        In (0, 1]; a step is in a run when its probability is ``>= threshold``.
    min_duration : float, default 0
        Keep the events lasting at least this long (time coordinate units).
    merge_gap : float, default 0
        Merge runs separated by at most this long below the threshold.
    variable : str, default "acausal_state_probabilities"
        The per-state probabilities to read, dims ``(time, states)``, e.g.
        ``"causal_state_probabilities"``.
    position : str or sequence of str, optional
        The decoded position variables (dims ``(time,)``) for the path length
        and speed; by default every numeric ``map_<coord>`` of the result, or
        failing those every ``most_likely_<coord>``.
    time_dim : str, optional
        The time dim; by default the result's ``xhmm_time_dim`` attribute, or
        ``"time"``.

    Returns
    -------
    xr.Dataset
        Along an ``event`` dim, in time order: ``start`` and ``stop`` (the
        time of the event's first and last step), ``start_index`` and
        ``stop_index`` (their positions along time, for ``isel``),
        ``duration`` (steps × dt), ``peak_probability`` and
        ``mean_probability`` (over the event's steps, gaps included), and
        with a position: ``path_length`` (the sum of the Euclidean distances
        between the positions of consecutive steps of the event, over the
        pairs where both are known) and ``mean_speed`` (``path_length`` over
        those pairs' time, NaN for an event without one). The arguments are
        attributes.

    Raises
    ------
    ConfigError
        ``threshold`` outside (0, 1], a negative or non-finite duration.
    InputError
        No such variable, state label or position variable; a time
        coordinate that is not numeric or not increasing.
    DimensionError
        The probabilities are not ``(time, states)``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, Real) \
            or not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1] (a step is in an event when its "
                          f"probability is >= threshold), got {threshold!r}")
    min_duration = _non_negative("min_duration", min_duration)
    merge_gap = _non_negative("merge_gap", merge_gap)
    time_dim = time_dim or result.attrs.get(TIME_DIM_ATTR, TIME)
    probs = _probabilities(result, variable, state, time_dim)
    names = _positions(result, position, time_dim)
    dt = _step(result, time_dim)
    runs = _Runs(float(threshold), len(names))
    offset = 0
    for rows in _blocks(probs, time_dim):
        window = {time_dim: slice(offset, offset + rows)}
        block, *columns = dask.compute(probs.isel(window).data,
                                       *(result[name].isel(window).data for name in names))
        runs.add(block.astype(np.float64).sum(axis=1),
                 np.column_stack(columns).astype(np.float64) if columns
                 else np.zeros((rows, 0)))
        offset += rows
    found = _merged(*runs.closed(), max_gap=math.floor(merge_gap / dt * (1 + STEP_RTOL)),
                    min_steps=math.ceil(min_duration / dt * (1 - STEP_RTOL)))
    return _dataset(result, found, names, dt, time_dim, attrs={
        "state": state if isinstance(state, str) else list(state), "threshold": threshold,
        "min_duration": min_duration, "merge_gap": merge_gap, "variable": variable,
        "dt": dt})


def _dataset(result: xr.Dataset, found: dict[str, np.ndarray], names: list[str], dt: float,
             time_dim: str, attrs: dict) -> xr.Dataset:
    """The events as a Dataset along ``event``."""
    if time_dim in result.coords:
        time = result[time_dim].values
        units = {"units": result[time_dim].attrs["units"]} if "units" in result[
            time_dim].attrs else {}
    else:
        time, units = np.arange(result.sizes[time_dim]), {"units": "steps"}
    dim = ("event",)
    out = {
        "start": (dim, time[found["start_index"]], units),
        "stop": (dim, time[found["stop_index"]], units),
        "start_index": (dim, found["start_index"]),
        "stop_index": (dim, found["stop_index"]),
        "duration": (dim, found["n_steps"] * dt, units),
        "peak_probability": (dim, found["peak"]),
        "mean_probability": (dim, found["total"] / np.maximum(found["n_steps"], 1)),
    }
    if names:
        with np.errstate(divide="ignore", invalid="ignore"):
            speed = np.where(found["pairs"] > 0, found["length"] / (found["pairs"] * dt),
                             np.nan)
        out["path_length"] = (dim, found["length"])
        out["mean_speed"] = (dim, speed)
        attrs["position"] = names
    return xr.Dataset(out, attrs=attrs)
