"""The most likely sequence of state bins (the Viterbi path) as a Dataset.

:func:`viterbi_dataset` assembles the paths that the batches of a Viterbi
job (:func:`xhmm.frontend.driver.run_job`, run by :mod:`xhmm.engine.viterbi`)
produced: indices into ``state_bins``, their coordinates, the state labels
and each path's log-probability.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ..config import Config
from ..names import SEQUENCE, SEQUENCE_LENGTH, TIME
from .results import bin_variables, result_coords

__all__ = ["viterbi_dataset", "path_job_dataset"]

PREFIX = "most_likely"


def viterbi_dataset(ds: xr.Dataset, columns: np.ndarray, parts: list, cfg: Config, *,
                    n_sequences: int, n_time: int, sequences: bool,
                    attrs: dict[str, Any]) -> xr.Dataset:
    """The result Dataset of the paths of a Viterbi job.

    Parameters
    ----------
    ds : xr.Dataset
        The input, for its coordinates and attributes.
    columns : (K,) int ndarray
        Interior bins among ``state_bins``.
    parts : list of xhmm.frontend.driver.ViterbiPart
        Each batch's sequence indices and :class:`~xhmm.engine.viterbi.ViterbiResult`.
    cfg : Config
    n_sequences, n_time : int
        Sizes of the ``sequence`` (1 for one recording) and ``time`` dims.
    sequences : bool
        Keep a ``sequence`` dim (False for a single recording).
    attrs : dict
        Extra attributes of the result.

    Returns
    -------
    xr.Dataset
        See ``ds.hmm.most_likely_sequence``.
    """
    path = np.full((n_sequences, n_time), -1, dtype=np.int32)
    lengths = np.zeros(n_sequences, np.int64)
    log_probability = np.zeros(n_sequences)
    for part in parts:
        result = part.result
        path[part.indices, :result.path.shape[1]] = result.path
        lengths[part.indices] = result.lengths
        log_probability[part.indices] = result.path_log_probability
    valid = path >= 0
    bins = np.where(valid, columns[np.maximum(path, 0)], -1).astype(np.int64)
    lead = (SEQUENCE,) if sequences else ()

    def pick(values):
        return values if sequences else values[0]

    dims = (*lead, TIME)
    data = bin_variables(ds, pick(bins), pick(valid), PREFIX, dims,
                         "index into state_bins of each step's bin on the most likely path"
                         + (" (-1 past the sequence's end)" if sequences else ""))
    data["path_log_probability"] = xr.DataArray(
        pick(log_probability), dims=lead,
        attrs={"long_name": "log p(most likely path, y_1..T)", "units": "nats"})
    return path_job_dataset(ds, data, parts, cfg, "viterbi", lengths=lengths,
                            sequences=sequences, attrs=attrs)


def path_job_dataset(ds: xr.Dataset, data: dict, parts: list, cfg: Config, algorithm: str,
                     *, lengths: np.ndarray, sequences: bool,
                     attrs: dict[str, Any]) -> xr.Dataset:
    """The Dataset of a path job's variables (Viterbi, sampled paths).

    Adds each sequence's length (with a ``sequence`` dim), the run's
    attributes (config of ``algorithm``, transition, float64 chunks, the
    memmap folder of one recording) and the coordinates of ``ds``.

    Parameters
    ----------
    ds : xr.Dataset
        The input.
    data : dict of str to xr.DataArray
        The job's variables.
    parts : list
        Each batch's part, with its engine ``result``.
    cfg : Config
    algorithm : {"viterbi", "sample_paths"}
    lengths : (B,) int ndarray
    sequences : bool
        Keep a ``sequence`` dim.
    attrs : dict
        Extra attributes of the result.
    """
    if sequences:
        data[SEQUENCE_LENGTH] = xr.DataArray(
            lengths, dims=(SEQUENCE,),
            attrs={"long_name": "real time steps of each sequence"})
    first = parts[0].result
    attrs = {**ds.attrs, **attrs, "xhmm_config": cfg.to_json(algorithm),
             "xhmm_transition": json.dumps(first.transition, sort_keys=True),
             "xhmm_float64_chunks": sum(part.result.float64_chunks for part in parts)}
    if not sequences and first.memmap_dir is not None:
        attrs["xhmm_memmap_dir"] = str(first.memmap_dir)
    coords = result_coords(ds, (SEQUENCE, TIME) if sequences else (TIME,))
    return xr.Dataset(data, coords=coords, attrs=attrs)
