"""Covariate EM: xhmm's ``fit(covariates=...)`` next to non_local_detector 0.6.9's.

Runs where non_local_detector 0.6.9 is importable, with xhmm on the path:
``PYTHONPATH=. python benchmarks/fit_covariates_nld.py`` (its output of
2026-12-05 is ``benchmarks/results/fit-covariates-nld.txt``).

On nld's own simulation (``make_simulated_data``, 500 Hz) a
``NonLocalSortedSpikesDetector`` with ``DiscreteNonStationaryDiagonal``
(``1 + bs(speed, knots=[1, 4, 16])``) is fitted; then

1. nld's non-stationary EM (``estimate_parameters``) and xhmm's
   ``fit(covariates=...)`` run from the same start on the same
   log-likelihood, design matrix and prior (nld's ``transition_regularization
   r`` is xhmm's ``l2_penalty = 2 (T - 1) r``): the marginal log-likelihood
   of each iteration side by side, the time per iteration (from the second
   one; xhmm after a warm-up run), the fitted coefficients (in nld's
   parametrisation, the last state the reference) and P(stay | speed);
2. one M-step on identical expected moves (xhmm's exact per-step counts
   under the starting model): nld's own minimiser (scipy Newton-CG on its
   objective, as ``estimate_non_stationary_state_transition`` calls it) and
   xhmm's damped Newton, coefficients and times;
3. the E-step counts of the first iteration: nld's joint from state-level
   probabilities against xhmm's bin-level pair posteriors.

Options: ``--iterations N`` (default 8).
"""

from __future__ import annotations

import argparse
import os
import time as clock

import numpy as np

# non_local_detector 0.6.9 calls np.product, which NumPy 2 removed.
if not hasattr(np, "product"):
    np.product = np.prod

import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402
from non_local_detector import discrete_state_transitions as nld_dst  # noqa: E402
from non_local_detector.environment import Environment  # noqa: E402
from non_local_detector.models import NonLocalSortedSpikesDetector  # noqa: E402
from non_local_detector.models import base as nld_base  # noqa: E402
from non_local_detector.simulate.sorted_spikes_simulation import make_simulated_data  # noqa: E402
from patsy import build_design_matrices  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

import xhmm  # noqa: E402
from xhmm.transitions import logistic  # noqa: E402

FORMULA = "1 + bs(speed, knots=[1.0, 4.0, 16.0])"
SPEEDS = [0.0, 1.0, 4.0, 16.0, 40.0]


def detector():
    return NonLocalSortedSpikesDetector(
        environments=Environment(place_bin_size=2.0, position_range=[(-20.0, 190.0)]),
        discrete_transition_type=nld_dst.DiscreteNonStationaryDiagonal(
            diagonal_values=np.array([0.98, 0.98, 0.98, 0.98]), formula=FORMULA))


def to_nld(coefficients: np.ndarray) -> np.ndarray:
    """xhmm's (S, P, S) coefficients (reference: the from-state) as nld's (P, S, S - 1)
    (reference: the last state)."""
    relative = coefficients - coefficients[:, :, -1:]
    return np.transpose(relative[:, :, :-1], (1, 0, 2))


def from_nld(coefficients: np.ndarray) -> np.ndarray:
    """nld's (P, S, S - 1) coefficients as xhmm's (S, P, S) (reference: the from-state)."""
    full = np.concatenate([coefficients, np.zeros(coefficients.shape[:2] + (1,))], axis=-1)
    full = np.transpose(full, (1, 0, 2))
    return full - full[np.arange(full.shape[0]), :, np.arange(full.shape[0])][:, :, None]


