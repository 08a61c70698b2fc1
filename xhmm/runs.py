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
from typing import Any

import numpy as np
import xarray as xr

from .config import Config
from .engine.manifest import load_manifest
from .engine.storage import _alloc_out
from .inputs import BINS, STATES, TIME, ResolvedInputs
from .lazy import _lazy_masked_posterior

__all__ = ["open_run", "run_metadata"]


def run_metadata(inputs: ResolvedInputs) -> dict[str, Any]:
    """What :func:`open_run` needs to rebuild full-bin results."""
    labels = inputs.state_labels
    return {
        "n_bins": inputs.n_bins,
        "interior_bins": inputs.columns.tolist(),
        "state_labels": None if labels is None else [str(x) for x in labels],
    }


def open_run(memmap_dir: str | os.PathLike, *, time_chunks: int | None = None) -> xr.Dataset:
    """Open the results of a finished memmap run, lazily.

    Parameters
    ----------
    memmap_dir : path
        Folder of a run made with ``use_memmap=True``.
    time_chunks : int, optional
        Rows per dask block; defaults to the run's ``Config.time_chunks``.

    Returns
    -------
    xr.Dataset
        The posteriors over all ``state_bins`` (NaN outside the interior,
        lazy), ``marginal_log_likelihood`` and the stored summaries
        (``map_state_bin`` as an index into ``state_bins``). Coordinates of the
        original Dataset other than ``states`` are not stored in the run;
        assign them again if needed.

    Raises
    ------
    xhmm.ResumeError
        If the folder holds no readable manifest.
    xhmm.IncompleteResultError
        If the run did not finish (killed, failed, or still running).
    """
    manifest = load_manifest(memmap_dir)
    manifest.require_complete()
    config = Config(**manifest.data["config"])
    meta = manifest.data["metadata"]
    outputs = manifest.data["outputs"]
    columns = np.asarray(meta["interior_bins"], dtype=np.int64)
    mask = np.zeros(meta["n_bins"], dtype=bool)
    mask[columns] = True
    chunks = time_chunks or config.time_chunks

    def buffer(name: str) -> np.ndarray:
        info = outputs[name]
        return _alloc_out(tuple(info["shape"]), info["dtype"], name, memmap_dir, mode="r")

    data: dict[str, xr.DataArray] = {}
    for name in ("causal_posterior", "acausal_posterior"):
        if name in outputs:
            lazy = _lazy_masked_posterior(buffer(name), mask, mask.size, chunks,
                                          config.posterior_out_dtype)
            data[name] = xr.DataArray(lazy, dims=(TIME, BINS),
                                      attrs={"xhmm_storage_dtype": config.storage_dtype})
    data["marginal_log_likelihood"] = xr.DataArray(
        np.float64(math.fsum(buffer("log_normalizer"))))
    coords = {"is_interior": (BINS, mask)}
    if meta.get("state_labels") is not None:
        coords[STATES] = meta["state_labels"]
    for kind in ("causal", "acausal"):
        name = f"{kind}_state_probabilities"
        if name in outputs:
            data[name] = xr.DataArray(np.asarray(buffer(name)), dims=(TIME, STATES))
    if "map_index" in outputs:
        data["map_state_bin"] = xr.DataArray(columns[np.asarray(buffer("map_index"))],
                                             dims=(TIME,))
    if "entropy" in outputs:
        data["entropy"] = xr.DataArray(np.asarray(buffer("entropy")), dims=(TIME,))
    attrs = {"xhmm_config": config.to_json(), "xhmm_memmap_dir": str(memmap_dir)}
    return xr.Dataset(data, coords=coords, attrs=attrs)
