"""The caller's names to the canonical ones and back: the adapter at the public entry.

The layers below the public functions (:mod:`xhmm.frontend.inputs`,
:mod:`xhmm.frontend.sequences`, the driver and the result builders) work on
fixed names (:mod:`xhmm.names`): dims ``time``, ``state_bins``, ``sequence``;
variables ``log_likelihood``, ``transition``, ``initial``, ``is_interior``,
``is_missing``, ``sequence_length``; coordinate ``state``.
:func:`canonical_input` turns what a caller gives (a Dataset, a
log-likelihood DataArray or a NumPy / dask array, with dims and variables of
any name) into a Dataset with those names; :meth:`Renaming.restore` gives the
result the caller's dim and coordinate names back. Output variables keep
their documented names (``acausal_posterior``, ``map_state_bin``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DimensionError, InputError
from ..names import BINS, SEQUENCE, SEQUENCE_LENGTH, TIME, TIME_DIM_ATTR
from ..transitions.blocks import Blocks

__all__ = ["Renaming", "ModelArguments", "canonical_input"]

LOG_LIKELIHOOD = "log_likelihood"
#: Variables the run reads from a Dataset, each given by name or as an array.
MODEL_VARIABLES = ("transition", "initial", "is_missing")
#: Optional variables along ``state_bins`` / ``sequence``, by name or as an array.
LAYOUT_VARIABLES = {"is_interior": (BINS,), "state": (BINS,), SEQUENCE_LENGTH: (SEQUENCE,)}
#: Coordinates of the input that the results carry, renamed back.
CARRIED = ("is_interior", "state")
_DEFAULT_DIM = re.compile(r"dim_\d+$")


@dataclass
class Renaming:
    """Canonical name to the caller's, for the dims and carried coordinates."""

    back: dict[str, str] = field(default_factory=dict)

    def restore(self, result: xr.Dataset) -> xr.Dataset:
        """``result`` with the caller's dim and coordinate names.

        A renamed time dim is recorded in the attribute
        :data:`xhmm.names.TIME_DIM_ATTR`, for :func:`xhmm.save_results`.
        """
        names = {k: v for k, v in self.back.items()
                 if k != v and (k in result.dims or k in result.variables)}
        if not names:
            return result
        result = result.rename(names)
        if TIME in names:
            result.attrs[TIME_DIM_ATTR] = names[TIME]
        return result

    def dims(self, value: Any) -> Any:
        """An argument with the caller's dims renamed to the canonical ones.

        A DataArray, or a :class:`~xhmm.transitions.Blocks` whose discrete
        transition is one (varying along the caller's time dim, say).
        """
        if isinstance(value, Blocks):
            return Blocks(self.dims(value.discrete), value.blocks)
        if not isinstance(value, xr.DataArray):
            return value
        forward = {v: k for k, v in self.back.items() if v in value.dims and k != v}
        return value.rename(forward) if forward else value


@dataclass
class ModelArguments:
    """What the driver takes besides the Dataset: arrays, or None to read the variable."""

    transition: Any = None
    initial: Any = None
    is_missing: Any = None


def _as_dataset(data: Any, dims: tuple[str, ...] | None, names: tuple[str, str, str],
                log_likelihood: Any) -> tuple[xr.Dataset, str]:
    """The input as a Dataset and the name of its log-likelihood variable."""
    time_dim, state_dim, sequence_dim = names
    if isinstance(data, xr.Dataset):
        if dims is not None:
            raise InputError(
                "dims= names the dims of an array; a Dataset's variables have named dims "
                "already: pass time_dim=, state_dim= and sequence_dim= instead"
            )
        if not isinstance(log_likelihood, str):
            raise InputError(
                f"log_likelihood must name a variable of the Dataset, got "
                f"{type(log_likelihood).__name__}"
            )
        return data, log_likelihood
    if not isinstance(data, xr.DataArray):
        if not hasattr(data, "ndim"):
            data = np.asarray(data)
        if dims is None:
            defaults = {2: (time_dim, state_dim), 3: (sequence_dim, time_dim, state_dim)}
            if data.ndim not in defaults:
                raise DimensionError(
                    f"a log-likelihood array has {data.ndim} dims; expected 2 "
                    f"({time_dim!r}, {state_dim!r}) or 3 ({sequence_dim!r}, {time_dim!r}, "
                    f"{state_dim!r}), or pass dims=..."
                )
            dims = defaults[data.ndim]
        data = xr.DataArray(data, dims=_checked_dims(dims, data.ndim))
    elif dims is not None:
        names_now = _checked_dims(dims, data.ndim)
        data = data.rename({old: new for old, new in zip(data.dims, names_now) if old != new})
    return data.to_dataset(name=LOG_LIKELIHOOD), LOG_LIKELIHOOD


def _checked_dims(dims: Any, ndim: int) -> tuple[str, ...]:
    dims = (dims,) if isinstance(dims, str) else tuple(dims)
    if len(dims) != ndim:
        raise DimensionError(f"dims={dims} names {len(dims)} dims; the array has {ndim}")
    return dims


