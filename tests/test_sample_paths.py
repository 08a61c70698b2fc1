"""Posterior path samples (``sample_paths``) against the exact path posterior.

References written here, independently of the kernels, in float64 NumPy:

* :func:`path_posterior`: the probability of every one of the ``K**T``
  paths of a tiny model, each scored as ``log initial[z_0] + sum_t log
  A_t[z_{t-1}, z_t] + sum_t ll[t, z_t]`` and normalised (no recursion);
* the smoothed marginals of :func:`conftest.reference_forward_backward`.

Statistical bounds (the draws are fixed by the seed, so each test is
deterministic; the bounds say how unlikely a failure of a correct sampler
is over the choice of seed):

* Total variation between the empirical distribution of ``n`` paths and
  the exact one: ``E[TV] <= 0.5 * sum_i sqrt(p_i (1 - p_i) / n)``, and
  changing one path moves TV by at most ``1 / n``, so by McDiarmid's
  inequality ``P(TV > E[TV] + eps) <= exp(-2 n eps**2)``; with
  ``eps = sqrt(ln(1e6) / (2 n))`` a correct sampler fails with probability
  below 1e-6.
* Per-step marginals: the count of paths in bin ``k`` at step ``t`` is
  Binomial(n, p); by Bernstein's inequality ``|p_hat - p| > (L / 3 +
  sqrt(L**2 / 9 + 2 n p (1 - p) L)) / n`` with ``L = ln(2e9)`` has
  probability below 1e-9 per cell (valid for small ``p`` too, where the
  normal approximation is not), below 1e-5 over every cell of a test; ``1e-5``
  more covers float32 filtering. A bin of probability 0 must never be drawn.
"""

from __future__ import annotations

import itertools
import json
import math
import signal

import numpy as np
import pytest
import xarray as xr

import xhmm
from conftest import make_dataset, random_model, reference_forward_backward, run_killed_child
from test_nld_movement import _kernel_cases
from test_transitions import _kind_engine
from test_viterbi import _grid_model, _sticky
from xhmm.config import Config
from xhmm.engine.sampler import run_sampler
from xhmm.transitions import Blocks, Dense, Identity, RandomWalk, Uniform, to_dense

# ------------------------------------------------------------------ references


def path_posterior(ll, matrices, p0):
    """Every path of a tiny model (rows, (K**T, T)) and its posterior probability.

    ``matrices(t)`` is the dense matrix moving step ``t`` to ``t + 1``.
    """
    T, K = ll.shape
    with np.errstate(divide="ignore"):
        log_a = [np.log(matrices(t)) for t in range(T - 1)]
        score_0 = np.log(np.asarray(p0, dtype=np.float64))
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    score = score_0[paths[:, 0]] + ll[0, paths[:, 0]]
    for t in range(1, T):
        score = score + log_a[t - 1][paths[:, t - 1], paths[:, t]] + ll[t, paths[:, t]]
    weights = np.exp(score - score.max())
    return paths, weights / weights.sum()


def tv_bound(p, n):
    """A TV distance a correct sampler exceeds with probability below 1e-6 (module doc)."""
    return 0.5 * np.sum(np.sqrt(p * (1 - p) / n)) + math.sqrt(math.log(1e6) / (2 * n))


def assert_marginals(drawn, smoothed):
    """Per-step bin frequencies of ``drawn`` (N, T) paths within the binomial bound."""
    n, (T, K) = drawn.shape[0], smoothed.shape
    freq = np.stack([np.bincount(drawn[:, t], minlength=K) for t in range(T)]) / n
    L = math.log(2e9)
    bound = (L / 3 + np.sqrt(L ** 2 / 9 + 2 * n * smoothed * (1 - smoothed) * L)) / n + 1e-5
    assert (np.abs(freq - smoothed) <= bound).all(), np.abs(freq - smoothed).max()
    assert not (freq[smoothed == 0] > 0).any()


def _varying_blocks_model():
    """Blocks over states a (2 bins, a random walk) and b (2 bins), discrete varying in time."""
    rng = np.random.default_rng(3)
    T = 6
    discrete = rng.random((T, 2, 2)) + np.eye(2)
    discrete[2] = [[1.0, 0.0], [0.5, 0.5]]  # an exact zero at one step
    discrete /= discrete.sum(axis=-1, keepdims=True)
    transition = Blocks(discrete, {("a", "a"): RandomWalk(2.0, np.array([0.0, 1.5])),
                                   ("a", "b"): Uniform(), ("b", "a"): Identity(),
                                   ("b", "b"): Dense([[0.7, 0.3], [0.2, 0.8]])})
    ds = make_dataset(rng.normal(size=(T, 4)) * 1.5, state=("state_bins", list("aabb")),
                      position=("state_bins", [0.0, 1.5, 0.0, 1.5]))
    return ds, transition, np.array([0.4, 0.1, 0.3, 0.2])


