"""A stand-in for a fitted non_local_detector 0.6.9 NonLocal detector.

It has the fitted attributes ``xhmm.transitions.from_non_local_detector``
reads, laid out as a fitted ``NonLocalSortedSpikesDetector`` /
``NonLocalClusterlessDetector`` lays them out (states Local, No-Spike,
Non-Local Continuous, Non-Local Fragmented; one bin for each of the first
two, every place bin of the environment for the others), with its
``continuous_state_transitions_`` written here from non_local_detector's
definitions:

- from a one-bin state into an environment: uniform over its interior;
- ``Discrete``: a block of ones (into a one-bin state);
- ``Uniform`` / ``Identity``: ones / the identity, exterior rows and
  columns zeroed, rows normalised;
- ``RandomWalk``: column ``j`` is the pdf of N(c_j + movement_mean,
  movement_var) at every centre, exterior zeroed, rows normalised;
- ``EmpiricalMovement`` without the positions it was fitted on (xhmm
  cannot rebuild it): a fixed random row-stochastic matrix over the
  interior.

``FakeNonLocalDetector(movement=key)`` instead lays the detector over one
environment of ``tests/data/nld_movement.npz`` (the 1-D track ``linear``,
the 2-D grid ``field`` or the W-shaped track graph ``w`` that
``tests/data/make_nld_movement.py`` fitted with non_local_detector 0.6.9)
and moves Non-Local Continuous -> Non-Local Continuous by the movement model
of the stored case ``key`` (``RandomWalkDirection1`` / ``2``,
``RandomWalk`` on the track graph, ``EmpiricalMovement``), whose block of
``continuous_state_transitions_`` is non_local_detector's own matrix of that
case: an independent reference for the block xhmm maps it to. The
environment then carries what non_local_detector 0.6.9 fits on it:
``edges_``, and on the track graph ``track_graph`` (a :class:`FakeGraph`:
networkx is not an xhmm dependency), ``edge_order``, ``edge_spacing``,
``place_bin_centers_nodes_df_`` and ``track_graph_with_bin_centers_edges_``.

``compute_log_likelihood`` returns a reproducible random log-likelihood over
the interior bins (float32), as the detector's does.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import multivariate_normal

STATE_NAMES = ["Local", "No-Spike", "Non-Local Continuous", "Non-Local Fragmented"]
#: Reference matrices of non_local_detector 0.6.9 (tests/data/make_nld_movement.py).
MOVEMENT_DATA = Path(__file__).parent / "data" / "nld_movement.npz"
#: Node positions of the W track (as in tests/data/make_nld_movement.py).
W_NODES = [(40.0, 80.0), (40.0, 0.0), (0.0, 0.0), (0.0, 80.0), (80.0, 0.0), (80.0, 80.0)]
#: non_local_detector's environment name of each stored environment.
ENVIRONMENT_NAMES = {"linear": "track", "field": "field", "w": "w"}


class _View:
    """``graph.nodes`` / ``graph.edges`` of networkx: iterate keys, index attribute dicts."""

    def __init__(self, attributes: dict[Hashable, dict[str, Any]], undirected: bool) -> None:
        self._attributes = attributes
        self._undirected = undirected

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._attributes)

    def __len__(self) -> int:
        return len(self._attributes)

    def __getitem__(self, key: Hashable) -> dict[str, Any]:
        if self._undirected and key not in self._attributes:
            key = tuple(reversed(key))
        return self._attributes[key]


class FakeGraph:
    """The part of a networkx ``Graph`` that xhmm's track graph mapping reads.

    Parameters
    ----------
    nodes : dict
        Node -> its attributes (``{"pos": (x, y)}``), in iteration order.
    edges : dict, optional
        ``(u, v)`` -> its attributes (``{"distance": ...}``), in iteration
        order (networkx's ``list(graph.edges)``); ``graph.edges[(v, u)]``
        finds it too, as for an undirected networkx graph.
    """

    def __init__(self, nodes: dict[Hashable, dict[str, Any]],
                 edges: dict[tuple, dict[str, Any]] | None = None) -> None:
        self.nodes = _View(dict(nodes), undirected=False)
        self.edges = _View(dict(edges or {}), undirected=True)


@dataclass
class Environment:
    environment_name: str = ""
    place_bin_centers_: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    is_track_interior_: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    track_graph: object = None
    edges_: tuple = ()
    edge_order: list | None = None
    edge_spacing: list | None = None
    place_bin_centers_nodes_df_: pd.DataFrame | None = None
    track_graph_with_bin_centers_edges_: object = None


@dataclass
class ObservationModel:
    environment_name: str = ""
    encoding_group: int = 0
    is_local: bool = False
    is_no_spike: bool = False


@dataclass
class RandomWalk:
    environment_name: str = ""
    movement_var: float = 6.0
    movement_mean: float = 0.0
    use_manifold_distance: bool = False
    direction: str | None = None


@dataclass
class Uniform:
    environment_name: str = ""
    environment2_name: str | None = None


@dataclass
class Identity:
    environment_name: str = ""


class Discrete:
    pass


@dataclass
class RandomWalkDirection1:
    environment_name: str = ""
    movement_var: float = 6.0


@dataclass
class RandomWalkDirection2:
    environment_name: str = ""
    movement_var: float = 6.0


@dataclass
class EmpiricalMovement:
    environment_name: str = ""
    encoding_group: int = 0
    speedup: int = 1
    is_time_reversed: bool = False


def movement_data() -> dict[str, np.ndarray]:
    """The arrays of ``tests/data/nld_movement.npz`` (see its maker for what each holds)."""
    with np.load(MOVEMENT_DATA) as data:
        return {key: data[key] for key in data.files}


def _w_track(data: dict[str, np.ndarray], name: str) -> Environment:
    """The W track as non_local_detector 0.6.9 lays out its fitted track graph.

    ``track_graph``: nodes 0-5 at :data:`W_NODES`, edges in the stored order
    of ``list(track_graph.edges)`` with their ``distance``;
    ``place_bin_centers_nodes_df_``: each bin's ``node_id`` in
    ``track_graph_with_bin_centers_edges_`` (numbered after the track
    graph's nodes, as non_local_detector numbers them) and ``edge_id`` (the
    edge's position in ``track_graph.edges``), both -1 for a gap bin off the
    graph; ``track_graph_with_bin_centers_edges_``: the track graph's nodes
    and a node at each bin centre, ``pos`` on its edge at the stored offset
    from the edge's first node (the edges between them, which xhmm does not
    read, are left out).
    """
    graph_edges = [tuple(int(n) for n in e) for e in data["w_graph_edges"]]
    nodes = {i: {"pos": pos} for i, pos in enumerate(W_NODES)}
    graph = FakeGraph(nodes, {e: {"distance": float(length), "edge_id": k}
                              for k, (e, length) in enumerate(zip(graph_edges,
                                                                  data["w_edge_lengths"]))})
    bin_edge = data["w_bin_edge"]
    node_id = np.full(bin_edge.size, -1, dtype=np.int64)
    augmented = dict(nodes)
    for i in np.flatnonzero(bin_edge >= 0):
        u, v = graph_edges[bin_edge[i]]
        start, end = np.asarray(W_NODES[u]), np.asarray(W_NODES[v])
        node_id[i] = len(augmented)
        augmented[int(node_id[i])] = {
            "pos": tuple(start + data["w_bin_offset"][i] * (end - start)
                         / np.linalg.norm(end - start)),
            "edge_id": int(bin_edge[i]),
        }
    return Environment(
        name, data["w_centers"][:, None], data["w_interior"], graph,
        edge_order=[(0, 1), (1, 2), (2, 3), (1, 4), (4, 5)],
        edge_spacing=[15.0, 0.0, 15.0, 0.0],
        place_bin_centers_nodes_df_=pd.DataFrame({"node_id": node_id, "edge_id": bin_edge}),
        track_graph_with_bin_centers_edges_=FakeGraph(augmented),
    )


def movement_environment(env: str, data: dict[str, np.ndarray] | None = None) -> Environment:
    """A stored environment (``"linear"``, ``"field"``, ``"w"``) as non_local_detector fits it.

    Parameters
    ----------
    env : {"linear", "field", "w"}
    data : dict, optional
        :func:`movement_data`, if already loaded.

    Returns
    -------
    Environment
        ``place_bin_centers_`` ``(n_bins, n_dims)``, ``is_track_interior_``
        (on the grid's shape in 2-D), ``edges_`` (1-D track and grid; not
        stored for the W track) and, on the W track, the track graph
        attributes (:func:`_w_track`).
    """
    data = movement_data() if data is None else data
    name = ENVIRONMENT_NAMES[env]
    if env == "w":
        return _w_track(data, name)
    if env == "linear":
        return Environment(name, data["linear_centers"][:, None], data["linear_interior"],
                           edges_=(data["linear_bin_edges"],))
    edges = (data["field_bin_edges_x"], data["field_bin_edges_y"])
    shape = tuple(e.size - 1 for e in edges)
    return Environment(name, data["field_centers"], data["field_interior"].reshape(shape),
                       edges_=edges)


def movement_model(key: str, data: dict[str, np.ndarray] | None = None) -> object:
    """The movement model of a stored case, as ``make_nld_movement.py`` made it.

    Parameters
    ----------
    key : str
        A matrix of ``nld_movement.npz``: ``{env}_direction{1,2}``,
        ``w_random_walk`` or ``{env}_empirical_{speedup}_{is_time_reversed}``.
    data : dict, optional
        :func:`movement_data`, if already loaded.

    Returns
    -------
    RandomWalk, RandomWalkDirection1, RandomWalkDirection2 or EmpiricalMovement
    """
    data = movement_data() if data is None else data
    env, kind = key.split("_", 1)
    name = ENVIRONMENT_NAMES[env]
    if kind.startswith("empirical_"):
        _, speedup, reversed_ = kind.split("_")
        return EmpiricalMovement(name, speedup=int(speedup),
                                 is_time_reversed=bool(int(reversed_)))
    var = float(data[f"{env}_movement_var"])
    if kind == "random_walk":
        return RandomWalk(name, movement_var=var,
                          movement_mean=float(data[f"{env}_movement_mean"]))
    walk = {"direction1": RandomWalkDirection1, "direction2": RandomWalkDirection2}[kind]
    return walk(name, var)


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def _masked(matrix: np.ndarray, interior: np.ndarray) -> np.ndarray:
    matrix = matrix.copy()
    matrix[~interior] = 0
    matrix[:, ~interior] = 0
    return _normalise_rows(matrix)


class FakeNonLocalDetector:
    """A fitted NonLocal detector's attributes over a 1-D or 2-D environment.

    Parameters
    ----------
    n_dims : {1, 2}
        1: 24 bins on a line; 2: a 6 x 5 grid. A few bins are exterior.
    movement_mean : float
        Of the Non-Local Continuous random walk.
    empirical : bool
        Fragmented -> Continuous moves by an ``EmpiricalMovement`` block.
    n_time : int or None
        Covariate-dependent discrete transition over this many steps.
    seed : int
    movement : str, optional
        A case of ``nld_movement.npz`` (:func:`movement_model`): the
        detector is over that case's environment (``n_dims``,
        ``movement_mean`` and ``empirical`` are ignored) and Non-Local
        Continuous moves by its model, non_local_detector's matrix in
        ``continuous_state_transitions_`` (the module docstring).
    """

    def __init__(self, n_dims: int = 1, movement_mean: float = 0.0, empirical: bool = False,
                 n_time: int | None = None, seed: int = 0, movement: str | None = None) -> None:
        rng = np.random.default_rng(seed)
        self._movement: tuple[object, np.ndarray] | None = None
        if movement is not None:
            data = movement_data()
            environment = movement_environment(movement.split("_", 1)[0], data)
            walk = movement_model(movement, data)
            self._movement = (walk, data[movement])
            to_continuous = Uniform(environment.environment_name)
        else:
            if n_dims == 1:
                centers = np.arange(24.0)[:, None] * 2.5 + 1.25
                interior = np.ones(24, bool)
                interior[[0, 11, 23]] = False
            else:
                xs, ys = np.meshgrid(np.arange(6.0) * 3, np.arange(5.0) * 2, indexing="ij")
                centers = np.column_stack([xs.ravel(), ys.ravel()])
                interior = np.ones((6, 5), bool)
                interior[0, 0] = interior[3, 2] = False
            environment = Environment("", centers, interior)
            walk = RandomWalk(movement_var=6.0, movement_mean=movement_mean)
            to_continuous = EmpiricalMovement() if empirical else Uniform()
        name = environment.environment_name
        centers = np.asarray(environment.place_bin_centers_)
        self.environments = (environment,)
        self.observation_models = [ObservationModel(name, is_local=True),
                                   ObservationModel(name, is_no_spike=True),
                                   ObservationModel(name), ObservationModel(name)]
        self.state_names = list(STATE_NAMES)
        self.continuous_transition_types = [
            [Discrete(), Discrete(), Uniform(name), Uniform(name)],
            [Discrete(), Discrete(), Uniform(name), Uniform(name)],
            [Discrete(), Discrete(), walk, Uniform(name)],
            [Discrete(), Discrete(), to_continuous, Uniform(name)],
        ]
        n_bins = centers.shape[0]
        flat_interior = np.asarray(environment.is_track_interior_, dtype=bool).ravel()
        self.state_ind_ = np.concatenate([[0], [1], np.full(n_bins, 2), np.full(n_bins, 3)])
        self.is_track_interior_state_bins_ = np.concatenate(
            [[True], [True], flat_interior, flat_interior])
        continuous = np.concatenate([[1.0], [1.0], flat_interior, flat_interior])
        for s in range(4):  # uniform over each state's interior, in float32 as nld has it
            continuous[self.state_ind_ == s] /= continuous[self.state_ind_ == s].sum()
        continuous = continuous.astype(np.float32)
        self.discrete_transition_concentration = 1.1
        self.discrete_transition_stickiness = np.array([30.0, 100_000.0, 30.0, 200.0])
        discrete_initial = np.array([0.7, 0.1, 0.1, 0.1])
        self.initial_conditions_ = continuous * discrete_initial[self.state_ind_]
        self.discrete_state_transitions_ = self._discrete(rng, n_time)
        self._empirical = _masked(rng.random((n_bins, n_bins)), flat_interior)
        self.continuous_state_transitions_ = self._continuous(centers, flat_interior)
        self._rng_seed = seed

    @staticmethod
    def _discrete(rng: np.random.Generator, n_time: int | None) -> np.ndarray:
        base = np.array([[0.9, 1e-5, 0.05, 0.05 - 1e-5],
                         [0.0033, 0.99, 0.0033, 0.0034],
                         [0.05, 1e-5, 0.9, 0.05 - 1e-5],
                         [0.01, 1e-5, 0.01, 0.98 - 1e-5]])
        if n_time is None:
            return base
        varying = base[None] * (0.5 + rng.random((n_time, 4, 4)))
        return varying / varying.sum(axis=-1, keepdims=True)

    def _block(self, kind: object, centers: np.ndarray, interior: np.ndarray) -> np.ndarray:
        n = centers.shape[0]
        if self._movement is not None and kind is self._movement[0]:
            return self._movement[1]  # non_local_detector's own matrix of the case
        if isinstance(kind, Discrete):
            return np.ones((1, 1))
        if isinstance(kind, Uniform):
            return _masked(np.ones((n, n)), interior)
        if isinstance(kind, Identity):
            return _masked(np.eye(n), interior)
        if isinstance(kind, RandomWalk):
            cov = kind.movement_var * np.eye(centers.shape[1])
            columns = [multivariate_normal(mean=c + kind.movement_mean, cov=cov).pdf(centers)
                       for c in centers]
            return _masked(np.stack(columns, axis=1).reshape(n, n), interior)
        return self._empirical

    def _continuous(self, centers: np.ndarray, interior: np.ndarray) -> np.ndarray:
        n_total = self.state_ind_.size
        out = np.zeros((n_total, n_total))
        for s, row in enumerate(self.continuous_transition_types):
            for t, kind in enumerate(row):
                rows, cols = self.state_ind_ == s, self.state_ind_ == t
                if rows.sum() == 1 and cols.sum() > 1:
                    out[np.ix_(rows, cols)] = interior / interior.sum()
                else:
                    out[np.ix_(rows, cols)] = self._block(kind, centers, interior)
        return out

    def compute_log_likelihood(self, time, position_time=None, position=None, spike_times=None,
                               *more, is_missing=None) -> np.ndarray:
        """A reproducible ``(n_time, n_interior)`` float32 log-likelihood."""
        rng = np.random.default_rng(self._rng_seed + 1)
        n_interior = int(self.is_track_interior_state_bins_.sum())
        ll = (rng.normal(size=(len(time), n_interior)) * 2.0).astype(np.float32)
        if is_missing is not None:
            ll[np.asarray(is_missing)] = 1.0  # as non_local_detector 0.6.9 does
        return ll


def nld_transition(det: FakeNonLocalDetector, time_index: int | None = None) -> np.ndarray:
    """The detector's transition over interior bins, as non_local_detector forms it."""
    ix = np.flatnonzero(det.is_track_interior_state_bins_)
    si = det.state_ind_[ix]
    discrete = det.discrete_state_transitions_
    discrete = discrete if time_index is None else discrete[time_index]
    return det.continuous_state_transitions_[np.ix_(ix, ix)] * discrete[np.ix_(si, si)]
