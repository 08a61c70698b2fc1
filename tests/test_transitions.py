"""Structured transitions: Blocks, their operators, time-varying discrete, analysis.

Every product is checked in float64 against the dense matrix the transition
stands for, built here independently from the definitions (uniform rows,
identity, the given matrix, and non_local_detector's random-walk formula
evaluated with scipy): ``rtol = 1e-12`` (a handful of float64 roundings in
sums of at most a few hundred terms).
"""

from __future__ import annotations

import json

import dask.array as da
import jax
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from conftest import examples, make_dataset, reference_forward_backward
from xhmm.transitions.dense_transition import DenseTransition
from xhmm.errors import DimensionError, InputError, TransitionError
from xhmm.kernels.operators import DenseOperator
from xhmm.transitions.identity import IdentityBlock
from xhmm.transitions.matrix import BandedBlock, DenseBlock
from xhmm.transitions.random_walk import SeparableBlock
from xhmm.transitions.uniform import RankOneBlock
from xhmm.transitions import (
    Blocks,
    Dense,
    Identity,
    RandomWalk,
    Uniform,
    from_spec,
    stored_transition,
    to_dense,
    to_spec,
    with_transition,
)
from xhmm.transitions.analyse import analyse_dense
from xhmm.transitions.plan import plan_transition
from xhmm.transitions.spec import SPEC_ATTR
from xhmm.transitions.structured import StructuredTransition

RTOL = 1e-12
ATOL = 1e-15


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def nld_random_walk(centers, interior_from, interior_to, var, mean):
    """non_local_detector's random walk written from its definition.

    Column ``j`` is the pdf of N(c_j + mean, var * I) evaluated at every
    centre, so ``w[i, j]`` = pdf of ``c_i - c_j`` under N(mean, var * I);
    zero where ``i`` or ``j`` is exterior, rows normalised; returned over
    interior bins.
    """
    n, n_dims = centers.shape
    w = np.zeros((n, n))
    for j in range(n):
        w[:, j] = multivariate_normal(mean=centers[j] + mean, cov=var * np.eye(n_dims)).pdf(
            centers).reshape(n)
    w[~interior_from] = 0
    w[:, ~interior_to] = 0
    w = w[interior_from][:, interior_to]
    return w / w.sum(axis=1, keepdims=True)