def tiny_case(name):
    """(Dataset, transition, initial, is_missing, matrices(t)) of a tiny model."""
    rng = np.random.default_rng(11)
    if name == "dense":
        A = np.array([[0.8, 0.2, 0.0], [0.1, 0.6, 0.3], [0.25, 0.0, 0.75]])
        ll = rng.normal(size=(7, 3)) * 1.5
        ll[2, 1] = -np.inf  # an impossible bin
        missing = np.zeros(7, bool)
        missing[4] = True  # a step without data: flat likelihood
        return make_dataset(ll), A, np.array([0.5, 0.3, 0.2]), missing, lambda t: A
    if name == "blocks":
        discrete = [[0.85, 0.15], [0.3, 0.7]]
        transition = Blocks(discrete, {("a", "a"): RandomWalk(1.0, np.array([0.0, 1.0])),
                                       ("a", "b"): Uniform(), ("b", "a"): Uniform(),
                                       ("b", "b"): Identity()})
        ds = make_dataset(rng.normal(size=(6, 4)) * 2, state=("state_bins", list("aabb")),
                          position=("state_bins", [0.0, 1.0, 0.0, 1.0]))
        dense = to_dense(transition, ds)
        return ds, transition, np.full(4, 0.25), None, lambda t: dense
    ds, transition, p0 = _varying_blocks_model()
    return ds, transition, p0, None, lambda t: to_dense(transition, ds, time_index=t)


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("name", ["dense", "blocks", "time-varying"])
def test_path_distribution_matches_enumeration(name):
    ds, transition, p0, missing, matrices = tiny_case(name)
    n = 100_000
    res = xhmm.sample_paths(ds, transition, p0, is_missing=missing, n_samples=n, seed=5,
                            chunk_size=4, progress=False)
    drawn = res.sampled_state_bin.values
    assert drawn.shape == (n, ds.sizes["time"]) and drawn.dtype == np.int32
    ll = np.where(missing[:, None], 0.0, ds.log_likelihood.values) if missing is not None \
        else ds.log_likelihood.values
    paths, p = path_posterior(ll, matrices, p0)
    K = ll.shape[1]
    code = drawn @ K ** np.arange(ds.sizes["time"])[::-1]
    empirical = np.bincount(code, minlength=K ** ds.sizes["time"]) / n
    assert not (empirical[p == 0] > 0).any(), "a path of probability zero was drawn"
    tv = 0.5 * np.abs(empirical - p).sum()
    assert tv <= tv_bound(p, n), (tv, tv_bound(p, n))
    # the marginal log-likelihood is the evidence the enumeration normalises
    want = reference_forward_backward(ll, [matrices(t) for t in range(len(ll) - 1)], p0)[2]
    np.testing.assert_allclose(float(res.marginal_log_likelihood), want, rtol=1e-5)
    if "state" in ds.coords:
        labels = ds.state.values
        np.testing.assert_array_equal(res.sampled_state.values, labels[drawn])
        np.testing.assert_array_equal(res.sampled_position.values,
                                      ds.position.values[drawn])


@pytest.mark.parametrize("n_sequences", [1, 2])  # with and without the stored transpose
def test_dense_columns_are_the_pullback_of_one_hot_rows(n_sequences):
    """The sampler reads a dense matrix's columns instead of multiplying one-hot rows."""
    import jax
    import jax.numpy as jnp

    from xhmm.engine.runstate import precision
    from xhmm.kernels.operators import dense_operator

    rng = np.random.default_rng(3)
    matrix = rng.dirichlet(np.ones(9), size=9)
    j = np.array([4, 0, 8, 4])
    with precision("float64"):
        operator = dense_operator(matrix, np.float64, n_sequences)
        read = np.asarray(operator.columns(jnp.asarray(j)))
        pulled = np.asarray(operator.pullback(jax.nn.one_hot(j, 9, dtype=jnp.float64)))
    np.testing.assert_array_equal(read, matrix[:, j].T)
    np.testing.assert_array_equal(read, pulled)


