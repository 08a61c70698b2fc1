"""Build the result Dataset of a run from the engine's buffers.

One builder for every path: a single recording (``ds.hmm.smooth``), many
sequences run in one or several batches (a ``sequence`` dim, in
this process or as dask.distributed tasks) and a finished memmap run reopened
from its folder (:func:`xhmm.open_run`). Each engine run contributes a
:class:`Part` (its buffers, memmaps referenced by path); the builder lays the
parts out by sequence and wraps them in lazy (or eager) masked posteriors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..config import Config
from ..engine.loop import EngineResult
from ..names import BINS, SEQUENCE, SEQUENCE_LENGTH, STATES, TIME
from .coords import numpy_coords
from .hpd import summary_variables
from .inputs import ResolvedInputs
from .lazy import (SequenceRows, eager_masked_posterior, lazy_masked_posterior, portable,
                   read_rows)

__all__ = ["Part", "BinLayout", "part_of", "build_result", "result_coords", "bin_variables",
           "run_metadata"]


_POSTERIORS = {
    "causal_posterior": "filtered posterior p(state_t | y_1..t)",
    "acausal_posterior": "smoothed posterior p(state_t | y_1..T)",
}


@dataclass
class BinLayout:
    """Which bins the engine ran over.

    Attributes
    ----------
    mask : (N,) bool ndarray
        ``is_interior``.
    state_labels : ndarray or None
        Labels of the discrete states (the ``states`` dim), in order of
        first appearance.
    area : dict or None
        How the bins' sizes were found (:attr:`xhmm.frontend.hpd.BinSizes.attrs`),
        for ``hpd_area``; None without position coordinates.
    """

    mask: np.ndarray
    state_labels: np.ndarray | None = None
    area: dict[str, Any] | None = None

    @property
    def columns(self) -> np.ndarray:
        """Interior bins among all bins."""
        return np.flatnonzero(self.mask).astype(np.int64)


@dataclass
class Part:
    """The outputs of one engine run, for the sequences it covered.

    Buffers are ``(B, T, ...)`` ndarrays or, for memmap runs,
    :class:`xhmm.frontend.lazy.StoredArray` references (small to pickle).

    Attributes
    ----------
    indices : (B,) int ndarray
        Position of each of the run's sequences in the result.
    lengths : (B,) int64 ndarray
    marginal_log_likelihood : (B,) float64 ndarray
    causal, acausal : buffer or None
    summaries : dict of str to buffer
    memmap_dir : str or None
    transition : dict
        How the transition ran.
    float64_chunks : int
        Chunks the run computed in float64.
    transition_counts : (B, S, S) ndarray or None
        Expected state-to-state transitions of each sequence.
    initial_posterior : (B, K) ndarray or None
        Smoothed posterior of each sequence's first step.
    """

    indices: np.ndarray
    lengths: np.ndarray
    marginal_log_likelihood: np.ndarray
    causal: Any
    acausal: Any
    summaries: dict[str, Any] = field(default_factory=dict)
    memmap_dir: str | None = None
    transition: dict[str, Any] = field(default_factory=dict)
    float64_chunks: int = 0
    transition_counts: np.ndarray | None = None
    initial_posterior: np.ndarray | None = None


def part_of(engine: EngineResult, indices) -> Part:
    """A :class:`Part` of an engine run, memmaps replaced by their paths."""
    folder, run_id = engine.memmap_dir, engine.run_id
    return Part(
        indices=np.asarray(indices, dtype=np.int64),
        lengths=engine.lengths,
        marginal_log_likelihood=engine.marginal_log_likelihood,
        causal=portable(engine.causal, "causal_posterior", folder, run_id),
        acausal=portable(engine.acausal, "acausal_posterior", folder, run_id),
        summaries={k: portable(v, k, folder, run_id) for k, v in engine.summaries.items()},
        memmap_dir=None if folder is None else str(folder),
        transition=engine.transition,
        float64_chunks=engine.float64_chunks,
        transition_counts=engine.transition_counts,
        initial_posterior=engine.initial_posterior,
    )


def result_coords(ds: xr.Dataset, dims=(SEQUENCE, TIME, BINS)) -> xr.Coordinates:
    """Coordinates of ``ds`` along ``dims`` only.

    Indexes (a MultiIndex over ``state_bins`` included) are kept whole; 1-D
    coordinates are NumPy-backed (:func:`xhmm.frontend.coords.numpy_coords`) even
    when ``ds`` was chunked, so boolean selections and ``groupby`` on them
    work on the lazy results.
    """
    keep = {name for name, coord in ds.coords.items() if set(coord.dims) <= set(dims)}
    drop = [name for name in ds.coords if name not in keep]
    return numpy_coords(ds.drop_vars(list(ds.data_vars) + drop))


def _numeric_bin_coords(ds: xr.Dataset | None):
    """Numeric 1-D coordinates of ``state_bins`` (for ``map_<coord>``)."""
    if ds is None:
        return
    for name, coord in ds.coords.items():
        if coord.dims != (BINS,) or name in ("is_interior", BINS):
            continue
        if np.issubdtype(coord.dtype, np.number) and coord.dtype != bool:
            yield name, coord


def bin_variables(ds: xr.Dataset | None, bins: np.ndarray, valid: np.ndarray, prefix: str,
                  dims: tuple[str, ...], long_name: str) -> dict[str, xr.DataArray]:
    """A state bin per time step as result variables: index and coordinates.

    Parameters
    ----------
    ds : xr.Dataset or None
        The input, for the coordinates of ``state_bins``.
    bins : int ndarray
        Index into ``state_bins`` of each step, -1 where ``valid`` is False.
    valid : bool ndarray
        Steps that have a bin (False past a sequence's end).
    prefix : str
        ``"map"`` gives ``map_state_bin``, ``map_state`` and ``map_<coord>``;
        ``"most_likely"`` the ``most_likely_`` names.
    dims : tuple of str
        Dims of ``bins``.
    long_name : str
        Of ``{prefix}_state_bin``.

    Returns
    -------
    dict of str to xr.DataArray
        ``{prefix}_state_bin``, ``{prefix}_<coord>`` for each numeric
        coordinate of ``state_bins`` (NaN where not valid) and
        ``{prefix}_state``, the label of the ``state`` coordinate (numeric,
        or ``""`` where not valid), when one labels the bins.
    """
    out = {f"{prefix}_state_bin": xr.DataArray(bins, dims=dims,
                                                 attrs={"long_name": long_name})}
    for name, coord in _numeric_bin_coords(ds):
        mapped = np.asarray(coord.values)[np.maximum(bins, 0)]
        if not valid.all():
            mapped = np.where(valid, mapped.astype(np.result_type(mapped, np.float32)), np.nan)
        out[f"{prefix}_{name}"] = xr.DataArray(mapped, dims=dims, attrs=dict(coord.attrs))
    state = None if ds is None else ds.coords.get("state")
    if state is not None and state.dims == (BINS,) and f"{prefix}_state" not in out:
        labels = np.asarray(state.values)[np.maximum(bins, 0)]
        out[f"{prefix}_state"] = xr.DataArray(np.where(valid, labels, ""), dims=dims,
                                              attrs=dict(state.attrs))
    return out


class _Layout:
    """Where each sequence of the result lives among the parts."""

    def __init__(self, parts: list[Part], n_sequences: int, n_time: int) -> None:
        self.parts = parts
        self.n_time = n_time
        self.places: list[tuple[Part, int]] = [None] * n_sequences  # type: ignore[list-item]
        self.lengths = np.zeros(n_sequences, dtype=np.int64)
        self.marginal = np.zeros(n_sequences, dtype=np.float64)
        for part in parts:
            for row, s in enumerate(part.indices):
                self.places[s] = (part, row)
                self.lengths[s] = part.lengths[row]
                self.marginal[s] = part.marginal_log_likelihood[row]
        self.valid = np.arange(n_time)[None, :] < self.lengths[:, None]

    def rows(self, kind: str) -> list[SequenceRows]:
        return [SequenceRows(getattr(part, kind), row, self.lengths[s], self.n_time)
                for s, (part, row) in enumerate(self.places)]

    def gather(self, name: str, fill, dtype) -> np.ndarray:
        """One summary of every sequence, ``(S, n_time, ...)``, filled past lengths."""
        first = self.parts[0].summaries[name]
        out = np.full((len(self.places), self.n_time, *first.shape[2:]), fill, dtype=dtype)
        for s, (part, row) in enumerate(self.places):
            out[s, :self.lengths[s]] = read_rows(part.summaries[name], row, 0,
                                                 self.lengths[s])
        return out


def _posterior(rows: list[SequenceRows], layout: BinLayout, config: Config):
    stored = np.float32 if config.storage_dtype == "uint16" else config.storage_dtype
    dtype = np.result_type(config.posterior_out_dtype, stored)
    if config.lazy_expand:
        import dask.array as da

        arrays = [lazy_masked_posterior(r, layout.mask, config.time_chunks, dtype)
                  for r in rows]
        return da.stack(arrays) if len(arrays) > 1 else arrays[0][None]
    data = np.empty((len(rows), rows[0].shape[0], layout.mask.size), dtype)
    for s, r in enumerate(rows):
        data[s] = eager_masked_posterior(r, layout.mask, dtype)
    return data


def build_result(
    ds: xr.Dataset | None,
    layout: BinLayout,
    parts: list[Part],
    config: Config,
    *,
    n_time: int,
    sequences: bool,
    algorithm: str = "smooth",
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Assemble the result Dataset (posteriors, likelihood, summaries).

    Parameters
    ----------
    ds : xr.Dataset or None
        The input, for its coordinates and attributes (None when reopening
        a run from its folder).
    layout : BinLayout
    parts : list of Part
        Together they cover every sequence once.
    config : Config
    n_time : int
        Size of the ``time`` dim.
    sequences : bool
        Keep a ``sequence`` dim; False for a single recording (the only
        sequence of a one-sequence part).
    algorithm : {"smooth", "filter"}, default "smooth"
        The run's method: ``xhmm_config`` records only the Config fields
        that concern it (:meth:`xhmm.Config.field_names`).
    attrs : dict, optional
        Extra attributes of the result.

    Returns
    -------
    xr.Dataset
    """
    n_seq = sum(len(part.indices) for part in parts)
    where = _Layout(parts, n_seq, n_time)
    lead = (SEQUENCE,) if sequences else ()

    def pick(values):
        return values if sequences else values[0]

    data: dict[str, xr.DataArray] = {}
    for name, long_name in _POSTERIORS.items():
        kind = name.split("_")[0]
        if getattr(parts[0], kind) is None:
            continue
        data[name] = xr.DataArray(
            pick(_posterior(where.rows(kind), layout, config)), dims=(*lead, TIME, BINS),
            attrs={"long_name": long_name, "xhmm_storage_dtype": config.storage_dtype},
        )
    data["marginal_log_likelihood"] = xr.DataArray(
        pick(where.marginal), dims=lead, attrs={"long_name": "log p(y_1..T)", "units": "nats"}
    )
    if sequences:
        data[SEQUENCE_LENGTH] = xr.DataArray(
            where.lengths, dims=(SEQUENCE,),
            attrs={"long_name": "real time steps of each sequence"},
        )
    summaries = parts[0].summaries
    for kind in ("causal", "acausal", "predictive"):
        name = f"{kind}_state_probabilities"
        if name in summaries:
            data[name] = xr.DataArray(
                pick(where.gather(name, np.nan, np.float32)), dims=(*lead, TIME, STATES),
                coords={STATES: layout.state_labels},
                attrs={"long_name": f"{kind} probability of each discrete state"},
            )
    if parts[0].transition_counts is not None:
        counts = np.zeros((n_seq,) + parts[0].transition_counts.shape[1:])
        for part in parts:
            counts[part.indices] = part.transition_counts
        data["transition_counts"] = xr.DataArray(
            pick(counts), dims=(*lead, "from_state", "to_state"),
            coords={"from_state": layout.state_labels, "to_state": layout.state_labels},
            attrs={"long_name": "expected number of moves between discrete states, "
                                "sum_t p(state_t, state_t+1 | all data)"},
        )
    if parts[0].initial_posterior is not None:
        first = np.full((n_seq, layout.mask.size), np.nan)
        for part in parts:
            first[np.ix_(part.indices, layout.columns)] = part.initial_posterior
        data["initial_posterior"] = xr.DataArray(
            pick(first), dims=(*lead, BINS),
            attrs={"long_name": "smoothed posterior of the first step, p(state_0 | y_1..T)"},
        )
    if "map_index" in summaries:
        index = where.gather("map_index", 0, np.int64)
        bins = np.where(where.valid, layout.columns[index], -1)
        data.update(bin_variables(
            ds, pick(bins), pick(where.valid), "map", (*lead, TIME),
            "index into state_bins of the most probable bin"
            + (" (-1 past the sequence's end)" if sequences else ""),
        ))
    if "entropy" in summaries:
        data["entropy"] = xr.DataArray(
            pick(where.gather("entropy", np.nan, np.float32)), dims=(*lead, TIME),
            attrs={"long_name": "posterior entropy over interior bins", "units": "nats"},
        )
    data.update(summary_variables(
        summaries, lambda name: pick(where.gather(name, np.nan, np.float32)), lead,
        config.hpd_level, layout.state_labels, layout.area))
    result_attrs = {**(ds.attrs if ds is not None else {}), **(attrs or {}),
                    "xhmm_config": config.to_json(algorithm),
                    "xhmm_transition": json.dumps(parts[0].transition, sort_keys=True),
                    "xhmm_float64_chunks": sum(p.float64_chunks for p in parts)}
    if not sequences and parts[0].memmap_dir is not None:
        result_attrs["xhmm_memmap_dir"] = parts[0].memmap_dir
    if ds is not None:
        coords = result_coords(ds, (SEQUENCE, TIME, BINS) if sequences else (TIME, BINS))
    else:
        coords = {"is_interior": (BINS, layout.mask)}
    return xr.Dataset(data, coords=coords, attrs=result_attrs)


def run_metadata(inputs: ResolvedInputs, *, sequences: bool = False,
                 names: dict[str, str] | None = None) -> dict[str, Any]:
    """What :func:`xhmm.open_run` needs to rebuild full-bin results (kept in the manifest).

    ``names`` maps canonical dim and coordinate names to the caller's
    (those that differ, as strings), so the reopened run carries them.
    """
    labels = inputs.state_labels
    return {
        "names": {k: v for k, v in (names or {}).items() if k != v and isinstance(v, str)},
        "sequences": sequences,
        "n_bins": inputs.n_bins,
        "interior_bins": inputs.columns.tolist(),
        "state_labels": None if labels is None else [str(x) for x in labels],
        "area": None if inputs.bin_sizes is None else inputs.bin_sizes.attrs,
    }
