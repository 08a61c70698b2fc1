"""non_local_detector's movement models as block kinds (empirical, directional, track graph).

References: ``tests/data/nld_movement.npz``, the matrices non_local_detector
0.6.9 builds (``tests/data/make_nld_movement.py``, run where that package
is installed), and NumPy float64 products of each planned block's
``dense()``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from conftest import reference_forward_backward
from tolerances import F32_ATOL
from xhmm.engine.runstate import precision
from xhmm.errors import TransitionError
from xhmm.kernels.tiled import TiledBlock
from xhmm.transitions import Blocks, Uniform
from xhmm.transitions.block import block_kind, nld_blocks
from xhmm.transitions.directional import DirectionalRandomWalk
from xhmm.transitions.empirical import EmpiricalMovement
from xhmm.transitions.layout import StateBins
from xhmm.transitions.tiled import PlannedTiled
from xhmm.transitions.track_graph import TrackGraphRandomWalk, bin_distances

DATA = np.load(Path(__file__).parent / "data" / "nld_movement.npz")


def _bins(interior: np.ndarray, label: str = "s") -> StateBins:
    interior = np.asarray(interior, dtype=bool)
    return StateBins(label, interior, np.arange(int(interior.sum())))


def _graph(prefix: str = "w") -> dict:
    return {name: DATA[f"{prefix}_{name}"]
            for name in ("graph_edges", "edge_lengths", "bin_edge", "bin_offset")}


def _linear_empirical(speedup: int, reversed_: int) -> EmpiricalMovement:
    return EmpiricalMovement(DATA["linear_position"], [DATA["linear_bin_edges"]], speedup,
                             bool(reversed_))


def _field_empirical(speedup: int, reversed_: int) -> EmpiricalMovement:
    return EmpiricalMovement(DATA["field_position"],
                             [DATA["field_bin_edges_x"], DATA["field_bin_edges_y"]], speedup,
                             bool(reversed_))


#: (reference key, environment, block) for every stored variant.
CASES = [
    ("linear_direction1", "linear",
     lambda: DirectionalRandomWalk(DATA["linear_movement_var"], DATA["linear_centers"],
                                   "increasing")),
    ("linear_direction2", "linear",
     lambda: DirectionalRandomWalk(DATA["linear_movement_var"], DATA["linear_centers"],
                                   "decreasing")),
    *[(f"linear_empirical_{s}_{r}", "linear", lambda s=s, r=r: _linear_empirical(s, r))
      for s in (1, 4) for r in (0, 1)],
    ("field_direction1", "field",
     lambda: DirectionalRandomWalk(DATA["field_movement_var"], DATA["field_centers"],
                                   "increasing")),
    *[(f"field_empirical_{s}_{r}", "field", lambda s=s, r=r: _field_empirical(s, r))
      for s, r in ((1, 0), (3, 1))],
    ("w_random_walk", "w", lambda: TrackGraphRandomWalk(
        DATA["w_movement_var"], **_graph(), movement_mean=DATA["w_movement_mean"])),
    ("w_direction1", "w", lambda: TrackGraphRandomWalk(DATA["w_movement_var"], **_graph(),
                                                       direction="increasing")),
    ("w_direction2", "w", lambda: TrackGraphRandomWalk(DATA["w_movement_var"], **_graph(),
                                                       direction="decreasing")),
]


@pytest.mark.parametrize("key, env, make", CASES, ids=[case[0] for case in CASES])
def test_dense_matches_non_local_detector(key, env, make):
    """Interior rows equal nld's to 1e-6; rows nld leaks from are nld's renormalised."""
    interior = DATA[f"{env}_interior"]
    planned = make().plan(_bins(interior), _bins(interior), "blocks[('s', 's')]")
    got = planned.dense()
    want = DATA[key][np.ix_(interior, interior)]
    sums = want.sum(axis=1)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    whole = np.abs(sums - 1) < 1e-9
    assert whole.sum() >= 0.3 * whole.size
    np.testing.assert_allclose(got[whole], want[whole], rtol=0, atol=1e-6)
    leaky = ~whole & (sums > 0)
    np.testing.assert_allclose(got[leaky], want[leaky] / sums[leaky, None], rtol=0, atol=1e-6)
    # An interior bin nld's rows never leave (zero row) stays in place.
    for i in np.flatnonzero(sums == 0):
        np.testing.assert_array_equal(got[i], np.eye(got.shape[1])[i])


def test_empirical_reference_has_leaky_and_empty_rows():
    """The stored cases exercise the renormalised and the stay-in-place rows."""
    field = DATA["field_empirical_1_0"][np.ix_(DATA["field_interior"], DATA["field_interior"])]
    linear = DATA["linear_empirical_4_0"][np.ix_(DATA["linear_interior"],
                                                 DATA["linear_interior"])]
    assert (field.sum(axis=1) == 0).any()
    assert ((linear.sum(axis=1) > 0) & (linear.sum(axis=1) < 0.99)).any()


def test_track_graph_distances_match_non_local_detector():
    on = np.flatnonzero(DATA["w_bin_edge"] >= 0)
    g = _graph()
    got = bin_distances(g["graph_edges"], g["edge_lengths"], g["bin_edge"], g["bin_offset"],
                        on, on)
    np.testing.assert_allclose(got, DATA["w_distance"][np.ix_(on, on)], rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------
# Kernel products against float64 NumPy products of dense()
# --------------------------------------------------------------------------

def _long_track(n_bins: int = 700) -> tuple[np.ndarray, np.ndarray]:
    centers = np.arange(n_bins, dtype=float)
    interior = np.ones(n_bins, dtype=bool)
    interior[[0, 300, 301, 302]] = False
    return centers, interior


def _big_w_track() -> tuple[TrackGraphRandomWalk, np.ndarray]:
    """A W-track of 1-unit bins: about 900 bins, bands plus junction patches."""
    edges = np.array([[0, 1], [1, 2], [2, 3], [1, 4], [4, 5]])
    lengths = np.array([200.0, 100.0, 200.0, 100.0, 200.0])
    order = [0, 1, 2, 3, 4]
    bin_edge, bin_offset = [], []
    for k, e in enumerate(order):
        n = int(lengths[e])
        bin_edge += [e] * n
        bin_offset += list(np.arange(n) + 0.5)
        if k in (0, 2):  # a gap bin between edges, off the graph
            bin_edge.append(-1)
            bin_offset.append(0.0)
    bin_edge = np.asarray(bin_edge)
    return (TrackGraphRandomWalk(1.0, edges, lengths, bin_edge, np.asarray(bin_offset)),
            bin_edge >= 0)


def _grid_trajectory(n_time: int, size: float, rng: np.random.Generator) -> np.ndarray:
    velocity, here, path = np.zeros(2), np.full(2, size / 2), np.empty((n_time, 2))
    for t in range(n_time):
        velocity = 0.7 * velocity + rng.normal(0, 0.6, 2)
        here = size - np.abs(size - np.abs(here + velocity))
        path[t] = here
    return path


def _field_block(speedup: int = 2) -> tuple[EmpiricalMovement, np.ndarray]:
    """Empirical movement on a 40 x 40 grid of unit bins (interior: visited bins)."""
    position = _grid_trajectory(40_000, 40.0, np.random.default_rng(5))
    edges = [np.arange(41.0), np.arange(41.0)]
    counts, _, _ = np.histogram2d(position[:, 0], position[:, 1], bins=edges)
    return EmpiricalMovement(position, edges, speedup), counts.ravel() > 0


def _kernel_cases():
    centers, interior = _long_track()
    walk, w_interior = _big_w_track()
    field, f_interior = _field_block()
    return {
        "directional": (DirectionalRandomWalk(6.0, centers, "increasing"), interior),
        "track_graph": (walk, w_interior),
        "empirical_2d": (field, f_interior),
        "empirical_1d": (EmpiricalMovement(
            np.random.default_rng(3).normal(0, 2.0, 30_000).cumsum() % 700.0,
            [np.arange(701.0)], speedup=3), interior),
    }


@pytest.fixture(scope="module")
def planned_blocks():
    planned = {name: block.plan(_bins(mask), _bins(mask), name)
               for name, (block, mask) in _kernel_cases().items()}
    # From every bin of a track into a state with fewer interior bins.
    centers, interior = _long_track()
    walk = DirectionalRandomWalk(6.0, centers, "increasing")
    planned["rectangular"] = walk.plan(_bins(np.ones_like(interior)), _bins(interior), "r")
    return planned


def _numpy_max(p: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 max-product and its lowest argmax (0 where the maximum is 0)."""
    candidates = p[..., :, None] * dense
    values = candidates.max(axis=-2)
    source = np.argmax(candidates == values[..., None, :], axis=-2)
    return values, np.where(values > 0, source, 0)