def test_a_wrong_backward_step_fails_the_bound():
    """The bound can fail: paths drawn step by step from the smoothed marginals (each
    marginal right, the joint wrong) are far from the path posterior."""
    ds, transition, p0, _, matrices = tiny_case("blocks")
    ll = ds.log_likelihood.values
    paths, p = path_posterior(ll, matrices, p0)
    smoothed = reference_forward_backward(ll, [matrices(t) for t in range(len(ll) - 1)],
                                          p0)[1]
    n = 100_000
    rng = np.random.default_rng(0)
    drawn = np.stack([rng.choice(4, n, p=row) for row in smoothed], axis=1)
    empirical = np.bincount(drawn @ 4 ** np.arange(len(ll))[::-1], minlength=4 ** len(ll)) / n
    assert 0.5 * np.abs(empirical - p).sum() > tv_bound(p, n)


def test_marginals_match_the_smoothed_posterior_on_a_larger_model():
    """A 2-D grid model (exterior bins, time-varying discrete): every step's frequencies."""
    rng = np.random.default_rng(4)
    T = 120
    ds, transition, p0, mask = _grid_model(rng, _sticky(rng, (T, 4, 4)), T)
    n = 2_000
    res = ds.hmm.sample_paths(transition=transition, initial=p0, n_samples=n, seed=9,
                              chunk_size=32, progress=False)
    dense = [to_dense(transition, ds, time_index=t)[np.ix_(mask, mask)] for t in range(T - 1)]
    _, smoothed, evidence = reference_forward_backward(ds.log_likelihood.values[:, mask],
                                                       dense, p0[mask])
    interior = np.cumsum(mask) - 1  # state bin -> interior bin
    drawn = res.sampled_state_bin.values
    assert mask[drawn].all()
    assert_marginals(interior[drawn], smoothed)
    np.testing.assert_allclose(float(res.marginal_log_likelihood), evidence, rtol=1e-5)
    on_grid = np.isin(res.sampled_state.values, ["cont", "frag"])
    np.testing.assert_array_equal(np.isnan(res.sampled_x.values), ~on_grid)


def _check_kind(ll, p0, dense, sample):
    """``sample(ll, p0)`` (N, T) paths against the smoothed marginals of ``dense[t]``."""
    drawn = sample(ll, p0)
    assert_marginals(drawn, reference_forward_backward(ll, dense, p0)[1])
    for t in range(len(ll) - 1):
        assert (dense[t][drawn[:, t], drawn[:, t + 1]] > 0).all()


# The device kinds the tests above do not run: the dense operator, dense,
# uniform and identity blocks and a time-varying discrete run in the tiny
# models, the separable random walk in the grid model, tiled blocks in the
# movement kinds below.
@pytest.mark.parametrize("kind", ["banded", "rank-one", "identity into more bins"])
def test_every_operator_kind_samples_the_posterior(kind):
    """Each device operator samples through its pullback: marginals within the
    binomial bound, no step of probability zero."""
    engine = _kind_engine(kind)
    K, T = engine.n_bins, 4
    varying = callable(getattr(engine, "matrix", None))
    dense = [engine.matrix(t) if varying else engine.matrix for t in range(T - 1)]

    def sample(ll, p0):
        res = run_sampler(ll[None], engine, p0, Config(chunk_size=3, progress=False),
                          n_samples=2_000, seed=1)
        return res.paths[0].T

    _check_kind(np.random.default_rng(7).normal(size=(T, K)) * 2, np.full(K, 1 / K), dense,
                sample)


@pytest.fixture(scope="module")
def movement_blocks():
    return _kernel_cases()


@pytest.mark.parametrize("name", [  # make test: track_graph; make test-all: every kind
    pytest.param("directional", marks=pytest.mark.slow), "track_graph",
    pytest.param("empirical_1d", marks=pytest.mark.slow)])
def test_every_movement_kind_samples_the_posterior(movement_blocks, name):
    """non_local_detector's movement blocks (banded and tiled products) through the API."""
    block, interior = movement_blocks[name]
    n, T = interior.size, 4
    ds = make_dataset(np.random.default_rng(8).normal(size=(T, n)) * 2, interior,
                      state=("state_bins", ["s"] * n))
    transition = Blocks([[1.0]], {("s", "s"): block})
    mask = np.asarray(interior, bool)
    dense = [to_dense(transition, ds)[np.ix_(mask, mask)]] * (T - 1)
    columns = np.flatnonzero(mask)

    def sample(ll, p0):
        res = ds.hmm.sample_paths(transition=transition, initial=np.where(mask, 1.0, 0) /
                                  mask.sum(), n_samples=2_000, seed=2, chunk_size=3,
                                  progress=False)
        return np.searchsorted(columns, res.sampled_state_bin.values)

    _check_kind(ds.log_likelihood.values[:, mask], np.full(mask.sum(), 1 / mask.sum()),
                dense, sample)


# ------------------------------------------------------------ reproducibility


