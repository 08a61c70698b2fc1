"""Resolve a transition against the Dataset's layout for the engine.

:func:`plan_transition` is the one entry point: a :class:`Blocks` becomes a
:class:`~xhmm.transitions.structured.StructuredTransition`; a dense interior
matrix is analysed for zero and rank-one state blocks
(:func:`~xhmm.transitions.analyse.analyse_dense`). Both implement
:class:`xhmm.engine.transition.EngineTransition`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.transition import EngineTransition
from ..errors import TransitionError
from .analyse import analyse_dense
from .blocks import Blocks
from .discrete import resolve_discrete
from .layout import StateLayout, state_layout
from .structured import StructuredTransition
from .uniform import PlannedRankOne

__all__ = ["plan_blocks", "plan_transition"]


def plan_blocks(transition: Blocks, layout: StateLayout, n_time: int | None
                ) -> StructuredTransition:
    """Check a :class:`Blocks` against the layout and plan each block.

    Raises
    ------
    TransitionError, DimensionError
        Bad discrete transition, unknown labels, a missing block for a pair
        with non-zero probability, or a block that does not fit its states.
    """
    schedule = resolve_discrete(transition.discrete, layout.labels, n_time)
    given = {}
    for key, block in transition.blocks.items():
        where = f"blocks[{key!r}]"
        given[layout.index(key[0], where), layout.index(key[1], where)] = block
    planned = {}
    states = layout.states
    for s, t in zip(*np.nonzero(schedule.nonzero)):
        src, dst = states[s], states[t]
        name = f"blocks[({src.label!r}, {dst.label!r})]"
        if (s, t) not in given:
            raise TransitionError(
                f"discrete[from_state={src.label!r}, to_state={dst.label!r}] is non-zero but "
                f"{name} is missing; every pair with non-zero probability needs a block"
            )
        if src.n_interior == 0:
            continue
        if dst.n_interior == 0:
            raise TransitionError(
                f"{name}: state {dst.label!r} has no interior bin, but discrete moves "
                "probability to it"
            )
        block = given[s, t].plan(src, dst, name)
        # Any row-stochastic block into a single bin is that bin with probability 1.
        planned[int(s), int(t)] = (PlannedRankOne(None, src.n_interior, 1)
                                   if dst.n_interior == 1 else block)
    return StructuredTransition(layout, schedule, planned, kind="blocks")


def plan_transition(transition: Any, *, state_labels: np.ndarray | None,
                    is_interior: np.ndarray, n_time: int | None) -> EngineTransition:
    """Resolve a user transition against the Dataset layout.

    Parameters
    ----------
    transition : Blocks or (K, K) ndarray
        A :class:`Blocks`, or a validated dense matrix over the interior
        bins (rows renormalised, as :func:`xhmm.frontend.inputs.resolve_inputs`
        returns it).
    state_labels : (N,) array or None
        The ``state`` coordinate (one label per state bin), if any.
    is_interior : (N,) bool array
    n_time : int or None
        Time steps of the likelihood (checked against a time-varying
        discrete transition).

    Returns
    -------
    EngineTransition
        :class:`StructuredTransition` for a :class:`Blocks` or an analysed
        matrix whose state blocks pay off; otherwise
        :class:`xhmm.transitions.dense_transition.DenseTransition`.

    Raises
    ------
    TransitionError, DimensionError
    """
    mask = np.asarray(is_interior, dtype=bool)
    if isinstance(transition, Blocks):
        if state_labels is None:
            raise TransitionError(
                "a Blocks transition needs a 'state' coordinate along state_bins naming the "
                "discrete state of each bin"
            )
        return plan_blocks(transition, state_layout(state_labels, mask), n_time)
    labels = None if state_labels is None else np.asarray(state_labels)[mask]
    return analyse_dense(np.asarray(transition, dtype=np.float64), labels)
