"""Reopen the outputs of a finished memmap run from its folder alone.

A memmap run stores, besides its ``.dat`` files, the bin layout and state
labels in its manifest, so its results can be reopened later (another Python
session, another machine sharing the disk) without the input Dataset:
``xhmm.open_run(memmap_dir)``. A run that did not finish is refused with
:class:`xhmm.IncompleteResultError`; it never comes back looking complete.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import xarray as xr

from ..config import Config
from ..engine.loop import FINAL_SUMMARIES
from ..engine.manifest import MANIFEST, load_manifest
from ..errors import InputError, ResumeError, StorageError
from ..frontend.lazy import StoredArray, read_rows
from ..frontend.naming import Renaming
from ..frontend.results import BinLayout, Part, build_result

__all__ = ["open_run"]

_SUMMARIES = ("causal_state_probabilities", "acausal_state_probabilities",
              "predictive_state_probabilities", "step_transition_counts",
              *FINAL_SUMMARIES)


def open_run(memmap_dir: str | os.PathLike, *, time_chunks: int | str | None = None,
             verify: bool = True) -> xr.Dataset:
    """Open the results of a finished memmap run, lazily.

    The output files are first checked to be of their full size and, with
    ``verify``, read once to compare each chunk's rows with the CRC-32 the
    run recorded when it wrote them (a damaged or changed file is an error
    here, never wrong numbers later).

    Parameters
    ----------
    memmap_dir : path
        Folder of a run made with ``use_memmap=True``.
    time_chunks : int or "auto", optional
        Rows per dask block (``Config.time_chunks``); defaults to the run's.
    verify : bool, default True
        Read the output files once to check their rows' checksums (about
        the time of one read of the files; False skips it, for a folder
        just checked).

    Returns
    -------
    xr.Dataset
        The posteriors over all ``state_bins`` (NaN outside the interior,
        lazy), ``marginal_log_likelihood`` and the stored summaries
        (``map_state_bin`` as an index into ``state_bins``), under the dim
        and coordinate names the run was made with (``time_dim=``, ...;
        folders written before xhmm stored them get the defaults).
        Coordinates of the original Dataset other than ``is_interior`` and
        ``states`` are not stored in the run; assign them again if needed.

    Raises
    ------
    xhmm.ResumeError
        If the folder holds no readable manifest.
    xhmm.IncompleteResultError
        If the run did not finish (killed, failed, or still running).
    xhmm.StorageError
        If an output file is missing or not of the size the manifest records
        (truncated or replaced) or, with ``verify``, a chunk of its rows does
        not match its checksum (naming the file and the chunk).
    xhmm.InputError
        If the folder holds a ``most_likely_sequence`` or ``sample_paths`` run.
    """
    folder = Path(memmap_dir)
    if not folder.is_dir():
        raise ResumeError(f"no run to open in {str(memmap_dir)!r}: the folder does not exist")
    if not (folder / MANIFEST).exists():
        raise ResumeError(f"no run to open in {str(memmap_dir)!r}: {MANIFEST} is missing "
                          "(not the memmap_dir of an xhmm run)")
    manifest = load_manifest(memmap_dir)
    algorithm = manifest.data["metadata"].get("algorithm")
    if algorithm in ("viterbi", "sample_paths"):
        held = ("a most_likely_sequence run (its path is" if algorithm == "viterbi"
                else "a sample_paths run (its paths are")
        raise InputError(
            f"{str(memmap_dir)!r} holds {held} in path.dat); open_run reopens smooth and "
            "filter runs"
        )
    manifest.require_complete()
    config = Config(**manifest.data["config"])
    if time_chunks is not None:
        config = config.replace(time_chunks=time_chunks)
    meta = manifest.data["metadata"]
    outputs = manifest.data["outputs"]
    mask = np.zeros(meta["n_bins"], dtype=bool)
    mask[np.asarray(meta["interior_bins"], dtype=np.int64)] = True
    labels = meta.get("state_labels")
    layout = BinLayout(mask, None if labels is None else np.asarray(labels), meta.get("area"))

    def stored(name: str) -> StoredArray | None:
        info = outputs.get(name)
        if info is None:
            return None
        array = StoredArray(str(memmap_dir), name, tuple(info["shape"]), info["dtype"],
                            manifest.data.get("run_id"))
        array.check()
        return array

    log_norm = stored("log_normalizer")
    n_seq, n_time = log_norm.shape
    lengths = np.asarray(manifest.data["reader"]["lengths"], dtype=np.int64)
    marginal = np.array([math.fsum(read_rows(log_norm, b, 0, n)) for b, n in enumerate(lengths)])
    part = Part(
        indices=np.arange(n_seq),
        lengths=lengths,
        marginal_log_likelihood=marginal,
        causal=stored("causal_posterior"),
        acausal=stored("acausal_posterior"),
        summaries={name: stored(name) for name in _SUMMARIES if name in outputs},
        memmap_dir=str(memmap_dir),
        transition=meta.get("transition", {}),
        float64_chunks=int(sum(manifest.data.get("chunk_float64", []))),
        transition_counts=(stored("transition_counts").read(slice(None))
                           if "transition_counts" in outputs else None),
    )
    if verify:  # every output's size checked above
        manifest.check_rows(StorageError, f"cannot read the results in {str(memmap_dir)!r}")
    smoothed = manifest.data.get("inputs", {}).get("smooth", True)
    result = build_result(None, layout, [part], config, n_time=n_time,
                          sequences=meta.get("sequences", False),
                          algorithm="smooth" if smoothed else "filter")
    return Renaming(meta.get("names", {})).restore(result)
