"""Output buffers (RAM or memmap) and cast-on-write to the storage dtype."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import numpy as np

from ..errors import StorageError
from ..kernels.codec import to_uint16

__all__ = ["alloc_out", "write_rows", "prepare_memmap_dir", "sync_rows"]


def alloc_out(
    shape: tuple[int, ...],
    dtype: np.dtype | str,
    name: str,
    memmap_dir: str | os.PathLike | None = None,
    mode: str = "w+",
) -> np.ndarray:
    """Allocate one output buffer in RAM or as ``{memmap_dir}/{name}.dat``.

    Parameters
    ----------
    shape : tuple of int
    dtype : dtype
    name : str
        Output name; the memmap file is ``{name}.dat``.
    memmap_dir : path, optional
        None allocates in RAM (``np.empty``). Otherwise the folder is created
        if needed and an ``np.memmap`` is returned.
    mode : {"w+", "r+", "r"}
        ``np.memmap`` mode; "w+" creates (or truncates) the file.

    Returns
    -------
    ndarray or np.memmap

    Raises
    ------
    StorageError
        When the folder or file cannot be created (read-only, disk full),
        naming the path and the bytes needed.
    """
    dtype = np.dtype(dtype)
    if memmap_dir is None:
        return np.empty(shape, dtype=dtype)
    path = Path(memmap_dir) / f"{name}.dat"
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if nbytes == 0:
            path.touch()
            return np.empty(shape, dtype=dtype)
        if mode == "w+":
            _reserve(path, nbytes)
            mode = "r+"
        return np.memmap(path, dtype=dtype, mode=mode, shape=shape)
    except OSError as exc:
        raise StorageError(
            f"cannot create memmap output {name!r} at {str(path)!r} "
            f"({nbytes:,} bytes needed): {exc.strerror or exc}"
        ) from exc


def _reserve(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` of disk space actually reserved.

    ``posix_fallocate`` makes a full disk fail here, at allocation, instead of
    as a SIGBUS when a page is first written.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)


def write_rows(out: np.ndarray, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` into ``out[start:start + len(rows)]``, casting on write.

    uint16 outputs receive quantised codes (see :mod:`xhmm.kernels.codec`);
    float outputs receive a plain cast.
    """
    stop = start + rows.shape[0]
    if out.dtype == np.uint16:
        to_uint16(rows, out=out[start:stop])
    else:
        out[start:stop] = rows


def prepare_memmap_dir(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Check (and create) the folder of a memmap run.

    Raises
    ------
    StorageError
        If the folder holds files and ``overwrite`` is False, or it cannot be
        created or written.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create memmap_dir {str(folder)!r}: {exc.strerror or exc}"
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"memmap_dir {str(folder)!r} is not writable")
    existing = sorted(p.name for p in folder.iterdir())
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
        raise StorageError(
            f"memmap_dir {str(folder)!r} is not empty ({shown}); pass overwrite=True "
            "to replace its contents, resume=True to continue a run, or choose "
            "another folder"
        )
    return folder


def sync_rows(buffer: np.ndarray, start: int, stop: int, flush: bool = True) -> None:
    """Flush rows ``start:stop`` of a memmap to disk and drop them from RSS.

    After ``msync`` the pages are clean copies of the file, so
    ``MADV_DONTNEED`` only unmaps them from this process: host memory stays at
    about one chunk however long the recording. With ``flush=False`` the
    pages are only unmapped: dirty ones stay in the page cache, written back
    by the kernel in its own time (the data survive the process, not a
    crash of the machine). RAM buffers are left alone.
    """
    mm = getattr(buffer, "_mmap", None)
    if mm is None or stop <= start:
        return
    row_bytes = int(np.prod(buffer.shape[1:], dtype=np.int64)) * buffer.dtype.itemsize
    base = buffer.offset - buffer.offset // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
    first = base + start * row_bytes
    aligned = first - first % mmap.PAGESIZE
    length = base + stop * row_bytes - aligned
    try:
        if flush:
            mm.flush(aligned, length)
    except OSError as exc:
        raise StorageError(
            f"cannot write {length:,} bytes to {getattr(buffer, 'filename', '?')!r}: "
            f"{exc.strerror or exc}"
        ) from exc
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED, aligned, length)
