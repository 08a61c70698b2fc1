"""Posteriors over all state bins from the engine's interior-bin buffers.

The lazy path wraps the buffer (RAM or memmap, any storage dtype) in a dask
array with one block per ``time_chunks`` rows and expands each block to all
``state_bins`` (NaN outside the interior, storage codes decoded) with a numba
kernel inside ``dask.array.map_blocks``. Computing one block touches only that
block's rows.
"""

from __future__ import annotations

import uuid

import dask.array as da
import numpy as np

from .kernels.codec import expand_interior

__all__ = ["_lazy_masked_posterior", "eager_masked_posterior"]


class _Rows:
    """Row access to an engine buffer that ``da.from_array`` will not copy.

    ``dask.array.from_array`` copies any array with a ``copy`` method (a
    memmap included) into memory up front; this view exposes only shape,
    dtype and slicing, so each block reads just its rows when computed.
    """

    def __init__(self, buffer: np.ndarray) -> None:
        self._buffer = buffer
        self.shape, self.dtype, self.ndim = buffer.shape, buffer.dtype, buffer.ndim

    def __getitem__(self, key):
        return self._buffer[key]


def _expand_block(block: np.ndarray, columns: np.ndarray, n_total: int, dtype) -> np.ndarray:
    return expand_interior(np.asarray(block), columns, n_total, dtype)


def _lazy_masked_posterior(
    interior: np.ndarray,
    mask: np.ndarray,
    n_total_bins: int,
    time_chunks: int,
    dtype: np.dtype | str,
) -> da.Array:
    """Lazy ``(time, state_bins)`` posterior with NaN outside the interior.

    Parameters
    ----------
    interior : (T, K) ndarray or np.memmap
        Engine output over the interior bins, in its storage dtype (float32,
        float16, float64 or uint16 codes).
    mask : (n_total_bins,) bool ndarray
        ``is_interior``; ``mask.sum() == K``.
    n_total_bins : int
    time_chunks : int
        Rows per dask block.
    dtype : {float32, float64}
        Dtype of the expanded values.

    Returns
    -------
    dask.array.Array
        Shape ``(T, n_total_bins)``, chunks ``(time_chunks, n_total_bins)``.
    """
    dtype = np.dtype(dtype)
    columns = np.flatnonzero(mask).astype(np.int64)
    n_time = interior.shape[0]
    step = max(1, min(int(time_chunks), n_time))
    source = da.from_array(
        _Rows(interior),
        chunks=(step, interior.shape[1]),
        name=f"xhmm-interior-{uuid.uuid4().hex}",
        asarray=False,
        lock=False,
        meta=np.empty((0, 0), dtype=interior.dtype),
    )
    return source.map_blocks(
        _expand_block,
        columns,
        n_total_bins,
        dtype,
        dtype=dtype,
        chunks=(source.chunks[0], (n_total_bins,)),
        meta=np.empty((0, 0), dtype=dtype),
        name=f"xhmm-expand-{uuid.uuid4().hex}",
    )


def eager_masked_posterior(
    interior: np.ndarray, mask: np.ndarray, n_total_bins: int, dtype: np.dtype | str
) -> np.ndarray:
    """NumPy ``(time, state_bins)`` posterior, the same values as the lazy one."""
    return expand_interior(np.asarray(interior), np.flatnonzero(mask), n_total_bins, dtype)