def test_a_seed_gives_the_same_paths_for_any_chunk_size_and_storage(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(2), 40, 5)
    ds = make_dataset(ll, position=("state_bins", np.arange(5) * 2.0))
    kw = dict(transition=A, initial=p0, n_samples=200, progress=False)
    want = ds.hmm.sample_paths(seed=3, chunk_size=40, **kw)
    for chunk in (1, 7):
        got = ds.hmm.sample_paths(seed=3, chunk_size=chunk, **kw)
        np.testing.assert_array_equal(got.sampled_state_bin.values,
                                      want.sampled_state_bin.values, err_msg=f"{chunk}")
    disk = ds.hmm.sample_paths(seed=3, chunk_size=7, memmap_dir=tmp_path / "run", **kw)
    assert disk.sampled_state_bin.chunks is not None  # dask over the paths' file
    assert (tmp_path / "run" / "path.dat").stat().st_size == 40 * 200 * 4
    xr.testing.assert_identical(disk.compute().drop_attrs(), want.drop_attrs())
    assert disk.attrs["xhmm_seed"] == 3
    with pytest.raises(xhmm.InputError, match="holds a sample_paths run"):
        xhmm.open_run(tmp_path / "run")
    other = ds.hmm.sample_paths(seed=4, chunk_size=40, **kw).sampled_state_bin.values
    assert (other != want.sampled_state_bin.values).mean() > 0.3
    # the paths are different draws, not copies of one path
    assert len({tuple(row) for row in want.sampled_state_bin.values}) > 100


def test_sequences_batches_and_ragged_lengths():
    rng = np.random.default_rng(21)
    ll, A, p0 = random_model(rng, 30, 4)
    short = np.full_like(ll, np.nan)
    short[:17] = ll[:17] + 1.0
    coords = {"position": ("state_bins", np.arange(4) * 1.5),
              "state": ("state_bins", list("aabb"))}
    many = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"),
                                          np.stack([ll, short, ll]))},
                      coords={"sequence": ["x", "y", "z"], **coords})
    kw = dict(transition=A, initial=p0, n_samples=300, seed=8, chunk_size=8, progress=False)
    res = many.hmm.sample_paths(**kw)
    assert res.sampled_state_bin.dims == ("sequence", "sample", "time")
    np.testing.assert_array_equal(res.sequence_length.values, [30, 17, 30])
    evidence = "marginal_log_likelihood"  # float32 products of other batch shapes round
    for batch_size in (1, 2):
        again = many.hmm.sample_paths(batch_size=batch_size, **kw)
        xr.testing.assert_identical(again.drop_vars(evidence).drop_attrs(),
                                    res.drop_vars(evidence).drop_attrs())
        np.testing.assert_allclose(again[evidence], res[evidence], rtol=1e-6)
    single = make_dataset(ll, **coords).hmm.sample_paths(**kw)
    for name in ("sampled_state_bin", "sampled_position", "sampled_state"):
        np.testing.assert_array_equal(res[name].values[0], single[name].values)
    # sequences x and z hold the same data but draw their own paths
    assert (res.sampled_state_bin.values[0] != res.sampled_state_bin.values[2]).any()
    drawn = res.sampled_state_bin.values[1]
    assert (drawn[:, 17:] == -1).all() and (drawn[:, :17] >= 0).all()
    assert np.isnan(res.sampled_position.values[1, :, 17:]).all()
    assert (res.sampled_state.values[1, :, 17:] == "").all()
    assert_marginals(drawn[:, :17], reference_forward_backward(short[:17], A, p0)[1])
    via_dataarray = many.log_likelihood.hmm.sample_paths(A, p0, **{
        k: v for k, v in kw.items() if k not in ("transition", "initial")})
    xr.testing.assert_identical(via_dataarray.drop_attrs(), res.drop_attrs())


def test_batches_as_dask_distributed_tasks_draw_the_same_paths(tmp_path):
    distributed = pytest.importorskip("distributed")
    ll, A, p0 = random_model(np.random.default_rng(9), 50, 4)
    many = xr.concat([make_dataset(ll), make_dataset(ll[::-1].copy())], dim="sequence")
    kw = dict(transition=A, initial=p0, n_samples=20, seed=4, chunk_size=16,
              batch_size=1, progress=False)
    local = many.hmm.sample_paths(client=False, **kw).sampled_state_bin.values
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as client:
        in_ram = many.hmm.sample_paths(client=client, **kw)
        on_disk = many.hmm.sample_paths(client=client, memmap_dir=tmp_path / "run", **kw)
        np.testing.assert_array_equal(in_ram.sampled_state_bin.values, local)
        np.testing.assert_array_equal(on_disk.sampled_state_bin.values, local)
    assert (tmp_path / "run" / "batch-0001" / "path.dat").is_file()


