"""Posterior path samples as a Dataset.

:func:`samples_dataset` assembles the paths that the batches of a sampling
job (:func:`xhmm.frontend.driver.run_job`, run by :mod:`xhmm.engine.sampler`)
drew: per path and step an index into ``state_bins``, the bin's coordinates
and its state label, along a ``sample`` dim.

The engine keeps each sequence's paths as ``(T, N)`` int32 rows of interior
bins. In RAM the variables are NumPy arrays. In a memmap run they are dask
arrays reading those files by path (:class:`~xhmm.frontend.lazy.StoredArray`)
a block of time steps at a time, so nothing of the size of the paths is held
in memory until asked for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..config import Config
from ..engine.sampler import SampleResult
from ..names import BINS, SAMPLE, SEQUENCE, TIME
from .lazy import StoredArray, TemporaryFolder, block_rows, owned, portable, read_rows
from .most_likely import path_job_dataset
from .results import _numeric_bin_coords

__all__ = ["SamplePart", "sample_part", "samples_dataset"]

PREFIX = "sampled"


@dataclass
class SamplePart:
    """The paths of the sequences one sampling batch covered.

    Attributes
    ----------
    indices : (B,) int ndarray
        Position of each of the batch's sequences in the result.
    paths : (B, T, N) int32 ndarray or StoredArray
        :attr:`xhmm.engine.sampler.SampleResult.paths` (a memmap by path).
    result : SampleResult
        The rest of the batch's run (lengths, log-likelihoods, attributes).
    """

    indices: np.ndarray
    paths: Any
    result: SampleResult

    def owned_by(self, owner: TemporaryFolder) -> "SamplePart":
        """This part with paths that keep ``owner``'s folder alive."""
        return replace(self, paths=owned(self.paths, owner))


def sample_part(indices: np.ndarray, result: SampleResult) -> SamplePart:
    """A :class:`SamplePart` of a run, its memmap replaced by its path (small to pickle)."""
    paths = portable(result.paths, "path", result.memmap_dir, result.run_id)
    return SamplePart(np.asarray(indices), paths, replace(result, paths=None))


class _Paths:
    """One sequence's ``(N, n_time)`` paths, read ``(T, N)`` rows at a time; -1 past its rows.

    Exposes only ``shape``, ``dtype``, ``ndim`` and 2-D slicing for
    ``dask.array.from_array``.
    """

    def __init__(self, buffer, row: int, n_time: int) -> None:
        self.buffer = buffer
        self.row = int(row)
        self.n_rows = int(buffer.shape[1])
        self.dtype = np.dtype(np.int32)
        self.shape = (int(buffer.shape[2]), int(n_time))
        self.ndim = 2

    def __getitem__(self, key) -> np.ndarray:
        samples, times = key
        start, stop, _ = times.indices(self.shape[1])
        out = np.full((stop - start, self.shape[0]), -1, dtype=np.int32)
        real = max(0, min(stop, self.n_rows) - start)
        out[:real] = read_rows(self.buffer, self.row, start, start + real)
        return out.T[samples]


def _lookup(index: np.ndarray, table: np.ndarray, fill: Any) -> np.ndarray:
    """``table[index]``, ``fill`` where ``index`` is -1 (no fill: every index is real)."""
    values = table[np.maximum(index, 0)]
    return values if fill is None else np.where(index >= 0, values, fill)


def _source(parts: list[SamplePart], n_sequences: int, n_samples: int, n_time: int):
    """The (S, N, n_time) interior-bin paths: dask over memmaps, else NumPy."""
    if not any(isinstance(part.paths, StoredArray) for part in parts):
        out = np.full((n_sequences, n_samples, n_time), -1, dtype=np.int32)
        for part in parts:
            rows = np.asarray(part.paths)
            out[part.indices, :, :rows.shape[1]] = rows.transpose(0, 2, 1)
        return out
    step = max(1, min(block_rows("auto", n_samples, np.float64), n_time))
    places = {s: (part.paths, row) for part in parts for row, s in enumerate(part.indices)}
    return da.stack([
        da.from_array(_Paths(*places[s], n_time), chunks=(n_samples, step), asarray=False,
                      lock=False, meta=np.empty((0, 0), np.int32),
                      name=f"xhmm-samples-{uuid.uuid4().hex}")
        for s in range(n_sequences)])


