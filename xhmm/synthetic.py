"""Synthetic decoding problems for demos, tests, notebooks and benchmarks.

An animal runs back and forth along a track made of straight segments
separated by gaps (positions that are not on the track, so their bins are
exterior). Place cells fire Poisson spikes around their field centres. The
decoder has two discrete states over the same position bins:

* ``"continuous"``: the represented position moves by a Gaussian random walk
  along the track (bins either side of a gap are neighbours on the track);
* ``"fragmented"``: the represented position jumps anywhere on the track at
  every step (a uniform transition).

The true hidden process is drawn from the same sticky discrete chain, so the
model is right about the data: during fragmented epochs the spikes report a
uniformly random position at every step, otherwise the animal's own position.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .errors import ConfigError

__all__ = ["simulate_decoding", "STATES"]

#: Labels of the discrete states, in state-bin order.
STATES = ("continuous", "fragmented")


def _check_positive(name: str, value: float) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _track_bins(
    segment_lengths: tuple[float, ...], gap: float, bin_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position bin centres, interior mask and distance along the track.

    Returns
    -------
    centers : (P,) ndarray
        Linear position of each bin centre (gaps included).
    interior : (P,) bool ndarray
        Whether the centre lies on a segment.
    track_distance : (P,) ndarray
        Distance along the track (gaps removed); meaningful on interior bins.
    """
    starts = np.concatenate([[0.0], np.cumsum(np.add(segment_lengths, gap))[:-1]])
    stops = starts + np.asarray(segment_lengths)
    n_bins = int(np.ceil(stops[-1] / bin_size))
    centers = (np.arange(n_bins) + 0.5) * bin_size
    segment = np.searchsorted(starts, centers, side="right") - 1
    interior = centers < stops[segment]
    track_distance = centers - segment * gap
    return centers, interior, track_distance


def _to_linear(distance: np.ndarray, segment_lengths: tuple[float, ...], gap: float):
    """Map distance along the track to linear position (inserting the gaps)."""
    boundaries = np.cumsum(segment_lengths)[:-1]
    return distance + gap * np.searchsorted(boundaries, distance, side="right")


def _run_back_and_forth(
    n_time: int, dt: float, length: float, rng: np.random.Generator
) -> np.ndarray:
    """Distance along the track of an animal shuttling between the two ends.

    Each run has a random speed and a smooth start and stop; the animal
    pauses at each end for a random time (as at a reward well).
    """
    distance = np.empty(n_time)
    t, here = 0, 0.0
    while t < n_time:
        pause = int(rng.uniform(0.5, 2.0) / dt)
        distance[t : t + pause] = here
        t += pause
        if t >= n_time:
            break
        steps = max(1, int(length / rng.uniform(40.0, 80.0) / dt))
        profile = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, steps + 1) / steps)
        there = length - here
        distance[t : t + steps] = (here + (there - here) * profile)[: n_time - t]
        t += steps
        here = there
    return distance