def test_callers_names_are_kept():
    ll, A, p0 = random_model(np.random.default_rng(6), 12, 3)
    res = xhmm.sample_paths(ll, A, p0, dims=("t", "bins"), time_dim="t", state_dim="bins",
                            n_samples=2, seed=0, progress=False)
    assert res.sampled_state_bin.dims == ("sample", "t")
    assert res.attrs["xhmm_time_dim"] == "t"


T_KILL, K_KILL, CHUNK_KILL = 240, 9, 16


@pytest.mark.parametrize("kill_at, passes", [
    # the forward pass is the decoder's, resumed in test_viterbi too: `make test-all`
    pytest.param(1, "forward", marks=pytest.mark.slow), (2, "sampling")])
def test_killed_run_resumes_with_the_identical_paths(tmp_path, kill_at, passes):
    """The first read of block 10 is the forward pass, the second the sampling pass's."""
    folder = tmp_path / "run"
    call = (f"ds.hmm.sample_paths(transition=A, initial=p0, chunk_size={CHUNK_KILL}, "
            "n_samples=50, seed=2, memmap_dir=folder, progress=False)")
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
    kw = dict(transition=A, initial=p0, chunk_size=CHUNK_KILL, n_samples=50, progress=False)
    with pytest.raises(xhmm.ResumeError, match="input seed differs"):
        ds.hmm.sample_paths(memmap_dir=folder, resume=True, seed=3, **kw)
    resumed = ds.hmm.sample_paths(memmap_dir=folder, resume=True, seed=2, **kw)
    fresh = ds.hmm.sample_paths(seed=2, **kw)
    np.testing.assert_array_equal(resumed.sampled_state_bin.values,
                                  fresh.sampled_state_bin.values)
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"


def test_resume_refuses_a_viterbi_run(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(0), 30, 4)
    ds = make_dataset(ll)
    ds.hmm.most_likely_sequence(transition=A, initial=p0, memmap_dir=tmp_path / "run",
                                progress=False)
    with pytest.raises(xhmm.ResumeError, match="it holds a most_likely_sequence run, and a "
                       "sample_paths run was asked for"):
        ds.hmm.sample_paths(transition=A, initial=p0, n_samples=3, seed=0, resume=True,
                            memmap_dir=tmp_path / "run", progress=False)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("n_samples, seed, fragment", [
    (0, 1, "n_samples must be a positive int, got 0"),
    (2.5, 1, "n_samples must be a positive int, got 2.5"),
    (True, 1, "n_samples must be a positive int, got True"),
    (3, -1, "seed must be an int from 0 to 2**63 - 1, got -1"),
    (3, 2 ** 63, "seed must be an int from 0 to 2**63 - 1, got 9223372036854775808"),
    (3, "7", "seed must be an int from 0 to 2**63 - 1, got '7'"),
])
def test_bad_n_samples_and_seed_are_named(n_samples, seed, fragment):
    ll, A, p0 = random_model(np.random.default_rng(1), 10, 3)
    with pytest.raises(xhmm.InputError) as info:
        xhmm.sample_paths(ll, A, p0, n_samples=n_samples, seed=seed, progress=False)
    assert str(info.value) == fragment


def test_large_seed_uses_all_its_bits():
    ll, A, p0 = random_model(np.random.default_rng(1), 10, 3)
    kw = dict(n_samples=50, progress=False)
    low = xhmm.sample_paths(ll, A, p0, seed=5, **kw).sampled_state_bin.values
    high = xhmm.sample_paths(ll, A, p0, seed=5 + 2 ** 40, **kw).sampled_state_bin.values
    assert (low != high).any()


# ----------------------------------------------------------------------- CLI


def test_cli_sample_writes_the_paths(tmp_path, capsys):
    from xhmm.cli import main
    from xhmm.synthetic import simulate_decoding

    ds = simulate_decoding(1.0, seed=4)
    ds.to_netcdf(tmp_path / "full.nc", engine="h5netcdf")
    out = tmp_path / "samples.nc"
    assert main(["sample", str(tmp_path / "full.nc"), "--out", str(out), "--n-samples", "3",
                 "--seed", "11", "--chunk-size", "200", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "xhmm sample: 500 time steps x 220 state bins" in stdout
    assert "3 paths, seed 11" in stdout
    want = ds.hmm.sample_paths(n_samples=3, seed=11, chunk_size=200, progress=False)
    with xr.open_dataset(out) as back:
        np.testing.assert_array_equal(back.sampled_state_bin.values,
                                      want.sampled_state_bin.values)
