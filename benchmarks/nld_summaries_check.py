"""xhmm's HPD and consistency summaries against non_local_detector 0.6.9's own functions.

Runs only where non_local_detector is importable, e.g.
``PYTHONPATH=. /work/nld-venv/bin/python benchmarks/nld_summaries_check.py``.
Fits nld's ``NonLocalSortedSpikesDetector`` on its own simulation (as
``benchmarks/nld_migrating_check.py`` does), decodes a window with nld
(``det.predict``) and with xhmm (``emit_hpd=0.95, emit_consistency=True``),
then runs nld's ``get_highest_posterior_threshold``,
``get_HPD_spatial_coverage``, ``posterior_consistency_kl_divergence`` and
``posterior_consistency_hpd_overlap`` on

* xhmm's posterior: the same numbers, so the definitions must agree, except
  at steps where the float32 running sum crosses the level within 1e-5 of
  it (a near-tie) or where nld's threshold is just above one of the row's
  values: nld divides the sorted row by its total and multiplies the value
  found back, which may round one ulp above it, and then its region leaves
  out the bin(s) at the threshold (this happens to nld's likelihood regions, where
  the Continuous and Fragmented states share each position's likelihood, so
  values come in tied pairs); xhmm compares the running sum with ``level *
  total`` and keeps the row's own value;
* nld's posterior: how far xhmm's summaries are from what an nld user gets
  (the two float32 posteriors differ by about 1e-5).

The likelihood given to nld's consistency functions is ``exp(ll - max)`` of
nld's log-likelihood over the interior bins (its functions normalise it).
``get_HPD_spatial_coverage`` takes a ``(time, position)`` array: the bins
with a position (the Local bin has none, and adds nothing to xhmm's
``hpd_area`` either), width ``np.diff(position)[0]``. Prints PASS or FAIL
per statement with the largest differences; exits 1 if any fails.

Options: ``--steps N`` (decoded window, default 4000).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# non_local_detector 0.6.9 calls np.product, which NumPy 2 removed.
if not hasattr(np, "product"):
    np.product = np.prod

import xarray as xr  # noqa: E402
from non_local_detector.model_checking.highest_posterior_density import (  # noqa: E402
    get_HPD_spatial_coverage, get_highest_posterior_threshold)
from non_local_detector.model_checking.posterior_consistency import (  # noqa: E402
    posterior_consistency_hpd_overlap, posterior_consistency_kl_divergence)

import xhmm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nld_migrating_check import simulate  # noqa: E402

LEVEL = 0.95
RESULTS: list[bool] = []


def report(statement: str, ok: bool, numbers: str) -> None:
    """Print one statement with PASS / FAIL and the numbers behind it."""
    RESULTS.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}  {statement}\n      {numbers}", flush=True)


def crossing_margin(p: np.ndarray, level: float) -> np.ndarray:
    """How far from ``level`` each row's descending running sum crosses it (float64)."""
    desc = np.sort(p, axis=1)[:, ::-1].astype(np.float64)
    cum = np.cumsum(desc, axis=1) / desc.sum(axis=1, keepdims=True)
    index = np.argmax(cum >= level, axis=1)
    rows = np.arange(len(p))
    before = np.where(index > 0, cum[rows, np.maximum(index - 1, 0)], -np.inf)
    return np.minimum(level - before, cum[rows, index] - level)