def grid_centers(nx, ny, dx=2.0, dy=1.5):
    xs, ys = np.meshgrid(np.arange(nx) * dx, np.arange(ny) * dy, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def plan(transition, labels, mask, n_time=10):
    return plan_transition(transition, state_labels=np.asarray(labels),
                           is_interior=np.asarray(mask, dtype=bool), n_time=n_time)


@jax.jit
def _products(op, p, rows, x, xs):
    return op.predict(p, x), op.pullback(p, x), op.predict_chunk(rows, xs), op.max_predict(p, x)


def check_max_product(p, A, values, argmax, rtol):
    """``max_predict`` against ``max_i p[b, i] A[i, j]`` (its argmax int32, lowest on ties).

    Where the two best products of the reference are closer than the
    rounding allowed, either is a right answer; elsewhere the index must
    be the reference's.
    """
    products = p[:, :, None] * A[None]
    best = products.max(axis=1)
    np.testing.assert_allclose(values, best, rtol=rtol, atol=ATOL)
    assert argmax.dtype == np.int32
    chosen = np.take_along_axis(products, argmax[:, None, :].astype(np.int64), axis=1)[:, 0]
    np.testing.assert_allclose(chosen, best, rtol=2 * rtol, atol=ATOL)
    runner_up = np.sort(products, axis=1)[:, -2] if A.shape[0] > 1 else np.zeros_like(best)
    clear = best - runner_up > 4 * rtol * best
    np.testing.assert_array_equal(argmax[clear], products.argmax(axis=1)[clear])


@jax.jit
def _every_column(op, p, x):
    """``max_column`` at every to-bin (row ``b`` at ``(j + 7 b) % K``) and ``max_predict``."""
    n_seq, n_bins = p.shape

    def at(j):
        return op.max_column(p, (j + 7 * jax.numpy.arange(n_seq, dtype=np.int32)) % n_bins, x)

    return jax.vmap(at)(jax.numpy.arange(n_bins, dtype=np.int32)), op.max_predict(p, x)


def tie_rows(rng, n_bins, dtype):
    """Messages with ties: continuous, three values (many ties, zeros), all zero."""
    return np.stack([rng.random(n_bins), rng.integers(0, 3, n_bins) / 2,
                     np.zeros(n_bins)]).astype(dtype)


def check_max_column(op, p, x=None):
    """``max_column`` is ``max_predict``'s entry ``j[b]``, bit for bit, at every ``j``.

    Both the maximum and the argmax (the Viterbi backtrack's pointer must be
    the one the full ``max_predict`` would give, ties included), each row
    ``b`` of ``p`` at its own to-bin.
    """
    (values, argmax), (all_values, all_argmax) = _every_column(op, p, x)
    n_seq, n_bins = p.shape
    rows = np.arange(n_seq)[None, :]
    j = (np.arange(n_bins)[:, None] + 7 * rows) % n_bins
    assert np.asarray(argmax).dtype == np.int32
    np.testing.assert_array_equal(np.asarray(argmax), np.asarray(all_argmax)[rows, j])
    np.testing.assert_array_equal(np.asarray(values), np.asarray(all_values)[rows, j])


def check_products(engine, matrices, rng, x=None, xs=None, dtype=np.float64, rtol=RTOL):
    """predict / pullback / predict_chunk / max_predict against dense matrices (one per row),
    and ``max_column`` against ``max_predict`` (random and tied messages).

    ``x`` is the input of a single step (whose matrix is ``matrices[0]``),
    ``xs`` those of the chunk rows.
    """
    K = engine.n_bins
    A = matrices[0]
    for n_seq in (1, 3):
        op = engine.device(dtype, n_seq)
        p = rng.random((n_seq, K))
        rows = rng.random((n_seq, len(matrices), K))
        cast = (lambda a: None if a is None else np.asarray(a, dtype=dtype))
        predicted, pulled, chunk, (maxima, argmax) = _products(
            op, cast(p), cast(rows), cast(x), cast(xs))
        expected = np.stack([rows[:, i] @ M for i, M in enumerate(matrices)], axis=1)
        np.testing.assert_allclose(predicted, p @ A, rtol=rtol, atol=ATOL)
        np.testing.assert_allclose(pulled, p @ A.T, rtol=rtol, atol=ATOL)
        np.testing.assert_allclose(chunk, expected, rtol=rtol, atol=ATOL)
        check_max_product(p, A, np.asarray(maxima), np.asarray(argmax), rtol)
        check_max_column(op, cast(p), cast(x))
        check_max_column(op, tie_rows(rng, K, dtype), cast(x))


def _kind_engine(kind):
    """The engine transition of one operator kind, with entries that tie."""
    rng = np.random.default_rng(21)
    if kind == "dense":  # three values: many products tie
        return DenseTransition(rng.integers(0, 3, (40, 40)) / 4)
    if kind in ("dense block", "banded", "separable"):
        if kind == "dense block":  # every row a permutation of one row: ties across rows
            base = rng.integers(0, 3, 30).astype(float)
            block = Dense(np.stack([rng.permutation(base) for _ in range(30)]) / base.sum())
            n = 30
        else:  # a random walk without drift is symmetric: ties between mirror bins
            centers = grid_centers(6, 5) if kind == "separable" else np.arange(400) * 2.0
            n = len(centers)
            block = RandomWalk(6.0, centers)
        return plan(Blocks([[1.0]], {("a", "a"): block}), ["a"] * n, np.ones(n, bool))
    if kind == "rank-one":
        A, labels = contfrag_dense(200, [[0.9, 0.1], [0.0, 1.0]])
        return plan_transition(A, state_labels=labels, is_interior=np.ones(400, bool),
                               n_time=5)
    if kind in ("uniform", "identity"):  # interleaved states, exterior bins
        block = Uniform() if kind == "uniform" else Identity()
        labels = np.array(list("abab" * 6))
        mask = np.ones(24, bool)
        mask[[4, 5]] = False
        return plan(Blocks([[0.5, 0.5], [0.5, 0.5]], {
            (s, t): block for s in "ab" for t in "ab"}), labels, mask)
    if kind == "identity into more bins":
        return plan(Blocks([[0.5, 0.5], [0.0, 1.0]], {
            ("a", "a"): Uniform(), ("a", "b"): Identity(), ("b", "b"): Uniform()}),
            list("aaabbb"), np.array([1, 0, 1, 1, 1, 1], dtype=bool))
    labels, mask, _ = nonlocal_layout()  # time-varying
    return plan(nonlocal_blocks(varying_discrete(rng, 4)), labels, mask, n_time=4)


def _runs(op, kind):
    """Whether the operator runs the kind's block (or is dense)."""
    wanted = {
        "dense": lambda: isinstance(op, DenseOperator),
        "dense block": lambda: isinstance(op.blocks[0], DenseBlock),
        "banded": lambda: isinstance(op.blocks[0], BandedBlock),
        "separable": lambda: isinstance(op.blocks[0], SeparableBlock),
        "rank-one": lambda: any(isinstance(b, RankOneBlock) and b.vector is not None
                                for b in op.blocks),
        "uniform": lambda: all(isinstance(b, RankOneBlock) and b.vector is None
                               for b in op.blocks),
        "identity": lambda: all(isinstance(b, IdentityBlock) and b.to_from is None
                                for b in op.blocks),
        "identity into more bins": lambda: any(
            isinstance(b, IdentityBlock) and b.to_from is not None for b in op.blocks),
        "time-varying": lambda: op.discrete is None,
    }
    return wanted[kind]()


@pytest.mark.parametrize("dtype", [np.float32,
                                   # the same in float64: `make test-all`
                                   pytest.param(np.float64, marks=pytest.mark.slow)])
@pytest.mark.parametrize("kind", ["dense", "dense block", "banded", "separable", "rank-one",
                                  "uniform", "identity", "identity into more bins",
                                  "time-varying"])
def test_max_column_is_the_column_of_max_predict(kind, dtype):
    """The Viterbi backtrack's one-column argmax of every operator kind, ties and zeros
    included, equals the entry of the full ``max_predict`` (values bit for bit)."""
    engine = _kind_engine(kind)
    x = engine.step_inputs(1, 2, dtype)
    x = None if x is None else x[0]
    rng = np.random.default_rng(22)
    for n_seq in (1, 3):  # one sequence: the dense matrices' transposed copies
        op = engine.device(dtype, n_seq)
        assert _runs(op, kind)
        rows = tie_rows(rng, engine.n_bins, dtype)
        check_max_column(op, rows[1:2] if n_seq == 1 else rows, x)


def _tied_blocks(rng, dtype):
    """One kernel block of each kind, entries from three values (exact ties), by hand."""
    def tied(*shape):
        return jax.numpy.asarray(rng.integers(0, 3, shape) / 4, dtype)

    def bins(n_cells, holes):
        inside = np.setdiff1d(np.arange(n_cells), holes).astype(np.int32)
        cells = np.full(n_cells, inside.size, np.int32)
        cells[inside] = np.arange(inside.size)
        return jax.numpy.asarray(cells), jax.numpy.asarray(inside)

    from_cells, from_bins = bins(12, [5])
    to_cells, to_bins = bins(12, [0, 7])
    to_from = jax.numpy.asarray([2, 4, 0, 4], np.int32)  # 4: no from-bin moves there
    return {
        "rank-one": (RankOneBlock(tied(9), 9), 6),
        "uniform": (RankOneBlock(None, 9), 6),
        "identity": (IdentityBlock(None, None), 6),
        "identity into more bins": (IdentityBlock(to_from, None), 4),
        "dense block": (DenseBlock(tied(6, 9), None), 6),
        "separable": (SeparableBlock(tied(4, 4), tied(3, 3), jax.numpy.ones(11, dtype),
                                     from_cells, from_bins, to_cells, to_bins, (4, 3)), 11),
        "banded": (BandedBlock(tied(3, 8, 24), tied(3, 8, 24), 18), 18),  # tiles of 8 bins
    }


@pytest.mark.parametrize("kind", ["rank-one", "uniform", "identity", "identity into more bins",
                                  "dense block", "separable", "banded"])
def test_block_max_column_is_the_column_of_max_forward(kind):
    """Each block's ``max_column`` is its ``max_forward``'s entry, with many exact ties
    (every stage of the random walk, every window row of a banded block)."""
    rng = np.random.default_rng(23)
    for dtype in (np.float32, np.float64):
        block, n_from = _tied_blocks(rng, dtype)[kind]
        p = jax.numpy.asarray(tie_rows(rng, n_from, dtype))
        values, source = block.max_forward(p)
        n_to = block.n_to if isinstance(block, RankOneBlock) else None
        values, source = (np.broadcast_to(a, (3, n_to or a.shape[-1])) for a in (values, source))
        for j in range(values.shape[1]):
            column = jax.numpy.asarray((j + np.arange(3)) % values.shape[1], np.int32)
            got = block.max_column(p, column)
            want = np.arange(3), np.asarray(column)
            np.testing.assert_array_equal(np.asarray(got[1]), source[want])
            np.testing.assert_array_equal(np.asarray(got[0]), values[want])


# ---------------------------------------------------------------- NonLocal model

NX, NY = 5, 4
HOLE = [3, 7, 8]
STATES = ["local", "cont", "no_spike", "frag"]


def nonlocal_layout():
    """Local (1 bin), Continuous (grid), No-Spike (1 bin), Fragmented (grid)."""
    n = NX * NY
    inside = np.ones(n, dtype=bool)
    inside[HOLE] = False
    labels = ["local"] + ["cont"] * n + ["no_spike"] + ["frag"] * n
    mask = np.concatenate([[True], inside, [True], inside])
    return np.array(labels), mask, inside


def nonlocal_blocks(discrete, mean=(0.5, -0.2)):
    blocks = {(a, b): Uniform() for a in STATES for b in STATES}
    blocks["local", "local"] = Identity()
    blocks["no_spike", "no_spike"] = Identity()
    blocks["cont", "cont"] = RandomWalk(3.0, grid_centers(NX, NY), movement_mean=mean)
    return Blocks(discrete, blocks)


def nonlocal_discrete(rng, zeros=((0, 3), (2, 1))):
    d = rng.random((4, 4)) + 0.1
    for s, t in zeros:
        d[s, t] = 0
    return d / d.sum(axis=1, keepdims=True)


def expected_nonlocal(d, inside):
    """The NonLocal transition over interior bins, from the definitions."""
    n = int(inside.sum())
    sizes = [1, n, 1, n]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    A = np.zeros((offsets[-1], offsets[-1]))
    rw = nld_random_walk(grid_centers(NX, NY), inside, inside, 3.0, np.array([0.5, -0.2]))
    for s in range(4):
        for t in range(4):
            block = np.full((sizes[s], sizes[t]), 1 / sizes[t])
            if (s, t) == (1, 1):
                block = rw
            A[offsets[s]:offsets[s + 1], offsets[t]:offsets[t + 1]] = d[s, t] * block
    return A


def test_nonlocal_products_match_dense():
    rng = np.random.default_rng(0)
    labels, mask, inside = nonlocal_layout()
    d = nonlocal_discrete(rng)
    engine = plan(nonlocal_blocks(d), labels, mask)
    A = expected_nonlocal(d, inside)
    np.testing.assert_allclose(A.sum(axis=1), 1, rtol=1e-13)
    np.testing.assert_allclose(engine.matrix(), A, rtol=RTOL, atol=ATOL)
    check_products(engine, [A, A], rng)
    assert engine.step_inputs(0, 5, np.float64) is None
    plan_text = engine.describe()["blocks"]
    assert "cont->cont: separable 5x4" in plan_text
    assert "local->frag" not in plan_text  # zero discrete entry: no block
    assert "local->local: uniform" in plan_text  # any block into one bin


def test_float32_products_within_rounding():
    """The float32 operator (what runs by default) within a few float32 roundings."""
    rng = np.random.default_rng(13)
    labels, mask, inside = nonlocal_layout()
    T = 4
    d = varying_discrete(rng, T)
    engine = plan(nonlocal_blocks(d), labels, mask, n_time=T)
    xs = engine.step_inputs(1, 3, np.float32)
    matrices = [expected_nonlocal(d[t], inside) for t in range(3)]
    check_products(engine, matrices, rng, x=xs[0], xs=xs, dtype=np.float32, rtol=1e-5)


def test_to_dense_over_all_state_bins():
    rng = np.random.default_rng(1)
    labels, mask, inside = nonlocal_layout()
    d = nonlocal_discrete(rng)
    ds = make_dataset(np.zeros((6, mask.size)), mask, state=("state_bins", labels))
    full = to_dense(nonlocal_blocks(d), ds)
    assert full.shape == (mask.size, mask.size)
    assert not full[~mask].any() and not full[:, ~mask].any()
    np.testing.assert_allclose(full[np.ix_(mask, mask)], expected_nonlocal(d, inside),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "centers, kind",
    [
        (grid_centers(6, 5), "separable 6x5"),
        (grid_centers(6, 5) + np.random.default_rng(2).normal(0, 0.1, (30, 2)), "dense"),
        (np.arange(30.0)[:, None] * 1.7, "dense"),
    ],
    ids=["grid", "scattered", "1-D"],
)
def test_random_walk_matches_nld_formula(centers, kind):
    n = centers.shape[0]
    inside = np.ones(n, dtype=bool)
    inside[[0, 11, 12, 17]] = False
    mean = np.full(centers.shape[1], 0.7)
    transition = Blocks([[1.0]], {("a", "a"): RandomWalk(4.0, centers, movement_mean=mean)})
    engine = plan(transition, ["a"] * n, inside)
    assert engine.describe()["blocks"].startswith(f"a->a: {kind}")
    A = nld_random_walk(centers, inside, inside, 4.0, mean)
    np.testing.assert_allclose(engine.matrix(), A, rtol=1e-11, atol=ATOL)
    check_products(engine, [A], np.random.default_rng(3))


def test_random_walk_mean_has_non_local_detectors_sign():
    """nld's pdf(c_i - c_j; mean): a positive mean moves towards smaller coordinates."""
    centers = np.arange(10.0)
    for mean, target in ((2.0, 3), (-2.0, 7)):
        rw = Blocks([[1.0]], {("a", "a"): RandomWalk(1.0, centers, movement_mean=mean)})
        matrix = plan(rw, ["a"] * 10, np.ones(10, bool)).matrix()
        assert int(np.argmax(matrix[5])) == target


def _reach(matrix):
    """Largest ``|column - row|`` of a non-zero entry."""
    rows, cols = np.nonzero(matrix)
    return int(np.abs(cols - rows).max())


def test_banded_blocks_skip_only_zero_entries():
    """Blocks whose entries beyond a band are exactly zero run as windowed tiles
    of at least the band's reach, in both dtypes (float64 keeps a wider band)."""
    n = 400
    centers = np.arange(n) * 2.0
    inside = np.ones(n, dtype=bool)
    inside[[0, 150, 151]] = False
    rw = Blocks([[1.0]], {("a", "a"): RandomWalk(6.0, centers, movement_mean=1.0)})
    engine = plan(rw, ["a"] * n, inside)
    A = nld_random_walk(centers[:, None], inside, inside, 6.0, 1.0)
    reach32 = _reach(A.astype(np.float32))
    assert 10 < reach32 < _reach(A) < 60
    assert engine.describe()["blocks"] == (
        f"a->a: banded 397x397 (tiles of {8 * -(-reach32 // 8)} bins)")
    for dtype, rtol in ((np.float64, 1e-11), (np.float32, 1e-5)):
        block = engine.device(dtype, 1).blocks[0]
        assert isinstance(block, BandedBlock)
        n_tiles, width, window = block.forward_windows.shape
        assert _reach(A.astype(dtype)) <= width < _reach(A.astype(dtype)) + 8
        assert window == 3 * width and n_tiles * width >= 397 > (n_tiles - 1) * width
        check_products(engine, [A, A], np.random.default_rng(14), dtype=dtype, rtol=rtol)

    rng = np.random.default_rng(15)  # an upper band only: reach 20, tiles of 24
    m = np.zeros((300, 300))
    for i in range(300):
        m[i, i:i + 21] = rng.random(min(300, i + 21) - i)
    m /= m.sum(axis=1, keepdims=True)
    engine = plan(Blocks([[1.0]], {("a", "a"): Dense(m)}), ["a"] * 300, np.ones(300, bool))
    op = engine.device(np.float64, 3)
    assert op.blocks[0].forward_windows.shape == (13, 24, 72)
    check_products(engine, [m, m], rng)

    wide = np.full((300, 300), 1 / 300)  # no zeros: dense
    engine = plan(Blocks([[1.0]], {("a", "a"): Dense(wide)}), ["a"] * 300, np.ones(300, bool))
    assert isinstance(engine.device(np.float32, 1).blocks[0], DenseBlock)


def test_random_walk_between_states_with_different_masks():
    centers = grid_centers(4, 4)
    in_a = np.ones(16, dtype=bool)
    in_b = np.ones(16, dtype=bool)
    in_a[5] = False
    in_b[[0, 9]] = False
    rw = RandomWalk(2.0, centers)
    transition = Blocks([[0.5, 0.5], [0.0, 1.0]], {
        ("a", "a"): rw, ("a", "b"): rw, ("b", "b"): Uniform()})
    engine = plan(transition, ["a"] * 16 + ["b"] * 16, np.concatenate([in_a, in_b]))
    A = np.zeros((29, 29))
    A[:15, :15] = 0.5 * nld_random_walk(centers, in_a, in_a, 2.0, 0.0)
    A[:15, 15:] = 0.5 * nld_random_walk(centers, in_a, in_b, 2.0, 0.0)
    A[15:, 15:] = 1 / 14
    check_products(engine, [A], np.random.default_rng(4))


def test_dense_nonsquare_identity_and_interleaved_states():
    """Non-square Dense blocks (full and interior shapes), an Identity into a
    state with more interior bins, and states whose bins interleave."""
    rng = np.random.default_rng(5)
    labels = np.array(["a", "b", "a", "c", "b", "c", "a", "c", "b"])
    mask = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
    # a: bins 0, 2, 6 (3 interior); b: 1, 4, 8 (2 interior); c: 3, 5, 7 (3 interior)
    m_ab = rng.random((3, 3))
    m_ab[:, 1] = 0  # b's second bin is exterior
    m_ab /= m_ab.sum(axis=1, keepdims=True)
    m_ca = rng.random((3, 3))
    m_ca /= m_ca.sum(axis=1, keepdims=True)
    d = np.array([[0.2, 0.5, 0.3], [0.0, 0.6, 0.4], [0.7, 0.0, 0.3]])
    transition = Blocks(d, {
        ("a", "a"): Uniform(), ("a", "b"): Dense(m_ab), ("a", "c"): Identity(),
        ("b", "b"): Identity(), ("b", "c"): Dense(np.full((2, 3), 1 / 3)),
        ("c", "a"): Dense(m_ca), ("c", "c"): Uniform()})
    engine = plan(transition, labels, mask)
    interior = np.flatnonzero(mask)
    pos = {b: i for i, b in enumerate(interior)}
    A = np.zeros((8, 8))
    members = {s: [b for b in np.flatnonzero(labels == s) if mask[b]] for s in "abc"}
    blocks = {
        ("a", "a"): np.full((3, 3), 1 / 3), ("a", "b"): m_ab[:, [0, 2]],
        ("a", "c"): np.eye(3), ("b", "b"): np.eye(2), ("b", "c"): np.full((2, 3), 1 / 3),
        ("c", "a"): m_ca, ("c", "c"): np.full((3, 3), 1 / 3)}
    for (s, t), block in blocks.items():
        rows = [pos[b] for b in members[s]]
        cols = [pos[b] for b in members[t]]
        A[np.ix_(rows, cols)] += d["abc".index(s), "abc".index(t)] * block
    np.testing.assert_allclose(A.sum(axis=1), 1, rtol=1e-13)
    np.testing.assert_allclose(engine.matrix(), A, rtol=RTOL, atol=ATOL)
    check_products(engine, [A], rng)


def test_identity_into_a_state_with_more_interior_bins():
    transition = Blocks([[0.5, 0.5], [0.0, 1.0]], {
        ("a", "a"): Uniform(), ("a", "b"): Identity(), ("b", "b"): Uniform()})
    mask = np.array([1, 0, 1, 1, 1, 1], dtype=bool)
    engine = plan(transition, list("aaabbb"), mask)
    A = np.zeros((5, 5))
    A[:2, :2] = 0.25
    A[0, 2] = A[1, 4] = 0.5
    A[2:, 2:] = 1 / 3
    check_products(engine, [A], np.random.default_rng(6))


# ------------------------------------------------------------------ hypothesis


@st.composite
def block_layouts(draw):
    """Random states (sizes, masks, interleaving), discrete with zeros, blocks."""
    n_states = draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, 6)) for _ in range(n_states)]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = np.concatenate([[f"s{s}"] * n for s, n in enumerate(sizes)])
    if draw(st.booleans()):
        labels = rng.permutation(labels)
    mask = rng.random(labels.size) < 0.8
    for s in range(n_states):  # every state keeps an interior bin
        mask[np.flatnonzero(labels == f"s{s}")[0]] = True
    d = rng.random((n_states, n_states)) * (rng.random((n_states, n_states)) < 0.7)
    d[np.arange(n_states), np.arange(n_states)] += 0.1
    d /= d.sum(axis=1, keepdims=True)
    kinds = {}
    for s in range(n_states):
        for t in range(n_states):
            options = ["uniform", "dense"]
            if sizes[s] == sizes[t]:
                options.append("random_walk")
                ins, int_ = (mask[labels == f"s{i}"] for i in (s, t))
                if not (ins & ~int_).any():
                    options.append("identity")
            kinds[s, t] = draw(st.sampled_from(options))
    return labels, mask, d, kinds, seed


