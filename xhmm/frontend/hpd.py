"""HPD and posterior-consistency summaries in the results.

The engine computes them chunk by chunk (:mod:`xhmm.kernels.hpd`); this
module gives it the size of each bin and presents what it wrote.

Bin sizes
---------
The position coordinates are the numeric coordinates along ``state_bins``
named ``position`` or ending in ``_position`` (``x_position``,
``y_position``: the names non_local_detector gives them and the plots use),
in the order of the Dataset's coordinates. Each axis is taken to be a
regular grid: its step is the median of the differences between its
consecutive distinct finite values (gaps between track segments, which are
few, do not move it). Every bin whose position is finite has the size
``prod(steps)`` (a length in 1-D, an area in 2-D); a bin with a NaN position
(a discrete state without one, non_local_detector's ``Local``) has size 0:
it counts in ``hpd_size`` but adds nothing to ``hpd_area``. Without a
position coordinate, or with an axis of a single value, ``hpd_area`` is
left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import xarray as xr

from ..names import BINS, STATES, TIME

__all__ = ["BinSizes", "bin_sizes", "position_coordinates", "summary_variables"]


@dataclass
class BinSizes:
    """The size of each interior bin, for ``hpd_area``.

    Attributes
    ----------
    values : (K,) float64 ndarray
        Size of each interior bin (0 for one without a position).
    attrs : dict
        What ``hpd_area`` says about them (JSON-serialisable, kept in a
        memmap run's manifest): ``position`` (the coordinates), ``grid_step``
        (one per coordinate) and ``units`` when the coordinates give them.
    """

    values: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def position_coordinates(ds: xr.Dataset) -> list[str]:
    """Names of the numeric ``position`` / ``*_position`` coordinates along ``state_bins``."""
    return [str(name) for name, coord in ds.coords.items()
            if coord.dims == (BINS,) and (name == "position" or str(name).endswith("_position"))
            and coord.dtype.kind in "iuf"]


def _units(ds: xr.Dataset, names: list[str]) -> str | None:
    """``u`` in 1-D, ``u^d`` when every axis is in ``u``, else their product; None if unknown."""
    units = [ds[name].attrs.get("units") for name in names]
    if not all(isinstance(u, str) and u for u in units):
        return None
    if len(set(units)) == 1:
        return units[0] if len(units) == 1 else f"{units[0]}^{len(units)}"
    return " ".join(units)


def bin_sizes(ds: xr.Dataset, columns: np.ndarray) -> BinSizes | None:
    """The size of each interior bin by the rule of the module docstring.

    Parameters
    ----------
    ds : xr.Dataset
        With the coordinates of ``state_bins``.
    columns : (K,) int ndarray
        The interior bins.

    Returns
    -------
    BinSizes or None
        None without a position coordinate or with an axis of one value.
    """
    names = position_coordinates(ds)
    if not names:
        return None
    where = np.stack([np.asarray(ds[name].values, dtype=np.float64) for name in names], axis=1)
    known = np.isfinite(where).all(axis=1)
    steps = []
    for axis in where[known].T:
        gaps = np.diff(np.unique(axis))
        if gaps.size == 0:
            return None
        steps.append(float(np.median(gaps)))
    sizes = np.where(known, np.prod(steps), 0.0)[columns]
    attrs: dict[str, Any] = {"position": names, "grid_step": steps}
    units = _units(ds, names)
    if units is not None:
        attrs["units"] = units
    return BinSizes(sizes, attrs)


def summary_variables(summaries, gather: Callable[[str], np.ndarray], lead: tuple[str, ...],
                      level: float, state_labels: np.ndarray | None,
                      area: dict[str, Any] | None) -> dict[str, xr.DataArray]:
    """The HPD and consistency variables of a result, from the engine's summaries.

    Parameters
    ----------
    summaries : container of str
        Names of the summaries the run wrote.
    gather : callable
        Name to its values over ``(*lead, time[, states])``, NaN past each
        sequence's end.
    lead : tuple of str
        ``("sequence",)`` or ``()``.
    level : float
        The HPD level.
    state_labels : ndarray or None
        Labels of the ``states`` dim.
    area : dict or None
        :attr:`BinSizes.attrs` of the run.

    Returns
    -------
    dict of str to xr.DataArray
    """
    percent = f"{100 * level:g} %"
    hpd = {"hpd_level": level}
    described = {
        "hpd_threshold": {"long_name": f"smallest posterior value in the {percent} "
                                       "highest-posterior-density region", **hpd},
        "hpd_size": {"long_name": f"state bins in the {percent} highest-posterior-density "
                                  "region", "units": "bins", **hpd},
        "hpd_area": {"long_name": f"size of the {percent} highest-posterior-density region "
                                  "in position units (its bins with a position)",
                     **hpd, **(area or {})},
        "hpd_state_size": {"long_name": f"state bins of each state in the {percent} "
                                        "highest-posterior-density region",
                           "units": "bins", **hpd},
        "hpd_state_area": {"long_name": f"size of each state's part of the {percent} "
                                        "highest-posterior-density region in position units",
                           **hpd, **(area or {})},
        "posterior_consistency_kl": {"long_name": "KL divergence of the posterior from the "
                                                  "normalised likelihood, "
                                                  "KL(posterior || likelihood)",
                                     "units": "nats"},
        "posterior_consistency_hpd_overlap": {
            "long_name": f"bins in both {percent} highest-density regions (posterior, "
                         "normalised likelihood) over the bins of the smaller one", **hpd},
    }
    out = {}
    for name, attrs in described.items():
        if name not in summaries:
            continue
        if isinstance(attrs.get("position"), list):  # netCDF attributes: no nested lists
            attrs = {**attrs, "position": " ".join(attrs["position"])}
        per_state = name.startswith("hpd_state_")
        out[name] = xr.DataArray(
            gather(name), dims=(*lead, TIME, STATES) if per_state else (*lead, TIME),
            coords={STATES: state_labels} if per_state else None, attrs=attrs)
    return out