#: `make test` checks these kinds end to end (test_smooth_with_block_matches_dense_smooth)
#: and track_graph product by product; `make test-all` every kind product by product.
_SLOW_KINDS = ("directional", "empirical_2d", "empirical_1d", "rectangular")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in _SLOW_KINDS else name
    for name in ("directional", "track_graph", "empirical_2d", "empirical_1d", "rectangular")
])
@pytest.mark.parametrize("dtype, rtol", [
    (np.float32, 1e-5),
    # the same products and code path in float64: left to `make test-all`
    pytest.param(np.float64, 1e-12, marks=pytest.mark.slow),
])
def test_kernel_products_match_dense(planned_blocks, name, dtype, rtol):
    with precision(np.dtype(dtype).name):
        _check_products(planned_blocks[name], dtype, rtol)


def _check_products(planned: PlannedTiled, dtype: type, rtol: float) -> None:
    assert planned.label.startswith("tiled"), planned.label
    kernel = planned.device(dtype, 1)
    assert isinstance(kernel, TiledBlock)
    dense = planned.dense()
    rounded = dense.astype(dtype).astype(np.float64)
    n_from, n_to = dense.shape
    rng = np.random.default_rng(0)
    for lead in [(1,), (3,), (2, 2)]:
        p = rng.random(lead + (n_from,)).astype(dtype)
        p[..., rng.random(n_from) < 0.2] = 0.0
        r = rng.random(lead + (n_to,)).astype(dtype)
        scale = np.abs(p).astype(np.float64) @ np.abs(dense)
        np.testing.assert_allclose(np.asarray(kernel.forward(jnp.asarray(p))),
                                   p.astype(np.float64) @ dense,
                                   rtol=0, atol=rtol * scale.max())
        np.testing.assert_allclose(np.asarray(kernel.backward(jnp.asarray(r))),
                                   r.astype(np.float64) @ dense.T,
                                   rtol=rtol, atol=rtol * np.abs(r).max())
        values, source = (np.asarray(a) for a in kernel.max_forward(jnp.asarray(p)))
        # Each candidate is one product in ``dtype``: the same as NumPy's of
        # the rounded matrix, rounded once.
        want_values, want_source = _numpy_max(p.astype(np.float64), rounded)
        np.testing.assert_allclose(values, want_values, rtol=2 * np.finfo(dtype).eps, atol=0)
        assert source.dtype == np.int32
        exact = values == np.max(
            (p.astype(dtype)[..., :, None] * rounded.astype(dtype)), axis=-2)
        assert exact.all()
        np.testing.assert_array_equal(source, want_source)
        flat_p = p.reshape(-1, n_from)
        j = rng.integers(0, n_to, flat_p.shape[0]).astype(np.int32)
        col_values, col_source = (np.asarray(a) for a in kernel.max_column(
            jnp.asarray(flat_p), jnp.asarray(j)))
        rows = np.arange(flat_p.shape[0])
        np.testing.assert_array_equal(col_values, values.reshape(-1, n_to)[rows, j])
        np.testing.assert_array_equal(col_source, source.reshape(-1, n_to)[rows, j])


