"""The most likely sequence (Viterbi) against its definition and a float64 NumPy decoder.

References written here, independently of the kernels:

* :func:`enumerate_best_path`: every one of the ``K**T`` paths of a tiny
  model scored as ``log initial[z_0] + sum_t log A[z_{t-1}, z_t] + sum_t
  ll[t, z_t]`` (no recursion);
* :func:`numpy_viterbi`: the textbook log-space recursion in float64 with
  lowest-index ties, over one dense matrix per step.

Tolerances of ``path_log_probability``: ``1e-9`` relative with float64
compute (a sum of T float64 terms); ``1e-5`` relative with float32 compute
(each step's log scale carries a few float32 roundings of values of a few
tens of nats; the shifts are added in float64), plus ``1e-5`` nats per step
absolute for totals near zero.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import xhmm
from conftest import examples, make_dataset, random_model, run_killed_child, underflow_model
from test_enumeration import tiny_models
from xhmm.kernels.operators import dense_operator
from xhmm.transitions import Blocks, Identity, RandomWalk, Uniform, to_dense
from xhmm.transitions.plan import plan_transition

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ references


def _log(values) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(values, dtype=np.float64))


def enumerate_best_path(ll, A, p0):
    """Best path, its score and the runner-up's, by scoring all ``K**T`` paths.

    Returns
    -------
    path : (T,) int ndarray or None
        None when every path has probability zero.
    best, second : float
        Log-probabilities of the best and second-best paths.
    first_impossible : int or None
        First step at which every path prefix has probability zero.
    """
    T, K = ll.shape
    log_a, log_p0 = _log(A), _log(p0)
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    steps = log_p0[paths[:, 0]] + ll[0, paths[:, 0]]
    prefix_possible = [np.isfinite(steps).any()]
    for t in range(1, T):
        steps = steps + log_a[paths[:, t - 1], paths[:, t]] + ll[t, paths[:, t]]
        prefix_possible.append(np.isfinite(steps).any())
    if not prefix_possible[-1]:
        return None, -np.inf, -np.inf, prefix_possible.index(False)
    order = np.argsort(-steps, kind="stable")
    second = steps[order[1]] if len(order) > 1 else -np.inf
    return paths[order[0]], float(steps[order[0]]), float(second), None


def numpy_viterbi(ll, matrices, p0):
    """Float64 log-space Viterbi; ``matrices(t)`` moves step ``t - 1`` to ``t``.

    Returns the path (ties to the lowest index) and its log-probability.
    """
    T, K = ll.shape
    delta = _log(p0) + ll[0]
    pointers = np.zeros((T, K), dtype=np.int64)
    for t in range(1, T):
        scores = delta[:, None] + _log(matrices(t))
        pointers[t] = scores.argmax(axis=0)
        delta = scores.max(axis=0) + ll[t]
    path = np.zeros(T, dtype=np.int64)
    path[-1] = delta.argmax()
    for t in range(T - 1, 0, -1):
        path[t - 1] = pointers[t, path[t]]
    return path, float(delta.max())


def _static(A):
    return lambda t: A


def assert_log_probability(got, want, n_time, compute):
    """Within 1e-9 (float64) or 1e-5 (float32) relative; see the module docstring."""
    rtol = 1e-9 if compute == "float64" else 1e-5
    atol = 1e-12 * n_time if compute == "float64" else 1e-5 * n_time
    assert abs(got - want) <= rtol * abs(want) + atol, (got, want)


# ---------------------------------------------------------------- enumeration


@settings(max_examples=examples(fast=20, full=80), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(model=tiny_models(), compute=st.sampled_from(["auto", "float32", "float64"]))
def test_path_equals_enumeration_of_all_paths(model, compute):
    ll, A, p0, chunk = model
    path, best, second, first_impossible = enumerate_best_path(ll, A, p0)
    ds = make_dataset(ll)
    kw = dict(transition=A, initial=p0, chunk_size=chunk, compute_dtype=compute,
              progress=False)
    event("every path impossible" if path is None else "a best path")
    if path is None:
        with pytest.raises(xhmm.LikelihoodError,
                           match=rf"time index {first_impossible}\b"):
            ds.hmm.most_likely_sequence(**kw)
        return
    # a unique best path, clear of float32 rounding
    assume(best - second > 1e-3 * max(1.0, abs(best)) * (compute != "float64") + 1e-9)
    res = ds.hmm.most_likely_sequence(**kw)
    np.testing.assert_array_equal(res.most_likely_state_bin.values, path)
    assert res.path_log_probability.dtype == np.float64
    assert_log_probability(float(res.path_log_probability), best, len(ll), compute)


def test_path_log_probability_is_at_most_the_marginal():
    ll, A, p0 = random_model(np.random.default_rng(3), 50, 6)
    ds = make_dataset(ll)
    path = ds.hmm.most_likely_sequence(transition=A, initial=p0, progress=False)
    smooth = ds.hmm.smooth(transition=A, initial=p0, progress=False)
    assert float(path.path_log_probability) < float(smooth.marginal_log_likelihood)


# ------------------------------------------------------------ chunks, storage


@pytest.fixture(scope="module")
def sticky_model():
    """A 16-step, 6-bin model whose path moves and has no near-ties."""
    rng = np.random.default_rng(11)
    K, T = 6, 16
    A = rng.dirichlet(np.ones(K) * 0.5, size=K) + np.eye(K)
    A /= A.sum(axis=1, keepdims=True)
    p0 = rng.dirichlet(np.ones(K))
    ll = rng.normal(size=(T, K)) * 2
    return ll, A, p0


def test_every_chunk_size_gives_the_same_path(sticky_model):
    ll, A, p0 = sticky_model
    want, log_p = numpy_viterbi(ll, _static(A), p0)
    assert len(set(want.tolist())) > 2  # the path moves
    ds = make_dataset(ll)
    for chunk in range(1, len(ll) + 1):
        res = ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size=chunk,
                                          progress=False)
        np.testing.assert_array_equal(res.most_likely_state_bin.values, want,
                                      err_msg=f"chunk_size={chunk}")
        assert_log_probability(float(res.path_log_probability), log_p, len(ll), "float32")


def test_ram_and_memmap_give_the_same_path(sticky_model, tmp_path):
    ll, A, p0 = sticky_model
    ds = make_dataset(ll)
    kw = dict(transition=A, initial=p0, chunk_size=5, progress=False)
    ram = ds.hmm.most_likely_sequence(**kw)
    disk = ds.hmm.most_likely_sequence(memmap_dir=tmp_path / "run", **kw)
    xr.testing.assert_identical(ram.drop_attrs(), disk.drop_attrs())
    assert disk.attrs["xhmm_memmap_dir"] == str(tmp_path / "run")
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "path.dat", "max_checkpoints.dat", "log_scale.dat", "manifest.json", ".xhmm.lock"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["metadata"]["algorithm"] == "viterbi"
    again = ds.hmm.most_likely_sequence(memmap_dir=tmp_path / "run", resume=True, **kw)
    xr.testing.assert_identical(again.drop_attrs(), ram.drop_attrs())
    with pytest.raises(xhmm.InputError, match="most_likely_sequence run"):
        xhmm.open_run(tmp_path / "run")


T_KILL, K_KILL, CHUNK_KILL = 240, 9, 16

@pytest.mark.parametrize("kill_at, passes", [(1, "forward"), (2, "backtrack")])
def test_killed_run_resumes_with_the_identical_path(tmp_path, kill_at, passes):
    """The first read of block 10 is the forward pass, the second the backtrack's."""
    folder = tmp_path / "run"
    call = (f"ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size={CHUNK_KILL}, "
            "memmap_dir=folder, progress=False)")
    proc = run_killed_child(tmp_path, folder, kill_at, call, T_KILL, K_KILL, CHUNK_KILL)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "running"
    n_chunks = -(-T_KILL // CHUNK_KILL)
    if passes == "forward":
        assert 0 < manifest["forward_done"] < n_chunks and manifest["backward_done"] == 0
    else:
        assert manifest["forward_done"] == n_chunks
        assert 0 < manifest["backward_done"] < n_chunks

    ll, A, p0 = random_model(np.random.default_rng(42), T_KILL, K_KILL)
    ds = make_dataset(ll)
    kw = dict(transition=A, initial=p0, chunk_size=CHUNK_KILL, progress=False)
    resumed = ds.hmm.most_likely_sequence(memmap_dir=folder, resume=True, **kw)
    fresh = ds.hmm.most_likely_sequence(**kw)
    np.testing.assert_array_equal(resumed.most_likely_state_bin.values,
                                  fresh.most_likely_state_bin.values)
    assert float(resumed.path_log_probability) == float(fresh.path_log_probability)
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"


def test_resume_refuses_a_smoother_run(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(0), 30, 4)
    ds = make_dataset(ll)
    ds.hmm.smooth(transition=A, initial=p0, memmap_dir=tmp_path / "run", progress=False)
    with pytest.raises(xhmm.ResumeError, match="it holds a smooth run, and a "
                       "most_likely_sequence run was asked for"):
        ds.hmm.most_likely_sequence(transition=A, initial=p0, memmap_dir=tmp_path / "run",
                                    resume=True, progress=False)


# --------------------------------------------------------- against NumPy, large


def test_dense_k64_t1000_matches_numpy():
    rng = np.random.default_rng(5)
    K, T = 64, 1_000
    A = rng.dirichlet(np.ones(K) * 0.3, size=K) + 2 * np.eye(K)
    A /= A.sum(axis=1, keepdims=True)
    p0 = rng.dirichlet(np.ones(K))
    ll = rng.normal(size=(T, K)) * 3
    want, log_p = numpy_viterbi(ll, _static(A), p0)
    ds = make_dataset(ll)
    for compute in ("auto", "float64"):
        res = ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size=300,
                                          compute_dtype=compute, progress=False)
        np.testing.assert_array_equal(res.most_likely_state_bin.values, want)
        assert_log_probability(float(res.path_log_probability), log_p, T, compute)


