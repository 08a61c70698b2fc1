"""Plan a Gaussian random-walk block: separable on a grid, dense otherwise.

The block from bin ``i`` to bin ``j`` is the Gaussian pdf of ``c_i - c_j``
(mean ``movement_mean``, covariance ``movement_var * I``), zero where ``i``
or ``j`` is exterior, rows normalised over the interior. This is
non_local_detector's ``RandomWalk`` exactly: it evaluates the pdf of
``N(c_j + movement_mean, movement_var)`` at ``c_i``, so a positive
``movement_mean`` favours moves towards smaller coordinates. The pdf's constant and any per-row factor
cancel in the normalisation, so the factors here are scaled to peak at 1
in every row (nothing underflows that the normalised value would keep).

On a Cartesian ``nx * ny`` grid the Gaussian is a product of two 1-D
Gaussians and a product with the block is two small dense products
(:class:`~xhmm.transitions.planned.PlannedSeparable`); elsewhere the block
is computed densely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TransitionError
from .block import PlannedBlock, TransitionBlock, detector_environment
from .layout import StateBins
from .planned import PlannedDense, PlannedSeparable

__all__ = ["RandomWalk", "plan_random_walk"]


def _peaked_exp(exponent: np.ndarray) -> np.ndarray:
    """``exp`` of each row shifted so the row's largest entry is 1."""
    return np.exp(exponent - exponent.max(axis=1, keepdims=True))


def _gaussian_1d(coords: np.ndarray, mean: float, var: float) -> np.ndarray:
    """``g[a, c]`` proportional to the pdf of a move from ``coords[a]`` to ``coords[c]``."""
    step = coords[:, None] - coords[None, :] - mean
    return _peaked_exp(-(step**2) / (2 * var))


def _cartesian(centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(xs, ys, cell)`` if the centres are each cell of ``xs x ys`` once, else None."""
    if centers.shape[1] != 2 or not np.isfinite(centers).all():
        return None
    xs, ix = np.unique(centers[:, 0], return_inverse=True)
    ys, iy = np.unique(centers[:, 1], return_inverse=True)
    cell = ix * ys.size + iy
    if xs.size * ys.size != centers.shape[0] or np.unique(cell).size != cell.size:
        return None
    return xs, ys, cell


def _check_rows(z: np.ndarray, name: str) -> None:
    if not (z > 0).all():
        raise TransitionError(
            f"{name}: interior bin {int(np.argmin(z > 0))} of the from-state reaches no "
            "interior bin of the to-state"
        )


def plan_random_walk(
    centers: np.ndarray,
    movement_var: float,
    movement_mean: np.ndarray,
    from_interior: np.ndarray,
    to_interior: np.ndarray,
    name: str,
) -> PlannedDense | PlannedSeparable:
    """Plan the random walk between two states sharing the bin centres.

    Parameters
    ----------
    centers : (n, n_dims) float64 ndarray
        Centre of each bin of the states (interior or not).
    movement_var : float
    movement_mean : (n_dims,) float64 ndarray
    from_interior, to_interior : (n,) bool ndarrays
        ``is_interior`` of the from- and to-state's bins.
    name : str
        The block, for error messages.

    Returns
    -------
    PlannedSeparable
        When the centres are a Cartesian 2-D grid and the separable product
        is cheaper than the dense one.
    PlannedDense
        Otherwise.

    Raises
    ------
    TransitionError
        If an interior from-bin's row is zero (no interior to-bin).
    """
    if not np.isfinite(centers[from_interior | to_interior]).all():
        raise TransitionError(f"{name}: RandomWalk centers of interior bins must be finite")
    grid = _cartesian(centers)
    n_from, n_to = int(from_interior.sum()), int(to_interior.sum())
    if grid is not None and centers.shape[0] * sum(g.size for g in grid[:2]) < n_from * n_to:
        xs, ys, cell = grid
        gx = _gaussian_1d(xs, movement_mean[0], movement_var)
        gy = _gaussian_1d(ys, movement_mean[1], movement_var)
        to_mask = np.zeros(xs.size * ys.size)
        to_mask[cell[to_interior]] = 1.0
        z_grid = gx @ to_mask.reshape(xs.size, ys.size) @ gy.T
        from_cells = cell[from_interior]
        z = z_grid.ravel()[from_cells]
        _check_rows(z, name)
        return PlannedSeparable(gx, gy, z, from_cells, cell[to_interior])
    rows, cols = centers[from_interior], centers[to_interior]
    exponent = np.zeros((n_from, n_to))
    for dim in range(centers.shape[1]):
        step = rows[:, None, dim] - cols[None, :, dim] - movement_mean[dim]
        exponent -= step**2 / (2 * movement_var)
    weights = _peaked_exp(exponent)
    z = weights.sum(axis=1)
    _check_rows(z, name)
    return PlannedDense(weights / z[:, None])


@dataclass(frozen=True, eq=False)
class RandomWalk(TransitionBlock):
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

    kind = "random_walk"
    array_fields = ("centers",)
    nld_names = ("RandomWalk",)

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

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "RandomWalk | None":
        """The same random walk, if the detector builds it from Euclidean distances.

        None (another kind, or the detector's matrix) on a track graph, with
        manifold distance, a direction or diffusion, a non-scalar
        ``movement_var``, or an environment whose bins are not the states' bins.
        """
        environment = detector_environment(det, model.environment_name)
        centers = np.asarray(environment.place_bin_centers_, dtype=np.float64)
        if (getattr(environment, "track_graph", None) is not None
                or getattr(model, "use_manifold_distance", False)
                or getattr(model, "direction", None) is not None
                or getattr(model, "use_diffusion", False)
                or np.size(model.movement_var) != 1
                or not centers.shape[0] == n_from == n_to):
            return None
        return cls(float(np.ravel(model.movement_var)[0]), centers,
                   movement_mean=model.movement_mean)
