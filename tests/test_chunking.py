"""Results must not depend on how the work is cut up or where it is stored.

Measured tolerances (float32 compute):

* Forward pass (causal posterior) and marginal log-likelihood: bit-identical
  for every chunk size on CPU; the filter does the same operations per step.
  On a GPU a one-row chunk compiles to other fused kernels: measured on an
  H200, 4.1e-6 relative (3.9e-7 absolute) forward and 1.5e-12 over the
  backward bound; held there to ``GPU_ONE_ROW_RTOL``.
* Backward pass: chunks shorter than a few dozen rows take a different
  matrix-product kernel for the chunk's predictions (``filtered @ A``), so
  the smoothed rows can differ by a few float32 ulps: 7.8 ulps of the entry
  (1.8e-7 absolute) on this model, up to 16 ulps (2.4e-7) on banded models
  while exploring; asserted within ``2**-18`` (32 ulps) of the larger entry.
* NumPy vs dask input, memmap vs RAM, persist_causal on/off: bit-identical
  (where the stored causal posterior does not hold the filtered rows
  exactly, the smoother filters each chunk again: the same bits).
* Storage dtypes against float32 storage: uint16 within half a quantisation
  step plus one float32 rounding of the decoded value (``0.5/65534 +
  2**-24``); float16 within its rounding, ``2**-11`` relative (``2**-25``
  absolute in the subnormal range, half its smallest step).
"""

from __future__ import annotations

import dask.array as da
import jax
import numpy as np
import pytest

import xhmm
from conftest import make_dataset, underflow_model
from tolerances import F32_ATOL, assert_backward_close, storage_error