def _grid_model(rng, discrete, n_time, nx=6, ny=5):
    """local / nospike (one bin each), cont (random walk on a grid with a hole), frag."""
    xs, ys = np.meshgrid(np.arange(nx) * 2.0, np.arange(ny) * 2.0, indexing="ij")
    centers = np.c_[xs.ravel(), ys.ravel()]
    n = len(centers)
    hole = (centers[:, 0] == 4.0) & (centers[:, 1] == 4.0)
    labels = np.array(["local", "nospike"] + ["cont"] * n + ["frag"] * n)
    mask = np.concatenate([[True, True], ~hole, ~hole])
    states = ("local", "nospike", "cont", "frag")
    blocks = {(a, b): Uniform() for a in states for b in states}
    blocks["local", "local"] = Identity()
    blocks["nospike", "nospike"] = Identity()
    blocks["cont", "cont"] = RandomWalk(3.0, centers)
    blocks["frag", "frag"] = Identity()
    transition = Blocks(discrete, blocks)
    ll = rng.normal(size=(n_time, labels.size)) * 3
    ll[:, ~mask] = np.nan
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"state": ("state_bins", labels), "is_interior": ("state_bins", mask),
                            "x": ("state_bins", np.r_[np.nan, np.nan, centers[:, 0],
                                                      centers[:, 0]])})
    p0 = np.where(mask, 1.0, 0.0) / mask.sum()
    return ds, transition, p0, mask