def transition_at(coefficients_nld: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(rows), S, S) transition of nld-parametrised coefficients at design ``rows``."""
    logits = np.einsum("tp,psa->tsa", rows, coefficients_nld)
    logits = np.concatenate([logits, np.zeros(logits.shape[:2] + (1,))], axis=-1)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8)
    opts = parser.parse_args()
    import jax
    import non_local_detector

    print(f"non_local_detector {non_local_detector.__version__}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    np.random.seed(0)
    speed, position, spike_times, time, *_ = make_simulated_data(sampling_frequency=500)
    covariate_data = pd.DataFrame({"speed": speed})
    det = detector()
    det.fit(time, position, spike_times, discrete_transition_covariate_data=covariate_data)
    design = det.discrete_transition_design_matrix_
    names = design.design_info.column_names
    ll = np.asarray(det.compute_log_likelihood(time, time, position, spike_times))
    model = xhmm.transitions.from_non_local_detector(det)
    ds = model.dataset(ll, time)
    n_time = len(time)
    covariates = xr.DataArray(np.asarray(design)[:, 1:], dims=("time", "covariate"),
                              coords={"covariate": names[1:]})
    prior = dict(concentration=float(det.discrete_transition_concentration),
                 stickiness=np.asarray(det.discrete_transition_stickiness, float))
    penalty = 2 * (n_time - 1) * float(det.discrete_transition_regularization)
    print(f"{n_time} steps, {ll.shape[1]} interior bins, states {list(det.state_names)}; "
          f"design {list(names)}; concentration {prior['concentration']}, stickiness "
          f"{prior['stickiness'].tolist()}, nld regularization "
          f"{det.discrete_transition_regularization} -> xhmm l2_penalty {penalty:.3g}",
          flush=True)

    # -- 1. nld's EM, timed per M-step call ---------------------------------------
    stamps, nld_joint = [], []
    original = nld_base._estimate_discrete_transition

    def timed(causal, predictive, acausal, discrete, *rest):
        if not nld_joint:
            nld_joint.append(nld_dst.estimate_joint_distribution(
                causal, predictive, discrete, acausal).sum(axis=0))
        out = original(causal, predictive, acausal, discrete, *rest)
        stamps.append(clock.perf_counter())
        return out

    nld_base._estimate_discrete_transition = timed
    nld_det = detector()
    nld_res = nld_det.estimate_parameters(
        time, position, spike_times, time, discrete_transition_covariate_data=covariate_data,
        max_iter=opts.iterations, tolerance=1e-12)
    nld_base._estimate_discrete_transition = original
    nld_mll = np.asarray(nld_res.attrs["marginal_log_likelihoods"], float)
    nld_coef = np.asarray(nld_det.discrete_transition_coefficients_)
    nld_iter = np.diff(stamps)

    # -- 1. xhmm's EM ---------------------------------------------------------------
    kw = dict(covariates=covariates, l2_penalty=penalty, progress=False, **prior)
    xhmm.fit(ds, model.transition, model.initial, max_iter=1, **kw)  # compiles
    m_times = []
    maximise = logistic.MoveRegression.maximise

    def timed_m(self, start):
        t0 = clock.perf_counter()
        out = maximise(self, start)
        m_times.append(clock.perf_counter() - t0)
        return out

    logistic.MoveRegression.maximise = timed_m
    t0 = clock.perf_counter()
    fit = xhmm.fit(ds, model.transition, model.initial, max_iter=opts.iterations, tol=1e-12,
                   **kw)
    x_total = clock.perf_counter() - t0
    logistic.MoveRegression.maximise = maximise
    x_mll = fit.marginal_log_likelihood.values
    x_coef = to_nld(np.nan_to_num(fit.coefficients.values))

    print("\nmarginal log-likelihood per iteration (the model before its update)")
    print(f"{'iter':>4} {'nld 0.6.9':>14} {'xhmm':>14} {'xhmm - nld':>11}")
    for i in range(max(len(nld_mll), len(x_mll))):
        a = nld_mll[i] if i < len(nld_mll) else np.nan
        b = x_mll[i] if i < len(x_mll) else np.nan
        print(f"{i:>4} {a:>14.3f} {b:>14.3f} {b - a:>11.3f}")
    print(f"non-decreasing: nld {bool((np.diff(nld_mll) >= 0).all())}, "
          f"xhmm {bool((np.diff(x_mll) >= 0).all())}")
    print(f"\ntime per iteration (s): nld {np.median(nld_iter):.2f} (median of iterations 2.., "
          f"{', '.join(f'{t:.2f}' for t in nld_iter)}); xhmm {x_total / len(x_mll):.2f} "
          f"(total {x_total:.1f} s / {len(x_mll)}; M-step {np.median(m_times):.3f} s median)")

    rows = np.asarray(build_design_matrices([design.design_info], {"speed": SPEEDS})[0])
    p_nld, p_x = transition_at(nld_coef, rows), transition_at(x_coef, rows)
    print("\nP(stay | speed) of each state, fitted: nld / xhmm")
    print(f"{'speed':>6} " + " ".join(f"{name[:22]:>24}" for name in det.state_names))
    for k, v in enumerate(SPEEDS):
        print(f"{v:>6.1f} " + " ".join(f"{p_nld[k, s, s]:>11.5f} /{p_x[k, s, s]:>11.5f}"
                                       for s in range(len(det.state_names))))
    full_nld = transition_at(nld_coef, np.asarray(design))
    full_x = np.asarray(xhmm.transitions.stored_transition(fit).discrete.values)
    print(f"max |fitted transition, xhmm - nld| over all {n_time} steps: "
          f"{np.abs(full_x - full_nld).max():.3g}")
    print("\nfitted coefficients (nld's parametrisation: to-state vs the last state), "
          "from-state Non-Local Continuous, to Local")
    se = fit.coefficients_se.values
    s, a = 2, 0
    for p, name in enumerate(names):
        print(f"  {name[:40]:<40} nld {nld_coef[p, s, a]:>9.3f}  xhmm {x_coef[p, s, a]:>9.3f}")
    print(f"  (xhmm's own standard errors of from-state {det.state_names[s]!r}, against "
          f"staying: {np.array2string(se[s, :, a], precision=3)})")

    # -- 2. one M-step on identical expected moves ------------------------------------
    start = xhmm.smooth(ds, model.transition, model.initial, emit_step_transition_counts=True,
                        persist_causal=False, progress=False, lazy=False)
    moves = np.nan_to_num(np.asarray(start.step_transition_counts.values))
    alpha = nld_dst.get_transition_prior(prior["concentration"], prior["stickiness"], 4)
    dm = np.asarray(design)
    t0 = clock.perf_counter()
    by_nld = np.zeros((len(names), 4, 3))
    for s_from in range(4):
        found = minimize(nld_dst.dirichlet_neg_log_likelihood,
                         x0=np.asarray(det.discrete_transition_coefficients_)[:, s_from].ravel(),
                         method="Newton-CG", jac=nld_dst.dirichlet_gradient,
                         hess=nld_dst.dirichlet_hessian,
                         args=(dm[:-1], moves[:-1, s_from, :], alpha[s_from],
                               float(det.discrete_transition_regularization)),
                         options={"maxiter": 100})
        by_nld[:, s_from] = found.x.reshape(len(names), 3)
    nld_m = clock.perf_counter() - t0
    regression = logistic.MoveRegression(
        [dm], [moves], [n_time], np.ones((4, 4), bool), np.arange(len(names)) > 0, penalty,
        alpha - 1)
    t0 = clock.perf_counter()
    by_x, _, q0, q1 = regression.maximise(np.zeros((4, len(names), 4)))
    x_m = clock.perf_counter() - t0
    diff = np.abs(to_nld(by_x) - by_nld)
    p_diff = np.abs(transition_at(to_nld(by_x), dm) - transition_at(by_nld, dm)).max()
    q_nld = regression.statistics(from_nld(by_nld), second=False)[0]
    print(f"\nM-step on identical moves (xhmm's exact counts, starting model): "
          f"max |coefficient difference| {diff.max():.3g}, max |transition difference| "
          f"{p_diff:.3g}; the objective Q (xhmm's sum form) at xhmm's optimum minus at "
          f"nld's, per from-state: {np.array2string(q1 - q_nld, precision=4)}; time nld "
          f"(scipy Newton-CG, 4 from-states) {nld_m:.2f} s, xhmm (damped Newton) {x_m:.3f} s")

    # -- 3. E-step counts of the first iteration ----------------------------------------
    exact = np.asarray(start.transition_counts.values)
    print("\nexpected moves of the first E-step (same model): nld's state-level joint vs "
          "xhmm's bin-level pair posteriors")
    print("  nld :", np.array2string(nld_joint[0], precision=1, suppress_small=True)
          .replace("\n", "\n        "))
    print("  xhmm:", np.array2string(exact, precision=1, suppress_small=True)
          .replace("\n", "\n        "))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (timings on a shared "
          "machine are rough)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