def make_blocks(labels, mask, d, kinds, rng):
    """The Blocks and the expected interior matrix, from the definitions."""
    interior = np.flatnonzero(mask)
    pos = {b: i for i, b in enumerate(interior)}
    A = np.zeros((interior.size, interior.size))
    blocks = {}
    n_dims = rng.integers(1, 3)
    centers = {}
    for (s, t), kind in kinds.items():
        a, b = f"s{s}", f"s{t}"
        bins_a, bins_b = np.flatnonzero(labels == a), np.flatnonzero(labels == b)
        in_a, in_b = mask[bins_a], mask[bins_b]
        if kind == "uniform":
            blocks[a, b], block = Uniform(), np.full((in_a.sum(), in_b.sum()), 1 / in_b.sum())
        elif kind == "identity":
            blocks[a, b] = Identity()
            block = np.eye(bins_a.size)[in_a][:, in_b]
        elif kind == "dense":
            full = rng.random((bins_a.size, bins_b.size)) * in_b
            full /= full.sum(axis=1, keepdims=True)
            interior_only = rng.random() < 0.5
            blocks[a, b] = Dense(full[in_a][:, in_b] if interior_only else full)
            block = full[in_a][:, in_b]
        else:
            key = bins_a.size
            if key not in centers:  # a 2 x n grid (separable when it pays) or scattered
                on_grid = key % 2 == 0 and key >= 4 and rng.random() < 0.5
                centers[key] = (rng.permutation(grid_centers(2, key // 2)) if on_grid
                                else rng.normal(0, 2, (key, n_dims)))
            var = float(rng.uniform(0.5, 5))
            blocks[a, b] = RandomWalk(var, centers[key])
            block = nld_random_walk(centers[key], in_a, in_b, var, 0.0)
        rows = [pos[i] for i in bins_a[in_a]]
        cols = [pos[j] for j in bins_b[in_b]]
        A[np.ix_(rows, cols)] = d[s, t] * block
    # The discrete matrix lists the states in order of first appearance.
    order = [int(label[1:]) for label in dict.fromkeys(labels)]
    return Blocks(d[np.ix_(order, order)], blocks), A


@settings(max_examples=examples(fast=5, full=25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_layouts())
def test_random_block_layouts_match_dense(layout):
    labels, mask, d, kinds, seed = layout
    rng = np.random.default_rng(seed)
    transition, A = make_blocks(labels, mask, d, kinds, rng)
    engine = plan(transition, labels, mask)
    np.testing.assert_allclose(A.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(engine.matrix(), A, rtol=1e-11, atol=ATOL)
    check_products(engine, [A, A], rng)


# ---------------------------------------------------------------- time-varying


def varying_discrete(rng, n_time, zero=(0, 3)):
    d = rng.random((n_time, 4, 4)) + 0.05
    d[:, zero[0], zero[1]] = 0
    return d / d.sum(axis=-1, keepdims=True)


def test_time_varying_inputs_and_products():
    """Labelled DataArray in another state order, dask-backed: step t uses discrete[t-1]."""
    rng = np.random.default_rng(7)
    labels, mask, inside = nonlocal_layout()
    T = 12
    d = varying_discrete(rng, T)
    order = [3, 1, 0, 2]  # the DataArray lists the states in another order
    array = xr.DataArray(
        da.from_array(d[:, order][:, :, order], chunks=(5, 4, 4)),
        dims=("time", "from_state", "to_state"),
        coords={"from_state": [STATES[i] for i in order],
                "to_state": [STATES[i] for i in order]},
    )
    engine = plan(nonlocal_blocks(array), labels, mask, n_time=T)
    assert engine.describe()["discrete"] == "time-varying"
    xs = engine.step_inputs(4, 6, np.float64)
    assert xs.shape == (6, 4, 4)
    np.testing.assert_allclose(xs, d[3:9], rtol=1e-15)
    edges = engine.step_inputs(10, 4, np.float64)  # steps 10..13 of T = 12 (padding)
    np.testing.assert_allclose(edges[:3], d[9:12], rtol=1e-15)
    np.testing.assert_array_equal(edges[3], np.eye(4))
    np.testing.assert_array_equal(engine.step_inputs(0, 1, np.float64)[0], np.eye(4))
    matrices = [expected_nonlocal(d[t - 1], inside) for t in range(4, 10)]
    for t, M in zip((4, 7), (matrices[0], matrices[3])):
        np.testing.assert_allclose(engine.matrix(t - 1), M, rtol=RTOL, atol=ATOL)
        check_products(engine, [M], rng, x=xs[t - 4], xs=xs[t - 4:t - 3])
    check_products(engine, matrices, rng, x=xs[0], xs=xs)
    ds = make_dataset(np.zeros((T, mask.size)), mask, state=("state_bins", labels))
    full = to_dense(nonlocal_blocks(array), ds, time_index=5)
    np.testing.assert_allclose(full[np.ix_(mask, mask)], expected_nonlocal(d[5], inside),
                               rtol=RTOL, atol=ATOL)
    with pytest.raises(TransitionError, match="time_index"):
        to_dense(nonlocal_blocks(array), ds)


def test_time_varying_zero_pattern_over_time_needs_blocks():
    """A pair that is zero at some steps but not all still needs its block."""
    rng = np.random.default_rng(8)
    labels, mask, _ = nonlocal_layout()
    d = varying_discrete(rng, 5)
    d[2, 0, 3], d[2, 0, 0] = 0.3, d[2, 0, 0] + d[2, 0, 1] - 0.3 + d[2, 0, 2]
    d[2, 0, 1:3] = 0
    d[2] /= d[2].sum(axis=-1, keepdims=True)
    transition = nonlocal_blocks(d)
    del transition.blocks["local", "frag"]
    with pytest.raises(TransitionError, match="'local', 'frag'"):
        plan(transition, labels, mask, n_time=5)


# --------------------------------------------------------------- end to end


def scan_smoother(op, xs, log_lik, initial):
    """Forward filter and backward smoother: plain scans of the operator."""

    def forward(prev, inputs):
        ll, x, first = inputs
        predicted = jax.numpy.where(first, initial, op.predict(prev[None], x)[0])
        weights = predicted * jax.numpy.exp(ll - ll.max())
        total = weights.sum()
        return weights / total, (weights / total, jax.numpy.log(total) + ll.max())

    first = np.arange(log_lik.shape[0]) == 0
    _, (filtered, log_norm) = jax.lax.scan(forward, initial, (log_lik, xs, first))

    def backward(nxt, inputs):
        filt, x = inputs
        pred = op.predict(filt[None], x)[0]
        ratio = jax.numpy.where(pred > 0, nxt / jax.numpy.where(pred > 0, pred, 1), 0)
        smoothed = filt * op.pullback(ratio[None], x)[0]
        smoothed = smoothed / smoothed.sum()
        return smoothed, smoothed

    after = None if xs is None else xs[1:]
    _, smoothed = jax.lax.scan(backward, filtered[-1], (filtered[:-1], after), reverse=True)
    return (np.asarray(filtered), np.concatenate([np.asarray(smoothed), filtered[-1:]]),
            float(log_norm.sum()))


def numpy_smoother(log_lik, matrices, initial):
    """Float64 NumPy forward-backward with a matrix per step (``matrices[t]`` into t)."""
    T, K = log_lik.shape
    filtered = np.zeros((T, K))
    total = 0.0
    predicted = initial
    for t in range(T):
        w = predicted * np.exp(log_lik[t] - log_lik[t].max())
        filtered[t] = w / w.sum()
        total += np.log(w.sum()) + log_lik[t].max()
        if t + 1 < T:
            predicted = filtered[t] @ matrices[t + 1]
    smoothed = filtered.copy()
    for t in range(T - 2, -1, -1):
        pred = filtered[t] @ matrices[t + 1]
        s = filtered[t] * (matrices[t + 1] @ (smoothed[t + 1] / pred))
        smoothed[t] = s / s.sum()
    return filtered, smoothed, total


@pytest.mark.parametrize("varying", [False, True], ids=["static", "time-varying"])
def test_filter_and_smoother_end_to_end(varying):
    rng = np.random.default_rng(9)
    labels, mask, inside = nonlocal_layout()
    T = 25
    d = varying_discrete(rng, T) if varying else nonlocal_discrete(rng)
    engine = plan(nonlocal_blocks(d), labels, mask, n_time=T)
    K = engine.n_bins
    log_lik = rng.normal(0, 3, (T, K))
    initial = rng.random(K) + 0.1
    initial /= initial.sum()
    xs = engine.step_inputs(0, T, np.float64)  # None when static: x = None each step
    filtered, smoothed, mll = scan_smoother(engine.device(np.float64, 1), xs, log_lik, initial)
    if varying:
        matrices = [np.eye(K)] + [expected_nonlocal(d[t - 1], inside) for t in range(1, T)]
        ref = numpy_smoother(log_lik, matrices, initial)
    else:
        ref = reference_forward_backward(log_lik, expected_nonlocal(d, inside), initial)
    np.testing.assert_allclose(filtered, ref[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(smoothed, ref[1], rtol=1e-10, atol=1e-14)
    assert abs(mll - ref[2]) < 1e-9


# ------------------------------------------------------------ dense analysis


def contfrag_dense(n_track, discrete):
    centers = np.arange(n_track) * 2.0
    blocks = {("cont", "cont"): RandomWalk(6.0, centers), ("cont", "frag"): Uniform(),
              ("frag", "cont"): Uniform(), ("frag", "frag"): Uniform()}
    labels = np.array(["cont"] * n_track + ["frag"] * n_track)
    engine = plan(Blocks(discrete, blocks), labels, np.ones(2 * n_track, dtype=bool))
    return engine.matrix(), labels


def test_analysis_finds_zero_and_rank_one_blocks():
    A, labels = contfrag_dense(200, [[0.9, 0.1], [0.0, 1.0]])
    engine = analyse_dense(A, labels)
    assert isinstance(engine, StructuredTransition)
    info = engine.describe()
    assert info["kind"] == "dense-analysed"
    assert info["blocks"] == ("cont->cont: banded 200x200 (tiles of 24 bins); "
                              "cont->frag: rank-one; frag->frag: rank-one")
    check_products(engine, [A, A], np.random.default_rng(10))
    assert engine.digest() == DenseTransition(A).digest()
    via_plan = plan_transition(A, state_labels=labels, is_interior=np.ones(400, bool),
                               n_time=5)
    assert via_plan.describe() == info


def test_analysis_keeps_dense_when_it_does_not_pay():
    rng = np.random.default_rng(11)
    A, labels = contfrag_dense(200, [[0.9, 0.1], [0.2, 0.8]])
    small, small_labels = contfrag_dense(20, [[0.9, 0.1], [0.2, 0.8]])
    noisy = A * (1 + 1e-9 * rng.random(A.shape))  # rows no longer exactly equal
    noisy /= noisy.sum(axis=1, keepdims=True)
    for matrix, state in ((small, small_labels), (noisy, labels), (A, None)):
        assert isinstance(analyse_dense(matrix, state), DenseTransition)


# ------------------------------------------------------------------ bad input


def two_state(discrete=((0.9, 0.1), (0.2, 0.8)), **blocks):
    given = {("a", "a"): Uniform(), ("a", "b"): Uniform(), ("b", "a"): Uniform(),
             ("b", "b"): Uniform()}
    given.update({tuple(k): v for k, v in blocks.items()})
    return Blocks(np.asarray(discrete), given)


LABELS = list("aaabb")
MASK = np.ones(5, dtype=bool)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: two_state(((0.9, 0.2), (0.2, 0.8))), TransitionError,
         r"discrete\[from_state='a'\] sums to 1.1"),
        (lambda: two_state(((1.1, -0.1), (0.2, 0.8))), TransitionError,
         r"discrete\[from_state='a', to_state='b'\] is negative"),
        (lambda: two_state(((np.nan, 0.1), (0.2, 0.8))), TransitionError, "not finite"),
        (lambda: two_state(np.eye(3)), DimensionError, r"expected \(2, 2\)"),
        (lambda: Blocks(xr.DataArray(np.eye(2), dims=("from_state", "to_state"),
                                     coords={"from_state": ["a", "x"], "to_state": ["a", "b"]}),
                        {("a", "a"): Uniform(), ("b", "b"): Uniform()}),
         TransitionError, r"unknown: \['x'\]; missing: \['b'\]"),
        (lambda: Blocks(xr.DataArray(np.eye(2), dims=("from", "to")), {}), DimensionError,
         "dims"),
        (lambda: Blocks(np.eye(2), {("a", "z"): Uniform(), ("a", "a"): Uniform(),
                                    ("b", "b"): Uniform()}),
         TransitionError, r"blocks\[\('a', 'z'\)\]: 'z' is not a state"),
        (lambda: Blocks(np.eye(2), {("a", "a"): Uniform()}), TransitionError,
         r"discrete\[from_state='b', to_state='b'\] is non-zero but blocks\[\('b', 'b'\)\] "
         "is missing"),
        (lambda: two_state(aa=RandomWalk(1.0, np.arange(4.0))), TransitionError,
         r"blocks\[\('a', 'a'\)\]: RandomWalk centers has 4 rows but state 'a' has 3 bins"),
        (lambda: two_state(ab=Identity()), TransitionError,
         r"blocks\[\('a', 'b'\)\]: Identity needs states of equal size; 'a' has 3 bins, "
         "'b' has 2"),
        (lambda: two_state(ab=Dense(np.ones((3, 3)) / 3)), TransitionError,
         r"Dense matrix has shape \(3, 3\)"),
        (lambda: two_state(ab=Dense(np.ones((3, 2)))), TransitionError, "Dense matrix, row 0"),
        (lambda: Blocks(np.ones((7, 2, 2)) / 2, {(a, b): Uniform() for a in "ab" for b in "ab"}),
         DimensionError, "varies over 7 time steps; the log-likelihood has 10"),
    ],
    ids=["row-sum", "negative", "nan", "shape", "labels", "dims", "unknown-label",
         "missing-block", "centers-length", "identity-sizes", "dense-shape", "dense-rows",
         "time-length"],
)
def test_bad_input_is_named(make, error, match):
    with pytest.raises(error, match=match):
        plan(make(), LABELS, MASK)


def test_time_varying_row_error_names_the_step():
    d = np.tile([[0.5, 0.5], [0.5, 0.5]], (10, 1, 1))
    d[6, 1] = [0.5, 0.6]
    with pytest.raises(TransitionError, match=r"discrete\[time=6, from_state='b'\] sums to 1.1"):
        plan(Blocks(da.from_array(d, chunks=4),
                    {(a, b): Uniform() for a in "ab" for b in "ab"}), LABELS, MASK)


def test_bad_blocks_and_parameters():
    with pytest.raises(TransitionError, match="movement_var must be > 0"):
        RandomWalk(0.0, np.arange(3.0))
    with pytest.raises(TransitionError, match="movement_mean"):
        RandomWalk(1.0, np.zeros((3, 2)), movement_mean=[1, 2, 3])
    with pytest.raises(TransitionError, match=r"blocks\[\('a', 'a'\)\] is a ndarray"):
        Blocks(np.eye(2), {("a", "a"): np.eye(3)})
    with pytest.raises(TransitionError, match="needs a 'state' coordinate"):
        plan_transition(two_state(), state_labels=None, is_interior=MASK, n_time=3)
    with pytest.raises(InputError, match="to_dense takes a Blocks"):
        to_dense(np.eye(5), make_dataset(np.zeros((3, 5)), state=("state_bins", LABELS)))


def test_identity_into_exterior_bin_is_an_error():
    mask = np.array([1, 1, 1, 1, 0, 1], dtype=bool)
    transition = Blocks([[0.5, 0.5], [0.0, 1.0]], {
        ("a", "a"): Uniform(), ("a", "b"): Identity(), ("b", "b"): Uniform()})
    with pytest.raises(TransitionError, match="moves interior bin 1 of 'a' to an exterior bin"):
        plan(transition, list("aaabbb"), mask)


def test_digest_follows_content():
    rng = np.random.default_rng(12)
    labels, mask, _ = nonlocal_layout()
    d = nonlocal_discrete(rng)
    first = plan(nonlocal_blocks(d), labels, mask).digest()
    assert plan(nonlocal_blocks(d.copy()), labels, mask).digest() == first
    assert plan(nonlocal_blocks(d, mean=(0.5, 0.0)), labels, mask).digest() != first
    assert plan(nonlocal_blocks(nonlocal_discrete(rng)), labels, mask).digest() != first


# ------------------------------------------------------------ JSON spec


def spec_blocks(discrete):
    """The NonLocal blocks plus a Dense block (every kind), over all bins of frag."""
    blocks = dict(nonlocal_blocks(discrete).blocks)
    n = NX * NY
    rng = np.random.default_rng(14)
    dense = rng.random((n, n)) + np.eye(n)
    dense[:, HOLE] = 0.0
    blocks["frag", "frag"] = Dense(dense / dense.sum(axis=1, keepdims=True))
    return Blocks(discrete, blocks)


def same_plan(first, second, labels, mask, n_time):
    """The two transitions plan to identical matrices at every step."""
    a, b = plan(first, labels, mask, n_time), plan(second, labels, mask, n_time)
    assert a.describe() == b.describe()
    steps = range(n_time) if a.discrete.time_varying else [None]
    for t in steps:
        np.testing.assert_array_equal(a.matrix(t), b.matrix(t))


@pytest.mark.parametrize("varying", [False, True], ids=["static", "time-varying"])
def test_spec_round_trip_through_json_and_netcdf(tmp_path, varying):
    rng = np.random.default_rng(15)
    labels, mask, _ = nonlocal_layout()
    T = 6
    d = varying_discrete(rng, T) if varying else nonlocal_discrete(rng)
    transition = spec_blocks(d)
    spec, variables = to_spec(transition)
    assert {b["kind"] for b in spec["blocks"]} == {"uniform", "identity", "dense",
                                                    "random_walk"}
    back = from_spec(json.loads(json.dumps(spec)), xr.Dataset(variables))
    same_plan(transition, back, labels, mask, T)

    ds = make_dataset(np.zeros((T, mask.size)), mask, state=("state_bins", labels))
    path = tmp_path / "model.nc"
    with_transition(ds, transition).to_netcdf(path)
    with xr.open_dataset(path) as reopened:
        same_plan(transition, stored_transition(reopened), labels, mask, T)
        assert stored_transition(reopened.drop_attrs()) is None


def test_spec_with_inline_arrays():
    labels, mask, inside = nonlocal_layout()
    d = nonlocal_discrete(np.random.default_rng(16))
    spec = {"kind": "blocks", "discrete": d.tolist(), "blocks": [
        {"from": a, "to": b, "kind": "uniform"} for a in STATES for b in STATES
        if (a, b) not in {("local", "local"), ("no_spike", "no_spike"), ("cont", "cont")}
    ] + [{"from": "local", "to": "local", "kind": "identity"},
         {"from": "no_spike", "to": "no_spike", "kind": "identity"},
         {"from": "cont", "to": "cont", "kind": "random_walk", "movement_var": 3.0,
          "centers": grid_centers(NX, NY).tolist(), "movement_mean": [0.5, -0.2]}]}
    engine = plan(from_spec(spec), labels, mask)
    np.testing.assert_allclose(engine.matrix(), expected_nonlocal(d, inside),
                               rtol=RTOL, atol=ATOL)


BLOCK = {"from": "a", "to": "a"}


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"kind": "dense"}, 'must be a JSON object with "kind": "blocks"'),
        ({"kind": "blocks", "discrete": [[1.0]]}, "missing blocks"),
        ({"kind": "blocks", "discrete": "d", "blocks": []},
         r"discrete names the variable 'd', which is not there \(variables: none\)"),
        ({"kind": "blocks", "discrete": [[1.0]], "blocks": [{**BLOCK, "kind": "banded"}]},
         r"blocks\[0\]: unknown kind 'banded'"),
        ({"kind": "blocks", "discrete": [[1.0]],
          "blocks": [{**BLOCK, "kind": "random_walk", "centres": [0.0]}]},
         r"blocks\[0\] \(random_walk\): unknown field\(s\) centres; missing movement_var, "
         "centers"),
        ({"kind": "blocks", "discrete": [[1.0]], "blocks": [{"from": "a", "kind": "uniform"}]},
         r"blocks\[0\] must be an object with 'from', 'to' and 'kind'"),
    ],
    ids=["kind", "no-blocks", "no-variable", "block-kind", "block-fields", "block-keys"],
)
def test_bad_spec_is_named(spec, match):
    with pytest.raises(TransitionError, match=match):
        from_spec(spec)


