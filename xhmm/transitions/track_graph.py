"""A Gaussian random walk along a track graph (kind ``track_graph_random_walk``).

non_local_detector builds its ``RandomWalk`` (and the directional walks
built on it) on an environment with a ``track_graph`` from distances along
the graph: each bin centre is a point on one edge, and ``block[i, j]`` is
the pdf of a normal distribution (mean ``movement_mean``, variance
``movement_var``) at the shortest-path distance from bin ``i`` to bin
``j``; rows and columns of bins off the graph or exterior are zero and rows
are normalised (``RandomWalkDirection1`` / ``2`` then keep the upper /
lower triangle in bin order and normalise again).

The distance between a point at ``s`` along edge ``(u, v)`` (length ``L``)
and one at ``t`` along edge ``(u', v')`` (length ``L'``) is the shortest of
the paths through their edges' ends, ``min(s + D[u, x], L - s + D[v, x])
+ (t or L' - t)`` for ``x`` the end ``u'`` or ``v'``, and ``|s - t|`` on the
same edge, with ``D`` the shortest paths between the graph's nodes
(Floyd-Warshall over the few nodes). On a linearised track the walk is a
band (bins on one edge are neighbours in ``state_bins`` order) plus a few
patches where edges meet, so it runs tiled (:mod:`xhmm.transitions.tiled`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import TransitionError
from .block import TransitionBlock, find_environment
from .directional import NLD_DIRECTIONS, check_direction, gaussian_chunks
from .layout import StateBins
from .tiled import PlannedTiled, check_square, stochastic_rows

__all__ = ["TrackGraphRandomWalk", "node_distances", "bin_distances"]

#: Relative slack on a bin's offset beyond its edge's length.
OFFSET_RTOL = 1e-9


def node_distances(graph_edges: np.ndarray, edge_lengths: np.ndarray, n_nodes: int
                   ) -> np.ndarray:
    """Shortest-path distances between the graph's nodes (Floyd-Warshall).

    Parameters
    ----------
    graph_edges : (n_edges, 2) int ndarray
    edge_lengths : (n_edges,) float ndarray
    n_nodes : int

    Returns
    -------
    (n_nodes, n_nodes) float64 ndarray
        ``inf`` between nodes that are not connected.
    """
    distance = np.full((n_nodes, n_nodes), np.inf)
    np.fill_diagonal(distance, 0.0)
    u, v = graph_edges.T
    np.minimum.at(distance, (u, v), edge_lengths)
    np.minimum.at(distance, (v, u), edge_lengths)
    for k in range(n_nodes):
        distance = np.minimum(distance, distance[:, k, None] + distance[None, k, :])
    return distance


def bin_distances(graph_edges: np.ndarray, edge_lengths: np.ndarray, bin_edge: np.ndarray,
                  bin_offset: np.ndarray, from_bins: np.ndarray, to_bins: np.ndarray
                  ) -> np.ndarray:
    """Distances along the graph from ``from_bins`` to ``to_bins`` (module docstring).

    Parameters
    ----------
    graph_edges, edge_lengths : ndarrays
        The graph (see :class:`TrackGraphRandomWalk`).
    bin_edge, bin_offset : (n_bins,) ndarrays
        Edge of each bin and its distance from the edge's first node.
    from_bins, to_bins : int ndarrays
        Bins on the graph (``bin_edge >= 0``).

    Returns
    -------
    (from_bins.size, to_bins.size) float64 ndarray
    """
    nodes = node_distances(graph_edges, edge_lengths, int(graph_edges.max()) + 1)
    ends = graph_edges[bin_edge]  # (n_bins, 2): first and second node
    length = edge_lengths[bin_edge]
    along = np.stack([bin_offset, length - bin_offset], axis=1)  # to each end
    a, b = from_bins, to_bins
    # From each from-bin to every node, through either end of its edge.
    to_node = np.minimum(along[a, 0, None] + nodes[ends[a, 0]],
                         along[a, 1, None] + nodes[ends[a, 1]])  # (n_a, n_nodes)
    out = np.minimum(to_node[:, ends[b, 0]] + along[b, 0],
                     to_node[:, ends[b, 1]] + along[b, 1])
    same = bin_edge[a, None] == bin_edge[None, b]
    return np.where(same, np.minimum(out, np.abs(bin_offset[a, None] - bin_offset[None, b])),
                    out)


@dataclass(frozen=True, eq=False)
class TrackGraphRandomWalk(TransitionBlock):
    """A Gaussian random walk over distances along a track graph.

    ``block[i, j]`` is proportional to ``exp(-(d(i, j) - movement_mean)^2 /
    (2 movement_var))`` for ``d`` the shortest distance along the graph
    between bins ``i`` and ``j`` (each a point on an edge), where ``j`` may
    follow ``i`` (``direction``) and both are interior, else 0; rows are
    normalised over the interior. This is non_local_detector's
    ``RandomWalk`` on an environment with a ``track_graph``
    (``RandomWalkDirection1`` / ``2`` with ``direction`` ``"increasing"`` /
    ``"decreasing"`` and ``movement_mean`` 0).

    Parameters
    ----------
    movement_var : float
        Variance of one step's distance (> 0).
    graph_edges : (n_edges, 2) int array-like
        The graph's edges as pairs of node numbers ``0 .. n_nodes - 1``.
    edge_lengths : (n_edges,) array-like
        Length of each edge (> 0; non_local_detector: the edge's
        ``distance``, the Euclidean distance between its nodes).
    bin_edge : (n_bins,) int array-like
        Edge of each bin of the state (all its bins, in ``state_bins``
        order), or -1 for a bin off the graph (a gap between edges of the
        linearised track; such bins must be exterior).
    bin_offset : (n_bins,) array-like
        Distance of each bin's centre along its edge from the edge's first
        node, in ``[0, length]`` (ignored where ``bin_edge`` is -1).
    movement_mean : float, default 0.0
        Mean of the step's distance.
    direction : {"increasing", "decreasing"} or None, default None
        Keep only moves to bins at or after (``"increasing"``) or at or
        before (``"decreasing"``) the from-bin in ``state_bins`` order.
    """

    kind: ClassVar[str] = "track_graph_random_walk"
    array_fields: ClassVar[tuple[str, ...]] = ("graph_edges", "edge_lengths", "bin_edge",
                                               "bin_offset")
    nld_names: ClassVar[tuple[str, ...]] = ("RandomWalk", *NLD_DIRECTIONS)

    movement_var: float
    graph_edges: np.ndarray
    edge_lengths: np.ndarray
    bin_edge: np.ndarray
    bin_offset: np.ndarray
    movement_mean: float = 0.0
    direction: str | None = None

    def __post_init__(self) -> None:
        kind = "TrackGraphRandomWalk"
        var, mean = float(self.movement_var), float(self.movement_mean)
        if not (np.isfinite(var) and var > 0):
            raise TransitionError(f"{kind} movement_var must be > 0, got {var}")
        if not np.isfinite(mean):
            raise TransitionError(f"{kind} movement_mean must be finite, got {mean}")
        check_direction(self.direction, kind, allow_none=True)
        edges = np.asarray(self.graph_edges)
        if edges.ndim != 2 or edges.shape[1] != 2 or edges.shape[0] == 0 or (
                edges.dtype.kind not in "iu") or (edges < 0).any():
            raise TransitionError(
                f"{kind} graph_edges must be a non-empty (n_edges, 2) array of node numbers "
                f">= 0, got {self.graph_edges!r}"
            )
        lengths = np.asarray(self.edge_lengths, dtype=np.float64)
        if lengths.shape != (edges.shape[0],) or not (np.isfinite(lengths) & (lengths > 0)).all():
            raise TransitionError(
                f"{kind} edge_lengths must be {edges.shape[0]} finite lengths > 0, got "
                f"{self.edge_lengths!r}"
            )
        bin_edge = np.asarray(self.bin_edge)
        offset = np.asarray(self.bin_offset, dtype=np.float64)
        if bin_edge.ndim != 1 or bin_edge.dtype.kind not in "iu" or offset.shape != bin_edge.shape:
            raise TransitionError(
                f"{kind} bin_edge and bin_offset must be 1-D of equal length (bin_edge "
                f"integer), got shapes {bin_edge.shape} and {offset.shape}"
            )
        bad = (bin_edge >= edges.shape[0]) | (bin_edge < -1)
        on = (bin_edge >= 0) & ~bad
        length = lengths[np.where(on, bin_edge, 0)]
        slack = OFFSET_RTOL * length
        bad |= on & ~((offset >= -slack) & (offset <= length + slack))
        if bad.any():
            i = int(np.argmax(bad))
            raise TransitionError(
                f"{kind} bin {i} has bin_edge {int(bin_edge[i])} and bin_offset {offset[i]}; "
                f"expected an edge in 0..{edges.shape[0] - 1} (or -1) and an offset within "
                "its length"
            )
        object.__setattr__(self, "movement_var", var)
        object.__setattr__(self, "movement_mean", mean)
        object.__setattr__(self, "graph_edges", edges.astype(np.int64))
        object.__setattr__(self, "edge_lengths", lengths)
        object.__setattr__(self, "bin_edge", bin_edge.astype(np.int64))
        object.__setattr__(self, "bin_offset", np.where(on, offset, 0.0))

    def plan(self, src: StateBins, dst: StateBins, name: str) -> PlannedTiled:
        """The planned block (tiled, :mod:`xhmm.transitions.tiled`).

        Raises
        ------
        TransitionError
            The bins are not the states' bins, an interior bin is off the
            graph, or an interior from-bin reaches no interior to-bin.
        """
        kind = "TrackGraphRandomWalk"
        check_square(self.bin_edge.size, src.n_bins, dst.n_bins, name, kind, "bin_edge")
        off = (src.interior | dst.interior) & (self.bin_edge < 0)
        if off.any():
            raise TransitionError(
                f"{name}: {kind} bin {int(np.argmax(off))} is interior but off the graph "
                "(bin_edge -1)"
            )

        def squared(from_bins: np.ndarray, to_bins: np.ndarray) -> np.ndarray:
            distance = bin_distances(self.graph_edges, self.edge_lengths, self.bin_edge,
                                     self.bin_offset, from_bins, to_bins)
            return (distance - self.movement_mean)**2 / self.movement_var

        shape = (src.n_interior, dst.n_interior)
        chunks = gaussian_chunks(squared, src, dst, self.direction)
        way = "" if self.direction is None else f", {self.direction}"
        return PlannedTiled(*stochastic_rows(chunks, shape, name, kind), shape,
                            f"track graph random walk{way}")

    @classmethod
    def from_non_local_detector(cls, model: Any, det: Any, n_from: int, n_to: int,
                                **data: Any) -> "TrackGraphRandomWalk | None":
        """The walk of a ``RandomWalk`` / ``RandomWalkDirection1`` / ``2`` on a track graph.

        Reads, from the environment named ``model.environment_name``:
        ``track_graph`` (its edges in iteration order, each node's ``"pos"``,
        each edge's ``"distance"``), ``place_bin_centers_nodes_df_``
        (``node_id`` and ``edge_id`` of each bin, -1 off the graph) and
        ``track_graph_with_bin_centers_edges_`` (each bin node's ``"pos"``).
        None without a track graph, with manifold distance or diffusion, a
        direction field (``RandomWalk``'s own) or a non-scalar
        ``movement_var``.
        """
        environment = find_environment(det, model.environment_name)
        if (environment is None or getattr(environment, "track_graph", None) is None
                or getattr(model, "use_manifold_distance", False)
                or getattr(model, "use_diffusion", False)
                or getattr(model, "direction", None) is not None
                or np.size(model.movement_var) != 1):
            return None
        graph = environment.track_graph
        nodes = list(graph.nodes)
        number = {node: i for i, node in enumerate(nodes)}
        edges = list(graph.edges)
        bins = environment.place_bin_centers_nodes_df_
        bin_edge = np.asarray(bins.edge_id, dtype=np.int64)
        if not bin_edge.size == n_from == n_to:
            return None
        augmented = environment.track_graph_with_bin_centers_edges_
        offset = np.zeros(bin_edge.size)
        for i, (node, edge) in enumerate(zip(np.asarray(bins.node_id), bin_edge)):
            if edge >= 0:
                start = np.asarray(graph.nodes[edges[edge][0]]["pos"], dtype=np.float64)
                offset[i] = np.linalg.norm(np.asarray(augmented.nodes[node]["pos"]) - start)
        name = type(model).__name__
        return cls(
            movement_var=float(np.ravel(model.movement_var)[0]),
            graph_edges=np.asarray([[number[u], number[v]] for u, v in edges], dtype=np.int64),
            edge_lengths=np.asarray([graph.edges[e]["distance"] for e in edges], dtype=float),
            bin_edge=bin_edge,
            bin_offset=offset,
            movement_mean=float(getattr(model, "movement_mean", 0.0)) if name == "RandomWalk"
            else 0.0,
            direction=NLD_DIRECTIONS.get(name),
        )
