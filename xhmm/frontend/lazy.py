"""Posteriors over all state bins from the engine's interior-bin buffers.

The engine writes ``(B, T, K)`` buffers (RAM or memmap) over the interior
bins. The lazy path wraps one sequence of a buffer in a dask array with one
block per ``time_chunks`` rows (:func:`block_rows`; by default as many rows
as fit dask's ``array.chunk-size``) and expands each block to all ``state_bins``
(NaN outside the interior and past the sequence's length, storage codes
decoded) with a numba kernel inside ``dask.array.map_blocks``. Computing one
block touches only that block's rows.

No posterior data live in the dask graph: a memmap buffer is referenced by
its path (:class:`StoredArray`) and reopened read-only inside each task, so a
graph pickles to a few kB whatever the size of the posterior and can be
computed on any dask.distributed worker that sees the files. Each read
checks, before and after, that the folder still holds the run that wrote
the result (its manifest's ``run_id``): a result whose folder a later run
took over (``overwrite=True``) raises :class:`xhmm.StaleResultError`, never
showing the later run's rows; one whose folder was deleted says so. A run
folder xhmm made in the system temp dir (``use_memmap=True`` without
``memmap_dir``) is removed when no result uses it any more
(:class:`TemporaryFolder`). A RAM buffer is in the graph by reference (the
local schedulers do not copy it); the accessor spills it to a memmap before
a distributed client could ship it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from dask.utils import parse_bytes

from ..engine.storage import MANIFEST, alloc_out, check_file
from ..errors import IncompleteResultError, StaleResultError
from ..kernels.codec import UINT16_NAN, expand_interior

__all__ = ["StoredArray", "TemporaryFolder", "SequenceRows", "portable", "owned", "read_rows",
           "block_rows", "lazy_rows", "lazy_masked_posterior", "eager_masked_posterior"]


def _remove_folder(path: str, pid: int) -> None:
    if os.getpid() == pid:  # never from a forked child
        shutil.rmtree(path, ignore_errors=True)


def _not_owned() -> None:
    return None


class TemporaryFolder:
    """A run folder xhmm made in the system temp dir, removed once nothing uses it.

    Every :class:`StoredArray` of the run holds it: when the last result
    (lazy posterior, dask graph) reading the folder is gone, or at the latest
    when the process exits, the folder is deleted. A pickled copy (sent to a
    dask worker) owns nothing.

    Parameters
    ----------
    path : str
    """

    def __init__(self, path: str) -> None:
        self.path = path
        weakref.finalize(self, _remove_folder, path, os.getpid())

    def __reduce__(self):
        return _not_owned, ()


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
    run_id : str or None
        The ``run_id`` of the run that wrote the file; None skips the check
        (a run from before run ids).
    owner : TemporaryFolder, optional
        Keeps a temporary run folder alive while this reference is.
    """

    directory: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    run_id: str | None = None
    owner: TemporaryFolder | None = field(default=None, compare=False, repr=False)

    def open(self) -> np.ndarray:
        """The buffer as a read-only ``np.memmap`` (see :meth:`read` to copy rows out).

        Raises
        ------
        StaleResultError
            If the folder no longer holds the run that wrote the result.
        StorageError
            If the file is missing or not of the size of ``shape`` and ``dtype``.
        """
        self.check_current()
        return alloc_out(self.shape, self.dtype, self.name, self.directory, mode="r")

    def read(self, key) -> np.ndarray:
        """A copy of ``buffer[key]``, checked to come from the result's own run.

        The run is checked again after the copy: a later run removes the
        manifest before it rewrites any file, so rows copied while the
        manifest still names this run are this run's.

        Raises
        ------
        StaleResultError, StorageError
            As :meth:`open`.
        """
        rows = np.array(self.open()[key])
        self.check_current()
        return rows

    def check_current(self) -> None:
        """Raise ``StaleResultError`` unless the folder still holds the run ``run_id``,
        ``IncompleteResultError`` unless that run is still ``complete`` (a later
        resume of it failed, or its manifest was edited)."""
        if self.run_id is None:
            return
        try:
            data = json.loads((Path(self.directory) / MANIFEST).read_text())
            current, status = data.get("run_id"), data.get("status")
        except (OSError, ValueError, AttributeError, RecursionError):
            current = status = None
        if current != self.run_id and not Path(self.directory).is_dir():
            raise StaleResultError(
                f"the run folder {self.directory!r} of this result was deleted: its "
                "posteriors are gone and cannot be read; run again, and save results you "
                "keep with xhmm.save_results"
            )
        if current == self.run_id and status != "complete":
            raise IncompleteResultError(
                f"the run in {self.directory!r} is no longer complete (status {status!r} in "
                "its manifest): its files cannot be trusted; rerun it with resume=True"
            )
        if current != self.run_id:
            raise StaleResultError(
                f"this result's files in {self.directory!r} were replaced by a later run "
                "(overwrite=True) or removed: the result is stale; reopen the folder with "
                "xhmm.open_run, or give each result you keep its own memmap_dir"
            )

    def check(self) -> None:
        """Raise ``StorageError`` unless the file is there, of its full size."""
        dtype = np.dtype(self.dtype)
        check_file(Path(self.directory) / f"{self.name}.dat",
                   int(np.prod(self.shape, dtype=np.int64)) * dtype.itemsize, self.shape,
                   dtype, resume=False)


