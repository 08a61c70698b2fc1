"""Check MIGRATING.md against the real non_local_detector 0.6.9, on its own simulation.

Runs only where non_local_detector is importable (it needs JAX < 0.7 and
pandas < 3), e.g. ``/work/nld-venv/bin/python benchmarks/nld_migrating_check.py``
after ``pip install --no-deps -e .`` there. Fits a ``NonLocalSortedSpikesDetector``
on ``non_local_detector.simulate.sorted_spikes_simulation.make_simulated_data``
(500 Hz) and decodes a window of it with nld and with xhmm; prints each
statement of MIGRATING.md it checks with PASS or FAIL and the numbers, and
exits 1 if any fails.

Options: ``--steps N`` (decoded window, default 4000), ``--quick`` (skip the
covariate-dependent detector and the large-grid detector).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

# non_local_detector 0.6.9 calls np.product, which NumPy 2 removed.
if not hasattr(np, "product"):
    np.product = np.prod

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import jax  # noqa: E402
import xarray as xr  # noqa: E402
from non_local_detector.environment import Environment  # noqa: E402
from non_local_detector.models import NonLocalSortedSpikesDetector  # noqa: E402
from non_local_detector.simulate.sorted_spikes_simulation import make_simulated_data  # noqa: E402

import xhmm  # noqa: E402

RESULTS: list[bool] = []
QUIET = dict(progress=False)


def report(statement: str, ok: bool, numbers: str) -> None:
    """Print one statement with PASS / FAIL and the numbers behind it."""
    RESULTS.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}  {statement}\n      {numbers}", flush=True)


def simulate(n_steps: int, place_bin_size: float = 2.0, **detector_kw):
    """A fitted detector and the window of ``n_steps`` to decode."""
    np.random.seed(0)
    _, position, spike_times, time, *_ = make_simulated_data(sampling_frequency=500)
    # A position range wider than the track: the bins past its ends are exterior.
    det = NonLocalSortedSpikesDetector(
        environments=Environment(place_bin_size=place_bin_size,
                                 position_range=[(-20.0, 190.0)]), **detector_kw)
    det.fit(time, position, spike_times)
    window = slice(1000, 1000 + n_steps)
    args = (time, position, spike_times)
    return det, time[window], args


def smoothed_float64(log_likelihood: np.ndarray, transition: np.ndarray,
                     initial: np.ndarray) -> np.ndarray:
    """Float64 NumPy forward-backward: the smoothed posterior, the reference."""
    filtered = np.zeros(log_likelihood.shape)
    predicted = initial / initial.sum()
    for t, row in enumerate(log_likelihood):
        w = predicted * np.exp(row - row.max())
        filtered[t] = w / w.sum()
        predicted = filtered[t] @ transition
    smoothed = filtered.copy()
    for t in range(len(filtered) - 2, -1, -1):
        ahead = filtered[t] @ transition
        ratio = np.divide(smoothed[t + 1], ahead, out=np.zeros_like(ahead), where=ahead > 0)
        s = filtered[t] * (transition @ ratio)
        smoothed[t] = s / s.sum()
    return smoothed


def interior_posterior(results: xr.Dataset, det) -> np.ndarray:
    """nld's acausal posterior over the interior bins."""
    return np.asarray(results.acausal_posterior.values)[:, det.is_track_interior_state_bins_]