def test_spec_writing_errors():
    with pytest.raises(TransitionError, match=r"state label \('a', 1\) cannot be written"):
        to_spec(Blocks(np.eye(1), {(("a", 1), ("a", 1)): Uniform()}))
    ds = xr.Dataset({"transition_discrete": ("x", np.zeros(2))})
    with pytest.raises(TransitionError, match="already has variable.*transition_discrete"):
        with_transition(ds, two_state())
    with pytest.raises(TransitionError, match="not valid JSON"):
        stored_transition(xr.Dataset(attrs={SPEC_ATTR: "{"}))


def test_every_product_asks_for_true_float32():
    """JAX lets NVIDIA GPUs compute float32 products in TensorFloat-32 (1e-3
    relative) unless a product asks for HIGHEST: every dot of every kernel,
    for each kind of block, must."""
    from xhmm.kernels.hmm import backward_chunk, forward_chunk, summarize_chunk
    from xhmm.kernels.operators import dense_operator

    rng = np.random.default_rng(21)
    labels, mask, inside = nonlocal_layout()
    n = 300
    two = ["a"] * n + ["b"] * 7
    dense_block = rng.random((7, 7)) + 0.1
    engines = [
        plan(nonlocal_blocks(nonlocal_discrete(rng)), labels, mask),  # separable, rank one
        plan(Blocks([[0.9, 0.1], [0.5, 0.5]],
                    {("a", "a"): RandomWalk(6.0, np.arange(n) * 2.0),  # banded tiles
                     ("a", "b"): Uniform(), ("b", "a"): Uniform(),
                     ("b", "b"): Dense(dense_block / dense_block.sum(1, keepdims=True))}),
             two, np.ones(n + 7, dtype=bool)),
    ]
    texts = []
    for n_seq in (1, 3):
        ops = [e.device(np.float32, n_seq) for e in engines]
        ops.append(dense_operator(rng.random((9, 9)), np.float32, n_seq))
        for op, K in zip(ops, [e.n_bins for e in engines] + [9]):
            p = np.full((n_seq, K), 1 / K, dtype=np.float32)
            chunk = np.zeros((n_seq, 4, K), dtype=np.float32)
            states = np.ones((K, 2), dtype=np.float32)
            valid = np.full(n_seq, 4)
            texts += [
                forward_chunk.lower(p, True, chunk, valid, op, None, p).as_text(),
                backward_chunk.lower(p, np.ones(n_seq, bool), chunk, valid, op, None,
                                     count_states=states).as_text(),
                summarize_chunk.lower(chunk, states).as_text(),
            ]
    dots = [line for text in texts for line in text.splitlines() if "dot_general" in line]
    assert len(dots) > 20
    loose = [line.strip() for line in dots if "precision = [HIGHEST, HIGHEST]" not in line]
    assert not loose, loose[:3]
