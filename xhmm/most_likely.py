"""The most likely sequence of state bins (the Viterbi path) as a Dataset.

:func:`most_likely_sequence` is what ``ds.hmm.most_likely_sequence`` and
``da.hmm.most_likely_sequence`` run: it resolves the inputs as the smoother
does (one recording, or the sequences of a ``sequence`` dim in batches),
runs the chunked decoder of :mod:`xhmm.engine.viterbi` and returns the path
as indices into ``state_bins``, its coordinates and its log-probability.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from .config import Config
from .engine.budget import choose_batch_size, default_memory_budget
from .engine.chunking import resolve_chunk_size
from .engine.viterbi import ViterbiResult, run_viterbi
from .inputs import resolve_inputs
from .names import BINS, SEQUENCE, SEQUENCE_LENGTH, TIME
from .results import bin_variables, result_coords
from .runs import run_metadata
from .sequences import (
    batch_config,
    batch_data,
    batch_folder,
    resolve_sequences,
    sequence_batches,
)

__all__ = ["most_likely_sequence"]

PREFIX = "most_likely"


def most_likely_sequence(ds: xr.Dataset, transition: Any = None, initial: Any = None,
                         config: Config | None = None, **overrides: Any) -> xr.Dataset:
    """The most likely sequence of state bins given all observations (Viterbi).

    Parameters
    ----------
    ds : xr.Dataset
        ``log_likelihood`` with dims ``(time, state_bins)`` or ``(sequence,
        time, state_bins)``, and the optional variables and coordinates of
        ``ds.hmm.smooth``.
    transition, initial : array-like or Blocks, optional
        As for ``ds.hmm.smooth`` (defaults: the Dataset's variables).
    config : xhmm.Config, optional
    **overrides
        Any :class:`xhmm.Config` field. ``chunk_size``, ``compute_dtype``,
        the memmap fields, ``resume`` and ``progress`` apply; the posterior
        fields do not.

    Returns
    -------
    xr.Dataset
        See ``ds.hmm.most_likely_sequence``.

    Raises
    ------
    ResumeError
        With ``resume=True``, when the run (or, with a ``sequence`` dim, a
        batch's sub-folder) holds a run of other settings or inputs.
    """
    cfg = Config.resolve(config, overrides)
    ll = ds.variables.get("log_likelihood")
    if ll is not None and SEQUENCE in ll.dims:
        return _sequences(ds, transition, initial, cfg)
    inputs = resolve_inputs(ds, transition, initial)
    n_time = inputs.log_likelihood.sizes[TIME]
    result = run_viterbi(inputs.log_likelihood.data[None], inputs.transition, inputs.initial,
                         cfg, lengths=[n_time], columns=inputs.columns,
                         metadata=run_metadata(inputs))
    attrs = {} if result.memmap_dir is None else {"xhmm_memmap_dir": str(result.memmap_dir)}
    return _dataset(ds, inputs.columns, np.asarray(result.path), result, cfg,
                    sequences=False, attrs=attrs)


def _sequences(ds: xr.Dataset, transition, initial, cfg: Config) -> xr.Dataset:
    """Every sequence of a ``sequence`` dim, in batches that fit the device."""
    inputs = resolve_sequences(ds, transition, initial)
    shared = inputs.shared
    n_seq, n_time = inputs.n_sequences, inputs.n_time
    chunk_size = resolve_chunk_size(cfg.chunk_size, inputs.log_likelihood, len(shared.columns))
    batch_size = choose_batch_size(n_seq, len(shared.columns), chunk_size,
                                   cfg.attempt_dtype, default_memory_budget())
    folder = batch_folder(cfg)
    paths = np.full((n_seq, n_time), -1, dtype=np.int32)
    results = []
    for number, indices in enumerate(sequence_batches(inputs, batch_size)):
        result = run_viterbi(
            batch_data(inputs.log_likelihood, indices), shared.transition,
            inputs.initial[indices] if inputs.initial.ndim == 2 else inputs.initial,
            batch_config(cfg, folder, number),
            lengths=None if inputs.lengths is None else inputs.lengths[indices],
            columns=shared.columns, metadata=run_metadata(shared, sequences=True),
            sequence_ids=inputs.labels[indices],
        )
        paths[indices, :result.path.shape[1]] = result.path
        results.append((indices, result))
    combined = ViterbiResult(
        lengths=np.zeros(n_seq, np.int64), path=paths,
        path_log_probability=np.zeros(n_seq),
        transition=results[0][1].transition,
        float64_chunks=sum(result.float64_chunks for _, result in results),
    )
    for indices, result in results:
        combined.lengths[indices] = result.lengths
        combined.path_log_probability[indices] = result.path_log_probability
    attrs = {} if folder is None else {"xhmm_memmap_dir": str(folder)}
    return _dataset(ds, shared.columns, paths, combined, cfg, sequences=True, attrs=attrs)


def _dataset(ds: xr.Dataset, columns: np.ndarray, path: np.ndarray, result: ViterbiResult,
             cfg: Config, *, sequences: bool, attrs: dict) -> xr.Dataset:
    """The result Dataset of ``path`` ((S, T) interior indices, -1 past each length)."""
    valid = path >= 0
    bins = np.where(valid, columns[np.maximum(path, 0)], -1).astype(np.int64)
    lead = (SEQUENCE,) if sequences else ()

    def pick(values):
        return values if sequences else values[0]

    dims = (*lead, TIME)
    data = bin_variables(ds, pick(bins), pick(valid), PREFIX, dims,
                         "index into state_bins of each step's bin on the most likely path"
                         + (" (-1 past the sequence's end)" if sequences else ""))
    state = ds.coords.get("state")
    if (state is not None and state.dims == (BINS,)
            and f"{PREFIX}_state" not in data):  # numeric labels are mapped already
        labels = np.asarray(state.values)[np.maximum(bins, 0)]
        data[f"{PREFIX}_state"] = xr.DataArray(
            pick(np.where(valid, labels, "")), dims=dims, attrs=dict(state.attrs))
    data["path_log_probability"] = xr.DataArray(
        pick(result.path_log_probability), dims=lead,
        attrs={"long_name": "log p(most likely path, y_1..T)", "units": "nats"})
    if sequences:
        data[SEQUENCE_LENGTH] = xr.DataArray(
            result.lengths, dims=(SEQUENCE,),
            attrs={"long_name": "real time steps of each sequence"})
    attrs = {**ds.attrs, **attrs, "xhmm_config": cfg.to_json(),
             "xhmm_transition": json.dumps(result.transition, sort_keys=True),
             "xhmm_float64_chunks": result.float64_chunks}
    coords = result_coords(ds, (SEQUENCE, TIME) if sequences else (TIME,))
    return xr.Dataset(data, coords=coords, attrs=attrs)
