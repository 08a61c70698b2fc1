"""Fit small non_local_detector 0.6.9 detectors and check the movement kinds' ``from_non_local_detector``.

Not part of the test suite (it needs non_local_detector); run it in the
environment of ``make_nld_movement.py``::

    /work/nld-venv/bin/python tests/data/check_nld_detector.py

For every movement model of the fitted detectors (random walks on a W
track graph, directional walks on the track graph and on a 2-D grid,
empirical movement on both), it prints which xhmm kind stands for it and the
largest difference between that block's ``dense()`` and the detector's
``continuous_state_transitions_`` over the interior rows that sum to 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import numpy as np

# non_local_detector 0.6.9 calls np.product, which NumPy 2 removed.
if not hasattr(np, "product"):
    np.product = np.prod
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# Importing xhmm imports its uint16 codec, which needs numba; nothing here runs it.
sys.modules.setdefault("numba", mock.MagicMock())

from non_local_detector.continuous_state_transitions import (  # noqa: E402
    EmpiricalMovement,
    RandomWalk,
    RandomWalkDirection1,
    RandomWalkDirection2,
    Uniform,
)
from non_local_detector.environment import Environment  # noqa: E402
from non_local_detector.models.cont_frag_model import ContFragSortedSpikesClassifier  # noqa: E402
from track_linearization import make_track_graph  # noqa: E402

import xhmm.transitions.directional  # noqa: E402,F401  (registers the kinds)
import xhmm.transitions.empirical  # noqa: E402,F401
import xhmm.transitions.track_graph  # noqa: E402,F401
from xhmm.transitions.block import nld_blocks  # noqa: E402
from xhmm.transitions.layout import StateBins  # noqa: E402


def check(label: str, environment: Environment, position: np.ndarray, types: list) -> None:
    """Fit a two-state detector with ``types`` and compare each movement block."""
    rng = np.random.default_rng(0)
    time = np.arange(position.shape[0]) / 500.0
    spikes = [np.sort(rng.uniform(0, time[-1], 200)) for _ in range(5)]
    det = ContFragSortedSpikesClassifier(environments=environment,
                                        continuous_transition_types=types)
    det.fit(time, position, spikes)
    state_ind = np.asarray(det.state_ind_)
    interior = np.asarray(det.is_track_interior_state_bins_)
    for s, row in enumerate(det.continuous_transition_types):
        for t, model in enumerate(row):
            name = type(model).__name__
            rows, cols = state_ind == s, state_ind == t
            for cls in nld_blocks(name):
                block = cls.from_non_local_detector(model, det, int(rows.sum()), int(cols.sum()),
                                                    position=position)
                if block is None:
                    print(f"{label} {name}: {cls.__name__} -> None")
                    continue
                src = StateBins(s, interior[rows], np.arange(interior[rows].sum()))
                dst = StateBins(t, interior[cols], np.arange(interior[cols].sum()))
                got = block.plan(src, dst, "b").dense()
                want = det.continuous_state_transitions_[np.ix_(rows & interior, cols & interior)]
                whole = np.abs(want.sum(axis=1) - 1) < 1e-9
                print(f"{label} {name}: {cls.__name__}, {whole.sum()} of {whole.size} rows sum "
                      f"to 1, max difference {np.abs(got[whole] - want[whole]).max():.2g}")


def main() -> None:
    nodes = [(40, 80), (40, 0), (0, 0), (0, 80), (80, 0), (80, 80)]
    edges = [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5)]
    legs = [(0, 1), (1, 2), (2, 3), (3, 2), (2, 1), (1, 4), (4, 5), (5, 4), (4, 1), (1, 0)]
    path = np.concatenate([np.linspace(nodes[a], nodes[b], 200) for a, b in legs] * 3)
    path += np.random.default_rng(1).normal(0, 0.3, path.shape)

    def w_track() -> Environment:
        return Environment("", place_bin_size=4.0, track_graph=make_track_graph(nodes, edges),
                           edge_order=edges, edge_spacing=[15.0, 0.0, 15.0, 0.0])

    check("W", w_track(), path, [[RandomWalk(movement_var=6.0, movement_mean=0.5), Uniform()],
                                 [Uniform(), RandomWalkDirection1(movement_var=6.0)]])
    check("W", w_track(), path, [[RandomWalkDirection2(movement_var=6.0), Uniform()],
                                 [Uniform(), EmpiricalMovement(speedup=2)]])
    rng = np.random.default_rng(2)
    velocity, here, field = np.zeros(2), np.full(2, 40.0), np.empty((8000, 2))
    for i in range(field.shape[0]):
        velocity = 0.8 * velocity + rng.normal(0, 1.2, 2)
        here = 80 - np.abs(80 - np.abs(here + velocity))
        field[i] = here
    check("2-D", Environment("", place_bin_size=8.0), field,
          [[EmpiricalMovement(speedup=3, is_time_reversed=True), Uniform()],
           [Uniform(), RandomWalkDirection1(movement_var=40.0)]])


if __name__ == "__main__":
    main()
