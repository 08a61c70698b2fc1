"""The chunk reader's rows and reused buffers, and the summary kernel's variants.

The reader gathers the interior columns, subtracts each row's maximum and
rounds once to the compute dtype; whatever path it takes (slices or fancy
indexing, subtraction in the compute dtype or in float64, fresh or reused
buffers), the rows must be the float64 difference rounded once, bit for
bit, with zeros past each sequence's end.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from xhmm.engine.reader import ALIGNMENT, BufferRing, LikelihoodReader
from xhmm.kernels.hmm import summarize_chunk

B, T, N, CHUNK = 2, 23, 80, 8


def _input(dtype, seed=0):
    """(B, T, N) log-likelihood with -inf bins, wide values and all-NaN padding.

    Returns
    -------
    ll : (B, T, N) ndarray of ``dtype``
    lengths : (B,) int ndarray
    """
    rng = np.random.default_rng(seed)
    ll = rng.normal(size=(B, T, N)) * rng.choice([1e-3, 1.0, 300.0], size=(B, T, 1))
    ll[rng.random((B, T, N)) < 0.1] = -np.inf
    ll[:, :, 0] = 0.5  # one finite bin in every row
    lengths = np.array([T, T - 6])
    ll[1, lengths[1]:] = np.nan
    return ll.astype(dtype), lengths


def _expected(ll, columns, lengths, start, dtype):
    """Chunk rows as the reader defines them: float64 shift, one rounding, zero padding."""
    block = ll[:, start:start + CHUNK]
    block = (block if columns is None else block[:, :, columns]).astype(np.float64)
    out = np.zeros((B, CHUNK) + block.shape[2:], dtype)
    for b in range(B):
        n = int(np.clip(lengths[b] - start, 0, CHUNK))
        rows = block[b, :n]
        out[b, :n] = (rows - rows.max(axis=1, keepdims=True)).astype(dtype)
    return out


COLUMNS = {
    "all": None,                                # a view of the input's rows
    "runs": np.r_[0:5, 9:30, 33:70],            # three contiguous runs: slice copies
    "single bins": np.arange(0, N, 2)[::-1],    # 40 runs, out of order: fancy indexing
}


@pytest.mark.parametrize("buffers", [0, 2])
@pytest.mark.parametrize("columns", sorted(COLUMNS))
@pytest.mark.parametrize("in_dtype, dtype", [
    ("float16", "float32"), ("float32", "float32"), ("float64", "float32"),
    ("float32", "float64"), ("int16", "float32"),
])
def test_rows_are_the_float64_shift_rounded_once(in_dtype, dtype, columns, buffers):
    ll, lengths = _input(np.float64)
    if in_dtype == "int16":
        ll = np.nan_to_num(np.clip(ll, -3e4, 3e4), nan=0.0).astype(np.int16)
        ll[1, lengths[1]:] = 0
    else:
        ll = ll.astype(in_dtype)
    cols = COLUMNS[columns]
    reader = LikelihoodReader(ll, cols, CHUNK, dtype, lengths, ["a", "b"], buffers=buffers)
    for index in itertools.chain(range(reader.n_chunks), range(reader.n_chunks)):
        chunk = reader.read(index)
        want = _expected(ll, cols, lengths, index * CHUNK, np.dtype(dtype))
        assert chunk.log_lik.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(chunk.log_lik, want)


def test_inferred_lengths_and_reused_buffers():
    ll, lengths = _input(np.float32)
    reader = LikelihoodReader(ll, COLUMNS["runs"], CHUNK, "float32", buffers=2)
    chunks = [reader.read(index) for index in range(reader.n_chunks)]
    np.testing.assert_array_equal(reader.lengths, lengths)
    # three chunks in two buffers: the third overwrote the first
    assert chunks[2].log_lik is chunks[0].log_lik
    assert chunks[1].log_lik is not chunks[0].log_lik
    np.testing.assert_array_equal(
        chunks[2].log_lik, _expected(ll, COLUMNS["runs"], lengths, 2 * CHUNK, np.float32))


def test_buffer_ring_takes_aligned_arrays_in_turn():
    ring = BufferRing((3, 5), 2)
    first, second, third = (ring.take("float32") for _ in range(3))
    assert third is first and second is not first
    other = ring.take("float64")
    assert other.dtype == np.float64 and other is not first
    for array in (first, second, other):
        assert array.ctypes.data % ALIGNMENT == 0 and array.flags.c_contiguous
    fresh = BufferRing((3, 5), 0)
    assert fresh.take("float32") is not fresh.take("float32")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="host memory aliasing is CPU's")
def test_the_device_uses_reused_buffers_in_place():
    # Why a reused buffer must outlive the computations given it: JAX on
    # CPU does not copy an aligned host array (this is what the engine's
    # ordering, tested in test_chunking and test_memmap_resume, guards).
    array = BufferRing((4, 64), 1).take("float32")
    array[:] = 1
    on_device = jax.device_put(array)
    on_device.block_until_ready()
    array[0, 0] = 5
    assert float(on_device[0, 0]) == 5


@pytest.mark.parametrize("argmax, entropy, states",
                         list(itertools.product([False, True], repeat=3)))
def test_summary_variants_equal_the_full_computation(argmax, entropy, states):
    rng = np.random.default_rng(3)
    posterior = rng.random((2, 7, 12)).astype(np.float32)
    posterior[:, :, :3] = 0  # p log p of zero bins
    posterior /= posterior.sum(axis=2, keepdims=True)
    onehot = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
    full = summarize_chunk(posterior, onehot)
    some = summarize_chunk(posterior, onehot, argmax=argmax, entropy=entropy, states=states)
    for wanted, whole, part in zip((argmax, entropy, states), full, some):
        if wanted:
            np.testing.assert_array_equal(np.asarray(part), np.asarray(whole))
        else:
            assert part is None