def check_dataset_and_coordinates(det, time, args) -> xr.Dataset:
    """``model.dataset`` on nld's interior-only likelihood; state_bins coordinates carried."""
    ll = np.asarray(det.compute_log_likelihood(time, *args))
    model = xhmm.transitions.from_non_local_detector(det)
    ds = model.dataset(ll, time)
    res = ds.hmm.smooth(transition=model.transition, initial=model.initial, **QUIET)
    nld = det.predict(args[2], time, position=args[1], position_time=args[0])
    ix = det.is_track_interior_state_bins_
    diff = float(np.abs(res.acausal_posterior.values[:, ix] - interior_posterior(nld, det)).max())
    report("model.dataset(...) takes nld's interior-only likelihood as nld returns it "
           "(exterior bins present) and decodes as det.predict",
           ll.shape[1] == int(ix.sum()) < ix.size and diff < 1e-4,
           f"likelihood columns {ll.shape[1]}, state bins {ix.size}; "
           f"max |posterior - nld's| {diff:.2e}")
    got = {name: np.asarray(res[name].values) for name in ("state_ind", "environments",
                                                           "encoding_groups") if name in res}
    want_ind = np.asarray(det.state_ind_)
    ok = (set(got) == {"state_ind", "environments", "encoding_groups"}
          and np.array_equal(got["state_ind"], want_ind)
          and np.array_equal(got["environments"],
                             np.asarray(nld.environments.values)[want_ind])
          and np.array_equal(got["encoding_groups"],
                             np.asarray(nld.encoding_groups.values)[want_ind]))
    report("nld's state_bins coordinates (environments, encoding groups, state_ind) are "
           "carried to the results", ok,
           f"carried: {sorted(got)}; per state: "
           f"{res.environments.groupby(res.state).first().to_series().to_dict()}")
    state_bins_index = ds.indexes["state_bins"]
    try:
        xr.Dataset(
            {"log_likelihood": (("time", "state_bins"), ll)},
            coords={"time": time, "is_interior": ("state_bins", ix)},
        ).assign_coords(xr.Coordinates.from_pandas_multiindex(state_bins_index, "state_bins"))
        mixed = "no error"
    except ValueError as error:
        mixed = str(error).splitlines()[0]
    inner = xr.Dataset(
        {"log_likelihood": (("time", "state_bins"), ll)}, coords={"time": time},
    ).assign_coords(xr.Coordinates.from_pandas_multiindex(state_bins_index[ix], "state_bins"))
    inside = np.flatnonzero(ix)
    si = np.asarray(det.state_ind_)[inside]
    transition = (det.continuous_state_transitions_[np.ix_(inside, inside)]
                  * det.discrete_state_transitions_[np.ix_(si, si)])
    res_inner = inner.hmm.smooth(transition=transition, initial=model.initial[ix], **QUIET)
    diff_inner = float(np.abs(res_inner.acausal_posterior.values
                              - interior_posterior(nld, det)).max())
    report("'The call': likelihood, is_interior and index must have the same number of "
           "bins; the interior bins themselves as state_bins decode as nld",
           mixed != "no error" and diff_inner < 1e-4,
           f"mixed sizes: {mixed!r}; interior-only: max diff {diff_inner:.2e}")
    return ds