def test_max_forward_ties_go_to_the_lowest_from_bin():
    """Equal candidates from several from-tiles: the lowest from-bin wins, 0 where all are 0."""
    n = 200
    rows = np.repeat(np.arange(n), 5)
    cols = rows + np.tile([-40, -1, 0, 1, 40], n)
    inside = (cols >= 0) & (cols < n)
    rows, cols = rows[inside], cols[inside]
    planned = PlannedTiled(rows, cols, np.full(rows.size, 0.2), (n, n), "ties")
    kernel = planned.device(np.float32, 1)
    assert isinstance(kernel, TiledBlock)
    p = np.ones((1, n), dtype=np.float32)
    p[0, 150:] = 0.0
    values, source = (np.asarray(a)[0] for a in kernel.max_forward(jnp.asarray(p)))
    want_values, want_source = _numpy_max(p[0].astype(np.float64), planned.dense())
    np.testing.assert_array_equal(source, want_source)
    np.testing.assert_array_equal(values, want_values.astype(np.float32))
    # Column 100 is reached by 60, 99, 100, 101 and 140 with equal weight.
    assert values[100] == np.float32(0.2) and source[100] == 60
    zero = np.flatnonzero(values == 0)
    assert zero.size and (source[zero] == 0).all()
    col_values, col_source = kernel.max_column(jnp.asarray(p), jnp.asarray([100], jnp.int32))
    assert float(col_values[0]) == values[100] and int(col_source[0]) == 60