def rounded_above(rows: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Steps where a value of the row is below nld's threshold by rounding alone (see above)."""
    below = rows < threshold[:, None]
    return np.any(below & (rows >= threshold[:, None] * (1 - 1e-6)), axis=1)


def nld_summaries(posterior: np.ndarray, likelihood: np.ndarray, positions: np.ndarray,
                  has_position: np.ndarray) -> dict[str, np.ndarray]:
    """nld's four functions on ``posterior`` (time, interior bins)."""
    threshold = get_highest_posterior_threshold(posterior, coverage=LEVEL)
    spatial = xr.DataArray(posterior[:, has_position], dims=("time", "position"),
                           coords={"position": positions[has_position]})
    return {
        "hpd_threshold": threshold,
        "hpd_size": (posterior >= threshold[:, None]).sum(axis=1),
        "hpd_area": get_HPD_spatial_coverage(spatial, threshold),
        "posterior_consistency_kl": posterior_consistency_kl_divergence(posterior,
                                                                        likelihood),
        "posterior_consistency_hpd_overlap": posterior_consistency_hpd_overlap(
            posterior, likelihood, coverage=LEVEL),
    }


def compare(label: str, ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray],
            near_tie: np.ndarray, exact: bool) -> None:
    """Report the largest differences, away from near-ties and at them.

    ``exact``: the same posterior, so the same thresholds and regions away
    from near-ties, the overlap to float32 rounding and the KL divergence to
    float32 logs; otherwise (another posterior) the same region sizes at
    99 % of the steps and the KL divergence within 1e-3 nats.
    """
    far = ~near_tie
    diffs = {name: np.abs(np.asarray(ours[name], np.float64) - theirs[name])
             for name in theirs}
    relative = diffs["hpd_threshold"] / theirs["hpd_threshold"]
    same_size = diffs["hpd_size"] == 0
    numbers = (f"{len(far)} steps, {int(near_tie.sum())} set aside; away from them max "
               f"|d| threshold {diffs['hpd_threshold'][far].max():.2e} (relative "
               f"{relative[far].max():.1e}), size {diffs['hpd_size'][far].max():.0f} bins, "
               f"area {diffs['hpd_area'][far].max():.3g} cm, overlap "
               f"{diffs['posterior_consistency_hpd_overlap'][far].max():.2e}; everywhere: "
               f"KL {diffs['posterior_consistency_kl'].max():.2e} nats, same region size at "
               f"{100 * same_size.mean():.2f} % of steps (max |d| "
               f"{diffs['hpd_size'].max():.0f} bins, overlap "
               f"{diffs['posterior_consistency_hpd_overlap'].max():.3g})")
    if exact:
        ok = (diffs["hpd_threshold"][far].max() == 0 and same_size[far].all()
              and diffs["hpd_area"][far].max() < 1e-3
              and diffs["posterior_consistency_hpd_overlap"][far].max() < 1e-6
              and diffs["posterior_consistency_kl"].max() < 1e-4)
    else:
        ok = same_size.mean() > 0.99 and diffs["posterior_consistency_kl"].max() < 1e-3
    report(label, ok, numbers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    opts = parser.parse_args()
    import non_local_detector

    print(f"non_local_detector {non_local_detector.__version__}, xhmm from "
          f"{Path(xhmm.__file__).parent}", flush=True)
    det, time, args = simulate(opts.steps)
    interior = np.asarray(det.is_track_interior_state_bins_)
    ll = np.asarray(det.compute_log_likelihood(time, *args))
    model = xhmm.transitions.from_non_local_detector(det)
    ds = model.dataset(ll, time)
    res = ds.hmm.smooth(transition=model.transition, initial=model.initial, progress=False,
                        emit_hpd=LEVEL, emit_consistency=True)
    nld = det.predict(args[2], time, position=args[1], position_time=args[0])
    positions = np.asarray(ds["position"].values, np.float64)[interior]
    has_position = np.isfinite(positions)
    likelihood = np.exp(ll - ll.max(axis=1, keepdims=True)).astype(np.float64)
    ours = {name: np.asarray(res[name].values) for name in
            ("hpd_threshold", "hpd_size", "hpd_area", "posterior_consistency_kl",
             "posterior_consistency_hpd_overlap")}
    print(f"{interior.size} state bins, {int(interior.sum())} interior, {len(time)} steps; "
          f"xhmm's grid step {res.hpd_area.attrs['grid_step']}, nld's width "
          f"{np.diff(positions[has_position])[0]}", flush=True)
    for label, posterior, exact in (
            ("nld's functions on xhmm's posterior equal xhmm's summaries",
             np.asarray(res.acausal_posterior.values)[:, interior], True),
            ("nld's functions on nld's own posterior are close to xhmm's summaries",
             np.asarray(nld.acausal_posterior.values)[:, interior], False)):
        near_tie = ((crossing_margin(posterior, LEVEL) < 1e-5)
                    | (crossing_margin(likelihood, LEVEL) < 1e-5))
        rounded = (rounded_above(posterior, get_highest_posterior_threshold(posterior, LEVEL))
                   | rounded_above(likelihood, get_highest_posterior_threshold(likelihood,
                                                                               LEVEL)))
        print(f"{int(near_tie.sum())} steps near a tie, {int(rounded.sum())} with nld's "
              "threshold rounded above a value of the row", flush=True)
        compare(label, ours, nld_summaries(posterior, likelihood, positions, has_position),
                near_tie | rounded, exact)
    print(f"{sum(RESULTS)} of {len(RESULTS)} statements PASS", flush=True)
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