def check_lazy_cache(det, time, args, ds: xr.Dataset, folder: Path) -> None:
    """The chunk-by-chunk likelihood reads each block once; the cache-on-disk recipe."""
    model = xhmm.transitions.from_non_local_detector(det)
    calls: dict[int, int] = {}
    block = 1000

    def counted(start: int, *a):
        calls[start] = calls.get(start, 0) + 1
        return np.asarray(det.compute_log_likelihood(time[start:start + block], *a),
                          dtype=np.float32)

    n_interior = int(det.is_track_interior_state_bins_.sum())
    parts = [da.from_delayed(dask.delayed(counted)(s, *args),
                             shape=(len(time[s:s + block]), n_interior), dtype=np.float32)
             for s in range(0, len(time), block)]
    lazy = model.dataset(da.concatenate(parts), time)
    reference = ds.hmm.smooth(transition=model.transition, initial=model.initial, **QUIET)
    counts = {}
    for chunk_size in ("auto", block, block // 2, 300):
        calls.clear()
        res = lazy.hmm.smooth(transition=model.transition, initial=model.initial,
                              chunk_size=chunk_size, **QUIET)
        res.acausal_posterior.values
        counts[chunk_size] = max(calls.values())
    report("a likelihood computed chunk by chunk: each block computed at most once per "
           "pass whatever chunk_size (smooth: one pass reads it)",
           max(counts.values()) == 1,
           "largest computations of one block, by chunk_size: "
           + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    diffs = []
    for name in ("likelihood.nc", "likelihood.zarr"):
        path = folder / name
        xhmm.save_results(ds, path)
        cached = xhmm.open_results(path, chunks={"time": block})
        res = xhmm.smooth(cached, model.transition, model.initial, **QUIET)
        diffs.append(float(np.nanmax(np.abs(res.acausal_posterior.values
                                            - reference.acausal_posterior.values))))
        same_index = cached.indexes["state_bins"].equals(ds.indexes["state_bins"])
        diffs.append(0.0 if same_index else np.inf)
    report("cache the likelihood once (save_results to NetCDF / Zarr with the MultiIndex, "
           "open_results) and decode from it", max(diffs) == 0.0,
           f"max |posterior - from memory| NetCDF {diffs[0]:.1e}, Zarr {diffs[2]:.1e}; "
           f"MultiIndex back: {diffs[1] == 0 and diffs[3] == 0}")


def check_missing_and_float64(det, time, args) -> None:
    """nld in 64-bit mode: float64 posteriors, marginals per missing step."""
    model = xhmm.transitions.from_non_local_detector(det)
    is_missing = np.zeros(len(time), dtype=bool)
    is_missing[300:500] = True
    n_missing = int(is_missing.sum())
    ll = np.asarray(det.compute_log_likelihood(time, *args))
    ds = model.dataset(ll, time)
    kw = dict(transition=model.transition, initial=model.initial, is_missing=is_missing,
              **QUIET)
    nld32 = det.predict(args[2], time, position=args[1], position_time=args[0],
                        is_missing=is_missing)
    res32 = ds.hmm.smooth(**kw)
    jax.config.update("jax_enable_x64", True)
    try:
        nld64 = det.predict(args[2], time, position=args[1], position_time=args[0],
                            is_missing=is_missing)
        ll_ones = np.asarray(det.compute_log_likelihood(time, *args, is_missing=is_missing))
        ll64 = np.asarray(det.compute_log_likelihood(time, *args))
    finally:
        jax.config.update("jax_enable_x64", False)
    # the interior transition nld runs (its matrices as fitted), so only precision differs
    inside = np.flatnonzero(det.is_track_interior_state_bins_)
    si = np.asarray(det.state_ind_)[inside]
    dense = (det.continuous_state_transitions_[np.ix_(inside, inside)]
             * det.discrete_state_transitions_[np.ix_(si, si)])
    res64 = model.dataset(ll64, time).hmm.smooth(
        transition=dense, initial=model.initial[inside], is_missing=is_missing,
        compute_dtype="float64", posterior_dtype="float64", **QUIET)
    blocks64 = model.dataset(ll64, time).hmm.smooth(**kw, compute_dtype="float64",
                                                    posterior_dtype="float64")
    nld_post = interior_posterior(nld64, det)
    ix = det.is_track_interior_state_bins_
    rows = np.asarray(ll64, dtype=np.float64).copy()
    rows[is_missing] = 0.0
    reference = smoothed_float64(rows, dense, model.initial[inside])
    diff64 = float(np.abs(res64.acausal_posterior.values[:, ix] - reference).max())
    diff_nld = float(np.abs(res64.acausal_posterior.values[:, ix] - nld_post).max())
    nld_ref = float(np.abs(nld_post - reference).max())
    diff32 = float(np.abs(res32.acausal_posterior.values[:, ix] - nld_post).max())
    diff_blocks = float(np.abs(blocks64.acausal_posterior.values[:, ix] - nld_post).max())
    report('compute_dtype="float64", posterior_dtype="float64" keeps float64 posteriors '
           "(float64 NumPy forward-backward on nld's 64-bit likelihood and matrix)",
           res64.acausal_posterior.dtype == np.float64 and diff64 < 1e-10,
           f"dtype {res64.acausal_posterior.dtype}; max diff to the float64 reference "
           f"{diff64:.1e}; nld 64-bit's results (stored {nld64.acausal_posterior.dtype}) to "
           f"it {nld_ref:.1e}, to xhmm {diff_nld:.1e}; xhmm float32 posteriors to nld "
           f"{diff32:.1e}; float64 with model.transition (blocks recomputed in float64) "
           f"to nld {diff_blocks:.1e}")
    m64 = float(np.ravel(nld64.attrs["marginal_log_likelihoods"])[-1])
    m32 = float(np.ravel(nld32.attrs["marginal_log_likelihoods"])[-1])
    x64 = float(res64.marginal_log_likelihood)
    report("missing steps: with nld in 64-bit mode nld's marginal is xhmm's plus "
           "is_missing.sum() to float64 precision; float32 nld strays",
           abs(m64 - x64 - n_missing) < 1e-6 * max(1.0, abs(m64)),
           f"{n_missing} missing steps: nld64 - xhmm {m64 - x64:.9f}, "
           f"nld32 - xhmm {m32 - x64:.4f}")
    ds_ones = model.dataset(ll_ones, time)
    without = float(ds_ones.hmm.smooth(transition=model.transition, initial=model.initial,
                                       compute_dtype="float64", **QUIET)
                    .marginal_log_likelihood)
    with_mask = float(ds_ones.hmm.smooth(**kw, compute_dtype="float64")
                      .marginal_log_likelihood)
    report("a likelihood computed with is_missing (rows of 1.0) gives nld's marginal only "
           "without is_missing= in xhmm",
           abs(without - m64) < 1e-6 * abs(m64) and abs(m64 - with_mask - n_missing) < 1e-6
           * abs(m64),
           f"nld64 {m64:.6f}; xhmm without is_missing= {without:.6f}, "
           f"with {with_mask:.6f}")


def check_dense_analysis(det, time, args, label: str) -> None:
    """Which plan the dense transition of MIGRATING.md gets at this size."""
    from xhmm.transitions.analyse import MIN_ANALYSED_BINS

    ix = np.flatnonzero(det.is_track_interior_state_bins_)
    si = det.state_ind_[ix]
    dense = (det.continuous_state_transitions_[np.ix_(ix, ix)]
             * det.discrete_state_transitions_[np.ix_(si, si)])
    model = xhmm.transitions.from_non_local_detector(det)
    ll = np.asarray(det.compute_log_likelihood(time[:200], *args))
    res = model.dataset(ll, time[:200]).hmm.smooth(transition=dense,
                                                   initial=det.initial_conditions_[ix],
                                                   **QUIET)
    kind = res.attrs["xhmm_transition"]
    expect_blocks = ix.size >= MIN_ANALYSED_BINS
    ok = ('"blocks"' in kind) == expect_blocks
    report(f"dense transition, {ix.size} interior bins ({label}): "
           + ("xhmm finds the zero and rank-one blocks itself" if expect_blocks
              else f"below {MIN_ANALYSED_BINS} bins it runs as the dense matrix"),
           ok, f"plan: {kind[:160]}")


def check_covariate_predict(n_steps: int) -> None:
    """nld 0.6.9's predict with discrete_transition_covariate_data fails inside nld."""
    import pandas as pd
    from non_local_detector.discrete_state_transitions import DiscreteNonStationaryDiagonal

    np.random.seed(0)
    speed, position, spike_times, time, *_ = make_simulated_data(sampling_frequency=500)
    covariates = pd.DataFrame({"speed": speed})
    det = NonLocalSortedSpikesDetector(
        discrete_transition_type=DiscreteNonStationaryDiagonal(
            diagonal_values=np.array([0.98, 0.98, 0.98, 0.98]),
            formula="1 + bs(speed, knots=[1.0, 4.0, 16.0])"))
    det.fit(time, position, spike_times, discrete_transition_covariate_data=covariates)
    window = slice(0, n_steps)
    try:
        det.predict(spike_times, time[window], position=position[window],
                    position_time=time[window],
                    discrete_transition_covariate_data=covariates.iloc[window])
        outcome = "no error"
    except TypeError as error:
        outcome = f"TypeError: {error}"
    report("det.predict(..., discrete_transition_covariate_data=...) fails inside nld "
           "0.6.9 with 'JAX arrays are immutable'", "immutable" in outcome,
           outcome.splitlines()[0][:160])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["covariate"], help="run one check alone")
    opts = parser.parse_args()
    import non_local_detector

    if opts.only == "covariate":
        check_covariate_predict(opts.steps)
        return 0 if all(RESULTS) else 1

    print(f"non_local_detector {non_local_detector.__version__}, jax {jax.__version__}, "
          f"xhmm {getattr(xhmm, '__version__', '?')}", flush=True)
    det, time, args = simulate(opts.steps)
    print(f"detector: {det.is_track_interior_state_bins_.size} state bins, "
          f"{int(det.is_track_interior_state_bins_.sum())} interior; "
          f"{len(time)} steps decoded", flush=True)
    ds = check_dataset_and_coordinates(det, time, args)
    with tempfile.TemporaryDirectory() as folder:
        check_lazy_cache(det, time, args, ds, Path(folder))
    check_missing_and_float64(det, time, args)
    check_dense_analysis(det, time, args, "place_bin_size 2")
    if not opts.quick:
        big, big_time, big_args = simulate(200, place_bin_size=0.5)
        check_dense_analysis(big, big_time, big_args, "place_bin_size 0.5")
        check_covariate_predict(opts.steps)
    print(f"{sum(RESULTS)} of {len(RESULTS)} statements PASS", flush=True)
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
