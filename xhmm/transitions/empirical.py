"""The animal's own movement as a transition (kind ``empirical_movement``).

non_local_detector's ``EmpiricalMovement`` counts the animal's moves
between position bins: every pair of consecutive positions (``position[t]``
-> ``position[t + 1]``; the reverse with ``is_time_reversed``) adds one to
``counts[from bin, to bin]``, binned like ``numpy.histogramdd`` with the
environment's bin edges (the last edge of each dimension closed, positions
outside the edges or NaN not counted). Rows are normalised over all bins
and the matrix raised to the power ``speedup`` (``speedup`` moves per
step); bins are numbered in C order over the grid (``x`` major), as the
environment's ``place_bin_centers_``.

non_local_detector then uses the matrix's interior rows and columns as they
are. A block here must be row-stochastic over the interior, so each
interior row is normalised over the interior to-bins (it matches
non_local_detector's wherever that row already sums to 1, the case when
no move leaves the interior), and an interior row with nothing on the
interior (a bin the animal was never seen leaving, e.g. one filled in by
the interior's closing) stays where it is (probability 1 on itself).

The power is taken row by row on the rows' non-zeros (``speedup`` sparse
moves of each interior bin), never as an ``n_bins x n_bins`` matrix. Moves
are short, so the block is mostly zero (a band along a 1-D track, stripes
of the flattened grid in 2-D) and runs tiled (:mod:`xhmm.transitions.tiled`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import TransitionError
from .block import TransitionBlock, find_environment
from .layout import StateBins
from .tiled import ROWS_AT_ONCE, PlannedTiled, check_square, stochastic_rows

__all__ = ["EmpiricalMovement", "movement_counts"]


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value as ``numpy.histogramdd`` finds it; -1 outside (or NaN)."""
    index = np.searchsorted(edges, values, side="right") - 1
    index[values == edges[-1]] = edges.size - 2
    return np.where((index >= 0) & (index < edges.size - 1) & ~np.isnan(values), index, -1)


