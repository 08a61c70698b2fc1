"""Posteriors over all state bins from the engine's interior-bin buffers.

The engine writes ``(B, T, K)`` buffers (RAM or memmap) over the interior
bins. The lazy path wraps one sequence of a buffer in a dask array with one
block per ``time_chunks`` rows and expands each block to all ``state_bins``
(NaN outside the interior and past the sequence's length, storage codes
decoded) with a numba kernel inside ``dask.array.map_blocks``. Computing one
block touches only that block's rows.

No posterior data live in the dask graph: a memmap buffer is referenced by
its path (:class:`StoredArray`) and reopened read-only inside each task, so a
graph pickles to a few kB whatever the size of the posterior and can be
computed on any dask.distributed worker that sees the files. A RAM buffer is
in the graph by reference (the local schedulers do not copy it); the
accessor spills it to a memmap before a distributed client could ship it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

from ..engine.storage import alloc_out, check_file
from ..kernels.codec import UINT16_NAN, expand_interior

__all__ = ["StoredArray", "SequenceRows", "portable", "lazy_masked_posterior",
           "eager_masked_posterior"]


@dataclass(frozen=True)
class StoredArray:
    """A memmap output by path: small to pickle, opened read-only where used.

    Attributes
    ----------
    directory : str
        Folder of the run.
    name : str
        Output name; the file is ``{directory}/{name}.dat``.
    shape : tuple of int
    dtype : str
    """

    directory: str
    name: str
    shape: tuple[int, ...]
    dtype: str

    def open(self) -> np.ndarray:
        """The buffer as a read-only ``np.memmap``.

        Raises
        ------
        StorageError
            If the file is missing or not of the size of ``shape`` and ``dtype``.
        """
        return alloc_out(self.shape, self.dtype, self.name, self.directory, mode="r")

    def check(self) -> None:
        """Raise ``StorageError`` unless the file is there, of its full size."""
        dtype = np.dtype(self.dtype)
        check_file(Path(self.directory) / f"{self.name}.dat",
                   int(np.prod(self.shape, dtype=np.int64)) * dtype.itemsize, self.shape,
                   dtype, resume=False)


def portable(buffer, name: str, directory: str | os.PathLike | None):
    """Replace a memmap buffer by its :class:`StoredArray` (RAM buffers pass)."""
    if buffer is not None and isinstance(buffer, np.memmap):
        return StoredArray(str(directory), name, tuple(buffer.shape), buffer.dtype.name)
    return buffer


def _open(buffer) -> np.ndarray:
    return buffer.open() if isinstance(buffer, StoredArray) else buffer


class SequenceRows:
    """One sequence's ``(n_time, K)`` rows of a ``(B, T, K)`` buffer, NaN past its length.

    Exposes only ``shape``, ``dtype``, ``ndim`` and 2-D slicing, so
    ``dask.array.from_array`` neither copies nor hashes it, and each block
    reads just its rows (the uint16 NaN code past the length for uint16
    storage).

    Parameters
    ----------
    buffer : (B, T, K) ndarray or StoredArray
    row : int
        The sequence's index ``b`` in the buffer.
    length : int
        Its real rows.
    n_time : int
        Rows presented (at least ``length``).
    """

    def __init__(self, buffer, row: int, length: int, n_time: int) -> None:
        self.buffer = buffer
        self.row = int(row)
        self.length = int(length)
        self.dtype = np.dtype(buffer.dtype)
        self.shape = (int(n_time), int(buffer.shape[2]))
        self.ndim = 2

    def __getitem__(self, key) -> np.ndarray:
        rows, columns = key
        start, stop, _ = rows.indices(self.shape[0])
        real = max(0, min(stop, self.length) - start)
        source = _open(self.buffer)[self.row]
        if real == stop - start:
            return np.asarray(source[start:stop])[:, columns]
        fill = UINT16_NAN if self.dtype == np.uint16 else np.nan
        out = np.full((stop - start, self.shape[1]), fill, dtype=self.dtype)
        out[:real] = source[start:start + real]
        return out[:, columns]


def _expand_block(block: np.ndarray, columns: np.ndarray, n_total: int, dtype) -> np.ndarray:
    return expand_interior(np.asarray(block), columns, n_total, dtype)


def lazy_masked_posterior(
    rows: SequenceRows,
    mask: np.ndarray,
    time_chunks: int,
    dtype: np.dtype | str,
) -> da.Array:
    """Lazy ``(time, state_bins)`` posterior with NaN outside the interior.

    Parameters
    ----------
    rows : SequenceRows
        One sequence's interior-bin rows in their storage dtype (float32,
        float16, float64 or uint16 codes).
    mask : (N,) bool ndarray
        ``is_interior``; ``mask.sum() == K``.
    time_chunks : int
        Rows per dask block.
    dtype : {float32, float64}
        Dtype of the expanded values.

    Returns
    -------
    dask.array.Array
        Shape ``(T, N)``, chunks ``(time_chunks, N)``.
    """
    dtype = np.dtype(dtype)
    columns = np.flatnonzero(mask).astype(np.int64)
    n_total = int(mask.size)
    n_time = rows.shape[0]
    step = max(1, min(int(time_chunks), n_time))
    source = da.from_array(
        rows,
        chunks=(step, rows.shape[1]),
        name=f"xhmm-interior-{uuid.uuid4().hex}",
        asarray=False,
        lock=False,
        meta=np.empty((0, 0), dtype=rows.dtype),
    )
    return source.map_blocks(
        _expand_block,
        columns,
        n_total,
        dtype,
        dtype=dtype,
        chunks=(source.chunks[0], (n_total,)),
        meta=np.empty((0, 0), dtype=dtype),
        name=f"xhmm-expand-{uuid.uuid4().hex}",
    )


def eager_masked_posterior(rows: SequenceRows, mask: np.ndarray,
                           dtype: np.dtype | str) -> np.ndarray:
    """NumPy ``(time, state_bins)`` posterior, the same values as the lazy one."""
    return expand_interior(rows[:, :], np.flatnonzero(mask), int(mask.size), dtype)
