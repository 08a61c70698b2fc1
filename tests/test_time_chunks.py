"""``Config.time_chunks``: lazy posterior blocks sized by bytes ("auto") or by rows (an int)."""

from __future__ import annotations

import dask
import numpy as np
import pytest

import xhmm
from xhmm.frontend.lazy import SequenceRows, lazy_masked_posterior

from conftest import make_dataset, random_model

MIB = 2**20


def _lazy(n_time: int, n_bins: int, time_chunks, dtype="float32"):
    """The lazy posterior of a ``(1, n_time, n_bins)`` buffer that holds no memory."""
    buffer = np.broadcast_to(np.zeros((), np.float32), (1, n_time, n_bins))
    return lazy_masked_posterior(SequenceRows(buffer, 0, n_time, n_time),
                                 np.ones(n_bins, bool), time_chunks, dtype)


def _block_bytes(array) -> list[int]:
    return [rows * array.shape[1] * array.dtype.itemsize for rows in array.chunks[0]]


@pytest.mark.parametrize("n_bins, n_time", [(100, 1_000_000), (9_800, 20_000)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_auto_blocks_fit_dask_chunk_size_whatever_k(n_bins, n_time, dtype):
    lazy = _lazy(n_time, n_bins, "auto", dtype)
    sizes = _block_bytes(lazy)
    assert len(sizes) > 1  # the recording is cut, not one block
    assert max(sizes) <= 128 * MIB
    # as large as fits: one row more would not
    row = n_bins * np.dtype(dtype).itemsize
    assert sizes[0] + row > 128 * MIB


def test_auto_follows_the_dask_setting():
    with dask.config.set({"array.chunk-size": "1MiB"}):
        lazy = _lazy(5_000, 300, "auto")
    assert lazy.chunks[0][0] == MIB // (300 * 4)


def test_an_int_is_honoured():
    lazy = _lazy(2_500, 9_800, 700)
    assert lazy.chunks[0] == (700, 700, 700, 400)


def test_smooth_defaults_to_auto_blocks(tmp_path):
    ll, A, p0 = random_model(np.random.default_rng(0), 400, 20)
    assert xhmm.Config().time_chunks == "auto"
    with dask.config.set({"array.chunk-size": "8000B"}):
        res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, lazy=True,
                                          memmap_dir=tmp_path / "run")
        reopened = xhmm.open_run(tmp_path / "run")
    for posterior in (res.acausal_posterior, reopened.acausal_posterior):
        assert posterior.data.chunks[0] == (100,) * 4  # 8,000 B / (20 bins x 4 bytes)
    assert xhmm.open_run(tmp_path / "run", time_chunks=150).acausal_posterior.data.chunks[0] \
        == (150, 150, 100)
    np.testing.assert_array_equal(
        res.acausal_posterior.values,
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, lazy=False).acausal_posterior)


@pytest.mark.parametrize("bad", [0, -5, 2.5, "big", "Auto", True, None])
def test_bad_values_name_the_field(bad):
    with pytest.raises(xhmm.ConfigError, match=r'Config.time_chunks must be a positive int '
                                               r'or "auto", got '):
        xhmm.Config(time_chunks=bad)