T = 600
N = 60
CHUNK_SIZES = [1, 37, T // 3, T, T + 157]  # 1, a prime not dividing T, T/3, T, > T
#: One-row chunks on a GPU (module docstring): 256 float32 ulps of the entry.
GPU_ONE_ROW_RTOL = 2.0**-15
ONE_ROW_ON_GPU = jax.default_backend() == "gpu"


def _model():
    """A masked model mixing a banded walk with dense jumps.

    Returns
    -------
    ll : (T, N) ndarray
        NaN in exterior bins.
    A : (K, K) ndarray
        Over the interior bins.
    p0 : (K,) ndarray
    mask : (N,) bool ndarray
    """
    rng = np.random.default_rng(30)
    mask = np.ones(N, bool)
    mask[[0, 7, 8, 30, 59]] = False
    K = int(mask.sum())
    band = np.abs(np.arange(K)[:, None] - np.arange(K)[None, :]) <= 2
    A = band * (rng.random((K, K)) + 0.1)
    A *= 0.97 / A.sum(axis=1, keepdims=True)  # 97 % within the band,
    A += 0.03 / K                             # 3 % jumps anywhere
    p0 = rng.random(K) + 0.1
    ll = rng.normal(size=(T, N)) * 4
    ll[:, ~mask] = np.nan
    return ll, A, p0 / p0.sum(), mask


LL, A, P0, MASK = _model()


def _smooth(ll=LL, **config):
    """Smooth the module model (``ll`` may be dask-backed); progress off.

    Returns
    -------
    xr.Dataset
    """
    return make_dataset(ll, MASK).hmm.smooth(transition=A, initial=P0, progress=False,
                                             **config)


@pytest.fixture(scope="module")
def by_chunk():
    """Smooth results for every chunk size in CHUNK_SIZES, computed once."""
    return {c: _smooth(chunk_size=c).compute() for c in CHUNK_SIZES}


# -- chunk size ----------------------------------------------------------------
@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_forward_is_bit_identical(by_chunk, chunk):
    base, res = by_chunk[T], by_chunk[chunk]
    if chunk == 1 and ONE_ROW_ON_GPU:
        np.testing.assert_allclose(res.causal_posterior.values, base.causal_posterior.values,
                                   rtol=GPU_ONE_ROW_RTOL, atol=float(np.finfo(np.float32).tiny))
        assert float(res.marginal_log_likelihood) == pytest.approx(
            float(base.marginal_log_likelihood), rel=1e-6, abs=0)
        return
    np.testing.assert_array_equal(res.causal_posterior.values, base.causal_posterior.values)
    # log normalisers summed in float64 on the host: 1e-12 relative (measured: equal)
    assert float(res.marginal_log_likelihood) == pytest.approx(
        float(base.marginal_log_likelihood), rel=1e-12, abs=0)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_backward_within_a_few_ulps(by_chunk, chunk):
    assert_backward_close(by_chunk[chunk].acausal_posterior.values,
                          by_chunk[T].acausal_posterior.values,
                          rtol=GPU_ONE_ROW_RTOL if chunk == 1 and ONE_ROW_ON_GPU else None)


def test_float64_compute_forward_is_bit_identical():
    a = _smooth(chunk_size=37, compute_dtype="float64")
    b = _smooth(chunk_size=T, compute_dtype="float64")
    np.testing.assert_array_equal(a.causal_posterior.values, b.causal_posterior.values)
    assert float(a.marginal_log_likelihood) == pytest.approx(
        float(b.marginal_log_likelihood), rel=1e-12, abs=0)
    # float64 smoothing, stored as float32: the float32 rounding may flip by
    # one ulp where the float64 values differ in their last bits
    np.testing.assert_allclose(a.acausal_posterior.values, b.acausal_posterior.values,
                               rtol=2.0**-23, atol=0)


# -- input backends ----------------------------------------------------------
@pytest.mark.parametrize(
    "chunks",
    [
        (97, 13),                                   # regular, misaligned with the engine
        ((1, 250, 3, 199, 147), (5, 20, 1, 34)),    # irregular along both dims
    ],
)
def test_dask_input_equals_numpy(by_chunk, chunks):
    lazy = da.from_array(LL, chunks=chunks)
    res = _smooth(lazy, chunk_size=T // 3)
    base = by_chunk[T // 3]
    for name in ("causal_posterior", "acausal_posterior"):
        np.testing.assert_array_equal(res[name].values, base[name].values)
    assert float(res.marginal_log_likelihood) == float(base.marginal_log_likelihood)


def test_float32_input_equals_its_float64_upcast():
    # a float32 likelihood is the same numbers as its float64 upcast
    ll32 = LL.astype(np.float32)
    a = _smooth(ll32, chunk_size=T // 3)
    b = _smooth(ll32.astype(np.float64), chunk_size=T // 3)
    np.testing.assert_array_equal(a.acausal_posterior.values, b.acausal_posterior.values)
    assert float(a.marginal_log_likelihood) == float(b.marginal_log_likelihood)


# -- storage -------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["float32", "float16", "uint16"])
def test_memmap_equals_ram_and_reopens_from_disk(by_chunk, tmp_path, storage):
    folder = tmp_path / "memmap"
    ram = by_chunk[T // 3] if storage == "float32" else _smooth(
        chunk_size=T // 3, posterior_dtype=storage)
    res = _smooth(chunk_size=T // 3, posterior_dtype=storage, use_memmap=True,
                  memmap_dir=folder)
    for name in ("causal_posterior", "acausal_posterior"):
        np.testing.assert_array_equal(res[name].values, ram[name].values)
        disk = np.memmap(folder / f"{name}.dat", dtype=storage, mode="r",
                         shape=(T, int(MASK.sum())))
        decoded = xhmm.from_uint16(disk) if storage == "uint16" else disk
        # the file holds the interior bins in the storage dtype
        np.testing.assert_array_equal(np.asarray(decoded, np.float32),
                                      res[name].values[:, MASK])
    assert float(res.marginal_log_likelihood) == float(ram.marginal_log_likelihood)


@pytest.mark.parametrize("quantize", [False, True])
def test_uint16_within_half_a_step_of_float32(by_chunk, quantize):
    base = by_chunk[T // 3]
    kw = {"quantize_posteriors": True} if quantize else {"posterior_dtype": "uint16"}
    res = _smooth(chunk_size=T // 3, **kw)
    for name in ("causal_posterior", "acausal_posterior"):
        got = res[name]
        assert got.dtype == np.float32
        assert got.attrs["xhmm_storage_dtype"] == "uint16"
        np.testing.assert_array_equal(np.isnan(got.values), np.isnan(base[name].values))
        # half a quantisation step, plus one float32 rounding of the decoded value
        want = base[name].values
        excess = np.abs(got.values - want) - storage_error(want, "uint16")
        assert np.nanmax(excess) <= 0
    assert float(res.marginal_log_likelihood) == float(base.marginal_log_likelihood)


def test_quantize_posteriors_is_uint16_storage():
    a = _smooth(chunk_size=T // 3, quantize_posteriors=True)
    b = _smooth(chunk_size=T // 3, posterior_dtype="uint16")
    for name in ("causal_posterior", "acausal_posterior"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_float16_within_its_rounding_of_float32(by_chunk):
    base = by_chunk[T // 3]
    res = _smooth(chunk_size=T // 3, posterior_dtype="float16")
    for name in ("causal_posterior", "acausal_posterior"):
        got = res[name]
        assert got.dtype == np.float32
        assert got.attrs["xhmm_storage_dtype"] == "float16"
        np.testing.assert_array_equal(np.isnan(got.values), np.isnan(base[name].values))
        # float16 round to nearest: 2**-11 relative; 2**-25 absolute below its
        # normal range (half the subnormal step)
        want = base[name].values
        excess = np.abs(got.values - want) - storage_error(want, "float16")
        assert np.nanmax(excess) <= 0


def test_persist_causal_false(by_chunk, tmp_path):
    base = by_chunk[T // 3]
    folder = tmp_path / "memmap"
    res = _smooth(chunk_size=T // 3, persist_causal=False, use_memmap=True,
                  memmap_dir=folder)
    assert "causal_posterior" not in res
    assert not (folder / "causal_posterior.dat").exists()
    # the smoother recomputes each chunk's filtered rows from its checkpoint:
    # the same operations, so the same bits
    np.testing.assert_array_equal(res.acausal_posterior.values,
                                  base.acausal_posterior.values)
    assert float(res.marginal_log_likelihood) == float(base.marginal_log_likelihood)


def test_uint16_memmap_run_beside_float64_chunks(tmp_path, reference):
    # auto runs the hard stretch's chunks in float64: the backward pass must
    # filter those again in float64, the others in float32
    hard, A = underflow_model()
    K = A.shape[0]
    easy = -0.5 * ((np.arange(K)[None, :] - 20) / 8.0) ** 2 * np.ones((60, 1))
    ll = np.concatenate([easy, hard, easy])
    p0 = np.full(K, 1 / K)
    kw = dict(transition=A, initial=p0, chunk_size=20, posterior_dtype="uint16",
              progress=False)
    ram = make_dataset(ll).hmm.smooth(**kw)
    folder = tmp_path / "run"
    disk = make_dataset(ll).hmm.smooth(**kw, use_memmap=True, memmap_dir=folder)
    assert 0 < disk.attrs["xhmm_float64_chunks"] < len(ll) // 20
    np.testing.assert_array_equal(disk.acausal_posterior.values, ram.acausal_posterior.values)
    _, smooth, _ = reference(ll, A, p0)
    excess = (np.abs(disk.acausal_posterior.values - smooth)
              - storage_error(smooth, "uint16") - F32_ATOL)
    assert excess.max() <= 0
