"""Output buffers (RAM or memmap), cast-on-write, and the files of a run folder.

Memmaps reopened to resume or to read are first checked to be of their full
size; a run folder is prepared under the overwrite rules (only an empty
folder or one xhmm wrote) and held by one writer at a time (:class:`FolderLock`).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ResumeError, StorageError
from ..kernels.codec import to_uint16

__all__ = ["MANIFEST", "LOCK_FILE", "alloc_out", "check_file", "write_rows",
           "prepare_memmap_dir", "FolderLock", "locked_folder", "sync_rows"]

#: The manifest of a memmap run (:mod:`xhmm.engine.manifest`).
MANIFEST = "manifest.json"
#: The lock file of a memmap run folder: held (``flock``) by the one process
#: writing in the folder, and left there as the mark of a folder xhmm wrote.
LOCK_FILE = ".xhmm.lock"


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
        ``np.memmap`` mode; "w+" creates (or truncates) the file. "r+"
        (resume) and "r" (reading results) first check that the file holds
        exactly ``shape`` × itemsize bytes: ``np.memmap`` would extend a
        short file with zeros.

    Returns
    -------
    ndarray or np.memmap

    Raises
    ------
    StorageError
        When the folder or file cannot be created (read-only, disk full),
        naming the path and the bytes needed; reading (mode "r"), when the
        file is missing or of another size.
    ResumeError
        Resuming (mode "r+"), when the file is missing or of another size.
    """
    dtype = np.dtype(dtype)
    if memmap_dir is None:
        return np.empty(shape, dtype=dtype)
    path = Path(memmap_dir) / f"{name}.dat"
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if mode != "w+":
        check_file(path, nbytes, shape, dtype, resume=mode == "r+")
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


def check_file(path: Path, nbytes: int, shape: tuple[int, ...], dtype: np.dtype,
               *, resume: bool) -> None:
    """Raise unless ``path`` holds exactly ``nbytes`` (an output of ``shape``, ``dtype``).

    Raises
    ------
    ResumeError
        When ``resume``, naming the file and both sizes.
    StorageError
        Otherwise (reading results), the same.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        found = "is missing"
    except OSError as exc:
        found = f"cannot be read ({exc.strerror or exc})"
    else:
        if size == nbytes:
            return
        found = f"holds {size:,} bytes"
    what = (f"{str(path)!r} {found}; an output of shape {tuple(shape)} {dtype.name} needs "
            f"{nbytes:,} bytes (the file was truncated, replaced or deleted)")
    if resume:
        raise ResumeError(f"cannot resume the run in {str(path.parent)!r}: {what}; start "
                          "the run again with overwrite=True")
    raise StorageError(f"cannot read the results in {str(path.parent)!r}: {what}")


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

    A folder holding files (besides :data:`LOCK_FILE`) is used only with
    ``overwrite``, and only if xhmm wrote it: it holds :data:`LOCK_FILE` or
    :data:`MANIFEST`. Nothing is deleted here.

    Raises
    ------
    StorageError
        If the folder holds files of a folder xhmm did not write, holds an
        earlier run and ``overwrite`` is False, or cannot be created or
        written.
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
    existing = sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE)
    shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
    if existing and not ((folder / LOCK_FILE).exists() or (folder / MANIFEST).exists()):
        raise StorageError(
            f"memmap_dir {str(folder)!r} holds files xhmm did not write ({shown}); "
            "choose another folder (overwrite=True replaces only the folder of an "
            "earlier xhmm run)"
        )
    if existing and not overwrite:
        raise StorageError(
            f"memmap_dir {str(folder)!r} holds an earlier xhmm run ({shown}); pass "
            "overwrite=True to replace it, resume=True to continue it, or choose "
            "another folder"
        )
    return folder


class FolderLock:
    """The one-writer lock of a run folder: ``flock`` on ``{folder}/.xhmm.lock``.

    Acquired at construction (the holder's PID is written into the file),
    released by :meth:`release` or when the process ends, however it ends.
    The file itself stays, as the mark of a folder xhmm wrote.

    Parameters
    ----------
    folder : Path

    Raises
    ------
    StorageError
        If another process (or another open of the file) holds the lock,
        naming the holder's PID, or the lock file cannot be created.
    """

    def __init__(self, folder: Path) -> None:
        path = folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(
                f"cannot create the lock file {str(path)!r}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StorageError(
                f"memmap_dir {str(folder)!r} is in use by another xhmm run (process "
                f"{holder}); wait for it to finish or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Release the lock (closing the file); a second call does nothing."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextmanager
def locked_folder(path: str | os.PathLike | None, *, overwrite: bool,
                  resume: bool) -> Iterator[Path]:
    """Hold the folder of a memmap run, locked (:class:`FolderLock`), for a ``with`` block.

    Parameters
    ----------
    path : path or None
        The run folder; None makes a new temporary one (in the system temp
        dir), removed here if the block fails.
    overwrite : bool
        A fresh run may use a folder of an earlier xhmm run
        (:func:`prepare_memmap_dir`).
    resume : bool
        The folder holds the run to continue: it must exist, and is not
        checked for files.

    Yields
    ------
    Path
        The folder, locked until the block ends (normally or not).

    Raises
    ------
    ResumeError
        Resuming in a folder that does not exist.
    StorageError
        The folder cannot be used (:func:`prepare_memmap_dir`) or another
        run holds it (:class:`FolderLock`).
    """
    if resume:
        folder = Path(path)
        if not folder.is_dir():
            raise ResumeError(f"no run to resume in {str(folder)!r}: the folder does not exist")
        lock = FolderLock(folder)
    else:
        folder = prepare_memmap_dir(path or tempfile.mkdtemp(prefix="xhmm-"),
                                    overwrite=overwrite)
        lock = FolderLock(folder)
        try:  # again under the lock: a run may have written since the check
            prepare_memmap_dir(folder, overwrite=overwrite)
        except StorageError:
            lock.release()
            raise
    try:
        yield folder
    except BaseException:
        if path is None:  # a temporary folder of a failed run: nothing can resume it
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.release()


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