def _variables(ds: xr.Dataset, source, columns: np.ndarray, complete: bool,
               dims: tuple[str, ...]) -> dict[str, xr.DataArray]:
    """``sampled_state_bin``, ``sampled_<coord>`` and ``sampled_state`` of the paths."""
    tables = {f"{PREFIX}_state_bin": (
        columns.astype(np.int32), -1,
        {"long_name": "index into state_bins of each step's bin on each sampled path"
                      + ("" if complete else " (-1 past the sequence's end)")})}
    for name, coord in _numeric_bin_coords(ds):
        values = np.asarray(coord.values)[columns]
        if not complete:
            values = values.astype(np.result_type(values, np.float32))
        tables[f"{PREFIX}_{name}"] = (values, np.nan, dict(coord.attrs))
    state = ds.coords.get("state")
    if state is not None and state.dims == (BINS,) and f"{PREFIX}_state" not in tables:
        tables[f"{PREFIX}_state"] = (np.asarray(state.values)[columns], "",
                                     dict(state.attrs))
    out = {}
    for name, (table, fill, attrs) in tables.items():
        fill = None if complete else fill
        if isinstance(source, da.Array):
            dtype = _lookup(np.full(1, -1, np.int32), table, fill).dtype
            values = source.map_blocks(_lookup, table, fill, dtype=dtype,
                                       meta=np.empty((0,) * source.ndim, dtype))
        else:
            values = _lookup(source, table, fill)
        out[name] = xr.DataArray(values, dims=dims, attrs=attrs)
    return out


def samples_dataset(ds: xr.Dataset, columns: np.ndarray, parts: list[SamplePart],
                    cfg: Config, *, n_sequences: int, n_time: int, sequences: bool,
                    seed: int, attrs: dict[str, Any]) -> xr.Dataset:
    """The result Dataset of the paths of a sampling job.

    Parameters
    ----------
    ds : xr.Dataset
        The input, for its coordinates and attributes.
    columns : (K,) int ndarray
        Interior bins among ``state_bins``.
    parts : list of SamplePart
        Each batch's paths.
    cfg : Config
    n_sequences, n_time : int
        Sizes of the ``sequence`` (1 for one recording) and ``time`` dims.
    sequences : bool
        Keep a ``sequence`` dim (False for a single recording).
    seed : int
        The seed the paths were drawn with (attribute ``xhmm_seed``).
    attrs : dict
        Extra attributes of the result.

    Returns
    -------
    xr.Dataset
        See :func:`xhmm.sample_paths`.
    """
    lengths = np.zeros(n_sequences, np.int64)
    marginal = np.zeros(n_sequences)
    for part in parts:
        lengths[part.indices] = part.result.lengths
        marginal[part.indices] = part.result.marginal_log_likelihood
    n_samples = int(parts[0].paths.shape[2])
    source = _source(parts, n_sequences, n_samples, n_time)
    if not sequences:
        source = source[0]
    lead = (SEQUENCE,) if sequences else ()
    data = _variables(ds, source, np.asarray(columns), bool((lengths == n_time).all()),
                      (*lead, SAMPLE, TIME))
    data["marginal_log_likelihood"] = xr.DataArray(
        marginal if sequences else marginal[0], dims=lead,
        attrs={"long_name": "log p(y_1..T)", "units": "nats"})
    return path_job_dataset(ds, data, parts, cfg, "sample_paths", lengths=lengths,
                            sequences=sequences, attrs={**attrs, "xhmm_seed": seed})