def _check_dims(ll: xr.DataArray, name: str, time_dim: str, state_dim: str,
                sequence_dim: str) -> None:
    """The log-likelihood has the time and state dims, maybe the sequence dim, none empty."""
    found = tuple(map(str, ll.dims))
    missing = [d for d in (time_dim, state_dim) if d not in found]
    if missing:
        hint = "pass time_dim=, state_dim= (and sequence_dim=) naming its dims"
        if all(_DEFAULT_DIM.match(d) for d in found):
            hint += (f", or dims=({time_dim!r}, {state_dim!r}) (or ({sequence_dim!r}, "
                     f"{time_dim!r}, {state_dim!r})) to name them")
        raise DimensionError(
            f"{name} has dims {found}; missing {', '.join(map(repr, missing))}: {hint}"
        )
    extra = [d for d in found if d not in (time_dim, state_dim, sequence_dim)]
    if extra:
        raise DimensionError(
            f"{name} has unsupported extra dim(s) {', '.join(map(repr, extra))}; expected "
            f"({time_dim!r}, {state_dim!r}), or ({sequence_dim!r}, {time_dim!r}, "
            f"{state_dim!r}) for many recordings (set sequence_dim= to name that dim)"
        )
    empty = next((d for d in found if ll.sizes[d] == 0), None)
    if empty is not None:
        raise DimensionError(f"{name} has an empty {empty!r} dimension (size 0)")


def canonical_input(
    data: Any,
    *,
    dims: tuple[str, ...] | None,
    time_dim: str,
    state_dim: str,
    sequence_dim: str,
    variables: dict[str, Any],
) -> tuple[xr.Dataset, ModelArguments, Renaming]:
    """The input with canonical names, the driver's arguments and the way back.

    Parameters
    ----------
    data : xr.Dataset, xr.DataArray or array-like
        A Dataset holding the log-likelihood variable, or the log-likelihood
        itself (an array's dims are ``dims``, by default ``(time_dim,
        state_dim)``, or ``(sequence_dim, time_dim, state_dim)`` in 3-D).
    dims : tuple of str, optional
        The dims of an array or DataArray, in order.
    time_dim, state_dim, sequence_dim : str
        The caller's names of the time, state-bin and sequence dims.
    variables : dict
        ``log_likelihood`` (a name) and, for each of ``transition``,
        ``initial``, ``is_missing``, ``is_interior``, ``state`` and
        ``sequence_length``: the name of a variable or coordinate of
        ``data``, an array, or None (the canonical name, if present).

    Returns
    -------
    ds : xr.Dataset
        With canonical dim and variable names.
    arguments : ModelArguments
        Transition, initial and is_missing given as arrays (None: read from ``ds``).
    renaming : Renaming
        Gives a result the caller's names back.

    Raises
    ------
    InputError
        A named variable that ``data`` lacks, or a canonical name already
        used by another variable or dim.
    DimensionError
        A log-likelihood without the time or state dim, or with another dim.
    """
    names = (time_dim, state_dim, sequence_dim)
    ds, ll_name = _as_dataset(data, dims, names, variables.get(LOG_LIKELIHOOD, LOG_LIKELIHOOD))
    if ll_name not in ds.variables:
        raise InputError(
            f"the Dataset has no variable {ll_name!r} (the log-likelihood, dims "
            f"{time_dim}, {state_dim}); found: "
            f"{', '.join(map(str, ds.data_vars)) or 'no data variables'} "
            "(pass log_likelihood= naming it)"
        )
    _check_dims(ds[ll_name], ll_name, *names)
    forward = {given: canonical for given, canonical in zip(names, (TIME, BINS, SEQUENCE))
               if given != canonical and given in ds.dims}
    given_names = {LOG_LIKELIHOOD: ll_name}
    arrays: dict[str, Any] = {}
    for name in (*MODEL_VARIABLES, *LAYOUT_VARIABLES):
        value = variables.get(name)
        if isinstance(value, str):
            if value not in ds.variables:
                raise InputError(
                    f"{name}={value!r} names no variable or coordinate of the input; "
                    f"found: {', '.join(map(str, ds.variables))}"
                )
            given_names[name] = value
        elif value is not None:
            arrays[name] = value
    for canonical, given in given_names.items():
        if given != canonical:
            forward[given] = canonical
    renamed = set(forward)
    for given, canonical in forward.items():
        if canonical in ds.dims or canonical in ds.variables:
            if canonical not in renamed:
                raise InputError(
                    f"{given!r} is to be read as {canonical!r}, but the input also has a "
                    f"{'dim' if canonical in ds.dims else 'variable'} {canonical!r}: "
                    "rename or drop it"
                )
    ds = ds.rename(forward) if forward else ds
    renaming = Renaming({canonical: given for given, canonical in forward.items()
                         if canonical in (TIME, BINS, SEQUENCE, *CARRIED)})
    for name, dims_of in LAYOUT_VARIABLES.items():
        if name in arrays:
            value = renaming.dims(arrays[name])
            if not isinstance(value, xr.DataArray):
                value = xr.DataArray(np.asarray(value), dims=dims_of)
            ds = (ds.assign({name: value}) if name == SEQUENCE_LENGTH
                  else ds.assign_coords({name: value}))
    arguments = ModelArguments(**{name: renaming.dims(arrays.get(name))
                                  for name in MODEL_VARIABLES})
    return ds, arguments, renaming
