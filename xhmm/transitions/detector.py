"""xhmm's model from a fitted non_local_detector detector (0.6.9).

:func:`from_non_local_detector` reads the fitted attributes of a
``NonLocalClusterlessDetector``, ``NonLocalSortedSpikesDetector`` or any
detector of that package laid out the same way, without importing it, and
returns the transition, initial distribution, interior mask and
``state_bins`` index that decode as the detector does.

Each (from, to) pair of states with non-zero discrete probability becomes a
block of a :class:`~xhmm.transitions.Blocks`, after the detector's
``continuous_transition_types``:

- into a one-bin state (``Local``, ``No-Spike``), whatever the type:
  :class:`Uniform` (every row-stochastic block into one bin is that bin);
- from a one-bin state into a state with position bins: :class:`Uniform`
  (the detector spreads evenly over the interior there, whatever the type);
- otherwise the first registered block kind whose ``nld_names`` holds the
  type's class name and whose ``from_non_local_detector`` accepts it
  (:mod:`xhmm.transitions.block`): ``Uniform`` and ``Identity`` as
  themselves, ``RandomWalk`` with Euclidean distance (no track graph, no
  manifold distance, no direction) and a scalar ``movement_var`` as
  :class:`~xhmm.transitions.RandomWalk` over the environment's
  ``place_bin_centers_``, and so on for each kind;
- anything no kind accepts: :class:`~xhmm.transitions.Dense` of the
  detector's own block of ``continuous_state_transitions_``, noted as such
  in the plan (``describe()``, the ``xhmm_transition`` attribute of the
  results).

The discrete transition is ``discrete_state_transitions_``: ``(S, S)``, or
``(time, S, S)`` for a covariate-dependent detector, which then has to
cover the decoded time steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DimensionError, InputError
from ..names import BINS, TIME
from .block import TransitionBlock, detector_environment, nld_blocks
from .blocks import Blocks
from .matrix import Dense
from .uniform import Uniform

__all__ = ["DetectorModel", "from_non_local_detector"]

#: Fitted attributes read from the detector.
FITTED = (
    "state_names",
    "state_ind_",
    "is_track_interior_state_bins_",
    "initial_conditions_",
    "continuous_state_transitions_",
    "discrete_state_transitions_",
    "continuous_transition_types",
    "observation_models",
    "environments",
)


@dataclass(frozen=True, eq=False)
class DetectorModel:
    """A detector's model over all of its state bins.

    Attributes
    ----------
    transition : Blocks
        Over the discrete states, labelled by the detector's ``state_names``.
    initial : (N,) float64 ndarray
        ``initial_conditions_``, over all state bins.
    is_interior : (N,) bool ndarray
        ``is_track_interior_state_bins_``.
    state_bins : pandas.MultiIndex
        ``(state, position)`` or ``(state, x_position, y_position)``, as the
        detector's results index ``state_bins`` (position NaN for one-bin
        states).
    bin_coords : dict of str to (N,) ndarray
        The detector's other labels of each state bin: ``state_ind`` (index
        of its discrete state), ``environments`` (the environment name of
        its state's observation model) and ``encoding_groups`` (its encoding
        group); :meth:`dataset` puts them on ``state_bins``, so every result
        carries them.
    """

    transition: Blocks
    initial: np.ndarray
    is_interior: np.ndarray
    state_bins: pd.MultiIndex
    bin_coords: dict[str, np.ndarray]

    def dataset(self, log_likelihood: Any, time: Any) -> xr.Dataset:
        """The Dataset to decode: log-likelihood, ``time``, ``state_bins``, ``is_interior``.

        Parameters
        ----------
        log_likelihood : (T, N) or (T, K) array-like
            Over all state bins, or over the interior bins only as the
            detector's ``compute_log_likelihood`` returns it (NumPy, JAX or
            dask); the latter is laid on all bins (NaN outside) lazily, block
            by block.
        time : (T,) array-like
            The ``time`` coordinate.

        Returns
        -------
        xr.Dataset
            ``log_likelihood`` ``(time, state_bins)`` with the ``state_bins``
            MultiIndex, the ``is_interior`` coordinate and :attr:`bin_coords`.

        Raises
        ------
        DimensionError
            If the log-likelihood's shape fits neither layout.
        """
        values = log_likelihood.data if isinstance(log_likelihood, xr.DataArray) else log_likelihood
        if not isinstance(values, da.Array):
            values = np.asarray(values)
        n_time, n_bins, n_interior = len(time), self.is_interior.size, int(self.is_interior.sum())
        if values.ndim != 2 or values.shape[0] != n_time or values.shape[1] not in (n_bins,
                                                                                   n_interior):
            raise DimensionError(
                f"log_likelihood has shape {values.shape}; expected ({n_time}, {n_bins}) over "
                f"all state bins or ({n_time}, {n_interior}) over the interior bins"
            )
        if values.shape[1] != n_bins:
            values = _on_all_bins(values, self.is_interior)
        index = xr.Coordinates.from_pandas_multiindex(self.state_bins, BINS)
        return xr.Dataset(
            {"log_likelihood": ((TIME, BINS), values)},
            coords={TIME: np.asarray(time), "is_interior": (BINS, self.is_interior),
                    **{name: (BINS, values) for name, values in self.bin_coords.items()}},
        ).assign_coords(index)


def _on_all_bins(values: Any, mask: np.ndarray) -> da.Array:
    """A (T, K) interior log-likelihood as a lazy (T, N) one, NaN in exterior bins."""
    lazy = values if isinstance(values, da.Array) else da.from_array(values, chunks=("auto", -1))
    lazy = lazy.rechunk({1: -1})
    columns = np.flatnonzero(mask)
    dtype = np.promote_types(lazy.dtype, np.float32)

    def expand(block: np.ndarray) -> np.ndarray:
        out = np.full((block.shape[0], mask.size), np.nan, dtype=dtype)
        out[:, columns] = block
        return out

    return lazy.map_blocks(expand, chunks=(lazy.chunks[0], (mask.size,)), dtype=dtype)


def from_non_local_detector(det: Any, **data: Any) -> DetectorModel:
    """Transition, initial distribution, interior and ``state_bins`` of a fitted detector.

    Duck-typed on the fitted attributes of non_local_detector 0.6.9 (see
    :data:`FITTED`); non_local_detector is not imported. See the module
    docstring for how each transition block is mapped.

    Parameters
    ----------
    det : detector
        A fitted ``NonLocalClusterlessDetector``, ``NonLocalSortedSpikesDetector``
        or another detector of non_local_detector with the same attributes.
    **data
        What some block kinds need beyond the detector, passed to their
        ``from_non_local_detector`` (see each kind).

    Returns
    -------
    DetectorModel

    Raises
    ------
    InputError
        An attribute is missing (the detector is not fitted), state names
        repeat, or a state's bins do not match its environment.
    """
    absent = [name for name in FITTED if not hasattr(det, name)]
    if absent:
        raise InputError(
            f"det has no attribute(s) {', '.join(absent)}: from_non_local_detector needs a "
            "fitted non_local_detector detector (call det.fit(...) first)"
        )
    names = [str(name) for name in det.state_names]
    if len(set(names)) != len(names):
        raise InputError(f"det.state_names must be unique, got {names}")
    state_ind = np.asarray(det.state_ind_, dtype=np.int64)
    bins = [np.flatnonzero(state_ind == s) for s in range(len(names))]
    centers = [_centers(det, s, bins[s].size) for s in range(len(names))]
    discrete = np.asarray(det.discrete_state_transitions_, dtype=np.float64)
    moves = (discrete != 0).any(axis=0) if discrete.ndim == 3 else discrete != 0
    blocks = {(names[s], names[t]): _block(det, s, t, bins, data)
              for s, t in zip(*np.nonzero(moves))}
    dims = ("from_state", "to_state") if discrete.ndim == 2 else (TIME, "from_state", "to_state")
    labelled = xr.DataArray(discrete, dims=dims, coords={"from_state": names, "to_state": names})
    return DetectorModel(
        transition=Blocks(labelled, blocks),
        initial=np.asarray(det.initial_conditions_, dtype=np.float64),
        is_interior=np.asarray(det.is_track_interior_state_bins_, dtype=bool),
        state_bins=_state_bins(names, state_ind, bins, centers),
        bin_coords=_bin_coords(det, state_ind),
    )


def _bin_coords(det: Any, state_ind: np.ndarray) -> dict[str, np.ndarray]:
    """``state_ind``, ``environments`` and ``encoding_groups`` of every state bin."""
    models = det.observation_models
    return {
        "state_ind": state_ind,
        "environments": np.array([str(m.environment_name) for m in models])[state_ind],
        "encoding_groups": np.array([m.encoding_group for m in models])[state_ind],
    }


def _centers(det: Any, s: int, n_bins: int) -> np.ndarray | None:
    """Place-bin centres of state ``s`` (None for a one-bin Local / No-Spike state)."""
    observation = det.observation_models[s]
    if observation.is_local or observation.is_no_spike:
        return None
    centers = np.asarray(detector_environment(det, observation.environment_name).place_bin_centers_,
                         dtype=np.float64)
    if centers.shape[0] != n_bins:
        raise InputError(
            f"state {det.state_names[s]!r} has {n_bins} bins but its environment "
            f"{observation.environment_name!r} has {centers.shape[0]} place bins"
        )
    return centers


def _block(det: Any, s: int, t: int, bins: list[np.ndarray], data: dict[str, Any]
           ) -> TransitionBlock:
    """The xhmm block of the detector's (from ``s``, to ``t``) transition.

    A one-bin state moves uniformly; otherwise the first registered kind that
    stands for the detector's transition class and accepts it
    (:meth:`~xhmm.transitions.block.TransitionBlock.from_non_local_detector`),
    else the detector's own matrix as :class:`Dense`.
    """
    model = det.continuous_transition_types[s][t]
    name = type(model).__name__
    n_from, n_to = bins[s].size, bins[t].size
    if n_from == 1 or n_to == 1:
        return Uniform()
    for kind in nld_blocks(name):
        block = kind.from_non_local_detector(model, det, n_from, n_to, **data)
        if block is not None:
            return block
    matrix = np.asarray(det.continuous_state_transitions_)[np.ix_(bins[s], bins[t])]
    return Dense(matrix, note=f"the detector's {name} matrix")


def _state_bins(names: list[str], state_ind: np.ndarray, bins: list[np.ndarray],
                centers: list[np.ndarray | None]) -> pd.MultiIndex:
    """``(state, position...)`` of every state bin, as the detector's results index them."""
    n_dims = next((c.shape[1] for c in centers if c is not None), 1)
    position = np.full((state_ind.size, n_dims), np.nan)
    for members, state_centers in zip(bins, centers):
        if state_centers is not None:
            position[members] = state_centers
    levels = ["position"] if n_dims == 1 else [f"{axis}_position" for axis in "xyzw"[:n_dims]]
    return pd.MultiIndex.from_arrays([np.asarray(names)[state_ind], *position.T],
                                     names=["state", *levels])
