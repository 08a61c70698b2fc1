"""``Uniform``: move to any interior bin of the to-state with equal probability."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .block import PlannedBlock, TransitionBlock
from .layout import StateBins
from .planned import PlannedRankOne

__all__ = ["Uniform"]


@dataclass(frozen=True)
class Uniform(TransitionBlock):
    """Move to any interior bin of the to-state with equal probability.

    A rank-one block: the product is the from-state's total probability
    spread evenly, whatever the bins.
    """

    kind = "uniform"
    nld_names = ("Uniform",)

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block (see :mod:`xhmm.transitions.planned`)."""
        return PlannedRankOne(None, src.n_interior, dst.n_interior)

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "Uniform":
        """non_local_detector's ``Uniform``: the same block."""
        return cls()