def _discrete_chain(
    n_time: int, stay: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A two-state sticky Markov chain started in state 0 (continuous)."""
    states = np.empty(n_time, dtype=np.int8)
    current, t = 0, 0
    while t < n_time:
        dwell = int(rng.geometric(1.0 - stay[current]))
        states[t : t + dwell] = current
        t += dwell
        current = 1 - current
    return states


def _gaussian_walk(track_distance: np.ndarray, std: float) -> np.ndarray:
    """Row-stochastic Gaussian random walk along the track."""
    diff = track_distance[:, None] - track_distance[None, :]
    walk = np.exp(-0.5 * (diff / std) ** 2)
    return walk / walk.sum(axis=1, keepdims=True)


def _transition(
    track_distance: np.ndarray, interior: np.ndarray, std: float, stay: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Transition over all state bins (rows = from) and its initial distribution.

    Exterior rows and columns are zero: exterior bins are unreachable.
    """
    n_pos = interior.size
    n_int = int(interior.sum())
    walk = _gaussian_walk(track_distance[interior], std)
    uniform = np.full((n_int, n_int), 1.0 / n_int)
    discrete = np.array([[stay[0], 1 - stay[0]], [1 - stay[1], stay[1]]])
    # Into "continuous": the random walk from continuous, anywhere from fragmented.
    blocks = [[walk, uniform], [uniform, uniform]]
    A = np.zeros((2 * n_pos, 2 * n_pos))
    idx = np.flatnonzero(np.tile(interior, 2))
    interior_A = np.block(
        [[discrete[i, j] * blocks[i][j] for j in range(2)] for i in range(2)]
    )
    A[np.ix_(idx, idx)] = interior_A
    # Start from the discrete chain's stationary distribution, uniform in position.
    leave = 1 - stay
    stationary = np.array([leave[1], leave[0]]) / leave.sum()
    p0 = np.zeros(2 * n_pos)
    p0[idx] = np.repeat(stationary, n_int) / n_int
    return A, p0


def _spikes(
    represented: np.ndarray,
    centers: np.ndarray,
    widths: np.ndarray,
    peaks: np.ndarray,
    baseline: float,
    dt: float,
    rng: np.random.Generator,
    block: int = 65_536,
) -> np.ndarray:
    """Poisson spike counts (time, cell) for a represented track distance."""
    out = np.empty((represented.size, centers.size), dtype=np.uint8)
    for start in range(0, represented.size, block):
        d = represented[start : start + block, None]
        rate = baseline + peaks * np.exp(-0.5 * ((d - centers) / widths) ** 2)
        out[start : start + block] = np.minimum(rng.poisson(rate * dt), 255)
    return out


def _poisson_block(
    spikes: np.ndarray,
    log_rate_dt: np.ndarray,
    rate_dt: np.ndarray,
    position_columns: np.ndarray,
    n_state_bins: int,
    log_factorial: np.ndarray,
) -> np.ndarray:
    """Poisson log-likelihood (time, state_bins) of one block of spike counts.

    Exterior bins are NaN; both discrete states share the position likelihood.
    """
    counts = spikes.astype(np.float32)
    per_position = counts @ log_rate_dt - rate_dt
    per_position -= log_factorial[spikes].sum(axis=1, keepdims=True)
    out = np.full((spikes.shape[0], n_state_bins), np.nan, dtype=np.float32)
    n_pos = n_state_bins // 2
    out[:, position_columns] = per_position
    out[:, n_pos + position_columns] = per_position
    return out


def simulate_decoding(
    duration: float = 60.0,
    *,
    dt: float = 0.002,
    n_cells: int = 40,
    bin_size: float = 2.0,
    segment_lengths: tuple[float, ...] = (80.0, 60.0, 60.0),
    gap: float = 10.0,
    movement_std: float = 2.5,
    stay_probability: tuple[float, float] = (0.998, 0.99),
    time_chunk: int | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Simulate a position-decoding problem with two discrete states.

    Parameters
    ----------
    duration : float, default 60.0
        Length of the recording in seconds.
    dt : float, default 0.002
        Time bin in seconds.
    n_cells : int, default 40
        Number of place cells (field centres spread evenly along the track,
        widths 6-12 cm, peak rates 10-30 Hz, baseline 0.5 Hz).
    bin_size : float, default 2.0
        Width of a position bin in cm.
    segment_lengths : tuple of float, default (80, 60, 60)
        Lengths in cm of the straight track segments, laid end to end.
    gap : float, default 10.0
        Gap in cm (in linear position) between consecutive segments; bins
        whose centre falls in a gap are exterior (``is_interior`` False).
    movement_std : float, default 2.5
        Standard deviation in cm per time step of the continuous state's
        random walk.
    stay_probability : (float, float), default (0.998, 0.99)
        Probability of staying in the continuous / fragmented state from one
        step to the next (mean dwell 1 s and 0.2 s at 2 ms bins).
    time_chunk : int, optional
        If given, ``log_likelihood`` is a dask array computed from the spike
        counts block by block (``time_chunk`` rows per block) when read, so
        recordings far larger than memory can be simulated. By default it is
        a NumPy array.
    seed : int, default 0
        Seed of the random generator; equal seeds give equal datasets.

    Returns
    -------
    xr.Dataset
        Dimensions ``time``, ``state_bins`` (``2 * n_position_bins``: the
        continuous state's bins, then the fragmented state's), ``cell``,
        ``state_bins_from`` and ``state_bins_to``. Variables:

        - ``log_likelihood`` (time, state_bins), float32, NaN on exterior bins;
        - ``transition`` (state_bins_from, state_bins_to), rows = from, zero
          on exterior rows and columns;
        - ``initial`` (state_bins);
        - ``spikes`` (time, cell), uint8 spike counts;
        - ``true_position`` (time), cm, and ``true_state`` (time), the
          label of the hidden discrete state.

        Coordinates: ``time`` (s), and along ``state_bins``: ``state``,
        ``position`` (cm, linear, gaps included) and ``is_interior``.
        Attributes: ``track_length_cm`` (on the track, gaps excluded),
        ``bin_size_cm``, ``dt_s`` and ``seed``.

    Raises
    ------
    xhmm.ConfigError
        If a size, rate or probability is out of range.

    Examples
    --------
    >>> import xhmm
    >>> from xhmm.synthetic import simulate_decoding
    >>> ds = simulate_decoding(duration=2.0)
    >>> res = ds.hmm.smooth(progress=False)
    >>> res.acausal_state_probabilities.sizes["states"]
    2
    """
    for name, value in (
        ("duration", duration), ("dt", dt), ("bin_size", bin_size),
        ("movement_std", movement_std),
    ):
        _check_positive(name, value)
    if not np.isfinite(gap) or gap < 0:
        raise ConfigError(f"gap must be a non-negative number, got {gap!r}")
    if not segment_lengths or any(not np.isfinite(s) or s <= 0 for s in segment_lengths):
        raise ConfigError(
            f"segment_lengths must be positive lengths, got {segment_lengths!r}"
        )
    if int(n_cells) != n_cells or n_cells < 1:
        raise ConfigError(f"n_cells must be a positive int, got {n_cells!r}")
    stay = np.asarray(stay_probability, dtype=np.float64)
    if stay.shape != (2,) or not ((stay > 0) & (stay < 1)).all():
        raise ConfigError(
            "stay_probability must be two probabilities strictly between 0 and 1, "
            f"got {stay_probability!r}"
        )
    if time_chunk is not None and (int(time_chunk) != time_chunk or time_chunk < 1):
        raise ConfigError(f"time_chunk must be a positive int, got {time_chunk!r}")
    n_time = int(round(duration / dt))
    if n_time < 1:
        raise ConfigError(f"duration={duration!r} is shorter than one time bin dt={dt!r}")
    segment_lengths = tuple(float(s) for s in segment_lengths)

    rng = np.random.default_rng(seed)
    centers, interior, track_distance = _track_bins(segment_lengths, gap, bin_size)
    length = float(sum(segment_lengths))

    distance = _run_back_and_forth(n_time, dt, length, rng)
    hidden = _discrete_chain(n_time, stay, rng)
    represented = np.where(hidden == 1, rng.uniform(0.0, length, n_time), distance)

    field_centers = np.linspace(0.0, length, n_cells) + rng.normal(0, 2.0, n_cells)
    widths = rng.uniform(6.0, 12.0, n_cells)
    peaks = rng.uniform(10.0, 30.0, n_cells)
    baseline = 0.5
    spikes = _spikes(represented, field_centers, widths, peaks, baseline, dt, rng)

    on_track = track_distance[interior]
    rate = baseline + peaks * np.exp(
        -0.5 * ((on_track[:, None] - field_centers) / widths) ** 2
    )
    log_rate_dt = np.log(rate * dt).T.astype(np.float32)  # (cell, interior position)
    rate_dt = (rate * dt).sum(axis=1).astype(np.float32)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 256)))])
    log_factorial = log_factorial.astype(np.float32)
    position_columns = np.flatnonzero(interior)
    n_state_bins = 2 * centers.size
    block_args = (log_rate_dt, rate_dt, position_columns, n_state_bins, log_factorial)
    if time_chunk is None:
        log_likelihood = _poisson_block(spikes, *block_args)
    else:
        import dask.array as da

        counts = da.from_array(spikes, chunks=(int(time_chunk), n_cells))
        log_likelihood = counts.map_blocks(
            _poisson_block, *block_args,
            dtype=np.float32,
            chunks=(counts.chunks[0], (n_state_bins,)),
            meta=np.empty((0, 0), dtype=np.float32),
        )

    transition, initial = _transition(track_distance, interior, movement_std, stay)
    cm = {"units": "cm"}
    return xr.Dataset(
        {
            "log_likelihood": (
                ("time", "state_bins"), log_likelihood,
                {"long_name": "Poisson log-likelihood of the spike counts"},
            ),
            "transition": (
                ("state_bins_from", "state_bins_to"), transition,
                {"long_name": "state transition probabilities (rows = from)"},
            ),
            "initial": ("state_bins", initial,
                        {"long_name": "state distribution at the first step"}),
            "spikes": (("time", "cell"), spikes, {"long_name": "spike counts"}),
            "true_position": ("time", _to_linear(distance, segment_lengths, gap),
                              {"long_name": "true position", **cm}),
            "true_state": ("time", np.asarray(STATES)[hidden],
                           {"long_name": "hidden discrete state"}),
        },
        coords={
            "time": ("time", np.arange(n_time) * dt, {"units": "s"}),
            "state": ("state_bins", np.repeat(STATES, centers.size)),
            "position": ("state_bins", np.tile(centers, 2), {"long_name": "position", **cm}),
            "is_interior": ("state_bins", np.tile(interior, 2)),
        },
        attrs={
            "description": "xhmm synthetic decoding problem",
            "track_length_cm": length,
            "bin_size_cm": float(bin_size),
            "dt_s": float(dt),
            "seed": seed,
        },
    )
