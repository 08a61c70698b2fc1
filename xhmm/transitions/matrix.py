"""``Dense``: an explicit matrix between the bins of two states (banded where it can)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TransitionError
from ..names import STOCHASTIC_ATOL
from .block import PlannedBlock, TransitionBlock
from .layout import StateBins
from .planned import PlannedDense

__all__ = ["Dense"]


@dataclass(frozen=True, eq=False)
class Dense(TransitionBlock):
    """An explicit matrix from the from-state's bins to the to-state's bins.

    Parameters
    ----------
    matrix : (n_from, n_to) array-like
        Over all bins of each state or over their interior bins only (each
        axis either way); rows of interior from-bins sum to 1 within
        :data:`~xhmm.names.STOCHASTIC_ATOL` and put no more than that on
        exterior to-bins.
    note : str, optional
        Where the matrix came from, shown after the block's plan in
        ``describe()`` (the ``xhmm_transition`` attribute of the results).
    """

    kind = "dense"
    array_fields = ("matrix",)

    matrix: np.ndarray
    note: str = ""

    def __post_init__(self) -> None:
        try:
            matrix = np.asarray(self.matrix, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TransitionError(f"Dense matrix must be a numeric array: {exc}") from exc
        if matrix.ndim != 2:
            raise TransitionError(f"Dense matrix must be 2-D, got shape {matrix.shape}")
        object.__setattr__(self, "matrix", matrix)

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block over interior bins, rows renormalised.

        Raises
        ------
        TransitionError
            Wrong shape, non-finite or negative entries, a row not summing
            to 1, or probability moved to exterior bins.
        """
        n_rows, n_cols = self.matrix.shape
        if n_rows not in (src.n_bins, src.n_interior) or n_cols not in (dst.n_bins,
                                                                        dst.n_interior):
            raise TransitionError(
                f"{name}: Dense matrix has shape {self.matrix.shape}; expected "
                f"({src.n_bins} or {src.n_interior} interior) x ({dst.n_bins} or "
                f"{dst.n_interior} interior) bins of {src.label!r} x {dst.label!r}"
            )
        rows = self.matrix[src.interior] if n_rows == src.n_bins else self.matrix
        if not np.isfinite(rows).all() or (rows < 0).any():
            raise TransitionError(f"{name}: Dense matrix must be finite and non-negative")
        sums = rows.sum(axis=1)
        bad = np.abs(sums - 1) > STOCHASTIC_ATOL
        if bad.any():
            i = int(np.argmax(bad))
            raise TransitionError(
                f"{name}: Dense row {i} (interior bin {i} of {src.label!r}) sums to "
                f"{sums[i]:.9g}; rows must sum to 1 within {STOCHASTIC_ATOL:g}"
            )
        kept = rows[:, dst.interior] if n_cols == dst.n_bins else rows
        kept_sums = kept.sum(axis=1)
        lost = sums - kept_sums
        if (lost > STOCHASTIC_ATOL).any():
            i = int(np.argmax(lost))
            raise TransitionError(
                f"{name}: Dense row {i} moves probability {lost[i]:.6g} to exterior bins "
                f"of {dst.label!r}; exterior bins must be unreachable"
            )
        return PlannedDense(kept / kept_sums[:, None], self.note)
