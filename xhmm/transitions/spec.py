"""A :class:`~xhmm.transitions.Blocks` transition as a JSON spec and named arrays.

A spec is a small JSON object; its arrays are either written inline (JSON
numbers and lists) or named, as variables of a Dataset (the likelihood
file the command line reads, for example)::

    {
      "kind": "blocks",
      "discrete": "transition_discrete",
      "blocks": [
        {"from": "Local", "to": "Local", "kind": "identity"},
        {"from": "Continuous", "to": "Continuous", "kind": "random_walk",
         "movement_var": 6.0, "centers": "transition_centers_1"},
        {"from": "Continuous", "to": "Fragmented", "kind": "uniform"},
        {"from": "Fragmented", "to": "Fragmented", "kind": "dense",
         "matrix": "transition_matrix_3"}
      ]
    }

- ``discrete``: the discrete transition, an ``(S, S)`` list in the order of
  the ``state`` labels along ``state_bins``, or the name of a variable with
  dims ``(from_state, to_state)`` or ``(time, from_state, to_state)``
  (labelled by state, or in that order).
- ``blocks``: one object per (from, to) pair with ``from`` and ``to`` (state
  labels), ``kind`` (a registered block kind, :mod:`xhmm.transitions.block`:
  ``uniform``, ``identity``, ``dense``, ``random_walk``, ...) and the
  fields of that kind's dataclass (those without a default are required):
  ``dense`` has ``matrix`` (array) and ``note``; ``random_walk`` has
  ``movement_var`` (number), ``centers`` (array) and ``movement_mean``
  (number or list).

:func:`to_spec` writes the discrete transition and each block's
``array_fields`` as variables (named ``{prefix}_discrete`` and
``{prefix}_{field}_{i}`` for block ``i``, e.g. ``{prefix}_matrix_{i}``,
``{prefix}_centers_{i}``, with dims of their own) and every other field as
a JSON value;
:func:`with_transition` stores those variables and the spec (attribute
:data:`SPEC_ATTR`) in a Dataset, so the model travels with the
log-likelihood in one NetCDF or Zarr file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TransitionError
from ..names import SPEC_ATTR
from .block import TransitionBlock, block_kind
from .blocks import Blocks

__all__ = ["SPEC_ATTR", "to_spec", "from_spec", "with_transition", "stored_transition"]


def _label(value: Any, where: str) -> Any:
    """A state label as a JSON value (str, int, float or bool)."""
    value = value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, (str, int, float, bool)):
        raise TransitionError(
            f"{where}: state label {value!r} cannot be written to JSON; use str or int labels"
        )
    return value


def _json(value: Any) -> Any:
    """A field value as JSON: arrays as (nested) lists, NumPy scalars as Python ones."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _discrete_variable(discrete: Any) -> xr.DataArray:
    if isinstance(discrete, xr.DataArray):
        return discrete
    values = discrete if hasattr(discrete, "ndim") else np.asarray(discrete, dtype=np.float64)
    if values.ndim not in (2, 3):
        raise TransitionError(
            f"discrete has shape {values.shape}; expected (S, S) or (time, S, S)"
        )
    return xr.DataArray(values, dims=("time", "from_state", "to_state")[3 - values.ndim:])


def to_spec(transition: Blocks, prefix: str = "transition"
            ) -> tuple[dict[str, Any], dict[str, xr.DataArray]]:
    """The JSON spec of a :class:`Blocks` and the arrays it names.

    Parameters
    ----------
    transition : Blocks
    prefix : str, default "transition"
        Start of the variable and dimension names.

    Returns
    -------
    spec : dict
        JSON-serialisable (see the module docstring).
    variables : dict of str to DataArray
        The arrays named in ``spec``; a time-varying discrete transition
        keeps its ``time`` dimension (and may be dask-backed).

    Raises
    ------
    TransitionError
        A state label that JSON cannot hold.
    """
    discrete_name = f"{prefix}_discrete"
    variables = {discrete_name: _discrete_variable(transition.discrete)}
    blocks = []
    for i, ((source, target), block) in enumerate(transition.blocks.items()):
        where = f"blocks[{(source, target)!r}]"
        entry: dict[str, Any] = {"from": _label(source, where), "to": _label(target, where),
                                 "kind": block.kind}
        for field, value in block.spec_fields().items():
            if field in block.array_fields:
                name = f"{prefix}_{field}_{i}"
                array = np.asarray(value)
                variables[name] = xr.DataArray(
                    array, dims=tuple(f"{name}_dim_{k}" for k in range(array.ndim)))
                entry[field] = name
            else:
                entry[field] = _json(value)
        blocks.append(entry)
    return {"kind": "blocks", "discrete": discrete_name, "blocks": blocks}, variables


