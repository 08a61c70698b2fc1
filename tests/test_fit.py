"""Expected transition counts and the EM fit of the discrete transition.

The reference for the counts forms every pairwise joint explicitly in
float64: ``p(z_t = i, z_{t+1} = j | y) = filtered_t[i] A_t[i, j]
smoothed_{t+1}[j] / predicted_{t+1}[j]``, summed over the bins of each pair
of states (K <= 60 here, so the (K, K) joints are cheap).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xhmm
from conftest import reference_forward_backward
from xhmm.engine.runstate import precision
from xhmm.transitions.fit import dirichlet_map
from xhmm.kernels.hmm import backward_chunk
from xhmm.transitions import Blocks, Dense, RandomWalk, Uniform, stored_transition, to_dense
from xhmm.transitions.plan import plan_transition

LABELS = ("cont", "frag", "local")


def _model(rng, n_time=120, n=12, time_varying=False):
    centers = np.arange(n, dtype=float)[:, None]
    labels = np.array(["cont"] * n + ["frag"] * n + ["local"])
    shape = (n_time, 3, 3) if time_varying else (3, 3)
    discrete = rng.random(shape) + 3 * np.eye(3)
    discrete[..., 2, 1] = 0.0  # an exact zero
    discrete /= discrete.sum(axis=-1, keepdims=True)
    if time_varying:
        discrete = xr.DataArray(discrete, dims=("time", "from_state", "to_state"),
                                coords={"from_state": list(LABELS), "to_state": list(LABELS)})
    dense = rng.random((n, n)) + np.eye(n)
    blocks = {(a, b): Uniform() for a in LABELS for b in LABELS}
    blocks["cont", "cont"] = RandomWalk(3.0, centers)
    blocks["frag", "frag"] = Dense(dense / dense.sum(axis=1, keepdims=True))
    ll = rng.normal(size=(n_time, labels.size)) * 2
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"time": np.arange(n_time), "state": ("state_bins", labels)})
    p0 = np.full(labels.size, 1 / labels.size)
    return ds, Blocks(discrete, blocks), p0, labels


def _reference_counts(ds, transition, p0, labels, time_varying, per_step=False):
    """Counts, predictive state probabilities and first-step posterior, float64.

    ``per_step``: the counts of each step (T, 3, 3), 0 at the last, not summed.
    """
    ll = ds.log_likelihood.values
    n_time = ll.shape[0]
    mats = ([to_dense(transition, ds, time_index=t) for t in range(n_time - 1)]
            if time_varying else [to_dense(transition, ds)] * (n_time - 1))
    filt, smooth, _ = reference_forward_backward(ll, mats, p0)
    preds = [p0] + [filt[t] @ mats[t] for t in range(n_time - 1)]
    onehot = (labels[:, None] == np.array(LABELS)[None, :]).astype(float)
    counts = np.zeros((n_time, 3, 3))
    for t in range(n_time - 1):
        ratio = np.divide(smooth[t + 1], preds[t + 1], out=np.zeros_like(p0),
                          where=preds[t + 1] > 0)
        joint = filt[t][:, None] * mats[t] * ratio[None, :]  # every pairwise joint
        counts[t] = onehot.T @ joint @ onehot
    return (counts if per_step else counts.sum(axis=0)), np.array(preds) @ onehot, smooth[0]


@pytest.mark.parametrize("time_varying", [False, True])
@pytest.mark.parametrize("chunk", [1, 17, 120])
def test_counts_equal_the_explicit_pairwise_joints(time_varying, chunk):
    ds, transition, p0, labels = _model(np.random.default_rng(0), time_varying=time_varying)
    res = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=chunk,
                        emit_transition_counts=True, compute_dtype="float64",
                        posterior_dtype="float32", progress=False)
    counts, predictive, first = _reference_counts(ds, transition, p0, labels, time_varying)
    np.testing.assert_allclose(res.transition_counts.sel(from_state=list(LABELS),
                                                         to_state=list(LABELS)),
                               counts, rtol=0, atol=1e-9)
    assert float(res.transition_counts.sum()) == pytest.approx(ds.sizes["time"] - 1, abs=1e-9)
    np.testing.assert_allclose(
        res.predictive_state_probabilities.sel(states=list(LABELS)), predictive, atol=1e-7)
    np.testing.assert_allclose(res.initial_posterior, first, atol=1e-12)


def test_counts_in_float32_and_dense_input():
    ds, transition, p0, labels = _model(np.random.default_rng(1))
    counts, _, _ = _reference_counts(ds, transition, p0, labels, False)
    dense = to_dense(transition, ds)
    for given in (transition, dense):  # block by block, and a dense matrix
        res = ds.hmm.smooth(transition=given, initial=p0, chunk_size=25,
                            emit_transition_counts=True, progress=False)
        got = res.transition_counts.sel(from_state=list(LABELS), to_state=list(LABELS))
        np.testing.assert_allclose(got, counts, rtol=1e-4, atol=1e-4)


def test_counts_per_sequence_sum_to_each_length():
    ds, transition, p0, labels = _model(np.random.default_rng(2))
    pair = xr.concat([ds, ds.isel(time=slice(0, 50))], dim="sequence", join="outer",
                     coords="minimal", compat="override")
    res = pair.hmm.smooth(transition=transition, initial=p0, chunk_size=16,
                          emit_transition_counts=True, progress=False)
    np.testing.assert_allclose(res.transition_counts.sum(("from_state", "to_state")),
                               [119, 49], atol=1e-3)
    short, _, _ = _reference_counts(ds.isel(time=slice(0, 50)), transition, p0, labels, False)
    got = res.transition_counts[1].sel(from_state=list(LABELS), to_state=list(LABELS))
    np.testing.assert_allclose(got, short, atol=1e-4)


def test_counts_need_a_smoother_and_states():
    ds, transition, p0, _ = _model(np.random.default_rng(3))
    with pytest.raises(xhmm.ConfigError, match="emit_transition_counts"):
        ds.hmm.filter(transition=transition, initial=p0, emit_transition_counts=True)
    plain = ds.drop_vars("state")
    with pytest.raises(xhmm.ConfigError, match="emit_transition_counts"):
        plain.hmm.smooth(transition=np.eye(25), initial=p0, emit_transition_counts=True)


def test_dirichlet_map_matches_its_definition():
    counts = np.array([[90.0, 10.0], [0.0, 0.0]])
    got = dirichlet_map(counts, concentration=2.0, stickiness=[3.0, 0.0])
    alpha = np.array([[5.0, 2.0], [2.0, 2.0]])
    want = (counts + alpha - 1) / (counts + alpha - 1).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(dirichlet_map(counts), [[0.9, 0.1], [0.5, 0.5]])
    weighted = dirichlet_map(counts, concentration=1.0, stickiness=1.0, prior_weight=0.1)
    np.testing.assert_allclose(weighted[0], [(90 + 10) / 110, 10 / 110])
    with pytest.raises(xhmm.ConfigError, match="Dirichlet"):
        dirichlet_map(counts, concentration=0.5)


def _simulated(rng, discrete, n_time, n=20):
    """Draw a path of the model and a noisy reading of its position."""
    centers = np.arange(n, dtype=float)[:, None]
    labels = np.array(["cont"] * n + ["frag"] * n)
    blocks = {("cont", "cont"): RandomWalk(2.0, centers), ("cont", "frag"): Uniform(),
              ("frag", "cont"): Uniform(), ("frag", "frag"): Uniform()}
    template = xr.Dataset({"log_likelihood": (("time", "state_bins"), np.zeros((1, 2 * n)))},
                          coords={"state": ("state_bins", labels)})
    A = to_dense(Blocks(discrete, blocks), template)
    cumulative = np.cumsum(A, axis=1)
    z = np.zeros(n_time, dtype=int)
    draws = rng.random(n_time)
    for t in range(1, n_time):
        z[t] = min(int(np.searchsorted(cumulative[z[t - 1]], draws[t])), 2 * n - 1)
    position = np.where(z < n, z, z - n) + rng.normal(0, 1.0, n_time)
    bins = np.tile(np.arange(n), 2)
    ll = -0.5 * (position[:, None] - bins[None, :]) ** 2
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"state": ("state_bins", labels)})
    return ds, blocks


@pytest.mark.parametrize("n_time", [5_000, pytest.param(50_000, marks=pytest.mark.slow)])
def test_em_recovers_known_transitions_and_never_decreases_the_likelihood(n_time):
    true = np.array([[0.98, 0.02], [0.05, 0.95]])
    ds, blocks = _simulated(np.random.default_rng(4), true, n_time)
    start = Blocks([[0.7, 0.3], [0.3, 0.7]], blocks)
    p0 = np.full(40, 1 / 40)
    history = ds.hmm.fit(transition=start, initial=p0, max_iter=40, tol=1e-7,
                         chunk_size=10_000, progress=False)
    fitted = stored_transition(history)
    mll = history.marginal_log_likelihood.values
    assert (np.diff(mll) >= -1e-6 * np.abs(mll[1:])).all(), mll
    got = fitted.discrete.sel(from_state=["cont", "frag"], to_state=["cont", "frag"]).values
    np.testing.assert_allclose(got, true, atol=0.01)
    assert history.discrete_transition.dims == ("iteration", "from_state", "to_state")


def test_fit_does_not_depend_on_the_chunk_size_and_sequences_are_joint():
    true = np.array([[0.9, 0.1], [0.2, 0.8]])
    ds, blocks = _simulated(np.random.default_rng(5), true, 3_000)
    start = Blocks([[0.6, 0.4], [0.4, 0.6]], blocks)
    p0 = np.full(40, 1 / 40)
    kw = dict(transition=start, initial=p0, max_iter=3, compute_dtype="float64",
              progress=False)
    a = stored_transition(ds.hmm.fit(chunk_size=250, **kw))
    b = stored_transition(ds.hmm.fit(chunk_size=3_000, **kw))
    np.testing.assert_allclose(a.discrete.values, b.discrete.values, rtol=0, atol=1e-6)
    halves = xr.concat([ds.isel(time=slice(0, 1_500)), ds.isel(time=slice(1_500, None))
                        .assign_coords(time=np.arange(1_500))], dim="sequence",
                       coords="minimal", compat="override")
    joint = halves.hmm.fit(chunk_size=500, **{**kw, "max_iter": 1})
    parts = [ds.isel(time=sl).hmm.smooth(transition=start, initial=p0, chunk_size=500,
                                         emit_transition_counts=True, progress=False,
                                         compute_dtype="float64").transition_counts
             for sl in (slice(0, 1_500), slice(1_500, None))]
    np.testing.assert_allclose(joint.transition_counts[0], parts[0] + parts[1], atol=1e-8)


def test_fit_rejects_what_it_cannot_fit():
    ds, transition, p0, _ = _model(np.random.default_rng(6), time_varying=True)
    with pytest.raises(xhmm.TransitionError, match="static"):
        ds.hmm.fit(transition=transition, initial=p0, max_iter=1)
    with pytest.raises(xhmm.TransitionError, match="Blocks"):
        ds.hmm.fit(transition=np.eye(25), initial=p0, max_iter=1)
    static, blocks_model, _, _ = _model(np.random.default_rng(7))
    with pytest.raises(xhmm.ConfigError, match="Dirichlet"):
        static.hmm.fit(transition=blocks_model, initial=p0, concentration=0.5)


def test_the_usage_example_runs(tmp_path, monkeypatch):
    """The usage page's fit blocks run in order; the second saves and reopens the fit."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # it writes fit.nc
    text = (Path(__file__).parents[1] / "docs" / "usage.md").read_text()
    section = text[text.index("## Fitting the discrete transition"):]
    section = section[:section.index("\n## ", 1)]
    namespace: dict = {}
    for code in section.split("```python")[1:]:
        exec(compile(code.split("```")[0], "docs/usage.md", "exec"), namespace)
    mll = namespace["fit"].marginal_log_likelihood.values
    assert len(mll) == 5 and (np.diff(mll) >= 0).all()
    assert isinstance(namespace["fitted"], Blocks)