def test_kernel_is_a_pytree_and_jits(planned_blocks):
    kernel = planned_blocks["track_graph"].device(np.float32, 2)
    leaves, tree = jax.tree_util.tree_flatten(kernel)
    assert len(leaves) == 4
    rebuilt = jax.tree_util.tree_unflatten(tree, leaves)
    p = jnp.ones((2, kernel.n_from), jnp.float32) / kernel.n_from
    np.testing.assert_array_equal(jax.jit(lambda k, x: k.forward(x))(rebuilt, p),
                                  kernel.forward(p))


def test_wide_support_runs_dense():
    """A large speedup spreads the empirical block over the track: not tiled."""
    position = np.random.default_rng(1).normal(0, 3.0, 5_000).cumsum() % 100.0
    block = EmpiricalMovement(position, [np.arange(101.0)], speedup=400)
    planned = block.plan(_bins(np.ones(100, bool)), _bins(np.ones(100, bool)), "b")
    assert planned.label.startswith("dense")
    kernel = planned.device(np.float32, 1)
    assert not isinstance(kernel, TiledBlock)
    p = np.random.default_rng(2).random((1, 100))
    np.testing.assert_allclose(np.asarray(kernel.forward(jnp.asarray(p, jnp.float32))),
                               p @ planned.dense(), rtol=1e-5)


# --------------------------------------------------------------------------
# Registry, spec fields, errors
# --------------------------------------------------------------------------

BLOCKS = {
    "empirical_movement": lambda: _linear_empirical(4, 1),
    "directional_random_walk": lambda: DirectionalRandomWalk(6.0, DATA["linear_centers"],
                                                             "decreasing"),
    "track_graph_random_walk": lambda: TrackGraphRandomWalk(6.0, **_graph(), movement_mean=0.5,
                                                            direction="increasing"),
}


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_spec_round_trip(kind):
    """Array fields as arrays, the others through JSON: the same block and matrix."""
    block = BLOCKS[kind]()
    cls = block_kind(kind, "test")
    assert cls is type(block)
    fields = block.spec_fields()
    assert set(fields) == {f.name for f in dataclasses.fields(block)}
    arrays = {name: np.asarray(fields[name]) for name in cls.array_fields}
    values = json.loads(json.dumps({name: value for name, value in fields.items()
                                    if name not in cls.array_fields}))
    again = cls(**arrays, **values)
    for field in dataclasses.fields(block):
        a, b = getattr(block, field.name), getattr(again, field.name)
        if field.name in cls.array_fields:
            np.testing.assert_array_equal(a, b)
            assert np.asarray(a).dtype == np.asarray(b).dtype
        else:
            assert a == b, field.name
    assert set(cls.required_fields()) <= set(fields)
    env = {"empirical_movement": "linear", "directional_random_walk": "linear",
           "track_graph_random_walk": "w"}[kind]
    bins = _bins(DATA[f"{env}_interior"])
    np.testing.assert_array_equal(block.plan(bins, bins, "b").dense(),
                                  again.plan(bins, bins, "b").dense())


