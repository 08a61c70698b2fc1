"""Each dask block of a lazy likelihood is computed at most once per pass.

The likelihood is a dask array whose blocks count their computations; the
engine's passes (a run's setup and forward pass, its backward pass or
backtrack) are marked by wrapping the engine's pass methods, so every count
is per block and per pass.
"""

from __future__ import annotations

import threading
from collections import Counter

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xhmm
from conftest import make_dataset, underflow_model
from xhmm.engine import loop, reader, viterbi
from xhmm.engine.chunking import CHUNK_BUDGET, resolve_chunk_size
from xhmm.engine.manifest import load_manifest
from xhmm.transitions import Blocks, Dense, Uniform

T, BLOCK, K = 3_000, 500, 30
N_BLOCKS = T // BLOCK


class Reads:
    """Counts of block computations, one Counter per pass, in order."""

    def __init__(self) -> None:
        self.passes: list[Counter] = []
        self._lock = threading.Lock()

    def start_pass(self) -> None:
        with self._lock:
            self.passes.append(Counter())

    def count(self, block: int) -> None:
        with self._lock:
            self.passes[-1][block] += 1

    def total(self) -> Counter:
        return sum(self.passes, Counter())


@pytest.fixture
def reads(monkeypatch) -> Reads:
    """Marks a new pass where a run starts (its fingerprint included) and where it turns back."""
    counter = Reads()

    def marking(method):
        def wrapped(self, *args, **kwargs):
            counter.start_pass()
            return method(self, *args, **kwargs)
        return wrapped

    for cls, back in ((loop._Run, "backward"), (viterbi.PathDecoder, "backtrack")):
        monkeypatch.setattr(cls, "__init__", marking(cls.__init__))
        monkeypatch.setattr(cls, back, marking(getattr(cls, back)))
    return counter


def counted(values: np.ndarray, block: int, reads: Reads) -> da.Array:
    """``values`` (T, N) as a dask array of ``block``-row blocks that count their computations."""

    def compute(rows, block_info=None):
        reads.count(block_info[None]["chunk-location"][0])
        return rows.copy()

    return da.from_array(values, chunks=(block, -1)).map_blocks(compute, dtype=values.dtype)


def _model(seed: int = 0, n_time: int = T, n_bins: int = K):
    rng = np.random.default_rng(seed)
    ll = rng.normal(size=(n_time, n_bins)) * 2
    A = rng.random((n_bins, n_bins)) + 5 * np.eye(n_bins)
    return ll, A / A.sum(axis=1, keepdims=True), np.full(n_bins, 1 / n_bins)


def _lazy(ll: np.ndarray, reads: Reads, block: int = BLOCK, **coords) -> xr.Dataset:
    ds = make_dataset(ll, **coords)
    return ds.assign(log_likelihood=(("time", "state_bins"), counted(ll, block, reads)))


def _check(reads: Reads, n_passes: int, *, first_reads_all: bool = True,
           cached_at_turn: int = 2) -> None:
    """Every pass computes each block at most once; the first pass of each run all of them.

    A pass that turns back (backward, backtrack) computes every block but
    the ``cached_at_turn`` last ones, which the pass before left cached.
    """
    assert len(reads.passes) == n_passes
    for number, counts in enumerate(reads.passes):
        assert max(counts.values(), default=0) <= 1, (number, counts)
    every = set(range(N_BLOCKS))
    for number in range(0, n_passes, 2 if n_passes > 1 else 1):
        if first_reads_all:
            assert set(reads.passes[number]) == every
    for counts in reads.passes[1::2] if n_passes > 1 else []:
        assert set(range(N_BLOCKS - cached_at_turn)) <= set(counts)


# -- chunk sizes -------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", ["auto", 250, 300, 700, 5_000])
def test_smooth_reads_each_block_once(reads, chunk_size):
    # persist_causal float32: the backward pass reads the causal buffer, not
    # the likelihood, so the run computes each block exactly once
    ll, A, p0 = _model()
    res = _lazy(ll, reads).hmm.smooth(transition=A, initial=p0, chunk_size=chunk_size,
                                      lazy_expand=False, progress=False)
    assert res.attrs["xhmm_float64_chunks"] == 0
    assert len(reads.passes) == 2
    assert reads.total() == Counter({block: 1 for block in range(N_BLOCKS)})
    assert not reads.passes[1]
    eager = make_dataset(ll).hmm.smooth(
        transition=A, initial=p0, chunk_size=500 if chunk_size == "auto" else chunk_size,
        lazy_expand=False, progress=False)
    np.testing.assert_array_equal(res.acausal_posterior.values,
                                  eager.acausal_posterior.values)
    np.testing.assert_array_equal(res.marginal_log_likelihood.values,
                                  eager.marginal_log_likelihood.values)


