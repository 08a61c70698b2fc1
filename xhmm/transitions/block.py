"""The seam every transition block kind plugs into.

A block kind is one module in :mod:`xhmm.transitions` holding three classes:

- a user-facing :class:`TransitionBlock` (a frozen dataclass the user puts in
  :class:`~xhmm.transitions.Blocks`): it checks itself against the bins of
  its two states and :meth:`~TransitionBlock.plan`\\ s a host-side block; its
  dataclass fields are its JSON spec (:mod:`xhmm.transitions.spec`), arrays
  named in :attr:`~TransitionBlock.array_fields` stored as variables; it may
  say which of non_local_detector's continuous transitions it stands for
  (:attr:`~TransitionBlock.nld_names`,
  :meth:`~TransitionBlock.from_non_local_detector`);
- a :class:`PlannedBlock`: the block over interior bins in float64, with its
  exact :meth:`~PlannedBlock.dense` matrix, its cost, the arrays that identify
  it and its device form;
- a :class:`KernelBlock`: the JAX pytree whose products
  :class:`xhmm.kernels.structured.BlocksOperator` sums (the filter's
  prediction, the smoother's pullback and chunk predictions, the transition
  counts, the Viterbi max-product and its one-column form).

Subclassing :class:`TransitionBlock` with a ``kind`` registers the kind:
the spec reader and :func:`xhmm.transitions.from_non_local_detector` find
it by name, and :mod:`xhmm.transitions` imports every module of the package
and exports every registered block, so nothing outside the new module
changes.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import jax
import numpy as np

from ..errors import InputError, TransitionError
from .layout import StateBins

__all__ = ["TransitionBlock", "PlannedBlock", "KernelBlock", "block_kinds", "block_kind",
           "nld_blocks", "detector_environment", "find_environment", "device_indices",
           "inverse_index"]

_KINDS: dict[str, type["TransitionBlock"]] = {}


class KernelBlock(Protocol):
    """A block on the device (a JAX pytree); every product is over the last axis.

    ``p`` and ``r`` are ``(..., n_from)`` and ``(..., n_to)`` rows of
    probabilities (any leading axes: sequences, chunk rows).
    """

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ block``, ``(..., n_to)`` (or ``(..., 1)`` when every column is equal)."""

    def backward(self, r: jax.Array) -> jax.Array:
        """``block @ r``, ``(..., n_from)`` (or ``(..., 1)`` when every row is equal)."""

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``max_i p[i] * block[i, j]`` for every ``j`` and its int32 argmax ``i``.

        Ties go to the lowest ``i``; where the maximum is 0 the argmax is 0.
        """

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n_from), bit for bit."""


class PlannedBlock(ABC):
    """A block resolved against its states' bins, in float64 over interior bins."""

    @property
    @abstractmethod
    def label(self) -> str:
        """How the block runs, for ``describe()`` (the ``xhmm_transition`` attribute)."""

    @property
    @abstractmethod
    def cost(self) -> int:
        """Multiply-adds per row of a product."""

    @abstractmethod
    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays that identify the block (for the resume digest)."""

    @abstractmethod
    def dense(self) -> np.ndarray:
        """The ``(n_from, n_to)`` float64 matrix over interior bins."""

    @abstractmethod
    def device(self, dtype: np.dtype, n_sequences: int) -> KernelBlock:
        """The :class:`KernelBlock` in ``dtype`` for batches of ``n_sequences``."""


class TransitionBlock(ABC):
    """What moves the bins of one discrete state to those of another.

    Subclasses are frozen dataclasses with a class attribute ``kind`` (the
    name in the JSON spec); see the module docstring.

    Attributes
    ----------
    kind : str
        Name of the kind in the spec.
    array_fields : tuple of str
        Fields written as named array variables in a spec (others are JSON
        values).
    nld_names : tuple of str
        Class names of non_local_detector's continuous transitions this
        kind may stand for (see :meth:`from_non_local_detector`).
    """

    kind: ClassVar[str]
    array_fields: ClassVar[tuple[str, ...]] = ()
    nld_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:
            if kind in _KINDS and _KINDS[kind].__qualname__ != cls.__qualname__:
                raise TypeError(f"block kind {kind!r} is already {_KINDS[kind].__name__}")
            _KINDS[kind] = cls

    @abstractmethod
    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The block over the interior bins of ``src`` -> ``dst``.

        ``name`` (e.g. ``"blocks[('a', 'b')]"``) starts every error message.

        Raises
        ------
        TransitionError
            The block does not fit its states.
        """

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "TransitionBlock | None":
        """This kind's block for ``model``, one of ``det``'s continuous transitions.

        Parameters
        ----------
        model : object
            The detector's transition object (its class name is one of
            :attr:`nld_names`).
        det : detector
            The fitted detector (environments, bin layout).
        n_from, n_to : int
            Bins of the from- and to-state.
        **data
            What the caller of :func:`~xhmm.transitions.from_non_local_detector`
            passed beyond the detector (e.g. ``position``).

        Returns
        -------
        TransitionBlock or None
            None where this kind cannot represent ``model`` (the next kind
            is tried, then the detector's dense matrix).
        """
        return None

    def spec_fields(self) -> dict[str, Any]:
        """The block's dataclass fields (arrays as NumPy arrays)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def required_fields(cls) -> tuple[str, ...]:
        """Fields without a default: a spec must give them."""
        return tuple(field.name for field in dataclasses.fields(cls)
                     if field.default is dataclasses.MISSING
                     and field.default_factory is dataclasses.MISSING)


def block_kinds() -> dict[str, type[TransitionBlock]]:
    """Every registered block kind, by name."""
    return dict(_KINDS)


def block_kind(kind: Any, where: str) -> type[TransitionBlock]:
    """The block class of ``kind``; a :class:`TransitionError` naming ``where`` if unknown."""
    if kind not in _KINDS:
        raise TransitionError(
            f"{where}: unknown kind {kind!r}; expected one of {', '.join(sorted(_KINDS))}"
        )
    return _KINDS[kind]


def nld_blocks(name: str) -> list[type[TransitionBlock]]:
    """The kinds that may stand for non_local_detector's transition class ``name``."""
    return [cls for cls in _KINDS.values() if name in cls.nld_names]


def device_indices(values: np.ndarray) -> jax.Array:
    """Integer indices on the device, as int32."""
    return jax.device_put(np.asarray(values, dtype=np.int32))


def inverse_index(cells: np.ndarray, n_cells: int) -> np.ndarray:
    """For each of ``n_cells``, its position in ``cells`` (``len(cells)`` if none)."""
    inverse = np.full(n_cells, cells.size, dtype=np.int64)
    inverse[cells] = np.arange(cells.size)
    return inverse


def find_environment(det: Any, name: Any) -> Any:
    """The environment called ``name`` of a non_local_detector detector, or None."""
    return next((environment for environment in det.environments
                 if environment.environment_name == name), None)


def detector_environment(det: Any, name: Any) -> Any:
    """The environment called ``name`` of a non_local_detector detector.

    Raises
    ------
    InputError
        ``det.environments`` has none of that name.
    """
    environment = find_environment(det, name)
    if environment is None:
        raise InputError(f"det.environments has no environment named {name!r}")
    return environment
