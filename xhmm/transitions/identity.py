"""``Identity``: bin ``k`` of the from-state moves to bin ``k`` of the to-state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TransitionError
from .block import PlannedBlock, TransitionBlock
from .layout import StateBins
from .planned import PlannedIdentity

__all__ = ["Identity"]


@dataclass(frozen=True)
class Identity(TransitionBlock):
    """Stay in the same bin: bin ``k`` of the from-state moves to bin ``k`` of the to-state.

    The two states must have the same number of bins, and every interior
    bin of the from-state must be an interior bin of the to-state.
    """

    kind = "identity"
    nld_names = ("Identity",)

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block (see :mod:`xhmm.transitions.planned`).

        Raises
        ------
        TransitionError
            Unequal states, or an interior bin moving to an exterior one.
        """
        if src.n_bins != dst.n_bins:
            raise TransitionError(
                f"{name}: Identity needs states of equal size; {src.label!r} has "
                f"{src.n_bins} bins, {dst.label!r} has {dst.n_bins}"
            )
        lost = src.interior & ~dst.interior
        if lost.any():
            raise TransitionError(
                f"{name}: Identity moves interior bin {int(np.argmax(lost))} of "
                f"{src.label!r} to an exterior bin of {dst.label!r}"
            )
        position = np.cumsum(dst.interior) - 1
        return PlannedIdentity(position[src.interior].astype(np.int64), dst.n_interior)

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "Identity":
        """non_local_detector's ``Identity``: the same block."""
        return cls()