def _sticky(rng, shape):
    d = rng.random(shape) + 6 * np.eye(4)
    d[..., 1, 3] = 0.0  # an exact zero
    return d / d.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("varying", [False, True])
def test_structured_2d_model_matches_numpy_on_to_dense(varying):
    rng = np.random.default_rng(9)
    T = 200
    discrete = _sticky(rng, (T, 4, 4) if varying else (4, 4))
    ds, transition, p0, mask = _grid_model(rng, discrete, T)
    plan = json.loads(ds.hmm.most_likely_sequence(
        transition=transition, initial=p0, chunk_size=64, progress=False
    ).attrs["xhmm_transition"])
    assert "cont->cont: separable 6x5" in plan["blocks"]
    if varying:
        dense = [to_dense(transition, ds, time_index=t)[np.ix_(mask, mask)]
                 for t in range(T - 1)]
        matrices = lambda t: dense[t - 1]  # noqa: E731  (step t moves t - 1 to t)
    else:
        matrices = _static(to_dense(transition, ds)[np.ix_(mask, mask)])
    want, log_p = numpy_viterbi(ds.log_likelihood.values[:, mask], matrices, p0[mask])
    for compute in ("auto", "float64"):
        res = ds.hmm.most_likely_sequence(transition=transition, initial=p0, chunk_size=64,
                                          compute_dtype=compute, progress=False)
        np.testing.assert_array_equal(res.most_likely_state_bin.values,
                                      np.flatnonzero(mask)[want])
        assert_log_probability(float(res.path_log_probability), log_p, T, compute)
    assert set(np.unique(res.most_likely_state.values)) <= {"local", "nospike", "cont", "frag"}
    on_grid = np.isin(res.most_likely_state.values, ["cont", "frag"])
    np.testing.assert_array_equal(np.isnan(res.most_likely_x.values), ~on_grid)


