"""``Blocks``: a transition over discrete states, one block per pair of states.

Each block describes, for one (from, to) pair of discrete states, a
row-stochastic matrix from the from-state's bins to the to-state's interior
bins (a :class:`~xhmm.transitions.block.TransitionBlock`: ``Uniform``,
``Identity``, ``Dense``, ``RandomWalk`` or any other registered kind);
:class:`Blocks` combines them with the discrete transition. Blocks are
checked against the bins of their states when the transition is planned
(:func:`xhmm.transitions.plan.plan_transition`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TransitionError
from .block import TransitionBlock, block_kinds

__all__ = ["Blocks"]


@dataclass(frozen=True, eq=False)
class Blocks:
    """A transition over discrete states, each pair of states moving by a block.

    ``A[i, j] = discrete[s(i), s(j)] * block[s(i), s(j)][i, j]`` for bins
    ``i``, ``j`` of states ``s(i)``, ``s(j)`` (the ``state`` coordinate).

    Parameters
    ----------
    discrete : array-like or DataArray
        Row-stochastic discrete transition, rows "from" and columns "to":
        an (S, S) array in the order in which the state labels first appear
        along ``state_bins``; a DataArray with dims ``("from_state",
        "to_state")`` (labelled by state, or in that order); or time-varying
        with dims ``("time", "from_state", "to_state")`` (NumPy or dask),
        where ``discrete[time=t]`` moves step ``t`` to step ``t + 1`` (the
        last one is unused).
    blocks : mapping of (from_label, to_label) to a TransitionBlock
        ``Uniform``, ``Identity``, ``Dense``, ``RandomWalk`` or another
        registered kind (:mod:`xhmm.transitions.block`). Every pair with
        non-zero discrete probability needs one; blocks of pairs with zero
        probability are ignored.

    Examples
    --------
    >>> Blocks(discrete=[[0.98, 0.02], [0.05, 0.95]],
    ...        blocks={("cont", "cont"): RandomWalk(6.0, centers),
    ...                ("cont", "frag"): Uniform(), ("frag", "cont"): Uniform(),
    ...                ("frag", "frag"): Uniform()})  # doctest: +SKIP
    """

    discrete: Any
    blocks: Mapping[tuple[Hashable, Hashable], TransitionBlock]

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, Mapping):
            raise TransitionError(
                f"Blocks blocks must map (from_label, to_label) to a block, got "
                f"{type(self.blocks).__name__}"
            )
        for key, block in self.blocks.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise TransitionError(
                    f"Blocks key {key!r} must be a (from_label, to_label) pair"
                )
            if not isinstance(block, TransitionBlock):
                kinds = ", ".join(sorted(cls.__name__ for cls in block_kinds().values()))
                raise TransitionError(
                    f"blocks[{key!r}] is a {type(block).__name__}; expected a transition "
                    f"block ({kinds})"
                )
        object.__setattr__(self, "blocks", dict(self.blocks))