def movement_counts(position: np.ndarray, edges: Sequence[np.ndarray], is_time_reversed: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moves between consecutive positions, by (from bin, to bin).

    Parameters
    ----------
    position : (n_time, n_dims) ndarray
    edges : sequence of n_dims ndarrays
        Bin edges of each dimension.
    is_time_reversed : bool
        Count ``position[t + 1] -> position[t]``.

    Returns
    -------
    from_bin, to_bin : int64 ndarrays
        Flat (C order) bins of each distinct move.
    count : int64 ndarray
        How often each move was made.
    """
    flat = np.zeros(position.shape[0], dtype=np.int64)
    outside = np.zeros(position.shape[0], dtype=bool)
    for dim, dim_edges in enumerate(edges):
        index = _bin_index(position[:, dim], dim_edges)
        outside |= index < 0
        flat = flat * (dim_edges.size - 1) + index
    start, end = (flat[1:], flat[:-1]) if is_time_reversed else (flat[:-1], flat[1:])
    counted = ~(outside[1:] | outside[:-1])
    n_bins = int(np.prod([e.size - 1 for e in edges]))
    moves, count = np.unique(start[counted] * n_bins + end[counted], return_counts=True)
    from_bin, to_bin = np.divmod(moves, n_bins)
    return from_bin, to_bin, count


class _OneMove:
    """One move of the normalised count matrix, applied to sparse rows.

    The matrix is held by its non-zeros grouped by from-bin, and rows of
    probabilities by their non-zeros ``(row, bin, value)``: a move costs
    one product per non-zero of the result's expansion, and no
    ``n_bins x n_bins`` matrix is formed.
    """

    def __init__(self, from_bin: np.ndarray, to_bin: np.ndarray, count: np.ndarray,
                 n_bins: int) -> None:
        order = np.argsort(from_bin, kind="stable")
        out_count = np.bincount(from_bin, minlength=n_bins)
        sums = np.bincount(from_bin, weights=count, minlength=n_bins)
        self.to_bin = to_bin[order]
        self.values = count[order] / sums[from_bin[order]]
        self.starts = np.concatenate([[0], np.cumsum(out_count)])
        self.n_bins = n_bins

    def after(self, row: np.ndarray, bin_: np.ndarray, value: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-zeros of ``rows @ moves`` for the rows' non-zeros ``(row, bin_, value)``."""
        degree = self.starts[bin_ + 1] - self.starts[bin_]
        entry = np.repeat(np.arange(bin_.size), degree)
        first = np.repeat(np.cumsum(degree) - degree, degree)
        move = self.starts[bin_][entry] + np.arange(entry.size) - first
        key, where = np.unique(row[entry] * self.n_bins + self.to_bin[move],
                               return_inverse=True)
        total = np.bincount(where, weights=value[entry] * self.values[move],
                            minlength=key.size)
        row, bin_ = np.divmod(key, self.n_bins)
        return row, bin_, total


@dataclass(frozen=True, eq=False)
class EmpiricalMovement(TransitionBlock):
    """The animal's moves between bins, ``speedup`` moves per step (module docstring).

    Parameters
    ----------
    position : (n_time, n_dims) array-like
        Positions the moves are counted from, consecutive samples one move
        apart (1-D for ``n_dims = 1``); non_local_detector's training
        positions of the environment and encoding group (linearised on a
        track graph).
    edges : sequence of n_dims sequences of float
        Bin edges along each dimension (increasing; non_local_detector: the
        environment's ``edges_``); the state's bins are the grid's cells in
        C order.
    speedup : int, default 1
        Moves per step (the matrix power, >= 1).
    is_time_reversed : bool, default False
        Count the moves backwards in time.
    """

    kind: ClassVar[str] = "empirical_movement"
    array_fields: ClassVar[tuple[str, ...]] = ("position",)
    nld_names: ClassVar[tuple[str, ...]] = ("EmpiricalMovement",)

    position: np.ndarray
    edges: Sequence[Sequence[float]]
    speedup: int = 1
    is_time_reversed: bool = False

    def __post_init__(self) -> None:
        kind = "EmpiricalMovement"
        position = np.asarray(self.position, dtype=np.float64)
        position = position[:, None] if position.ndim == 1 else position
        try:
            edges = tuple(tuple(float(e) for e in dim) for dim in self.edges)
        except (TypeError, ValueError) as exc:
            raise TransitionError(
                f"{kind} edges must be a sequence of bin edges per dimension: {exc}"
            ) from exc
        if position.ndim != 2 or position.shape[1] != len(edges):
            raise TransitionError(
                f"{kind} position must be (n_time, {len(edges)}) for {len(edges)} dimensions "
                f"of edges, got shape {position.shape}"
            )
        for dim, dim_edges in enumerate(edges):
            if len(dim_edges) < 2 or not np.all(np.diff(dim_edges) > 0):
                raise TransitionError(
                    f"{kind} edges[{dim}] must be at least 2 increasing values, got {dim_edges}"
                )
        speedup = self.speedup
        if isinstance(speedup, (bool, np.bool_)) or not isinstance(speedup, (int, np.integer)) \
                or speedup < 1:
            raise TransitionError(f"{kind} speedup must be an integer >= 1, got {speedup!r}")
        if not isinstance(self.is_time_reversed, (bool, np.bool_)):
            raise TransitionError(
                f"{kind} is_time_reversed must be a bool, got {self.is_time_reversed!r}"
            )
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "speedup", int(speedup))
        object.__setattr__(self, "is_time_reversed", bool(self.is_time_reversed))

    @property
    def n_bins(self) -> int:
        """Cells of the grid."""
        return int(np.prod([len(dim) - 1 for dim in self.edges]))

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedTiled:
        """The planned block (tiled, :mod:`xhmm.transitions.tiled`).

        Raises
        ------
        TransitionError
            The grid is not the states' bins, or an interior bin the animal
            left (or its stay in place) reaches no interior to-bin.
        """
        kind = "EmpiricalMovement"
        check_square(self.n_bins, src.n_bins, dst.n_bins, name, kind, "edges")
        moves = _OneMove(*movement_counts(self.position, [np.asarray(e) for e in self.edges],
                                          self.is_time_reversed), self.n_bins)
        from_bins, to_bins = np.flatnonzero(src.interior), np.flatnonzero(dst.interior)
        to_position = np.full(self.n_bins, -1, dtype=np.int64)
        to_position[to_bins] = np.arange(to_bins.size)

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, from_bins.size, ROWS_AT_ONCE):
                rows = np.arange(start, min(start + ROWS_AT_ONCE, from_bins.size))
                reached = (np.arange(rows.size), from_bins[rows], np.ones(rows.size))
                for _ in range(self.speedup):
                    reached = moves.after(*reached)
                row, bin_, value = reached
                inside = to_position[bin_] >= 0
                weights = np.zeros((rows.size, to_bins.size))
                weights[row[inside], to_position[bin_[inside]]] = value[inside]
                stay = ~(weights > 0).any(axis=1) & (to_position[from_bins[rows]] >= 0)
                weights[stay, to_position[from_bins[rows[stay]]]] = 1.0
                yield rows, weights

        shape = (src.n_interior, dst.n_interior)
        way = ", time-reversed" if self.is_time_reversed else ""
        return PlannedTiled(*stochastic_rows(chunks(), shape, name, kind), shape,
                            f"empirical movement, speedup {self.speedup}{way}")

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "EmpiricalMovement | None":
        """The movement of an ``EmpiricalMovement``, from the positions it was fitted on.

        A fitted detector keeps the matrix but not the positions, so this
        needs ``position=`` (the positions passed to ``fit``) and, where
        ``fit`` had them, ``is_training=``, ``encoding_group_labels=`` and
        ``environment_labels=`` (same selection as non_local_detector). On
        a track graph the positions are linearised with
        ``track_linearization`` (installed with non_local_detector). None
        without ``position``.

        Reads ``model.environment_name``, ``encoding_group``, ``speedup``,
        ``is_time_reversed`` and the environment's ``edges_`` (and, on a
        track graph, ``track_graph``, ``edge_order``, ``edge_spacing``).
        """
        position = data.get("position")
        environment = find_environment(det, model.environment_name)
        if position is None or environment is None:
            return None
        position = np.asarray(position, dtype=np.float64)
        position = position[:, None] if position.ndim == 1 else position
        keep = np.ones(position.shape[0], dtype=bool)
        if data.get("is_training") is not None:
            keep &= np.asarray(data["is_training"], dtype=bool).squeeze()
        if data.get("encoding_group_labels") is not None:
            keep &= np.asarray(data["encoding_group_labels"]) == model.encoding_group
        if data.get("environment_labels") is not None:
            keep &= np.asarray(data["environment_labels"]) == model.environment_name
        position = position[keep]
        if len(environment.edges_) == 1 and environment.track_graph is not None:
            from track_linearization import get_linearized_position

            position = get_linearized_position(
                position=position, track_graph=environment.track_graph,
                edge_order=environment.edge_order, edge_spacing=environment.edge_spacing,
            ).linear_position.to_numpy()[:, None]
        block = cls(position, [np.asarray(e).tolist() for e in environment.edges_],
                    speedup=int(model.speedup), is_time_reversed=bool(model.is_time_reversed))
        return block if block.n_bins == n_from == n_to else None
