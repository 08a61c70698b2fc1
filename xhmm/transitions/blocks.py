"""User-facing transition blocks: what moves a state's bins to another's.

Each block describes, for one (from, to) pair of discrete states, a
row-stochastic matrix from the from-state's bins to the to-state's interior
bins; :class:`Blocks` combines them with the discrete transition. Blocks
are checked against the bins of their states when the transition is
planned (:func:`xhmm.transitions.plan_transition`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from ..errors import TransitionError
from ..names import STOCHASTIC_ATOL
from .layout import StateBins
from .planned import PlannedBlock, PlannedDense, PlannedIdentity, PlannedRankOne
from .random_walk import plan_random_walk

__all__ = ["Blocks", "Uniform", "Identity", "Dense", "RandomWalk", "TransitionBlock"]


@dataclass(frozen=True)
class Uniform:
    """Move to any interior bin of the to-state with equal probability.

    A rank-one block: the product is the from-state's total probability
    spread evenly, whatever the bins.
    """

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block (see :mod:`xhmm.transitions.planned`)."""
        return PlannedRankOne(None, src.n_interior, dst.n_interior)


@dataclass(frozen=True)
class Identity:
    """Stay in the same bin: bin ``k`` of the from-state moves to bin ``k`` of the to-state.

    The two states must have the same number of bins, and every interior
    bin of the from-state must be an interior bin of the to-state.
    """

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


@dataclass(frozen=True, eq=False)
class Dense:
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


@dataclass(frozen=True, eq=False)
class RandomWalk:
    """A Gaussian random walk between bin centres (non_local_detector's formula).

    ``block[i, j]`` is proportional to the pdf of ``centers[i] - centers[j]``
    under a normal distribution with mean ``movement_mean`` and covariance
    ``movement_var * I``, as non_local_detector's ``RandomWalk`` builds it
    (the same matrix for the same parameters): a positive ``movement_mean``
    favours moves towards smaller coordinates. Rows and columns of exterior
    bins are zero and rows are normalised over the interior.
    On a Cartesian 2-D grid it runs as two small dense products per step
    (separable); otherwise as a dense block.

    Parameters
    ----------
    movement_var : float
        Variance of one step's displacement along each dimension (> 0).
    centers : (n_bins, n_dims) array-like
        Centre of each bin of the state (all its bins, interior or not, in
        ``state_bins`` order); 1-D for ``n_dims = 1``.
    movement_mean : float or (n_dims,) array-like, default 0.0
        Mean of ``centers[from] - centers[to]``: minus the mean displacement
        of one step (non_local_detector's sign).
    """

    movement_var: float
    centers: np.ndarray
    movement_mean: Any = field(default=0.0)

    def __post_init__(self) -> None:
        centers = np.asarray(self.centers, dtype=np.float64)
        centers = centers[:, None] if centers.ndim == 1 else centers
        if centers.ndim != 2 or centers.shape[1] == 0:
            raise TransitionError(
                f"RandomWalk centers must be (n_bins, n_dims), got shape {centers.shape}"
            )
        var = float(self.movement_var)
        if not (np.isfinite(var) and var > 0):
            raise TransitionError(f"RandomWalk movement_var must be > 0, got {var}")
        mean = np.asarray(self.movement_mean, dtype=np.float64)
        if mean.ndim > 1 or mean.size not in (1, centers.shape[1]) or not np.isfinite(mean).all():
            raise TransitionError(
                f"RandomWalk movement_mean must be a finite scalar or ({centers.shape[1]},) "
                f"vector, got {self.movement_mean!r}"
            )
        object.__setattr__(self, "centers", centers)
        object.__setattr__(self, "movement_var", var)
        object.__setattr__(self, "movement_mean", np.broadcast_to(mean, centers.shape[1:]))

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedBlock:
        """The planned block: separable on a Cartesian grid, dense otherwise.

        Raises
        ------
        TransitionError
            If ``centers`` does not have one row per bin of each state.
        """
        for state in (src, dst):
            if state.n_bins != self.centers.shape[0]:
                raise TransitionError(
                    f"{name}: RandomWalk centers has {self.centers.shape[0]} rows but state "
                    f"{state.label!r} has {state.n_bins} bins"
                )
        return plan_random_walk(self.centers, self.movement_var, self.movement_mean,
                                src.interior, dst.interior, name)


TransitionBlock = Union[Uniform, Identity, Dense, RandomWalk]


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
    blocks : mapping of (from_label, to_label) to a block
        :class:`Uniform`, :class:`Identity`, :class:`Dense` or
        :class:`RandomWalk`. Every pair with non-zero discrete probability
        needs one; blocks of pairs with zero probability are ignored.

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
            if not isinstance(block, (Uniform, Identity, Dense, RandomWalk)):
                raise TransitionError(
                    f"blocks[{key!r}] is a {type(block).__name__}; expected Uniform, "
                    "Identity, Dense or RandomWalk"
                )
        object.__setattr__(self, "blocks", dict(self.blocks))

    def to_spec(self, prefix: str = "transition"
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JSON spec of this transition and the arrays it names.

        See :func:`xhmm.transitions.spec.to_spec`.
        """
        from .spec import to_spec

        return to_spec(self, prefix)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any],
                  variables: Mapping[str, Any] | None = None) -> "Blocks":
        """A transition from its JSON spec; named arrays come from ``variables``.

        See :func:`xhmm.transitions.spec.from_spec`.
        """
        from .spec import from_spec

        return from_spec(spec, variables)