@pytest.mark.parametrize("block", [7, 120, 500])
def test_smoother_blocks_equal_the_reference(block):
    """The backward kernel walks a chunk in blocks (7: 18 blocks, the last one
    padded; 120: one block): smoothed rows, counts and predictive state
    probabilities of a time-varying model equal the float64 reference."""
    ds, transition, p0, labels = _model(np.random.default_rng(5), time_varying=True)
    n_time, n_bins = ds.log_likelihood.shape
    mats = [to_dense(transition, ds, time_index=t) for t in range(n_time - 1)]
    filt, smooth, _ = reference_forward_backward(ds.log_likelihood.values, mats, p0)
    counts, predictive, _ = _reference_counts(ds, transition, p0, labels, True)
    engine = plan_transition(transition, state_labels=labels,
                             is_interior=np.ones(n_bins, bool), n_time=n_time)
    onehot = (labels[:, None] == np.array(LABELS)[None, :]).astype(float)
    with precision("float64"):
        smoothed, first, (got_counts, got_predictive) = backward_chunk(
            smooth[-1][None], np.array([False]), filt[None], np.array([n_time]),
            engine.device(np.float64, 1), engine.step_inputs(0, n_time + 1, np.float64),
            count_states=onehot, block=block)
    np.testing.assert_allclose(np.asarray(smoothed[0]), smooth, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(first[0]), smooth[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got_counts[0]), counts, rtol=0, atol=1e-9)
    # predictions of steps 1 .. T (the last: of a step past the end)
    np.testing.assert_allclose(np.asarray(got_predictive[0, :-1]), predictive[1:], atol=1e-12)
