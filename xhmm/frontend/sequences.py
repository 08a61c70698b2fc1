"""Many independent sequences: batched on one device, or spread over dask.distributed.

``log_likelihood`` with dims ``(sequence, time, state_bins)`` holds ``S``
independent recordings (epochs, animals, sessions) sharing one model:
``is_interior``, the ``state`` labels and ``transition`` are shared;
``initial`` is shared (``(state_bins,)``) or per sequence
(``(sequence, state_bins)``). For different transition matrices, run
once per group of sequences that share one.

Lengths
-------
Sequences may be shorter than the ``time`` dimension. Their lengths come from
an integer variable ``sequence_length`` (dims ``sequence``) when the Dataset
has one (rows past a length are ignored, they may hold anything);
otherwise they are inferred: a sequence ends at its first row that is NaN in
every interior bin, and every later row must be all-NaN too (this is what
``xr.concat(..., join="outer")`` of shorter sequences with a shared
relative time coordinate produces). In both
cases the results are NaN past each sequence's end and
``sequence_length`` is part of the result.

Execution
---------
Sequences are grouped into batches (longest first when lengths are given,
so a batch pads little) and run by the one driver, :mod:`xhmm.frontend.driver`, in
this process or as dask.distributed tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DimensionError, InitialError, InputError, TransitionError
from ..names import BINS, SEQUENCE, SEQUENCE_LENGTH, TIME
from .inputs import ResolvedInputs, check_initial, resolve_inputs
from .missing import MISSING, flat_where_missing, resolve_is_missing

__all__ = ["SequenceInputs", "resolve_sequences"]


# -- inputs ----------------------------------------------------------------


@dataclass
class SequenceInputs:
    """Validated inputs of a run of ``S`` sequences (one recording is ``S = 1``).

    Attributes
    ----------
    shared : ResolvedInputs
        What all sequences share (interior, transition, states), resolved on
        the first sequence; its ``initial`` is unused when ``initial`` below
        is per sequence.
    log_likelihood : (S, T, N) NumPy or dask array, or array-like
        Rows of missing steps (``is_missing``) read as 0.
    initial : (K,) or (S, K) float64 ndarray
    lengths : (S,) int64 ndarray or None
        None: inferred by the engine from trailing all-NaN rows.
    labels : (S,) ndarray
        The ``sequence`` coordinate (or positions), for messages.
    """

    shared: ResolvedInputs
    log_likelihood: Any
    initial: np.ndarray
    lengths: np.ndarray | None
    labels: np.ndarray

    @property
    def n_sequences(self) -> int:
        return int(self.log_likelihood.shape[0])

    @property
    def n_time(self) -> int:
        return int(self.log_likelihood.shape[1])


def resolve_sequences(ds: xr.Dataset, transition, initial,
                      is_missing=None) -> SequenceInputs:
    """Check the inputs of a ``(sequence, time, state_bins)`` run.

    ``ds`` has the canonical names and its ``log_likelihood`` those three
    dims (checked by :func:`xhmm.frontend.naming.canonical_input`).
    ``is_missing`` (or ``ds["is_missing"]``) marks steps read as a flat
    likelihood.

    Raises
    ------
    InputError, DimensionError, TransitionError, InitialError
        Naming the variable (and, for a per-sequence ``initial``, the sequence).
    """
    ll = ds["log_likelihood"]
    wanted = (SEQUENCE, TIME, BINS)
    for name in ("is_interior", "state"):
        if name in ds.variables and SEQUENCE in ds[name].dims:
            raise DimensionError(
                f"{name} has dims {ds[name].dims}: it is shared by all sequences and "
                "must not have a 'sequence' dim"
            )
    A = _given_or_variable(ds, transition, "transition")
    if A is not None and (_ndim(A) == 3 or SEQUENCE in getattr(A, "dims", ())):
        raise TransitionError(
            f"transition has shape {np.shape(A)}: one matrix per sequence is not "
            "supported (a shared matrix is what batching reads once per step); call "
            "run once per group of sequences that share a transition"
        )
    p0 = _given_or_variable(ds, initial, "initial")
    per_sequence = p0 is not None and (
        SEQUENCE in getattr(p0, "dims", ()) or _ndim(p0) == 2
    )
    labels = _labels(ds, ll.sizes[SEQUENCE])
    missing = resolve_is_missing(ds, is_missing, ll.sizes[TIME], ll.sizes[SEQUENCE])
    template = ds.isel({SEQUENCE: 0}, drop=True).drop_vars(MISSING, errors="ignore")
    if per_sequence:
        rows = _as_rows(p0, ll.sizes[SEQUENCE])
        label = labels[0]
        try:
            shared = resolve_inputs(template, transition, rows[0])
            checked = [shared.initial]
            for label, row in zip(labels[1:], rows[1:]):
                checked.append(check_initial(template, row, shared.mask))
        except InitialError as exc:
            raise InitialError(f"initial of sequence {label}: {exc}") from exc
        initial_array = np.stack(checked)
    else:
        shared = resolve_inputs(template, transition, p0)
        initial_array = shared.initial
    ll = ll.transpose(*wanted)
    lengths = _lengths(ds, ll.sizes[TIME], labels)
    return SequenceInputs(shared, flat_where_missing(ll.data, missing), initial_array,
                          lengths, labels)


def _given_or_variable(ds: xr.Dataset, value, name: str):
    if value is not None:
        return value
    return ds[name] if name in ds.variables else None


def _ndim(value) -> int:
    return value.ndim if hasattr(value, "ndim") else np.ndim(value)


def _as_rows(value, n_sequences: int) -> np.ndarray:
    if isinstance(value, xr.DataArray):
        if SEQUENCE in value.dims:
            value = value.transpose(SEQUENCE, ...)
        value = value.values
    try:
        rows = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InitialError(f"initial must be a numeric array: {exc}") from exc
    if rows.ndim != 2 or rows.shape[0] != n_sequences:
        raise InitialError(
            f"per-sequence initial has shape {rows.shape}; expected ({n_sequences}, n) "
            "with one row per sequence"
        )
    return rows


def _labels(ds: xr.Dataset, n_sequences: int) -> np.ndarray:
    if SEQUENCE in ds.coords:
        return np.asarray(ds.coords[SEQUENCE].values)
    return np.arange(n_sequences)


def _lengths(ds: xr.Dataset, n_time: int, labels: np.ndarray) -> np.ndarray | None:
    if SEQUENCE_LENGTH not in ds.variables:
        return None
    var = ds[SEQUENCE_LENGTH]
    if var.dims != (SEQUENCE,):
        raise DimensionError(
            f"{SEQUENCE_LENGTH} must have dims ('sequence',), got {var.dims}"
        )
    if not np.issubdtype(var.dtype, np.integer):
        raise InputError(
            f"{SEQUENCE_LENGTH} must be integer (number of real time steps of each "
            f"sequence), got dtype {var.dtype}"
        )
    lengths = np.asarray(var.values, dtype=np.int64)
    bad = (lengths < 1) | (lengths > n_time)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{SEQUENCE_LENGTH} of sequence {labels[i]} is {lengths[i]}; it must be "
            f"between 1 and the size of 'time' ({n_time})"
        )
    return lengths