def test_banded_track_model_matches_numpy():
    """A 1-D random walk of 400 bins runs as banded tiles; plus a uniform state."""
    rng = np.random.default_rng(12)
    n, T = 400, 150
    centers = np.arange(n) * 2.0
    labels = np.array(["cont"] * n + ["frag"] * n)
    transition = Blocks([[0.98, 0.02], [0.1, 0.9]], {
        ("cont", "cont"): RandomWalk(6.0, centers), ("cont", "frag"): Uniform(),
        ("frag", "cont"): Uniform(), ("frag", "frag"): Uniform()})
    walk = np.cumsum(rng.integers(-2, 3, T)) % n
    ll = -0.5 * ((np.arange(n)[None, :] - walk[:, None]) / 4.0) ** 2
    ll = np.concatenate([ll, np.full((T, n), -8.0)], axis=1) + rng.normal(size=(T, 2 * n))
    ds = make_dataset(ll, state=("state_bins", labels))
    p0 = np.full(2 * n, 1 / (2 * n))
    res = ds.hmm.most_likely_sequence(transition=transition, initial=p0, chunk_size=50,
                                      progress=False)
    assert "banded" in json.loads(res.attrs["xhmm_transition"])["blocks"]
    want, log_p = numpy_viterbi(ll, _static(to_dense(transition, ds)), p0)
    np.testing.assert_array_equal(res.most_likely_state_bin.values, want)
    assert_log_probability(float(res.path_log_probability), log_p, T, "float32")


def test_float32_falls_back_to_float64_where_it_would_lose_the_path():
    """The filter's underflow model: likelihood jumps of about 100 nats on a banded walk.

    float32 alone (the precision flags switched off) picks a path that
    differs at 10 of its 60 steps; the default recomputes in float64 from the
    first chunk with tiny predictions (here every chunk) and finds the path.
    """
    ll, A = underflow_model()
    p0 = np.full(A.shape[0], 1 / A.shape[0])
    want, log_p = numpy_viterbi(ll, _static(A), p0)
    for compute in ("auto", "float32"):
        res = make_dataset(ll).hmm.most_likely_sequence(
            transition=A, initial=p0, chunk_size=20, compute_dtype=compute, progress=False)
        assert res.attrs["xhmm_float64_chunks"] == 3
        np.testing.assert_array_equal(res.most_likely_state_bin.values, want)
        assert_log_probability(float(res.path_log_probability), log_p, len(ll), "float64")


# ---------------------------------------------------------- marginal vs path


