"""Reference matrices of non_local_detector 0.6.9's movement models for tests/test_nld_movement.py.

Run in a separate environment that has non_local_detector 0.6.9 (xhmm's CI
does not)::

    python3 -m venv /work/nld-venv
    /work/nld-venv/bin/pip install "non-local-detector==0.6.9" "jax[cpu]==0.6.2" "pandas<3"
    /work/nld-venv/bin/python tests/data/make_nld_movement.py

(pandas 3's read-only arrays break non_local_detector 0.6.9's track graph
binning, hence ``pandas<3``.)

Writes ``tests/data/nld_movement.npz``: for three environments (a 1-D
track with exterior bins, a 2-D grid with exterior bins inferred from
position, a W-shaped track graph) the inputs xhmm's blocks take and the
matrices of ``make_state_transition``. Entries below 1e-12 are stored as 0
(the tests compare to 1e-6) so the file compresses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from track_linearization import make_track_graph

# non_local_detector 0.6.9's EmpiricalMovement calls np.product, which
# NumPy 2 removed; it is np.prod.
if not hasattr(np, "product"):
    np.product = np.prod

from non_local_detector.continuous_state_transitions import (  # noqa: E402
    EmpiricalMovement,
    RandomWalk,
    RandomWalkDirection1,
    RandomWalkDirection2,
)
from non_local_detector.environment import Environment  # noqa: E402

OUT = Path(__file__).with_name("nld_movement.npz")
TINY = 1e-12


def _pruned(matrix: np.ndarray) -> np.ndarray:
    return np.where(np.abs(matrix) < TINY, 0.0, matrix)


def _trajectory(rng: np.random.Generator, n_time: int, n_dims: int, scale: float) -> np.ndarray:
    """A smooth random trajectory in [0, scale]^n_dims (reflected at the walls)."""
    steps = rng.normal(0.0, 1.2, size=(n_time, n_dims))
    velocity = np.zeros(n_dims)
    path = np.empty((n_time, n_dims))
    here = np.full(n_dims, scale / 2)
    for t in range(n_time):
        velocity = 0.8 * velocity + steps[t]
        here = here + velocity
        here = np.abs(here)
        here = scale - np.abs(scale - here)
        path[t] = here
    return path


def linear_track(out: dict) -> None:
    """1-D track, 2 cm bins, a few exterior bins set by hand."""
    rng = np.random.default_rng(1)
    position = _trajectory(rng, 3000, 1, 100.0)
    env = Environment("track", place_bin_size=2.0)
    env.fit_place_grid(position, infer_track_interior=True)
    interior = np.ones(env.place_bin_centers_.shape[0], dtype=bool)
    interior[[0, 23, 24]] = False
    env.is_track_interior_ = interior
    envs = (env,)
    out["linear_centers"] = env.place_bin_centers_[:, 0]
    out["linear_interior"] = interior
    out["linear_bin_edges"] = env.edges_[0]
    out["linear_position"] = position
    out["linear_movement_var"] = 6.0
    for way, model in ((1, RandomWalkDirection1), (2, RandomWalkDirection2)):
        out[f"linear_direction{way}"] = _pruned(model("track", 6.0).make_state_transition(envs))
    for speedup in (1, 4):
        for reversed_ in (False, True):
            model = EmpiricalMovement("track", speedup=speedup, is_time_reversed=reversed_)
            out[f"linear_empirical_{speedup}_{int(reversed_)}"] = _pruned(
                model.make_state_transition(envs, position))


def open_field(out: dict) -> None:
    """2-D grid, 8 cm bins, interior inferred from position (a hole in the middle)."""
    rng = np.random.default_rng(2)
    position = _trajectory(rng, 6000, 2, 80.0)
    in_hole = (np.abs(position - 40.0) < 12.0).all(axis=1)
    position = position[~in_hole]
    env = Environment("field", place_bin_size=8.0)
    env.fit_place_grid(position, infer_track_interior=True)
    envs = (env,)
    out["field_centers"] = env.place_bin_centers_
    out["field_interior"] = env.is_track_interior_.ravel()
    out["field_bin_edges_x"], out["field_bin_edges_y"] = env.edges_
    out["field_position"] = position
    out["field_movement_var"] = 40.0
    walk = RandomWalkDirection1("field", 40.0)
    out["field_direction1"] = _pruned(walk.make_state_transition(envs))
    for speedup, reversed_ in ((1, False), (3, True)):
        model = EmpiricalMovement("field", speedup=speedup, is_time_reversed=reversed_)
        out[f"field_empirical_{speedup}_{int(reversed_)}"] = _pruned(
            model.make_state_transition(envs, position))


def w_track(out: dict) -> None:
    """A W-shaped track graph, 4 cm bins, gaps of 15 cm between some edges."""
    nodes = [(40, 80), (40, 0), (0, 0), (0, 80), (80, 0), (80, 80)]
    edges = [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5)]
    graph = make_track_graph(nodes, edges)
    env = Environment("w", place_bin_size=4.0, track_graph=graph, edge_order=edges,
                      edge_spacing=[15.0, 0.0, 15.0, 0.0])
    env.fit_place_grid()
    envs = (env,)
    # Each bin's edge (in the order of track_graph.edges) and distance from
    # that edge's first node, as xhmm's TrackGraphRandomWalk takes them.
    augmented = env.track_graph_with_bin_centers_edges_
    graph_edges = np.asarray(list(graph.edges), dtype=np.int64)
    bins = env.place_bin_centers_nodes_df_
    bin_edge = np.asarray(bins.edge_id, dtype=np.int64)
    bin_offset = np.zeros(bin_edge.size)
    for i, (node, edge) in enumerate(zip(bins.node_id, bin_edge)):
        if node >= 0:
            start = np.asarray(nodes[graph_edges[edge, 0]], dtype=float)
            bin_offset[i] = np.linalg.norm(np.asarray(augmented.nodes[node]["pos"]) - start)
    distance = np.full((bin_edge.size,) * 2, np.inf)
    for i, a in enumerate(bins.node_id):
        for j, b in enumerate(bins.node_id):
            if a >= 0 and b >= 0:
                distance[i, j] = env.distance_between_nodes_[a][b]
    out["w_centers"] = env.place_bin_centers_[:, 0]
    out["w_interior"] = np.asarray(env.is_track_interior_).ravel()
    out["w_graph_edges"] = graph_edges
    out["w_edge_lengths"] = np.asarray([graph.edges[e]["distance"] for e in graph.edges])
    out["w_bin_edge"] = bin_edge
    out["w_bin_offset"] = bin_offset
    out["w_distance"] = distance
    out["w_movement_var"] = 6.0
    out["w_movement_mean"] = 0.5
    out["w_random_walk"] = _pruned(
        RandomWalk("w", movement_var=6.0, movement_mean=0.5).make_state_transition(envs))
    out["w_direction1"] = _pruned(RandomWalkDirection1("w", 6.0).make_state_transition(envs))
    out["w_direction2"] = _pruned(RandomWalkDirection2("w", 6.0).make_state_transition(envs))


def main() -> None:
    out: dict = {}
    linear_track(out)
    open_field(out)
    w_track(out)
    np.savez_compressed(OUT, **out)
    print(f"{OUT}: {OUT.stat().st_size / 1024:.0f} KiB")
    for key, value in out.items():
        print(key, np.shape(value))


if __name__ == "__main__":
    main()
