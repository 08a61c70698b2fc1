"""Per-step expected moves and the EM fit of a covariate-dependent discrete transition.

References independent of the code under test: the per-step pair posteriors
formed explicitly in float64 (``tests/test_fit.py``), the closed form of a
multinomial regression on a binary covariate (the fitted probabilities at
``x = 0`` and ``x = 1`` are the expected-move frequencies there; the standard
error of a log-odds is ``sqrt(1/n_a + 1/n_ref)``), finite differences of
the M-step objective, and data simulated from known coefficients.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xhmm
from test_fit import LABELS, _model, _reference_counts
from xhmm.transitions import Blocks, Uniform, stored_transition, to_dense
from xhmm.transitions.covariates import covariate_discrete
from xhmm.transitions.logistic import MoveRegression

STATES = ["a", "b", "c"]
BINS_PER_STATE = 3
#: Coefficients (from-state, [intercept, x], to-state) of the simulations;
#: the reference column (staying) is 0.
TRUE = np.array([
    [[0.0, -3.0, -3.5], [0.0, 1.0, -0.8]],
    [[-2.5, 0.0, -3.0], [-1.0, 0.0, 0.5]],
    [[-3.0, -2.8, 0.0], [0.7, 0.0, 0.0]],
])


def _softmax(logits):
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def _simulated(rng, n_time, x=None, sigma=0.35):
    """A path of the states from the true coefficients and a noisy reading of its bin."""
    x = rng.normal(size=n_time) if x is None else x
    design = np.column_stack([np.ones(n_time), x])
    moves = _softmax(np.einsum("tp,spa->tsa", design, TRUE))
    state = np.zeros(n_time, dtype=int)
    draws = rng.random(n_time)
    for t in range(1, n_time):
        state[t] = min(np.searchsorted(np.cumsum(moves[t - 1, state[t - 1]]), draws[t]), 2)
    bins = state * BINS_PER_STATE + rng.integers(0, BINS_PER_STATE, n_time)
    means = np.arange(3 * BINS_PER_STATE, dtype=float)
    reading = means[bins] + rng.normal(0, sigma, n_time)
    ll = -0.5 * ((reading[:, None] - means[None]) / sigma) ** 2
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"time": np.arange(n_time),
                            "state": ("state_bins", np.repeat(STATES, BINS_PER_STATE))})
    covariates = xr.DataArray(x[:, None], dims=("time", "covariate"),
                              coords={"time": np.arange(n_time), "covariate": ["x"]})
    return ds, covariates


def _start():
    return Blocks(np.full((3, 3), 0.05) + 0.85 * np.eye(3),
                  {(a, b): Uniform() for a in STATES for b in STATES})


P0 = np.full(3 * BINS_PER_STATE, 1 / (3 * BINS_PER_STATE))


# -- per-step expected moves (the engine) ------------------------------------------

@pytest.mark.parametrize("time_varying, chunk", [(True, 1), (True, 17), (True, 120),
                                                  (False, 17)])
def test_step_counts_equal_the_explicit_pairwise_joints(time_varying, chunk):
    ds, transition, p0, labels = _model(np.random.default_rng(0), time_varying=time_varying)
    res = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=chunk,
                        emit_step_transition_counts=True, compute_dtype="float64",
                        progress=False)
    want, _, _ = _reference_counts(ds, transition, p0, labels, time_varying, per_step=True)
    got = res.step_transition_counts.sel(from_state=list(LABELS), to_state=list(LABELS))
    assert got.dims == ("time", "from_state", "to_state") and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.transition_counts.sel(from_state=list(LABELS),
                                                         to_state=list(LABELS)),
                               want.sum(axis=0), rtol=0, atol=1e-9)


def test_step_counts_in_memmap_of_a_dense_matrix_and_per_sequence(tmp_path):
    ds, transition, p0, labels = _model(np.random.default_rng(1))
    ram = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=25,
                        emit_step_transition_counts=True, progress=False)
    dense = ds.hmm.smooth(transition=to_dense(transition, ds), initial=p0, chunk_size=25,
                          emit_step_transition_counts=True, compute_dtype="float64",
                          progress=False)
    want, _, _ = _reference_counts(ds, transition, p0, labels, False, per_step=True)
    np.testing.assert_allclose(dense.step_transition_counts.sel(
        from_state=list(LABELS), to_state=list(LABELS)), want, rtol=0, atol=1e-12)
    disk = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=25,
                         emit_step_transition_counts=True, memmap_dir=tmp_path / "r",
                         progress=False)
    assert (tmp_path / "r" / "step_transition_counts.dat").exists()
    np.testing.assert_array_equal(disk.step_transition_counts, ram.step_transition_counts)
    np.testing.assert_array_equal(xhmm.open_run(tmp_path / "r").step_transition_counts,
                                  ram.step_transition_counts)
    pair = xr.concat([ds, ds.isel(time=slice(0, 50))], dim="sequence", join="outer",
                     coords="minimal", compat="override")
    both = pair.hmm.smooth(transition=transition, initial=p0, chunk_size=16,
                           emit_step_transition_counts=True, progress=False)
    steps = both.step_transition_counts
    assert np.isnan(steps[1, 50:]).all() and (steps[1, 49] == 0).all()
    np.testing.assert_allclose(steps.sum("time"), both.transition_counts, atol=1e-9)
    with pytest.raises(xhmm.ConfigError, match="emit_step_transition_counts"):
        ds.hmm.filter(transition=transition, initial=p0, emit_step_transition_counts=True)


def test_step_counts_resume_bit_identical(tmp_path, monkeypatch):
    """A memmap run stopped in its backward pass resumes to the counts of a fresh run
    (their rows are checksummed per chunk, see docs/storage.md)."""
    import xhmm.engine.loop as loop

    ds, transition, p0, _ = _model(np.random.default_rng(2))
    kernel, calls = loop.backward_chunk, [0]

    def stopping(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return kernel(*args, **kwargs)

    kw = dict(transition=transition, initial=p0, chunk_size=16,
              emit_step_transition_counts=True, progress=False)
    monkeypatch.setattr(loop, "backward_chunk", stopping)
    with pytest.raises(KeyboardInterrupt):
        ds.hmm.smooth(memmap_dir=tmp_path / "r", **kw)
    monkeypatch.setattr(loop, "backward_chunk", kernel)
    resumed = ds.hmm.smooth(memmap_dir=tmp_path / "r", resume=True, **kw)
    fresh = ds.hmm.smooth(**kw)
    np.testing.assert_array_equal(resumed.step_transition_counts, fresh.step_transition_counts)
    np.testing.assert_array_equal(resumed.transition_counts, fresh.transition_counts)


# -- the M-step (multinomial logistic regression) ------------------------------------

def _binary_moves(rng, n_time):
    x = rng.integers(0, 2, n_time).astype(float)
    allowed = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], bool)
    moves = rng.random((n_time, 3, 3)) * allowed
    return np.column_stack([np.ones(n_time), x]), x, moves, allowed


def test_m_step_on_a_binary_covariate_is_the_closed_form():
    """Probabilities at x = 0 and 1 are the move frequencies there; standard errors of
    the log-odds are sqrt(1/n_a + 1/n_ref) (intercept) and the sum over both values
    (slope); an impossible move stays impossible."""
    design, x, moves, allowed = _binary_moves(np.random.default_rng(0), 3_000)
    regression = MoveRegression([design], [moves], [3_001], allowed, [False, True])
    fitted, errors, q_start, q_end = regression.maximise(np.zeros((3, 2, 3)))
    assert (q_end >= q_start).all()
    assert np.isnan(fitted[0, :, 2]).all()
    for s in range(3):
        counts = [moves[x == v, s].sum(axis=0) for v in (0, 1)]
        for v in (0, 1):
            logits = np.where(allowed[s], np.nan_to_num(fitted[s]).T @ [1.0, v], -np.inf)
            np.testing.assert_allclose(_softmax(logits), counts[v] / counts[v].sum(),
                                       rtol=0, atol=1e-7)
        for a in np.flatnonzero(allowed[s] & (np.arange(3) != s)):
            one = [1 / c[a] + 1 / c[s] for c in counts]
            np.testing.assert_allclose(errors[s, :, a], np.sqrt([one[0], sum(one)]), rtol=1e-6)
        assert np.isnan(errors[s, :, s]).all() and (fitted[s, :, s] == 0).all()


def _objective(coefficients, design, moves, allowed, prior, penalty, penalized):
    """Q written out in NumPy: expected log-likelihood plus pseudo-counts, minus the L2 term."""
    logits = np.where(allowed, np.einsum("tp,spa->tsa", design, coefficients), -np.inf)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    response = moves + prior / len(design)
    total = np.where(allowed, response * np.where(allowed, log_p, 0), 0).sum()
    return total - 0.5 * penalty * (penalized[None, :, None] * coefficients ** 2).sum()


def test_m_step_with_a_prior_and_a_penalty_is_the_maximum():
    """Finite differences of Q (written out above) vanish at the result, and Q is lower
    at nearby points."""
    rng = np.random.default_rng(1)
    design, _, moves, allowed = _binary_moves(rng, 2_000)
    design = np.column_stack([design, rng.normal(size=len(design))])
    prior = np.where(allowed, 0.5 + 4 * np.eye(3), 0)
    penalized = np.array([False, True, True])
    regression = MoveRegression([design], [moves], [len(design) + 1], allowed, penalized,
                                l2_penalty=30.0, prior=prior)
    fitted, _, _, _ = regression.maximise(np.zeros((3, 3, 3)))
    free = np.nan_to_num(fitted)
    args = (design, moves, allowed, prior, 30.0, penalized)
    best = _objective(free, *args)
    for s, p, a in [(0, 1, 1), (1, 0, 2), (1, 2, 0), (2, 1, 1)]:
        bump = np.zeros_like(free)
        bump[s, p, a] = 1e-5
        slope = (_objective(free + bump, *args) - _objective(free - bump, *args)) / 2e-5
        assert abs(slope) < 1e-4, (s, p, a, slope)
        assert _objective(free + 100 * bump, *args) < best


# -- the EM fit ---------------------------------------------------------------------

@pytest.mark.parametrize("n_time", [10_000, pytest.param(50_000, marks=pytest.mark.slow)])
def test_em_recovers_the_coefficients_and_never_decreases_the_likelihood(n_time):
    """Every coefficient within 3.5 standard errors (50,000 steps: about 5 s here, slow)."""
    ds, covariates = _simulated(np.random.default_rng(2), n_time)
    fit = ds.hmm.fit(transition=_start(), initial=P0, covariates=covariates, max_iter=20,
                     tol=1e-7, chunk_size=5_000, progress=False)
    mll = fit.marginal_log_likelihood.values
    # float32 E-steps: non-decreasing up to their rounding
    assert (np.diff(mll) >= -1e-7 * np.abs(mll[1:])).all(), np.diff(mll)
    assert mll[-1] - mll[0] > 100
    assert fit.coefficients.dims == ("from_state", "covariate", "to_state")
    assert fit.covariate.values.tolist() == ["intercept", "x"]
    z = (fit.coefficients.values - TRUE) / fit.coefficients_se.values
    assert np.nanmax(np.abs(z)) < 3.5, np.round(z, 2)
    fitted = stored_transition(fit)
    assert fitted.discrete.dims == ("time", "from_state", "to_state")
    again = xhmm.smooth(ds, fitted, fit.initial, progress=False, persist_causal=False)
    assert float(again.marginal_log_likelihood) >= mll[-1] - 1e-7 * abs(mll[-1])
    np.testing.assert_allclose(covariate_discrete(fit.coefficients, covariates),
                               fitted.discrete, rtol=0, atol=1e-15)


@pytest.mark.slow  # make test: the per-step counts at chunks 1, 17 and 120 (above)
def test_fit_does_not_depend_on_the_chunk_size_or_the_buffer():
    ds, covariates = _simulated(np.random.default_rng(3), 1_500)
    kw = dict(transition=_start(), initial=P0, covariates=covariates, max_iter=2,
              compute_dtype="float64", progress=False)
    a = ds.hmm.fit(chunk_size=250, **kw)
    b = ds.hmm.fit(chunk_size=777, use_memmap=True, **kw)  # the last chunk padded
    np.testing.assert_allclose(b.coefficients, a.coefficients, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.marginal_log_likelihood, a.marginal_log_likelihood,
                               rtol=1e-12)


def _piece(value, lo, hi):
    value = value.isel(time=slice(lo, hi))
    return value.assign_coords(time=np.arange(hi - lo))


def test_sequences_are_fitted_jointly():
    """One M-step over two ragged sequences (covariates NaN past the shorter one's end)
    equals the closed form of the moves of both, each from its own smoother pass."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, 2_500).astype(float)
    ds, covariates = _simulated(rng, 2_500, x=x)
    parts = [(0, 1_500), (1_500, 2_500)]
    pair = xr.concat([_piece(ds, *p) for p in parts], dim="sequence", join="outer",
                     coords="minimal", compat="override")
    pair_cov = xr.concat([_piece(covariates, *p) for p in parts], dim="sequence",
                         join="outer")
    assert np.isnan(pair_cov[1, 1_000:]).all()
    fit = pair.hmm.fit(transition=_start(), initial=P0, covariates=pair_cov, max_iter=1,
                       chunk_size=400, compute_dtype="float64", progress=False)
    counts = np.zeros((2, 3, 3))
    for lo, hi in parts:
        steps = _piece(ds, lo, hi).hmm.smooth(
            transition=_start(), initial=P0, emit_step_transition_counts=True,
            compute_dtype="float64", progress=False).step_transition_counts.values
        for v in (0, 1):
            counts[v] += steps[:-1][x[lo:hi - 1] == v].sum(axis=0)
    coef = fit.coefficients.values
    for v in (0, 1):
        np.testing.assert_allclose(_softmax(np.einsum("spa,p->sa", coef, [1.0, v])),
                                   counts[v] / counts[v].sum(-1, keepdims=True), atol=1e-7)
    discrete = stored_transition(fit).discrete
    assert discrete.dims == ("sequence", "time", "from_state", "to_state")
    np.testing.assert_allclose(discrete.sum("to_state"), 1.0, atol=1e-12)


def test_covariates_under_the_callers_names():
    ds, covariates = _simulated(np.random.default_rng(5), 800)
    kw = dict(max_iter=2, compute_dtype="float64", progress=False)
    named = ds.rename(time="t").hmm.fit(transition=_start(), initial=P0, time_dim="t",
                                        covariates=covariates.rename(time="t"), **kw)
    plain = ds.hmm.fit(transition=_start(), initial=P0, covariates=covariates.values, **kw)
    assert "t" in stored_transition(named).discrete.dims and "time" not in named.dims
    assert plain.covariate.values.tolist() == ["intercept", "x0"]
    np.testing.assert_allclose(named.coefficients.values, plain.coefficients.values,
                               rtol=0, atol=1e-10)


def _bad(ds, covariates):
    nan_inside = covariates.copy(data=covariates.values.copy())
    nan_inside[5, 0] = np.nan
    return {
        "dims": (covariates.rename(covariate="c"), xhmm.DimensionError, "expected"),
        "rank": (covariates.values[:, 0], xhmm.DimensionError, "1 dims"),
        "length": (covariates[:-1], xhmm.DimensionError, "along 'time'"),
        "dtype": (covariates.astype(str), xhmm.InputError, "real-valued"),
        "nan": (nan_inside, xhmm.InputError, "time index 5"),
        "constant": (xr.ones_like(covariates), xhmm.InputError, "constant"),
        "intercept": (covariates.assign_coords(covariate=["intercept"]), xhmm.InputError,
                      "intercept=False"),
        "empty": (covariates[:, :0], xhmm.DimensionError, "empty"),
    }


@pytest.mark.parametrize("case", sorted(_bad(*_simulated(np.random.default_rng(0), 10))))
def test_bad_covariates_are_refused_before_any_pass(case, monkeypatch):
    ds, covariates = _simulated(np.random.default_rng(6), 50)
    value, error, fragment = _bad(ds, covariates)[case]

    def no_run(*args, **kwargs):
        raise AssertionError("a smoother pass ran")

    monkeypatch.setattr("xhmm.frontend.api.run_job", no_run)
    with pytest.raises(error, match=fragment):
        ds.hmm.fit(transition=_start(), initial=P0, covariates=value, progress=False)


def test_bad_settings_and_nan_inside_a_sequence():
    ds, covariates = _simulated(np.random.default_rng(7), 60)
    kw = dict(transition=_start(), initial=P0, covariates=covariates, progress=False)
    with pytest.raises(xhmm.ConfigError, match="l2_penalty"):
        ds.hmm.fit(l2_penalty=-1.0, **kw)
    with pytest.raises(xhmm.ConfigError, match="prior_weight"):
        ds.hmm.fit(prior_weight=0.1, **kw)
    pair = xr.concat([ds, ds], dim="sequence")
    ragged = xr.concat([covariates, covariates.where(covariates.time < 40)], dim="sequence")
    with pytest.raises(xhmm.InputError, match="within the sequence"):
        pair.hmm.fit(transition=_start(), initial=P0, covariates=ragged, progress=False)


def test_covariate_discrete_reads_columns_by_label_or_in_order():
    """The softmax of x . W written out; columns by label in any order, or in order, the
    intercept's added when it is missing; impossible moves get 0."""
    rng = np.random.default_rng(8)
    table = rng.normal(size=(2, 3, 2))
    table[1, :, 0] = np.nan  # b -> a impossible
    coefficients = xr.DataArray(table, dims=("from_state", "covariate", "to_state"),
                                coords={"from_state": ["a", "b"], "to_state": ["a", "b"],
                                        "covariate": ["intercept", "x", "y"]})
    x = rng.normal(size=(6, 2))
    logits = np.einsum("tp,spa->tsa", np.column_stack([np.ones(6), x]), np.nan_to_num(table))
    want = _softmax(np.where(np.isnan(table).any(axis=1), -np.inf, logits))
    labelled = xr.DataArray(x[:, ::-1], dims=("time", "covariate"),
                            coords={"covariate": ["y", "x"]})
    for given in (x, np.column_stack([np.ones(6), x]), labelled):
        got = covariate_discrete(coefficients, given)
        assert got.dims == ("time", "from_state", "to_state")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert (covariate_discrete(coefficients, x).sel(from_state="b", to_state="a") == 0).all()