@pytest.mark.parametrize("chunk_size", ["auto", 250, 300])
@pytest.mark.parametrize("storage", [dict(persist_causal=False),
                                     dict(posterior_dtype="uint16"),
                                     dict(posterior_dtype="float16")])
def test_refiltering_backward_pass_reads_each_block_once_more(reads, chunk_size, storage):
    ll, A, p0 = _model()
    res = _lazy(ll, reads).hmm.smooth(transition=A, initial=p0, chunk_size=chunk_size,
                                      lazy_expand=False, progress=False, **storage)
    _check(reads, 2)
    eager = make_dataset(ll).hmm.smooth(
        transition=A, initial=p0, chunk_size=500 if chunk_size == "auto" else chunk_size,
        lazy_expand=False, progress=False, **storage)
    np.testing.assert_array_equal(res.acausal_posterior.values,
                                  eager.acausal_posterior.values)


@pytest.mark.parametrize("chunk_size", ["auto", 300])
def test_memmap_run_fingerprint_computes_nothing_extra(reads, chunk_size, tmp_path):
    # the fingerprint samples the first, middle and last blocks before the
    # forward pass: they are kept until the forward pass reads them
    ll, A, p0 = _model()
    _lazy(ll, reads).hmm.smooth(transition=A, initial=p0, chunk_size=chunk_size,
                                posterior_dtype="uint16", memmap_dir=tmp_path / "run",
                                lazy_expand=False, progress=False)
    _check(reads, 2)


def test_filter_reads_each_block_once(reads):
    ll, A, p0 = _model()
    _lazy(ll, reads).hmm.filter(transition=A, initial=p0, chunk_size=300, progress=False)
    _check(reads, 1)