def test_bimodal_map_jumps_but_the_path_does_not():
    """Two modes of nearly equal evidence that alternate step by step.

    A random walk moves at most one bin a step, or (probability 1/2) jumps
    anywhere; the likelihood has bumps at bins 4 and 16 whose heights
    alternate by 0.6 nats. The smoothed marginal's argmax follows the
    alternation, jumping 12 bins back and forth; the most likely path stays
    in one mode (a jump costs log 7 = 1.95 nats against the stay, more than
    the 0.6 nats it could gain).
    """
    K, T = 21, 40
    walk = np.zeros((K, K))
    for i in range(K):
        walk[i, max(0, i - 1):i + 2] = 1
    walk /= walk.sum(axis=1, keepdims=True)
    A = 0.5 * walk + 0.5 / K
    bins = np.arange(K)
    bumps = [-0.5 * ((bins - c) / 0.7) ** 2 for c in (4, 16)]
    ll = np.array([np.logaddexp(bumps[0] + 0.3 * (-1) ** t, bumps[1] - 0.3 * (-1) ** t)
                   for t in range(T)])
    p0 = np.full(K, 1 / K)
    ds = make_dataset(ll, position=("state_bins", bins * 2.0))
    kw = dict(transition=A, initial=p0, progress=False)
    marginal = ds.hmm.map_estimate(**kw).map_state_bin.values
    path = ds.hmm.most_likely_sequence(**kw)
    steps = path.most_likely_state_bin.values
    assert np.abs(np.diff(marginal)).max() == 12  # MAP jumps between the modes
    assert (np.abs(np.diff(marginal)) == 12).sum() > T // 2
    assert np.abs(np.diff(steps)).max() <= 1  # the path never jumps
    np.testing.assert_array_equal(steps, numpy_viterbi(ll, _static(A), p0)[0])
    np.testing.assert_array_equal(path.most_likely_position.values, steps * 2.0)


# ----------------------------------------------------------------- sequences


def test_sequences_with_ragged_lengths_match_single_runs():
    rng = np.random.default_rng(21)
    ll, A, p0 = random_model(rng, 60, 5)
    short = ll[:37] + 1.0
    padded = np.full_like(ll, np.nan)
    padded[:37] = short
    data = np.stack([ll, padded])
    coords = {"position": ("state_bins", np.arange(5) * 1.5),
              "state": ("state_bins", list("aabbb"))}
    many = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), data)},
                      coords={"sequence": ["long", "short"], **coords})
    initial = np.stack([p0, p0[::-1]])
    res = many.hmm.most_likely_sequence(transition=A, initial=initial, chunk_size=16,
                                        progress=False)
    assert res.most_likely_state_bin.dims == ("sequence", "time")
    np.testing.assert_array_equal(res.sequence_length.values, [60, 37])
    for s, (rows, first) in enumerate([(ll, p0), (short, p0[::-1])]):
        single = make_dataset(rows, **coords).hmm.most_likely_sequence(
            transition=A, initial=first, chunk_size=16, progress=False)
        n = len(rows)
        np.testing.assert_array_equal(res.most_likely_state_bin.values[s, :n],
                                      single.most_likely_state_bin.values)
        np.testing.assert_array_equal(res.most_likely_position.values[s, :n],
                                      single.most_likely_position.values)
        np.testing.assert_array_equal(res.most_likely_state.values[s, :n],
                                      single.most_likely_state.values)
        assert float(res.path_log_probability[s]) == float(single.path_log_probability)
    assert (res.most_likely_state_bin.values[1, 37:] == -1).all()
    assert np.isnan(res.most_likely_position.values[1, 37:]).all()
    assert (res.most_likely_state.values[1, 37:] == "").all()
    given_lengths = many.assign(sequence_length=("sequence", [60, 37]),
                                log_likelihood=(("sequence", "time", "state_bins"),
                                                np.nan_to_num(data, nan=5.0)))
    again = given_lengths.hmm.most_likely_sequence(transition=A, initial=initial,
                                                   chunk_size=16, progress=False)
    xr.testing.assert_identical(again.drop_attrs(), res.drop_attrs())
    via_dataarray = many.log_likelihood.hmm.most_likely_sequence(A, initial, chunk_size=16,
                                                                 progress=False)
    xr.testing.assert_identical(via_dataarray.drop_attrs(), res.drop_attrs())