def _array(value: Any, field: str, variables: Mapping[str, Any]) -> Any:
    """An inline JSON array, or the variable it names."""
    if not isinstance(value, str):
        return value
    if value not in variables:
        names = ", ".join(map(str, variables)) or "none"
        raise TransitionError(
            f"transition spec: {field} names the variable {value!r}, which is not there "
            f"(variables: {names})"
        )
    found = variables[value]
    return found if field == "discrete" else np.asarray(getattr(found, "values", found))


def _block(entry: Any, index: int, variables: Mapping[str, Any]) -> tuple[tuple, TransitionBlock]:
    where = f"transition spec: blocks[{index}]"
    if not isinstance(entry, Mapping) or not {"from", "to", "kind"} <= set(entry):
        raise TransitionError(f"{where} must be an object with 'from', 'to' and 'kind'")
    kind = block_kind(entry["kind"], where)
    names = [field.name for field in dataclasses.fields(kind)]
    unknown = sorted(set(entry) - {"from", "to", "kind", *names})
    missing = [name for name in kind.required_fields() if name not in entry]
    if unknown or missing:
        raise TransitionError(
            f"{where} ({entry['kind']}): " + "; ".join(
                ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing {', '.join(missing)}"] if missing else []))
        )
    fields = {name: (_array(entry[name], f"blocks[{index}].{name}", variables)
                     if name in kind.array_fields else entry[name])
              for name in names if name in entry}
    return (entry["from"], entry["to"]), kind(**fields)


def from_spec(spec: Mapping[str, Any], variables: Mapping[str, Any] | None = None) -> Blocks:
    """Build a :class:`Blocks` from its spec.

    Parameters
    ----------
    spec : mapping
        See the module docstring (e.g. ``json.load`` of a spec file).
    variables : mapping of str to array-like, optional
        Where named arrays are found, e.g. a Dataset.

    Returns
    -------
    Blocks

    Raises
    ------
    TransitionError
        A malformed spec, an unknown block kind or field, or a named
        variable that ``variables`` lacks.
    """
    variables = {} if variables is None else variables
    if not isinstance(spec, Mapping) or spec.get("kind") != "blocks":
        raise TransitionError("transition spec must be a JSON object with \"kind\": \"blocks\"")
    missing = [name for name in ("discrete", "blocks") if name not in spec]
    if missing:
        raise TransitionError(f"transition spec: missing {', '.join(missing)}")
    if not isinstance(spec["blocks"], list):
        raise TransitionError("transition spec: blocks must be a list of block objects")
    discrete = _array(spec["discrete"], "discrete", variables)
    blocks = dict(_block(entry, i, variables) for i, entry in enumerate(spec["blocks"]))
    return Blocks(discrete, blocks)


def with_transition(ds: xr.Dataset, transition: Blocks,
                    prefix: str = "transition") -> xr.Dataset:
    """``ds`` with a :class:`Blocks` stored in it: its arrays and its spec.

    The arrays become variables (see :func:`to_spec`) and the spec the JSON
    attribute :data:`SPEC_ATTR`; :func:`stored_transition` reads them back,
    after a NetCDF or Zarr round trip too.

    Raises
    ------
    TransitionError
        A variable of that name already in ``ds``, or a label JSON cannot hold.
    """
    spec, variables = to_spec(transition, prefix)
    clash = sorted(name for name in variables if name in ds.variables)
    if clash:
        raise TransitionError(
            f"the Dataset already has variable(s) {', '.join(clash)}; choose another prefix"
        )
    out = ds.assign(variables)
    out.attrs[SPEC_ATTR] = json.dumps(spec)
    return out


def stored_transition(ds: xr.Dataset) -> Blocks | None:
    """The :class:`Blocks` stored by :func:`with_transition`, or None if there is none.

    Raises
    ------
    TransitionError
        The attribute is not valid JSON or not a valid spec.
    """
    text = ds.attrs.get(SPEC_ATTR)
    if text is None:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TransitionError(f"attribute {SPEC_ATTR!r} is not valid JSON: {exc}") from exc
    return from_spec(spec, ds)