def test_blocks_too_large_to_keep_are_read_chunk_by_chunk(reads, monkeypatch):
    # above BLOCK_CACHE_BYTES a block longer than a chunk is not kept whole:
    # dask computes each chunk's rows, so a block is computed once per chunk
    # overlapping it (still once per chunk and pass: a re-read is cached)
    monkeypatch.setattr(reader, "BLOCK_CACHE_BYTES", 1)
    ll, A, p0 = _model()
    res = _lazy(ll, reads).hmm.smooth(transition=A, initial=p0, chunk_size=300,
                                      persist_causal=False, lazy_expand=False,
                                      progress=False)
    overlapping = Counter(block for start in range(0, T, 300)
                          for block in {start // BLOCK, (start + 299) // BLOCK})
    assert reads.passes[0] == overlapping
    eager = make_dataset(ll).hmm.smooth(transition=A, initial=p0, chunk_size=300,
                                        persist_causal=False, lazy_expand=False,
                                        progress=False)
    np.testing.assert_array_equal(res.acausal_posterior.values,
                                  eager.acausal_posterior.values)


@pytest.mark.parametrize("blocks", [(7,) * 13 + (9,), (30, 5, 50, 1, 14), (100,)])
@pytest.mark.parametrize("chunk_size", [4, 11, 40])
def test_reader_rows_in_any_order_are_the_numpy_rows(blocks, chunk_size):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(2, 100, 6)).astype(np.float32)
    columns = np.array([0, 2, 3, 5])
    lazy = reader.LikelihoodReader(da.from_array(values, chunks=(1, blocks, 3)), columns,
                                   chunk_size, "float32", lengths=[100, 100])
    eager = reader.LikelihoodReader(values, columns, chunk_size, "float32",
                                    lengths=[100, 100])
    n = eager.n_chunks
    order = [*range(n), *range(n - 1, -1, -1), *rng.integers(0, n, 2 * n)]
    for index in order:
        for dtype in ("float32", "float64"):
            got, want = lazy.read(int(index), dtype), eager.read(int(index), dtype)
            np.testing.assert_array_equal(got.log_lik, want.log_lik)
            np.testing.assert_array_equal(got.shift, want.shift)
    sample = lazy.sample(20, 90, keep=True)
    np.testing.assert_array_equal(sample, values[:, 20:90])


# -- float64 re-reads --------------------------------------------------------

def _hard_stretch(reads: Reads):
    """A likelihood whose middle needs float64, as 30-row counted blocks, and its model."""
    hard, A = underflow_model()
    easy = -0.5 * ((np.arange(A.shape[0])[None, :] - 20) / 8.0) ** 2 * np.ones((60, 1))
    ll = np.concatenate([easy, hard, easy])
    blocks = counted(ll, 30, reads)
    ds = make_dataset(ll).assign(log_likelihood=(("time", "state_bins"), blocks))
    return ds, ll, A, np.full(A.shape[0], 1 / A.shape[0])


def test_float64_recomputation_reads_nothing_extra(reads):
    # compute_dtype="auto" runs the hard stretch's chunks in float64 again:
    # they are the chunk just read and the one read ahead, still cached
    ds, ll, A, p0 = _hard_stretch(reads)
    res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=20, lazy_expand=False,
                        progress=False)
    assert res.attrs["xhmm_float64_chunks"] > 0
    forward, backward = reads.passes
    assert forward == Counter({block: 1 for block in range(len(ll) // 30)})
    # the backward pass filters the float64 chunks again (the float32 causal
    # buffer does not hold their rows): once per block at most
    assert backward and max(backward.values()) == 1


def test_viterbi_float64_recomputation_reads_nothing_extra(reads):
    ds, ll, A, p0 = _hard_stretch(reads)
    path = ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size=20,
                                       progress=False)
    assert path.attrs["xhmm_float64_chunks"] > 0
    forward, backtrack = reads.passes
    assert forward == Counter({block: 1 for block in range(len(ll) // 30)})
    assert max(backtrack.values()) == 1


# -- Viterbi, MAP, fit -------------------------------------------------------

def test_most_likely_sequence_reads_each_block_once_per_pass(reads):
    ll, A, p0 = _model()
    ds = _lazy(ll, reads)
    path = ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size=300,
                                       progress=False)
    _check(reads, 2)
    eager = make_dataset(ll).hmm.most_likely_sequence(transition=A, initial=p0,
                                                      chunk_size=300, progress=False)
    np.testing.assert_array_equal(path.most_likely_state_bin.values,
                                  eager.most_likely_state_bin.values)


def test_map_estimate_reads_each_block_once_per_pass(reads):
    ll, A, p0 = _model()
    _lazy(ll, reads).hmm.map_estimate(transition=A, initial=p0, chunk_size=300,
                                      progress=False)
    _check(reads, 2)


def test_fit_reads_each_block_once_per_pass(reads):
    labels = np.array(["a"] * 10 + ["b"] * 10)
    ll, _, p0 = _model(n_bins=labels.size)
    dense = np.random.default_rng(1).random((10, 10)) + np.eye(10)
    blocks = {(x, y): Uniform() for x in "ab" for y in "ab"}
    blocks["a", "a"] = blocks["b", "b"] = Dense(dense / dense.sum(axis=1, keepdims=True))
    start = Blocks(np.array([[0.9, 0.1], [0.2, 0.8]]), blocks)
    ds = _lazy(ll, reads, state=("state_bins", labels))
    history = ds.hmm.fit(transition=start, initial=p0, max_iter=2, tol=0.0,
                         chunk_size=300)
    assert history.sizes["iteration"] == 2
    _check(reads, 4)


# -- chunk_size="auto" -------------------------------------------------------

def test_auto_takes_the_dask_blocks_into_the_manifest(tmp_path):
    ll, A, p0 = _model(n_time=1_000)
    lazy = make_dataset(ll).chunk({"time": 200})
    lazy.hmm.smooth(transition=A, initial=p0, memmap_dir=tmp_path / "lazy", progress=False)
    assert load_manifest(tmp_path / "lazy").data["result_config"]["chunk_size"] == 200
    make_dataset(ll).hmm.smooth(transition=A, initial=p0, memmap_dir=tmp_path / "eager",
                                progress=False)
    assert load_manifest(tmp_path / "eager").data["result_config"]["chunk_size"] == 5_000
    # the same "auto" resolves the same way when resuming
    lazy.hmm.smooth(transition=A, initial=p0, memmap_dir=tmp_path / "lazy", resume=True,
                    progress=False)


@pytest.mark.parametrize("blocks, n_bins, expected", [
    ((500,) * 6, K, 500),                          # regular blocks
    ((500,) * 5 + (120,), K, 500),                 # the last one shorter
    ((3_000,), K, 3_000),                          # one block: the whole recording
    ((500, 300, 500), K, 5_000),                   # irregular
    ((32,) * 10, K, 5_000),                        # too short
    ((500,) * 2, 2**18, 256),                      # too large: 256 MiB / (4 K) rows
])
def test_auto_resolution(blocks, n_bins, expected):
    array = da.zeros((1, sum(blocks), 1), chunks=(1, blocks, 1))
    assert resolve_chunk_size("auto", array, n_bins) == expected
    assert resolve_chunk_size(700, array, n_bins) == 700


def test_auto_falls_back_for_numpy_input():
    assert resolve_chunk_size("auto", np.zeros((1, 10, 3)), 3) == 5_000
    assert resolve_chunk_size("auto", np.zeros((1, 10, 3)), 2**20) == CHUNK_BUDGET // 2**22


@pytest.mark.parametrize("value", [0, -5, 10.5, "5000", None, True])
def test_chunk_size_must_be_a_positive_int_or_auto(value):
    with pytest.raises(xhmm.ConfigError, match=r'chunk_size must be a positive int or "auto"'):
        xhmm.Config(chunk_size=value)
