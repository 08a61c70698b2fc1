"""Where each discrete state's bins lie along ``state_bins``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import TransitionError

__all__ = ["StateBins", "StateLayout", "state_layout"]


@dataclass(frozen=True)
class StateBins:
    """The bins of one discrete state.

    Attributes
    ----------
    label : object
        The state's label in the ``state`` coordinate.
    interior : (n,) bool ndarray
        ``is_interior`` of each of the state's bins, in ``state_bins`` order.
    columns : (n_interior,) int64 ndarray
        Positions of its interior bins among all interior bins.
    """

    label: object
    interior: np.ndarray
    columns: np.ndarray

    @property
    def n_bins(self) -> int:
        """Bins of the state, interior or not."""
        return int(self.interior.size)

    @property
    def n_interior(self) -> int:
        """Interior bins of the state."""
        return int(self.columns.size)


@dataclass(frozen=True)
class StateLayout:
    """The discrete states over ``state_bins``, in order of first appearance.

    Attributes
    ----------
    states : tuple of StateBins
    n_interior : int
        Interior bins over all states (``K``).
    """

    states: tuple[StateBins, ...]
    n_interior: int

    @property
    def labels(self) -> list:
        """State labels in order of first appearance."""
        return [state.label for state in self.states]

    def index(self, label: object, where: str) -> int:
        """Position of ``label``; a :class:`TransitionError` naming ``where`` if unknown."""
        for i, state in enumerate(self.states):
            if state.label == label:
                return i
        raise TransitionError(
            f"{where}: {label!r} is not a state of the 'state' coordinate "
            f"(states: {', '.join(map(repr, self.labels))})"
        )


def state_layout(state_labels: np.ndarray, is_interior: np.ndarray) -> StateLayout:
    """Group the bins by state.

    Parameters
    ----------
    state_labels : (N,) array
        Discrete state of each state bin (the ``state`` coordinate).
    is_interior : (N,) bool array

    Returns
    -------
    StateLayout
    """
    labels = np.asarray(state_labels)
    mask = np.asarray(is_interior, dtype=bool)
    if labels.shape != mask.shape:
        raise TransitionError(
            f"the 'state' coordinate has shape {labels.shape}; expected {mask.shape}, "
            "one label per state bin"
        )
    position = np.cumsum(mask) - 1
    states = []
    for label in pd.unique(pd.Series(labels)):
        members = np.flatnonzero(labels == label)
        interior = mask[members]
        states.append(StateBins(label, interior, position[members[interior]].astype(np.int64)))
    return StateLayout(tuple(states), int(mask.sum()))