def test_nld_names_find_the_kinds():
    assert nld_blocks("EmpiricalMovement") == [EmpiricalMovement]
    assert set(nld_blocks("RandomWalkDirection1")) == {DirectionalRandomWalk,
                                                       TrackGraphRandomWalk}
    assert TrackGraphRandomWalk in nld_blocks("RandomWalk")


@pytest.mark.parametrize("make, match", [
    (lambda: DirectionalRandomWalk(0.0, np.arange(5.0), "increasing"), "movement_var"),
    (lambda: DirectionalRandomWalk(1.0, np.arange(5.0), "up"), "direction"),
    (lambda: EmpiricalMovement(np.arange(5.0), [[0, 1, 2]], speedup=0), "speedup"),
    (lambda: EmpiricalMovement(np.arange(5.0), [[0, 2, 1]]), "edges"),
    (lambda: EmpiricalMovement(np.zeros((5, 2)), [[0, 1, 2]]), "position"),
    (lambda: TrackGraphRandomWalk(1.0, [[0, 1]], [2.0], [0, 0, 1], [0.5, 1.5, 0.0]),
     "bin 2 has bin_edge 1"),
    (lambda: TrackGraphRandomWalk(1.0, [[0, 1]], [2.0], [0, 0], [0.5, 2.5]), "bin 1"),
    (lambda: TrackGraphRandomWalk(1.0, [[0, 1]], [-2.0], [0], [0.5]), "edge_lengths"),
])
def test_bad_fields_raise(make, match):
    with pytest.raises(TransitionError, match=match):
        make()


def test_plan_errors_name_the_block():
    bins = _bins(np.ones(4, bool))
    with pytest.raises(TransitionError, match=r"blocks\[x\]: DirectionalRandomWalk centers"):
        DirectionalRandomWalk(1.0, np.arange(5.0), "increasing").plan(bins, bins, "blocks[x]")
    with pytest.raises(TransitionError, match=r"blocks\[x\]: TrackGraphRandomWalk bin 3"):
        TrackGraphRandomWalk(1.0, [[0, 1]], [4.0], [0, 0, 0, -1],
                             [0.5, 1.5, 2.5, 0.0]).plan(bins, bins, "blocks[x]")
    with pytest.raises(TransitionError, match=r"blocks\[x\]: EmpiricalMovement edges"):
        EmpiricalMovement(np.arange(5.0), [[0, 1, 2]]).plan(bins, bins, "blocks[x]")
    # Exterior from-bin that reaches nothing: a from-state interior bin with
    # no interior to-bin at or after it.
    src, dst = _bins(np.array([1, 1, 1, 1], bool)), _bins(np.array([1, 1, 0, 0], bool))
    with pytest.raises(TransitionError, match="interior bin 2 of the from-state reaches no"):
        DirectionalRandomWalk(1.0, np.arange(4.0), "increasing").plan(src, dst, "blocks[x]")


# --------------------------------------------------------------------------
# End to end: a smooth with the blocks equals the dense smooth of dense()
# --------------------------------------------------------------------------

