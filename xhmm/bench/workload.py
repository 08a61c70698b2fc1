"""Synthetic decoding problems for the benchmarks.

A *model* fixes the layout of the state bins, the transition and the
initial distribution (:data:`MODELS`):

``dense``
    One state of ``K`` bins with a dense random-walk matrix
    (:func:`transition_matrix`).
``nonlocal-2d``
    non_local_detector's NonLocal detector: Local and No-Spike (one bin
    each), Non-Local Continuous (a Gaussian random walk on a square grid)
    and Non-Local Fragmented (uniform over the same grid), the grid's
    centre cells masked out so that ``K = 2 + 2 * interior cells``
    (``K = 10,650`` is a 73 x 73 grid less 5 cells), a sticky 4 x 4
    discrete transition. A :class:`xhmm.transitions.Blocks`.
``contfrag-1d``
    Continuous (random walk) and fragmented (uniform) on a 1-D track of
    ``K / 2`` bins, a sticky 2 x 2 discrete transition.
``decoder-1d``
    One continuous state: a random walk on a track of ``K`` bins.
``nonlocal-2d-tv``, ``contfrag-1d-tv``
    As above with a time-varying discrete transition, ``(T, S, S)`` from a
    smooth covariate (a DataArray with dims ``("time", "from_state",
    "to_state")``).

Random walks use non_local_detector's defaults: bins 2 cm apart and
``movement_var = 6 cm^2``. A structured model's dense equivalent
(:meth:`Problem.dense_transition`) is the matrix of
:func:`xhmm.transitions.to_dense`.

The log-likelihood is a Gaussian bump around a smoothly moving position
(along each axis of the layout's positions) plus unit Gaussian noise, a
constant plus noise in bins without a position (Local, No-Spike), and NaN
in exterior bins. It is generated in fixed blocks of :data:`GEN_BLOCK`
rows, each from its own seed, so the values do not depend on how the array
is held (RAM, lazy dask, memmap file) or on the engine's chunk size.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import InputError

__all__ = [
    "GEN_BLOCK",
    "INPUT_KINDS",
    "MODELS",
    "BIN_SIZE",
    "MOVEMENT_VAR",
    "NONLOCAL_STATES",
    "Problem",
    "check_model_size",
    "sticky",
    "transition_matrix",
]

#: Rows generated per block (independent of the engine chunk size).
GEN_BLOCK = 5_000
#: How the log-likelihood is presented to the implementation under test.
INPUT_KINDS = ("ram", "dask", "memmap")
#: Benchmark models (see the module docstring).
MODELS = ("dense", "nonlocal-2d", "nonlocal-2d-tv", "contfrag-1d", "contfrag-1d-tv",
          "decoder-1d")
#: Distance between neighbouring bin centres of the random walks (cm).
BIN_SIZE = 2.0
#: Variance of one random-walk step along each axis (cm^2).
MOVEMENT_VAR = 6.0
#: Probability of staying in the same discrete state (static models).
STAY = 0.98
#: States of the NonLocal model, in layout order.
NONLOCAL_STATES = ("Local", "No-Spike", "Non-Local Continuous", "Non-Local Fragmented")
#: Periods (steps) of the moving position along each axis.
_PERIODS = (2_000.0, 3_100.0)
#: Log-likelihood (before noise) of bins without a position.
_NONSPATIAL_LL = -1.0
#: Rows computed at once inside a generation block (bounds the temporaries).
_PIECE = 500


def transition_matrix(n_bins: int) -> np.ndarray:
    """Dense row-stochastic random-walk transition (float64).

    A Gaussian kernel of width ``n_bins / 50`` bins (at least 1) plus a small
    uniform floor, so every entry is positive and the matrix is dense like a
    decoding model's mixture of continuous and fragmented states.
    """
    x = np.arange(n_bins, dtype=np.float64)
    width = max(1.0, n_bins / 50)
    A = np.exp(-0.5 * ((x[:, None] - x[None, :]) / width) ** 2) + 1e-3 / n_bins
    return A / A.sum(axis=1, keepdims=True)


def sticky(n_states: int, stay) -> np.ndarray:
    """Discrete transition staying with probability ``stay``, moving evenly otherwise.

    Parameters
    ----------
    n_states : int
    stay : float or (T,) array
        A (T,) array gives a ``(T, n_states, n_states)`` transition.

    Returns
    -------
    (n_states, n_states) or (T, n_states, n_states) float64 ndarray
    """
    stay = np.asarray(stay, dtype=np.float64)[..., None, None]
    if n_states == 1:
        return np.ones(stay.shape[:-2] + (1, 1))
    move = (1 - stay) / (n_states - 1)
    return move + (stay - move) * np.eye(n_states)


def check_model_size(model: str, n_bins: int) -> None:
    """Raise :class:`xhmm.InputError` if ``model`` cannot have ``n_bins`` interior bins.

    NonLocal needs an even ``K >= 4`` (two single bins plus two copies of
    the grid), contfrag an even ``K >= 2``.
    """
    if model not in MODELS:
        raise InputError(f"unknown benchmark model {model!r}; choose from {', '.join(MODELS)}")
    base = model.removesuffix("-tv")
    smallest = {"nonlocal-2d": 4, "contfrag-1d": 2}.get(base, 1)
    even = base in ("nonlocal-2d", "contfrag-1d")
    if n_bins < smallest or (even and n_bins % 2):
        raise InputError(
            f"model {model!r} needs an even number of interior bins K >= {smallest}, "
            f"got K = {n_bins}"
        )


def _covariate(n_time: int) -> np.ndarray:
    """A smooth covariate in [0, 1] (e.g. speed), one value per step."""
    t = np.arange(n_time, dtype=np.float64)
    return 0.5 * (1 + np.sin(2 * np.pi * t / 1_700.0))


def _block(index: int, n_time: int, positions: np.ndarray, interior: np.ndarray,
           seed: int) -> np.ndarray:
    """Rows ``[index * GEN_BLOCK, ...)`` of the log-likelihood (float32).

    ``positions`` holds each bin's grid coordinates (NaN for a bin without
    a position); the bump has width ``size / 20`` along each axis of
    ``size`` grid points. Computed :data:`_PIECE` rows at a time (the noise
    is one stream, so the values do not depend on the piece size).
    """
    start = index * GEN_BLOCK
    stop = min(start + GEN_BLOCK, n_time)
    rng = np.random.default_rng([seed, index])
    spatial = np.flatnonzero(~np.isnan(positions[:, 0]))
    grid = positions[spatial].astype(np.int64)
    sizes = grid.max(axis=0) + 1
    out = np.empty((stop - start, positions.shape[0]), dtype=np.float32)
    for lo in range(start, stop, _PIECE):
        hi = min(lo + _PIECE, stop)
        t = np.arange(lo, hi, dtype=np.float64)
        ll = np.full((hi - lo, positions.shape[0]), _NONSPATIAL_LL)
        ll[:, spatial] = 0.0
        for axis, (size, period) in enumerate(zip(sizes, _PERIODS)):
            centre = 0.5 * (size - 1) * (1 + np.sin(2 * np.pi * t / period))
            width = max(1.0, size / 20)
            bump = -0.5 * ((np.arange(size)[None, :] - centre[:, None]) / width) ** 2
            ll[:, spatial] += bump[:, grid[:, axis]]
        ll += rng.standard_normal(ll.shape)
        ll[:, ~interior] = np.nan
        out[lo - start:hi - start] = ll
    return out


def _dask_block(block_info=None, *, n_time: int, positions: np.ndarray,
                interior: np.ndarray, seed: int) -> np.ndarray:
    index = block_info[None]["chunk-location"][0]
    return _block(index, n_time, positions, interior, seed)


class Problem:
    """One synthetic problem: log-likelihood, transition and initial of a model.

    Parameters
    ----------
    n_time : int
        Time steps.
    n_bins : int
        Interior state bins ``K`` (see :func:`check_model_size`).
    seed : int
        Base seed of the log-likelihood blocks.
    model : str
        One of :data:`MODELS`.

    Attributes
    ----------
    positions : (N, d) float64 ndarray
        Grid coordinates of each of the ``N`` state bins (NaN rows for bins
        without a position).
    interior : (N,) bool ndarray
        ``is_interior``.
    labels : (N,) ndarray or None
        The ``state`` coordinate (None for the dense model).
    transition : ndarray or Blocks
        What xhmm is given: the (K, K) matrix of the dense model, otherwise
        a :class:`~xhmm.transitions.Blocks`.
    initial : (N,) float64 ndarray
        Uniform over the interior bins.
    """

    def __init__(self, n_time: int, n_bins: int, seed: int = 0, model: str = "dense") -> None:
        check_model_size(model, int(n_bins))
        self.n_time = int(n_time)
        self.n_bins = int(n_bins)
        self.seed = int(seed)
        self.model = model
        base = model.removesuffix("-tv")
        if base == "dense":
            self._dense_model()
        elif base == "nonlocal-2d":
            self._nonlocal_model()
        else:
            self._track_model(two_states=base == "contfrag-1d")
        self.initial = np.where(self.interior, 1.0 / self.n_bins, 0.0)

    @property
    def time_varying(self) -> bool:
        """True for a model whose discrete transition varies over time."""
        return self.model.endswith("-tv")

    def _discrete(self, labels: tuple[str, ...]):
        if not self.time_varying:
            return sticky(len(labels), STAY)
        values = sticky(len(labels), 0.9 + 0.09 * _covariate(self.n_time))
        return xr.DataArray(values, dims=("time", "from_state", "to_state"),
                            coords={"from_state": list(labels), "to_state": list(labels)})

    def _dense_model(self) -> None:
        self.positions = np.arange(self.n_bins, dtype=np.float64)[:, None]
        self.interior = np.ones(self.n_bins, dtype=bool)
        self.labels = None
        self.transition = transition_matrix(self.n_bins)

    def _nonlocal_model(self) -> None:
        from ..transitions import Blocks, Identity, RandomWalk, Uniform

        side = math.ceil(math.sqrt((self.n_bins - 2) // 2))
        n_cells = side * side
        n_hole = n_cells - (self.n_bins - 2) // 2
        cells = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"),
                         axis=-1).reshape(n_cells, 2).astype(np.float64)
        inside = np.ones(n_cells, dtype=bool)
        first = (side // 2) * side + side // 2 - n_hole // 2
        inside[first:first + n_hole] = False
        local, no_spike, cont, frag = NONLOCAL_STATES
        self.positions = np.concatenate([np.full((2, 2), np.nan), cells, cells])
        self.interior = np.concatenate([[True, True], inside, inside])
        self.labels = np.array([local, no_spike] + [cont] * n_cells + [frag] * n_cells)
        blocks = {(a, b): Uniform() for a in NONLOCAL_STATES for b in NONLOCAL_STATES}
        blocks[local, local] = Identity()
        blocks[no_spike, no_spike] = Identity()
        blocks[cont, cont] = RandomWalk(MOVEMENT_VAR, cells * BIN_SIZE)
        self.transition = Blocks(self._discrete(NONLOCAL_STATES), blocks)

    def _track_model(self, two_states: bool) -> None:
        from ..transitions import Blocks, RandomWalk, Uniform

        n_track = self.n_bins // 2 if two_states else self.n_bins
        track = np.arange(n_track, dtype=np.float64)[:, None]
        states = ("continuous", "fragmented") if two_states else ("continuous",)
        self.positions = np.concatenate([track] * len(states))
        self.interior = np.ones(self.positions.shape[0], dtype=bool)
        self.labels = np.repeat(np.array(states), n_track)
        blocks = {(a, b): Uniform() for a in states for b in states}
        blocks["continuous", "continuous"] = RandomWalk(MOVEMENT_VAR, track * BIN_SIZE)
        self.transition = Blocks(self._discrete(states), blocks)

    @property
    def n_state_bins(self) -> int:
        """All state bins ``N``, interior or not."""
        return int(self.interior.size)

    def coords(self, with_states: bool = True) -> dict:
        """Coordinates of the Dataset: ``is_interior`` and (optionally) ``state``.

        ``with_states=False`` leaves out ``state``, so a dense matrix given
        with them runs as a plain dense product (no block analysis).
        """
        coords = {}
        if not self.interior.all():
            coords["is_interior"] = ("state_bins", self.interior)
        if with_states and self.labels is not None:
            coords["state"] = ("state_bins", self.labels)
        return coords

    @cached_property
    def _dense(self) -> np.ndarray:
        from ..transitions import to_dense

        if isinstance(self.transition, np.ndarray):
            return self.transition
        if self.time_varying:
            raise InputError(f"model {self.model!r} varies over time: it has no single "
                             "dense matrix")
        layout = xr.Dataset(coords={"state": ("state_bins", self.labels),
                                    "is_interior": ("state_bins", self.interior)})
        return to_dense(self.transition, layout)

    def dense_transition(self) -> np.ndarray:
        """The (N, N) float64 matrix of the model (``to_dense`` for Blocks; cached)."""
        return self._dense

    def interior_inputs(self, log_lik: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(log_lik, transition, initial)`` over the interior bins only.

        For the baselines, which know nothing of exterior bins.
        """
        if self.interior.all():
            return log_lik, self.dense_transition(), self.initial
        mask = self.interior
        return (log_lik[:, mask], self.dense_transition()[np.ix_(mask, mask)],
                self.initial[mask])

    @property
    def n_blocks(self) -> int:
        """Number of generation blocks."""
        return -(-self.n_time // GEN_BLOCK)

    def _fill(self, out: np.ndarray) -> None:
        for index in range(self.n_blocks):
            start = index * GEN_BLOCK
            out[start:start + GEN_BLOCK] = _block(index, self.n_time, self.positions,
                                                  self.interior, self.seed)

    def in_ram(self) -> np.ndarray:
        """The whole (T, N) float32 log-likelihood as a NumPy array."""
        out = np.empty((self.n_time, self.n_state_bins), dtype=np.float32)
        self._fill(out)
        return out

    def lazy(self):
        """A dask array computing each block of rows only when it is read."""
        import dask.array as da

        chunks = ((GEN_BLOCK,) * (self.n_time // GEN_BLOCK)
                  + ((self.n_time % GEN_BLOCK,) if self.n_time % GEN_BLOCK else ()),
                  (self.n_state_bins,))
        return da.map_blocks(
            _dask_block, dtype=np.float32, chunks=chunks,
            meta=np.empty((0, 0), dtype=np.float32),
            n_time=self.n_time, positions=self.positions, interior=self.interior,
            seed=self.seed,
        )

    def on_disk(self, path: str | Path) -> np.memmap:
        """The log-likelihood written to ``path`` and opened read-only as a memmap."""
        out = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=(self.n_time, self.n_state_bins)
        )
        self._fill(out)
        out.flush()
        del out
        return np.load(path, mmap_mode="r")

    def log_likelihood(self, kind: str, workdir: str | Path):
        """The log-likelihood held as ``kind`` (one of :data:`INPUT_KINDS`)."""
        if kind == "ram":
            return self.in_ram()
        if kind == "dask":
            return self.lazy()
        if kind == "memmap":
            return self.on_disk(Path(workdir) / "log_likelihood.npy")
        raise ValueError(f"unknown input kind {kind!r}; choose from {INPUT_KINDS}")