def test_dataarray_accessor_and_memmap_sequences(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(8), 25, 4)
    ds = make_dataset(ll)
    want = ds.hmm.most_likely_sequence(transition=A, initial=p0, progress=False)
    got = ds.log_likelihood.hmm.most_likely_sequence(A, p0, progress=False)
    xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())
    pair = xr.concat([ds, ds], dim="sequence")
    res = pair.hmm.most_likely_sequence(transition=A, initial=p0, progress=False,
                                        memmap_dir=tmp_path / "many")
    assert (tmp_path / "many" / "batch-0000" / "path.dat").is_file()
    for s in range(2):
        np.testing.assert_array_equal(res.most_likely_state_bin.values[s],
                                      want.most_likely_state_bin.values)


def test_sequence_runs_resume_batch_by_batch(tmp_path):
    """One batch stopped after its first forward chunk, one never started: resume
    gives the same paths (a run killed mid-backtrack: test_killed_run_resumes...)."""
    rng = np.random.default_rng(12)
    many = xr.concat([make_dataset(random_model(rng, 40, 5)[0]) for _ in range(3)],
                     dim="sequence")
    _, A, p0 = random_model(rng, 40, 5)
    kw = dict(transition=A, initial=p0, chunk_size=8, progress=False, batch_size=2,
              memmap_dir=tmp_path / "run")
    first = many.hmm.most_likely_sequence(**kw)
    folders = sorted((tmp_path / "run").glob("batch-*"))
    assert [f.name for f in folders] == ["batch-0000", "batch-0001"]
    manifest = folders[0] / "manifest.json"
    data = json.loads(manifest.read_text())
    data.update(status="running", forward_done=1, backward_done=0)
    manifest.write_text(json.dumps(data))
    for extra in folders[1:]:
        shutil.rmtree(extra)
    # batch 0 continues from its checkpoint 1: a torn checkpoint is detected
    checkpoints = folders[0] / "max_checkpoints.dat"
    kept = checkpoints.read_bytes()
    row = len(kept) // 5  # 5 chunks of 8 steps: rows of equal size
    checkpoints.write_bytes(kept[:row] + bytes(row) + kept[2 * row:])
    with pytest.raises(xhmm.ResumeError, match="checkpoint 1 .* corrupt"):
        many.hmm.most_likely_sequence(resume=True, **kw)
    checkpoints.write_bytes(kept)
    resumed = many.hmm.most_likely_sequence(resume=True, **kw)
    np.testing.assert_array_equal(resumed.most_likely_state_bin.values,
                                  first.most_likely_state_bin.values)
    np.testing.assert_array_equal(resumed.path_log_probability.values,
                                  first.path_log_probability.values)
    assert json.loads(manifest.read_text())["status"] == "complete"
    with pytest.raises(xhmm.ResumeError, match="chunk_size"):
        many.hmm.most_likely_sequence(resume=True, **{**kw, "chunk_size": 16})


# -------------------------------------------------------------- operators, ties


