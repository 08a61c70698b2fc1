"""Find the cheap state blocks of a dense transition matrix.

A dense matrix given with a ``state`` coordinate is cut into its (from, to)
state blocks once, before the run: a block that is all zero is skipped and
a block whose rows are all the same (rank one, e.g. uniform) runs as "mass
times a vector"; the rest stays dense. When that saves enough of the
``K * K`` product, the matrix runs as a
:class:`~xhmm.transitions.structured.StructuredTransition`, so existing
dense transitions of models such as non_local_detector's speed up with no
change to user code. The plan is exact: rows count as equal only within a
float64 rounding (:data:`RANK_ONE_RTOL`).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..engine.manifest import array_digest
from .block import PlannedBlock
from .dense_transition import DenseTransition
from .discrete import DiscreteSchedule
from .layout import state_layout
from .matrix import PlannedDense
from .structured import StructuredTransition
from .uniform import PlannedRankOne

__all__ = ["analyse_dense", "MIN_ANALYSED_BINS", "MAX_COST_FRACTION", "RANK_ONE_RTOL"]

#: Below this many interior bins the dense product is too cheap to beat.
MIN_ANALYSED_BINS = 256
#: Run the blocks only if their cost is at most this fraction of ``K * K``.
MAX_COST_FRACTION = 0.5
#: Rows of a block are "equal" when each entry is within this relative
#: distance of the first row's.
RANK_ONE_RTOL = 1e-12
_ROWS_PER_READ = 256


def _block_kind(matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> str:
    """``"zero"``, ``"rank-one"`` or ``"dense"``, reading a few rows at a time."""
    first = matrix[rows[0], cols]
    zero, same = not first.any(), True
    for lo in range(0, rows.size, _ROWS_PER_READ):
        part = matrix[np.ix_(rows[lo:lo + _ROWS_PER_READ], cols)]
        zero = zero and not part.any()
        same = same and bool((np.abs(part - first) <= RANK_ONE_RTOL * first).all())
        if not (zero or same):
            return "dense"
    return "zero" if zero else "rank-one"


def analyse_dense(matrix: np.ndarray, state_labels: np.ndarray | None):
    """Plan a dense interior transition by state blocks when that pays off.

    Parameters
    ----------
    matrix : (K, K) float64 ndarray
        Validated row-stochastic transition over the interior bins.
    state_labels : (K,) array or None
        Discrete state of each interior bin.

    Returns
    -------
    StructuredTransition
        ``kind="dense-analysed"`` when the state blocks cost at most
        :data:`MAX_COST_FRACTION` of the dense product and
        ``K >= MIN_ANALYSED_BINS``; its digest is the dense matrix's, so a
        resumed run does not depend on the plan.
    DenseTransition
        Otherwise.
    """
    n_bins = matrix.shape[0]
    if state_labels is None or n_bins < MIN_ANALYSED_BINS:
        return DenseTransition(matrix)
    layout = state_layout(state_labels, np.ones(n_bins, dtype=bool))
    states = layout.states
    kinds = {
        (s, t): _block_kind(matrix, src.columns, dst.columns)
        for s, src in enumerate(states) for t, dst in enumerate(states)
    }
    cost = sum(
        states[s].n_interior * states[t].n_interior if kind == "dense"
        else states[s].n_interior + states[t].n_interior
        for (s, t), kind in kinds.items() if kind != "zero"
    )
    if cost > MAX_COST_FRACTION * n_bins * n_bins:
        return DenseTransition(matrix)
    planned: dict[tuple[int, int], PlannedBlock] = {}
    for (s, t), kind in kinds.items():
        rows, cols = states[s].columns, states[t].columns
        if kind == "rank-one":
            planned[s, t] = PlannedRankOne(matrix[rows[0], cols], rows.size, cols.size)
        elif kind == "dense":
            planned[s, t] = PlannedDense(matrix[np.ix_(rows, cols)])
    n_states = len(states)
    ones = DiscreteSchedule(np.ones((n_states, n_states)), np.ones((n_states, n_states), bool),
                            "")
    return StructuredTransition(layout, ones, planned, kind="dense-analysed",
                                fingerprint=partial(array_digest, matrix))
