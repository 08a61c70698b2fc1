"""Build the result Dataset of a run from the engine's buffers."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .config import Config
from .engine.loop import EngineResult
from .inputs import BINS, STATES, TIME, ResolvedInputs
from .lazy import _lazy_masked_posterior, eager_masked_posterior

__all__ = ["build_result", "result_coords", "map_variables"]


def result_coords(ds: xr.Dataset) -> xr.Coordinates:
    """Coordinates of ``ds`` along ``time`` and/or ``state_bins`` only.

    Indexes (a MultiIndex over ``state_bins`` included) are kept whole; 1-D
    coordinates are NumPy-backed (:func:`xhmm.coords.numpy_coords`) even
    when ``ds`` was chunked, so boolean selections and ``groupby`` on them
    work on the lazy results.
    """
    from .coords import numpy_coords

    keep = {
        name for name, coord in ds.coords.items() if set(coord.dims) <= {TIME, BINS}
    }
    drop = [name for name in ds.coords if name not in keep]
    return numpy_coords(ds.drop_vars(list(ds.data_vars) + drop))


def map_variables(
    ds: xr.Dataset, inputs: ResolvedInputs, map_index: np.ndarray
) -> dict[str, xr.DataArray]:
    """``map_state_bin`` and ``map_<coord>`` for numeric 1-D coords of state_bins."""
    bins = inputs.columns[np.asarray(map_index, dtype=np.int64)]
    out = {
        "map_state_bin": xr.DataArray(
            bins, dims=(TIME,),
            attrs={"long_name": "index into state_bins of the most probable bin"},
        )
    }
    for name, coord in ds.coords.items():
        if coord.dims != (BINS,) or name in ("is_interior", BINS):
            continue
        if not np.issubdtype(coord.dtype, np.number) or coord.dtype == bool:
            continue
        out[f"map_{name}"] = xr.DataArray(
            np.asarray(coord.values)[bins], dims=(TIME,), attrs=dict(coord.attrs)
        )
    return out


def _posterior(buffer, inputs: ResolvedInputs, config: Config, long_name: str):
    dtype = config.posterior_out_dtype
    if config.lazy_expand:
        data = _lazy_masked_posterior(
            buffer, inputs.mask, inputs.n_bins, config.time_chunks, dtype
        )
    else:
        data = eager_masked_posterior(buffer, inputs.mask, inputs.n_bins, dtype)
    return xr.DataArray(
        data, dims=(TIME, BINS),
        attrs={"long_name": long_name, "xhmm_storage_dtype": config.storage_dtype},
    )


def build_result(
    ds: xr.Dataset, inputs: ResolvedInputs, engine: EngineResult, config: Config
) -> xr.Dataset:
    """Assemble the result Dataset (posteriors, likelihood, summaries)."""
    data: dict[str, xr.DataArray] = {}
    if engine.causal is not None:
        data["causal_posterior"] = _posterior(
            engine.causal, inputs, config, "filtered posterior p(state_t | y_1..t)"
        )
    if engine.acausal is not None:
        data["acausal_posterior"] = _posterior(
            engine.acausal, inputs, config, "smoothed posterior p(state_t | y_1..T)"
        )
    data["marginal_log_likelihood"] = xr.DataArray(
        np.float64(engine.marginal_log_likelihood),
        attrs={"long_name": "log p(y_1..T)", "units": "nats"},
    )
    for kind in ("causal", "acausal"):
        name = f"{kind}_state_probabilities"
        if name in engine.summaries:
            data[name] = xr.DataArray(
                np.asarray(engine.summaries[name]), dims=(TIME, STATES),
                coords={STATES: inputs.state_labels},
                attrs={"long_name": f"{kind} probability of each discrete state"},
            )
    if "map_index" in engine.summaries:
        data.update(map_variables(ds, inputs, engine.summaries["map_index"]))
    if "entropy" in engine.summaries:
        data["entropy"] = xr.DataArray(
            np.asarray(engine.summaries["entropy"]), dims=(TIME,),
            attrs={"long_name": "posterior entropy over interior bins", "units": "nats"},
        )
    attrs = {**ds.attrs, "xhmm_config": config.to_json()}
    if engine.memmap_dir is not None:
        attrs["xhmm_memmap_dir"] = str(engine.memmap_dir)
    return xr.Dataset(data, coords=result_coords(ds), attrs=attrs)