def portable(buffer, name: str, directory: str | os.PathLike | None, run_id: str | None):
    """Replace a memmap buffer of run ``run_id`` by its :class:`StoredArray` (RAM buffers pass)."""
    if buffer is not None and isinstance(buffer, np.memmap):
        return StoredArray(str(directory), name, tuple(buffer.shape), buffer.dtype.name,
                           run_id)
    return buffer


def owned(buffer, owner: TemporaryFolder):
    """A :class:`StoredArray` that keeps ``owner``'s folder alive (other buffers pass)."""
    return replace(buffer, owner=owner) if isinstance(buffer, StoredArray) else buffer


def read_rows(buffer, row: int, start: int, stop: int) -> np.ndarray:
    """``buffer[row, start:stop]`` of an ndarray, or a checked copy of a :class:`StoredArray`'s."""
    if isinstance(buffer, StoredArray):
        return buffer.read((row, slice(start, stop)))
    return np.asarray(buffer[row, start:stop])


class SequenceRows:
    """One sequence's ``(n_time, K, ...)`` rows of a ``(B, T, K, ...)`` buffer, NaN past its end.

    Exposes only ``shape``, ``dtype``, ``ndim`` and slicing, so
    ``dask.array.from_array`` neither copies nor hashes it, and each block
    reads just its rows (the uint16 NaN code past the length for uint16
    storage).

    Parameters
    ----------
    buffer : (B, T, K, ...) ndarray or StoredArray
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
        self.shape = (int(n_time), *map(int, buffer.shape[2:]))
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        rows, *rest = key
        start, stop, _ = rows.indices(self.shape[0])
        real = max(0, min(stop, self.length) - start)
        values = read_rows(self.buffer, self.row, start, start + real)
        if real == stop - start:
            return values[(slice(None), *rest)]
        fill = UINT16_NAN if self.dtype == np.uint16 else np.nan
        out = np.full((stop - start, *self.shape[1:]), fill, dtype=self.dtype)
        out[:real] = values
        return out[(slice(None), *rest)]


def _expand_block(block: np.ndarray, columns: np.ndarray, n_total: int, dtype) -> np.ndarray:
    return expand_interior(np.asarray(block), columns, n_total, dtype)


def block_rows(time_chunks: int | str, n_bins: int, dtype: np.dtype | str) -> int:
    """Rows per block of a lazy ``(time, n_bins)`` posterior for ``Config.time_chunks``.

    Parameters
    ----------
    time_chunks : int or "auto"
        An int is returned as it is. ``"auto"``: the most rows whose
        ``rows * n_bins * itemsize`` bytes fit dask's ``array.chunk-size``
        setting (128 MiB by default), at least 1.
    n_bins : int
        Columns of a block (all ``state_bins``).
    dtype : dtype
        Dtype of the block's values.

    Returns
    -------
    int
    """
    if time_chunks != "auto":
        return int(time_chunks)
    target = parse_bytes(dask.config.get("array.chunk-size"))
    return max(1, target // (max(1, n_bins) * np.dtype(dtype).itemsize))


def lazy_rows(rows: SequenceRows, step: int) -> da.Array:
    """``rows`` as a dask array of ``step`` rows a block (whole along the other axes).

    Each block reads its rows of the buffer when computed; nothing is copied
    into the graph.
    """
    return da.from_array(
        rows,
        chunks=(max(1, min(step, rows.shape[0])), *rows.shape[1:]),
        name=f"xhmm-rows-{uuid.uuid4().hex}",
        asarray=False,
        lock=False,
        meta=np.empty((0,) * rows.ndim, dtype=rows.dtype),
    )


def lazy_masked_posterior(
    rows: SequenceRows,
    mask: np.ndarray,
    time_chunks: int | str,
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
    time_chunks : int or "auto"
        Rows per dask block, or ``"auto"`` for blocks of about dask's
        ``array.chunk-size`` bytes (:func:`block_rows`).
    dtype : {float32, float64}
        Dtype of the expanded values.

    Returns
    -------
    dask.array.Array
        Shape ``(T, N)``, chunks ``(block_rows(time_chunks, N, dtype), N)``.
    """
    dtype = np.dtype(dtype)
    columns = np.flatnonzero(mask).astype(np.int64)
    n_total = int(mask.size)
    source = lazy_rows(rows, block_rows(time_chunks, n_total, dtype))
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
