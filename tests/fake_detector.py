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
- ``EmpiricalMovement`` (a type xhmm does not map): a fixed random
  row-stochastic matrix over the interior.

``compute_log_likelihood`` returns a reproducible random log-likelihood over
the interior bins (float32), as the detector's does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import multivariate_normal

STATE_NAMES = ["Local", "No-Spike", "Non-Local Continuous", "Non-Local Fragmented"]


@dataclass
class Environment:
    environment_name: str = ""
    place_bin_centers_: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    is_track_interior_: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    track_graph: object = None


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
class EmpiricalMovement:
    environment_name: str = ""


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
    """

    def __init__(self, n_dims: int = 1, movement_mean: float = 0.0, empirical: bool = False,
                 n_time: int | None = None, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        if n_dims == 1:
            centers = np.arange(24.0)[:, None] * 2.5 + 1.25
            interior = np.ones(24, bool)
            interior[[0, 11, 23]] = False
        else:
            xs, ys = np.meshgrid(np.arange(6.0) * 3, np.arange(5.0) * 2, indexing="ij")
            centers = np.column_stack([xs.ravel(), ys.ravel()])
            interior = np.ones((6, 5), bool)
            interior[0, 0] = interior[3, 2] = False
        self.environments = (Environment("", centers, interior),)
        self.observation_models = [ObservationModel(is_local=True),
                                   ObservationModel(is_no_spike=True),
                                   ObservationModel(), ObservationModel()]
        self.state_names = list(STATE_NAMES)
        walk = RandomWalk(movement_var=6.0, movement_mean=movement_mean)
        to_continuous = EmpiricalMovement() if empirical else Uniform()
        self.continuous_transition_types = [
            [Discrete(), Discrete(), Uniform(), Uniform()],
            [Discrete(), Discrete(), Uniform(), Uniform()],
            [Discrete(), Discrete(), walk, Uniform()],
            [Discrete(), Discrete(), to_continuous, Uniform()],
        ]
        n_bins = centers.shape[0]
        flat_interior = interior.ravel()
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
