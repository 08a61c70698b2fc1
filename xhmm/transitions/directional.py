"""A Gaussian random walk that moves one way along the bins (kind ``directional_random_walk``).

non_local_detector's ``RandomWalkDirection1`` and ``RandomWalkDirection2``
take its ``RandomWalk`` (Gaussian pdf of the Euclidean distance between bin
centres, variance ``movement_var``, mean 0; rows and columns of exterior
bins zero; rows normalised) and keep the upper (``Direction1``: to-bin
index >= from-bin index) or lower (``Direction2``: <=) triangle, rows
normalised again. Row scaling and the triangle commute, so the block here is
the Gaussian weight on the allowed interior to-bins, each row normalised
once. On a track graph the distance is the graph's: see
:class:`~xhmm.transitions.track_graph.TrackGraphRandomWalk`.

The walk is zero (in float32, underflowed) a few dozen bins from the
diagonal, so it runs tiled (:mod:`xhmm.transitions.tiled`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import TransitionError
from .block import TransitionBlock, find_environment
from .layout import StateBins
from .tiled import ROWS_AT_ONCE, PlannedTiled, check_square, stochastic_rows

__all__ = ["DirectionalRandomWalk", "DIRECTIONS", "NLD_DIRECTIONS", "check_direction",
           "gaussian_chunks"]

#: The directions and the triangle each keeps (to-bin index vs from-bin index).
DIRECTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "increasing": np.greater_equal,
    "decreasing": np.less_equal,
}
#: non_local_detector's class name of each direction.
NLD_DIRECTIONS = {"RandomWalkDirection1": "increasing", "RandomWalkDirection2": "decreasing"}


def check_direction(direction: Any, kind: str, allow_none: bool) -> None:
    """A :class:`TransitionError` unless ``direction`` is one of :data:`DIRECTIONS`."""
    if direction is None and allow_none:
        return
    if direction not in DIRECTIONS:
        allowed = ", ".join(map(repr, [*DIRECTIONS] + ([None] if allow_none else [])))
        raise TransitionError(f"{kind} direction must be one of {allowed}, got {direction!r}")


def gaussian_chunks(squared: Callable[[np.ndarray, np.ndarray], np.ndarray],
                    src: StateBins, dst: StateBins, direction: str | None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Gaussian weights of the interior rows, :data:`~.tiled.ROWS_AT_ONCE` rows at a time.

    Parameters
    ----------
    squared : callable
        ``squared(from_bins, to_bins)`` -> ``(len(from_bins), len(to_bins))``
        squared standardised step ``(d - mean)^2 / var`` between bins (all
        bins' indices, ``inf`` where unreachable).
    src, dst : StateBins
    direction : str or None
        A key of :data:`DIRECTIONS`, or None for both ways.

    Yields
    ------
    rows, weights
        Interior from-bins (positions among the interior bins) and
        ``exp(-squared / 2)`` over the interior to-bins, scaled so each
        row's largest allowed weight is 1 (the pdf's constant and any row
        factor cancel in the normalisation).
    """
    from_bins, to_bins = np.flatnonzero(src.interior), np.flatnonzero(dst.interior)
    for start in range(0, from_bins.size, ROWS_AT_ONCE):
        rows = np.arange(start, min(start + ROWS_AT_ONCE, from_bins.size))
        exponent = -0.5 * squared(from_bins[rows], to_bins)
        if direction is not None:
            allowed = DIRECTIONS[direction](to_bins[None, :], from_bins[rows, None])
            exponent = np.where(allowed, exponent, -np.inf)
        peak = exponent.max(axis=1, keepdims=True)
        yield rows, np.exp(exponent - np.where(np.isfinite(peak), peak, 0.0))


@dataclass(frozen=True, eq=False)
class DirectionalRandomWalk(TransitionBlock):
    """A Gaussian random walk over bin centres that moves one way along the bins.

    ``block[i, j]`` is proportional to ``exp(-|c_i - c_j|^2 / (2
    movement_var))`` where bin ``j`` may follow bin ``i`` (``direction``:
    ``"increasing"``, ``j >= i`` in ``state_bins`` order, non_local_detector's
    ``RandomWalkDirection1``; ``"decreasing"``, ``j <= i``,
    ``RandomWalkDirection2``) and both are interior, else 0; rows are
    normalised over the interior.

    Parameters
    ----------
    movement_var : float
        Variance of one step's displacement along each dimension (> 0).
    centers : (n_bins, n_dims) array-like
        Centre of each bin of the state (all its bins, in ``state_bins``
        order); 1-D for ``n_dims = 1``.
    direction : {"increasing", "decreasing"}
    """

    kind: ClassVar[str] = "directional_random_walk"
    array_fields: ClassVar[tuple[str, ...]] = ("centers",)
    nld_names: ClassVar[tuple[str, ...]] = tuple(NLD_DIRECTIONS)

    movement_var: float
    centers: np.ndarray
    direction: str

    def __post_init__(self) -> None:
        centers = np.asarray(self.centers, dtype=np.float64)
        centers = centers[:, None] if centers.ndim == 1 else centers
        if centers.ndim != 2 or centers.shape[1] == 0:
            raise TransitionError(
                f"DirectionalRandomWalk centers must be (n_bins, n_dims), got shape "
                f"{centers.shape}"
            )
        var = float(self.movement_var)
        if not (np.isfinite(var) and var > 0):
            raise TransitionError(f"DirectionalRandomWalk movement_var must be > 0, got {var}")
        check_direction(self.direction, "DirectionalRandomWalk", allow_none=False)
        object.__setattr__(self, "centers", centers)
        object.__setattr__(self, "movement_var", var)

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedTiled:
        """The planned block (tiled, :mod:`xhmm.transitions.tiled`).

        Raises
        ------
        TransitionError
            ``centers`` does not have one row per bin of each state, an
            interior centre is not finite, or an interior from-bin reaches
            no interior to-bin.
        """
        kind = "DirectionalRandomWalk"
        check_square(self.centers.shape[0], src.n_bins, dst.n_bins, name, kind, "centers")
        if not np.isfinite(self.centers[src.interior | dst.interior]).all():
            raise TransitionError(f"{name}: {kind} centers of interior bins must be finite")

        def squared(from_bins: np.ndarray, to_bins: np.ndarray) -> np.ndarray:
            step = self.centers[from_bins, None, :] - self.centers[None, to_bins, :]
            return (step**2).sum(axis=-1) / self.movement_var

        shape = (src.n_interior, dst.n_interior)
        chunks = gaussian_chunks(squared, src, dst, self.direction)
        return PlannedTiled(*stochastic_rows(chunks, shape, name, kind), shape,
                            f"directional random walk, {self.direction}")

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "DirectionalRandomWalk | None":
        """The walk of a ``RandomWalkDirection1`` / ``2`` on an environment without track graph.

        Reads ``model.environment_name`` and ``model.movement_var`` and the
        environment's ``place_bin_centers_`` (``det.environments``); None on
        a track graph (see
        :class:`~xhmm.transitions.track_graph.TrackGraphRandomWalk`), for a
        non-scalar ``movement_var`` or bins that are not the states'.
        """
        environment = find_environment(det, model.environment_name)
        if (environment is None or getattr(environment, "track_graph", None) is not None
                or np.size(model.movement_var) != 1):
            return None
        centers = np.asarray(environment.place_bin_centers_, dtype=np.float64)
        if not centers.shape[0] == n_from == n_to:
            return None
        return cls(float(np.ravel(model.movement_var)[0]), centers,
                   NLD_DIRECTIONS[type(model).__name__])
