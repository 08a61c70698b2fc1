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
(:class:`PlannedSeparable`, on the device a :class:`SeparableBlock`);
elsewhere the block is computed densely
(:class:`~xhmm.transitions.matrix.PlannedDense`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import TransitionError
from ..kernels.maxproduct import first_max, max_rows
from ..kernels.operators import HIGHEST, gather
from .block import (
    PlannedBlock,
    TransitionBlock,
    detector_environment,
    device_indices,
    inverse_index,
)
from .layout import StateBins
from .matrix import PlannedDense

__all__ = ["RandomWalk", "plan_random_walk", "PlannedSeparable", "SeparableBlock"]


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


@dataclass(frozen=True, eq=False)
class PlannedSeparable(PlannedBlock):
    """A Gaussian random walk on a Cartesian grid (:class:`SeparableBlock`).

    Attributes
    ----------
    gx, gy : (nx, nx), (ny, ny) float64 ndarrays
        One-dimensional Gaussian factors.
    z : (n_from,) float64 ndarray
        Row sums over the interior to-bins.
    from_cells, to_cells : int64 ndarrays
        Grid cell (``a * ny + b``) of each interior from- and to-bin.
    """

    gx: np.ndarray
    gy: np.ndarray
    z: np.ndarray
    from_cells: np.ndarray
    to_cells: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(nx, ny)``."""
        return (self.gx.shape[0], self.gy.shape[0])

    @property
    def label(self) -> str:
        """How the block runs, for ``describe()``."""
        return f"separable {self.shape[0]}x{self.shape[1]}"

    @property
    def cost(self) -> int:
        """Multiply-adds per row of a product."""
        nx, ny = self.shape
        return nx * ny * (nx + ny)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays that identify the block (for the digest)."""
        return (self.gx, self.gy, self.z, self.from_cells, self.to_cells)

    def dense(self) -> np.ndarray:
        """The (n_from, n_to) float64 matrix over interior bins."""
        ny = self.shape[1]
        (ai, bi), (aj, bj) = divmod(self.from_cells, ny), divmod(self.to_cells, ny)
        return self.gx[np.ix_(ai, aj)] * self.gy[np.ix_(bi, bj)] / self.z[:, None]

    def device(self, dtype: np.dtype, n_sequences: int) -> SeparableBlock:
        """The kernel block in ``dtype`` (see :class:`xhmm.kernels.structured.BlocksOperator`)."""
        n_cells = self.shape[0] * self.shape[1]
        return SeparableBlock(
            gx=jnp.asarray(self.gx, dtype=dtype),
            gy=jnp.asarray(self.gy, dtype=dtype),
            inv_z=jnp.asarray(1 / self.z, dtype=dtype),
            from_cells=device_indices(inverse_index(self.from_cells, n_cells)),
            from_bins=device_indices(self.from_cells),
            to_cells=device_indices(inverse_index(self.to_cells, n_cells)),
            to_bins=device_indices(self.to_cells),
            shape=self.shape,
        )


@dataclass(frozen=True)
class SeparableBlock:
    """A Gaussian random walk on a Cartesian ``nx * ny`` grid of bin centres.

    ``block[i, j] = gx[a(i), a(j)] * gy[b(i), b(j)] * inv_z[i]`` for bin ``i``
    at grid cell ``(a(i), b(i))``; cells that are not interior bins of the
    state are zero in the product.

    Parameters
    ----------
    gx : (nx, nx) array
    gy : (ny, ny) array
        One-dimensional Gaussian factors, ``g[a, c]`` for a move from
        coordinate ``a`` to ``c``.
    inv_z : (n_from,) array
        Reciprocal row sums over the interior to-bins.
    from_cells : (nx * ny,) int array
        For each cell, its interior from-bin (``n_from`` where none).
    from_bins : (n_from,) int array
        The cell of each interior from-bin.
    to_cells : (nx * ny,) int array
        For each cell, its interior to-bin (``n_to`` where none).
    to_bins : (n_to,) int array
        The cell of each interior to-bin.
    shape : (int, int)
        ``(nx, ny)``, static.
    """

    gx: jax.Array
    gy: jax.Array
    inv_z: jax.Array
    from_cells: jax.Array
    from_bins: jax.Array
    to_cells: jax.Array
    to_bins: jax.Array
    shape: tuple[int, int]

    def _grid(self, values: jax.Array, cells: jax.Array) -> jax.Array:
        return gather(values, cells).reshape(values.shape[:-1] + self.shape)

    def _flat(self, grid: jax.Array, bins: jax.Array) -> jax.Array:
        return jnp.take(grid.reshape(grid.shape[:-2] + (-1,)), bins, axis=-1)

    def forward(self, p: jax.Array) -> jax.Array:
        """``p @ block``: ``gx.T @ grid(p * inv_z) @ gy`` at the to-bins."""
        grid = jnp.matmul(self._grid(p * self.inv_z, self.from_cells), self.gy,
                          precision=HIGHEST)
        grid = jnp.einsum("ac,...ad->...cd", self.gx, grid, precision=HIGHEST)
        return self._flat(grid, self.to_bins)

    def backward(self, r: jax.Array) -> jax.Array:
        """``block @ r``: ``gx @ grid(r) @ gy.T`` at the from-bins, times ``inv_z``."""
        grid = jnp.einsum("...cd,bd->...cb", self._grid(r, self.to_cells), self.gy,
                          precision=HIGHEST)
        grid = jnp.einsum("ac,...cb->...ab", self.gx, grid, precision=HIGHEST)
        return self._flat(grid, self.from_bins) * self.inv_z

    def max_forward(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``max_{a, b} grid(p * inv_z)[a, b] * gx[a, c] * gy[b, d]`` and its from-bin.

        Two stages, each a max over one grid axis: ``max_b grid[a, b] *
        gy[b, d]`` for every ``(a, d)``, then ``max_a gx[a, c] * (that)``;
        the from-cell of ``(c, d)`` is ``(a*, b*(a*, d))``.
        """
        grid = self._grid(p * self.inv_z, self.from_cells)
        inner, best_b = max_rows(grid[..., :, :, None] * self.gy)  # [a, d]
        outer, best_a = max_rows(jnp.swapaxes(inner, -1, -2)[..., :, :, None] * self.gx)
        outer, best_a = jnp.swapaxes(outer, -1, -2), jnp.swapaxes(best_a, -1, -2)  # [c, d]
        cells = best_a * self.shape[1] + jnp.take_along_axis(best_b, best_a, axis=-2)
        return self._flat(outer, self.to_bins), self._flat(self._from_bin(cells), self.to_bins)

    def max_column(self, p: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_forward` for each row of ``p`` (B, n_from).

        The two stages at the to-cell ``(c, d)`` only: ``max_b grid[a, b] *
        gy[b, d]`` for every ``a``, then ``max_a gx[a, c] * (that)``.
        """
        grid = self._grid(p * self.inv_z, self.from_cells)  # (B, nx, ny)
        c, d = jnp.divmod(jnp.take(self.to_bins, j), self.shape[1])
        inner, best_b = first_max(grid * jnp.take(self.gy, d, axis=1).T[:, None, :])
        outer, best_a = first_max(inner[..., 0] * jnp.take(self.gx, c, axis=1).T)
        cells = best_a * self.shape[1] + jnp.take_along_axis(best_b[..., 0], best_a, axis=1)
        return outer[:, 0], self._from_bin(cells[:, 0])

    def _from_bin(self, cells: jax.Array) -> jax.Array:
        """Interior from-bin of each from-cell (the last bin for a cell outside)."""
        return jnp.minimum(jnp.take(self.from_cells, cells), self.from_bins.shape[0] - 1)


jax.tree_util.register_dataclass(
    SeparableBlock,
    data_fields=["gx", "gy", "inv_z", "from_cells", "from_bins", "to_cells", "to_bins"],
    meta_fields=["shape"],
)