def _two_state_model(name: str):
    """Dataset, Blocks, initial and the float64 dense interior matrix of a two-state model.

    ``cont -> cont`` moves by the block ``name`` of :func:`_kernel_cases`;
    the other pairs are uniform.
    """
    block, mask = _kernel_cases()[name]
    n = mask.size
    labels = np.array(["cont"] * n + ["frag"] * n)
    is_interior = np.concatenate([mask, mask])
    n_time = 60
    rng = np.random.default_rng(7)
    ll = rng.normal(size=(n_time, 2 * n)) * 3
    ll[:, ~is_interior] = np.nan
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"time": np.arange(n_time), "state": ("state_bins", labels),
                            "is_interior": ("state_bins", is_interior)})
    discrete = np.array([[0.97, 0.03], [0.1, 0.9]])
    transition = Blocks(discrete, {("cont", "cont"): block, ("cont", "frag"): Uniform(),
                                    ("frag", "cont"): Uniform(), ("frag", "frag"): Uniform()})
    p0 = np.where(is_interior, 1.0, 0.0) / is_interior.sum()
    K = int(mask.sum())
    dense = np.zeros((2 * K, 2 * K))
    dense[:K, :K] = discrete[0, 0] * block.plan(_bins(mask), _bins(mask), "b").dense()
    dense[:K, K:] = discrete[0, 1] / K
    dense[K:, :K] = discrete[1, 0] / K
    dense[K:, K:] = discrete[1, 1] / K
    return ds, transition, p0, dense


@pytest.mark.parametrize("name", ["track_graph", "empirical_2d"])
def test_smooth_with_block_matches_dense_smooth(name):
    ds, transition, p0, dense = _two_state_model(name)
    is_interior = ds.is_interior.values
    res = ds.hmm.smooth(transition=transition, initial=p0, chunk_size=25, progress=False)
    assert "cont->cont: tiled" in res.attrs["xhmm_transition"]
    ll = ds.log_likelihood.values[:, is_interior]
    filt, smooth, mll = reference_forward_backward(ll, dense, p0[is_interior])
    np.testing.assert_allclose(res.causal_posterior.values[:, is_interior], filt, rtol=0,
                               atol=F32_ATOL)
    np.testing.assert_allclose(res.acausal_posterior.values[:, is_interior], smooth, rtol=0,
                               atol=F32_ATOL)
    n_time = ll.shape[0]
    assert abs(float(res.marginal_log_likelihood) - mll) <= 1e-6 * n_time + 1e-9 * abs(mll)


def _numpy_viterbi(ll: np.ndarray, matrix: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Float64 log-space Viterbi path (ties to the lowest bin)."""
    with np.errstate(divide="ignore"):
        log_a, delta = np.log(matrix), np.log(p0) + ll[0]
    pointers = np.zeros(ll.shape, dtype=np.int64)
    for t in range(1, ll.shape[0]):
        scores = delta[:, None] + log_a
        pointers[t] = scores.argmax(axis=0)
        delta = scores.max(axis=0) + ll[t]
    path = np.zeros(ll.shape[0], dtype=np.int64)
    path[-1] = delta.argmax()
    for t in range(ll.shape[0] - 1, 0, -1):
        path[t - 1] = pointers[t, path[t]]
    return path


@pytest.mark.parametrize("name", ["track_graph",
                                  pytest.param("empirical_2d", marks=pytest.mark.slow)])
def test_most_likely_sequence_with_block_matches_dense_viterbi(name):
    """max_forward (the decoder's forward pass) and max_column (its backtrack) end to end."""
    ds, transition, p0, dense = _two_state_model(name)
    is_interior = ds.is_interior.values
    res = ds.hmm.most_likely_sequence(transition=transition, initial=p0, chunk_size=25,
                                      progress=False)
    want = _numpy_viterbi(ds.log_likelihood.values[:, is_interior], dense, p0[is_interior])
    np.testing.assert_array_equal(res.most_likely_state_bin.values,
                                  np.flatnonzero(is_interior)[want])