def test_ties_go_to_the_lowest_index():
    A = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    op = dense_operator(A, np.float32, 1)
    values, argmax = op.max_predict(jax.numpy.asarray([[1.0, 1.0, 0.0]], np.float32))
    np.testing.assert_array_equal(np.asarray(values), [[0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(np.asarray(argmax), [[0, 0, 0]])  # 0 beats 1; all-zero: 0
    # Two equally likely paths end in bins 0 and 1: the path takes the lower one.
    ll = np.log(np.full((4, 3), 1 / 3))
    res = make_dataset(ll).hmm.most_likely_sequence(transition=A, initial=[0.5, 0.5, 0.0],
                                                    progress=False)
    np.testing.assert_array_equal(res.most_likely_state_bin.values, [0, 0, 0, 0])


def test_blocks_ties_across_states_go_to_the_lowest_bin():
    labels = np.array(["b", "a", "b", "a"])  # interleaved states: a permuted operator
    transition = Blocks([[0.5, 0.5], [0.5, 0.5]], {
        (s, t): Uniform() for s in "ab" for t in "ab"})
    plan = plan_transition(transition, state_labels=labels, is_interior=np.ones(4, bool),
                           n_time=5)
    with jax.enable_x64(True):
        op = plan.device(np.float64, 1)
        values, argmax = op.max_predict(jax.numpy.asarray([[0.2, 0.3, 0.3, 0.2]]), None)
    np.testing.assert_allclose(np.asarray(values), np.full((1, 4), 0.075))
    np.testing.assert_array_equal(np.asarray(argmax), [[1, 1, 1, 1]])


# ----------------------------------------------------------------- bad inputs


def test_impossible_path_names_the_first_impossible_step():
    A = np.eye(3)  # absorbing: the chain never leaves bin 0
    ll = np.zeros((6, 3))
    ll[4, 0] = -np.inf
    for compute in ("auto", "float32", "float64"):
        with pytest.raises(xhmm.LikelihoodError,
                           match="every path has probability zero at time index 4"):
            make_dataset(ll).hmm.most_likely_sequence(
                transition=A, initial=[1.0, 0, 0], compute_dtype=compute, progress=False)


def test_failed_memmap_run_is_marked_failed(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(2), 40, 4)
    ll[27, 1] = np.nan
    with pytest.raises(xhmm.LikelihoodError, match="NaN at time index 27, bin 1"):
        make_dataset(ll).hmm.most_likely_sequence(
            transition=A, initial=p0, chunk_size=8, memmap_dir=tmp_path / "m",
            progress=False)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "time index 27" in manifest["error"]


@pytest.mark.parametrize("change, error, fragment", [
    (lambda ds, A, p0: (ds, dict(initial=p0)), xhmm.InputError, "transition"),
    (lambda ds, A, p0: (ds, dict(transition=A.T * 1.5, initial=p0)), xhmm.TransitionError,
     "sums to"),
    (lambda ds, A, p0: (ds, dict(transition=A, initial=p0[:2])), xhmm.InitialError,
     "shape (2,)"),
    (lambda ds, A, p0: (ds, dict(transition=A, initial=p0, chunk_size=0)), xhmm.ConfigError,
     "chunk_size"),
    (lambda ds, A, p0: (ds.expand_dims(trial=2), dict(transition=A, initial=p0)),
     xhmm.DimensionError, "'trial'"),
])
def test_bad_inputs_are_named(tmp_path, monkeypatch, change, error, fragment):
    monkeypatch.chdir(tmp_path)
    ll, A, p0 = random_model(np.random.default_rng(1), 10, 4)
    ds, kwargs = change(make_dataset(ll), A, p0)
    with pytest.raises(error) as info:
        ds.hmm.most_likely_sequence(progress=False, **kwargs)
    assert fragment in str(info.value)


# ---------------------------------------------------------------- docs, CLI


def test_usage_example_runs():
    text = (ROOT / "docs" / "usage.md").read_text()
    section = text.split("## The most likely sequence", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/usage.md", "exec"), namespace)  # noqa: S102
    res = namespace["path"]
    assert {"most_likely_state_bin", "most_likely_position", "most_likely_state",
            "path_log_probability"} <= set(res.data_vars)


def test_cli_viterbi_writes_the_path(tmp_path, capsys):
    from xhmm.cli import main
    from xhmm.synthetic import simulate_decoding

    ds = simulate_decoding(1.0, seed=4)
    ds.to_netcdf(tmp_path / "full.nc", engine="h5netcdf")
    out = tmp_path / "path.nc"
    assert main(["viterbi", str(tmp_path / "full.nc"), "--out", str(out), "--chunk-size",
                 "200", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "xhmm viterbi: 500 time steps x 220 state bins" in stdout
    assert "path log-probability: " in stdout
    want = ds.hmm.most_likely_sequence(chunk_size=200, progress=False)
    with xr.open_dataset(out) as back:
        np.testing.assert_array_equal(back.most_likely_state_bin.values,
                                      want.most_likely_state_bin.values)
        assert float(back.path_log_probability) == float(want.path_log_probability)
