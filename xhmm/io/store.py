"""Streamed, chunked, compressed NetCDF or Zarr output and lazy reopening.

Posteriors are written block by block from their dask arrays, so saving a
result far larger than memory needs only a few blocks of RAM. uint16-stored
posteriors are written CF-packed (``scale_factor = 1/65534``,
``_FillValue = 65535``), so a plain ``xr.open_dataset`` / ``xr.open_zarr``
decodes them to floats with NaN restored. The file (or Zarr folder) is
written under a temporary name and renamed when complete: a crashed save
never leaves a file that looks finished. A failed save removes its
temporary; one a killed save left (its writer's PID is in the name) is
removed, and a store whose replacement was interrupted is put back, by the
next save or open of that name (:func:`recover`).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr
from dask.system import CPU_COUNT

from ..engine.progress import dask_progress
from ..errors import StorageError
from ..extras import require
from ..frontend.coords import numpy_coords
from ..kernels.codec import UINT16_NAN, UINT16_SCALE
from ..names import TIME, TIME_DIM_ATTR

__all__ = ["save_results", "open_results", "check_replaceable", "recover", "MULTIINDEX_ATTR",
           "XHMM_ATTR"]

#: Result attribute recording MultiIndexes (dim -> level names) reset for saving.
MULTIINDEX_ATTR = "xhmm_multiindex"
#: Global attribute of every result xhmm builds (its Config as JSON): the mark
#: of a file or store xhmm wrote, the only kind ``overwrite=True`` replaces.
XHMM_ATTR = "xhmm_config"
#: Target uncompressed size of one HDF5 or Zarr chunk.
_CHUNK_BYTES = 4 * 2**20
_NETCDF_ENGINES = ("h5netcdf", "netcdf4")
#: Suffixes that name a NetCDF file, never a Zarr store.
_NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".cdf")


def _resolve_engine(path: Path, engine: str | None) -> str:
    """The writer for ``path``: Zarr for a ``.zarr`` suffix, else h5netcdf."""
    if engine is None:
        return "zarr" if path.suffix == ".zarr" else "h5netcdf"
    if engine not in (*_NETCDF_ENGINES, "zarr"):
        raise StorageError(
            f"engine must be 'h5netcdf', 'netcdf4' or 'zarr', got {engine!r}"
        )
    wants_zarr = engine == "zarr"
    if (wants_zarr and path.suffix in _NETCDF_SUFFIXES) or (
        not wants_zarr and path.suffix == ".zarr"
    ):
        raise StorageError(
            f"engine={engine!r} does not match the suffix of {str(path)!r}: "
            "name a Zarr store '*.zarr' and a NetCDF file '*.nc'"
        )
    return engine


def _chunk_rows(var: xr.DataArray, time_chunk: int | None, time_dim: str) -> int:
    n_time = var.sizes[time_dim]
    if time_chunk is not None:
        return max(1, min(int(time_chunk), n_time))
    row_bytes = max(1, int(np.prod([s for d, s in var.sizes.items() if d != time_dim]))) * 4
    target = max(1, min(n_time, _CHUNK_BYTES // row_bytes))
    if var.chunks is None:
        return target
    blocks = var.chunksizes[time_dim]
    if len(blocks) == 1:
        return target
    step = blocks[0]
    # Chunks that tile each dask block exactly, so blocks never share one.
    return max(d for d in range(1, min(step, target) + 1) if step % d == 0)


def _encoding(ds: xr.Dataset, complevel: int, time_chunk: int | None, engine: str,
              time_dim: str) -> dict:
    if engine == "zarr":
        require("zarr", "zarr", "saving results as Zarr")
        from numcodecs import Blosc  # a dependency of zarr

        compression: dict = {
            "compressors": [Blosc(cname="zstd", clevel=complevel, shuffle=Blosc.SHUFFLE)]
        }
        chunk_key = "chunks"
    else:
        compression = {"zlib": True, "complevel": complevel, "shuffle": True}
        chunk_key = "chunksizes"
    encoding: dict[str, dict] = {}
    for name, var in ds.data_vars.items():
        enc: dict = {}
        if var.ndim:
            enc.update(compression)
        if time_dim in var.dims:
            rows = _chunk_rows(var, time_chunk, time_dim)
            enc[chunk_key] = tuple(rows if d == time_dim else s for d, s in var.sizes.items())
        storage = var.attrs.get("xhmm_storage_dtype")
        if storage == "uint16":
            enc.update(
                dtype="uint16",
                scale_factor=np.float32(1.0 / UINT16_SCALE),
                add_offset=np.float32(0.0),
                _FillValue=np.uint16(UINT16_NAN),
            )
        elif storage == "float16":
            enc["dtype"] = "float16"
        encoding[name] = enc
    return encoding


def _global_attrs(path: Path) -> dict | None:
    """The global attributes of the NetCDF file or Zarr store at ``path``; None if neither."""
    try:
        if path.is_dir():
            for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
                if (path / name).is_file():
                    data = json.loads((path / name).read_text())
                    return data.get(key, {}) if key else data
            return None
        import h5py  # h5netcdf's HDF5 layer: reads NetCDF-4 files of either engine

        with h5py.File(path, "r") as fh:
            return dict(fh.attrs)
    except (OSError, ValueError, AttributeError, RecursionError):
        return None


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise unless what is at ``path`` (if anything) is results xhmm wrote.

    ``overwrite=True`` (``--force`` on the command line) replaces only a
    NetCDF file or Zarr store carrying the global attribute
    :data:`XHMM_ATTR`, which every result xhmm builds has.

    Raises
    ------
    xhmm.StorageError
        Naming ``path``, for anything else: a folder of other files, a
        NetCDF or Zarr store of other data, any other file.
    """
    path = Path(path)
    if not path.exists():
        return
    attrs = _global_attrs(path)
    if attrs is None or XHMM_ATTR not in attrs:
        kind = "a folder" if path.is_dir() else "a file"
        raise StorageError(
            f"{str(path)!r} is not a results file or Zarr store written by xhmm ({kind} "
            f"without the {XHMM_ATTR!r} attribute); overwrite replaces only those, so "
            "nothing was deleted: choose another name or remove it yourself"
        )


def _prepare(results: xr.Dataset, time_chunk: int | None, time_dim: str) -> xr.Dataset:
    ds = results.copy(deep=False)
    ds.attrs.pop("xhmm_memmap_dir", None)  # the run's folder; the file holds the data
    multi = {
        index.dim: list(index.index.names)
        for index in ds.xindexes.get_unique()
        if isinstance(getattr(index, "index", None), pd.MultiIndex)
    }
    if multi:
        ds = ds.reset_index(list(multi))
        ds = ds.drop_vars([d for d in multi if d in ds.coords])
        ds.attrs[MULTIINDEX_ATTR] = json.dumps(multi)
    if time_chunk is not None and time_dim in ds.dims:
        ds = ds.chunk({time_dim: int(time_chunk)})
    return ds


def save_results(
    results: xr.Dataset,
    path: str | os.PathLike,
    *,
    engine: str | None = None,
    complevel: int = 4,
    time_chunk: int | None = None,
    compute: bool = True,
    overwrite: bool = False,
    progress: bool | None = None,
):
    """Write results to a chunked, compressed NetCDF file or Zarr store, block by block.

    Parameters
    ----------
    results : xr.Dataset
        A result of ``ds.hmm.smooth`` / ``filter`` (lazy or eager).
    path : path
        Destination: a NetCDF file, or a Zarr store (a folder) when it ends
        in ``.zarr``. Written as ``.<name>.<host>-<pid>-<id>.tmp`` beside it and
        renamed on success; a failed save removes it. Temporaries of earlier
        saves to ``path`` that were killed are removed first, and an earlier
        store a killed replacement left aside is put back (:func:`recover`).
    engine : {"h5netcdf", "netcdf4", "zarr"}, optional
        By default ``"zarr"`` for a ``.zarr`` path and ``"h5netcdf"``
        otherwise. Zarr stores are written in Zarr format 2 (readable by
        every Zarr library) and need the ``zarr`` package
        (``pip install 'xhmm[zarr]'``).
    complevel : int, default 4
        Compression level, 0-9: gzip with byte shuffle for NetCDF, Blosc
        zstd with byte shuffle for Zarr.
    time_chunk : int, optional
        Rows per HDF5 or Zarr chunk (the data are rechunked to match). By
        default chunks of about 4 MiB that tile the result's dask blocks.
        Rows run along ``time``, or the caller's time dim that the attribute
        ``xhmm_time_dim`` names (results of ``time_dim=...``).
    compute : bool, default True
        True writes on dask's threaded scheduler in this process, with a
        pool of its own. False returns a ``dask.delayed`` object that writes
        (and renames) when computed; if that compute fails, its temporary
        stays until a save to ``path`` from another process.
    overwrite : bool, default False
        Replace an existing file or store at ``path``, if xhmm wrote it
        (:func:`check_replaceable`); anything else there is an error.
    progress : bool, optional
        Show a progress bar over the write (when ``compute=True``). None
        (default) shows it when attached to a terminal or notebook, as
        ``Config.progress`` does.

    Returns
    -------
    Path or dask.delayed.Delayed

    Raises
    ------
    xhmm.StorageError
        For a bad argument, an existing ``path`` without ``overwrite`` (or,
        with it, one xhmm did not write), a missing or read-only folder, a
        failed write (naming ``path`` and the operating system's error: no
        space left, file too large, ...).
    xhmm.MissingExtraError
        For Zarr without the ``zarr`` package.
    """
    path = Path(path)
    engine = _resolve_engine(path, engine)
    if not isinstance(complevel, int) or not 0 <= complevel <= 9:
        raise StorageError(f"complevel must be an int from 0 to 9, got {complevel!r}")
    if time_chunk is not None and (not isinstance(time_chunk, int) or time_chunk <= 0):
        raise StorageError(f"time_chunk must be a positive int, got {time_chunk!r}")
    bar = dask_progress(progress, f"xhmm save {path.name}")
    recover(path)
    if path.exists() and not overwrite:
        raise StorageError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    check_replaceable(path)
    if not path.parent.is_dir():
        raise StorageError(f"folder {str(path.parent)!r} of the output file does not exist")
    if not os.access(path.parent, os.W_OK):
        raise StorageError(f"folder {str(path.parent)!r} is not writable")
    time_dim = results.attrs.get(TIME_DIM_ATTR, TIME)
    ds = _prepare(results, time_chunk, time_dim)
    encoding = _encoding(ds, complevel, time_chunk, engine, time_dim)
    tmp = _sibling(path, "tmp")
    _WRITING.add(tmp)
    if not compute:
        try:
            write = _write(ds, tmp, engine, encoding, compute=False)
        except BaseException:
            _discard(tmp, tmp)
            raise
        return dask.delayed(_finalize)(write, tmp, tmp, path)
    target = _GuardedFile(tmp) if engine == "h5netcdf" and _H5NETCDF_FILE_OBJECTS else tmp
    try:
        # A pool of our own, shut down before any clean-up: when one task
        # fails the running ones still finish, and would put files back into
        # a removed Zarr store. xarray closes the file, failed or not.
        workers = dask.config.get("num_workers", None) or CPU_COUNT
        with bar, ThreadPoolExecutor(workers) as pool, dask.config.set(pool=pool,
                                                                      scheduler="threads"):
            _write(ds, target, engine, encoding, compute=True)
        return _finalize(None, target, tmp, path)
    except OSError as exc:
        _discard(target, tmp)
        raise StorageError(
            f"cannot write {str(path)!r} (up to {ds.nbytes:,} bytes before "
            f"compression): {exc.strerror or exc}; nothing was written under that name"
        ) from exc
    except BaseException:
        _discard(target, tmp)
        raise


#: Whether xarray writes h5netcdf to a file object (from 2025.8; before it, a
#: file object always went to the scipy backend). Older xarray writes to the
#: path: a failed write is still a StorageError with the temporary removed, but
#: HDF5 may keep the failed file's handle open until the process ends.
_H5NETCDF_FILE_OBJECTS = tuple(map(int, xr.__version__.split(".")[:2])) >= (2025, 8)


class _GuardedFile(io.FileIO):
    """The temporary NetCDF file as HDF5 writes it, through h5py's file-object driver.

    The first failed write (a full disk, a file size limit) is kept in
    :attr:`error` and every later write is dropped: HDF5 never sees a
    failure, so it closes the file cleanly (a failed HDF5 write leaves a
    handle HDF5 cannot close: a leaked file, tracebacks at garbage
    collection, a crash). Every block of data passes :meth:`check` before it
    is written, which stops the save at the next block; :func:`_finalize`
    raises :attr:`error`, and the temporary file is removed.
    """

    error: OSError | None = None

    def __init__(self, path: Path) -> None:
        super().__init__(path, "w+")

    def write(self, data) -> int:
        """Write all of ``data``, or keep the error and drop it; the size of ``data``."""
        view = memoryview(data).cast("B")
        size = view.nbytes
        while view.nbytes and self.error is None:
            try:
                view = view[super().write(view):]
            except OSError as exc:
                self.error = exc
        return size

    def truncate(self, size: int | None = None) -> int:
        """Resize the file, or keep the error and do nothing."""
        if self.error is None:
            try:
                return super().truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size

    def check(self, block: np.ndarray) -> np.ndarray:
        """``block``, or the kept write error raised."""
        if self.error is not None:
            raise self.error
        return block


def _write(ds: xr.Dataset, target: Path | _GuardedFile, engine: str, encoding: dict,
           compute: bool):
    """Write ``ds`` to ``target``; with ``compute=False`` the returned delayed writes the data."""
    if engine == "zarr":
        # Dask blocks equal to the Zarr chunks: no two tasks write one chunk.
        ds = ds.assign({
            name: ds[name].chunk(dict(zip(ds[name].dims, enc["chunks"])))
            for name, enc in encoding.items() if "chunks" in enc
        })
        return ds.to_zarr(target, encoding=encoding, compute=compute, zarr_format=2,
                          consolidated=True)
    extra = {}
    if engine == "h5netcdf" and any(e.get("dtype") == "float16" for e in encoding.values()):
        extra["invalid_netcdf"] = True  # HDF5 float16: readable by h5netcdf/h5py
    if isinstance(target, _GuardedFile):
        ds = ds.assign({
            name: var.copy(data=var.data.map_blocks(
                target.check, dtype=var.dtype, name=f"xhmm-save-{name}-{uuid.uuid4().hex}"))
            for name, var in ds.data_vars.items() if var.chunks is not None
        })
    return ds.to_netcdf(target, engine=engine, encoding=encoding, compute=compute, **extra)


def _remove(path: Path) -> None:
    """Delete the file or Zarr store (a folder) at ``path``, if any."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _discard(target: Path | _GuardedFile, tmp: Path) -> None:
    """After a failed save: close the temporary file (HDF5 closed it already), remove it."""
    if isinstance(target, _GuardedFile):
        target.close()
    _remove(tmp)
    _WRITING.discard(tmp)


#: Temporaries this process is writing now (never stale, whatever their PID says).
_WRITING: set[Path] = set()
#: This machine in temporary names (a CRC of its host name): a PID means
#: something only on the machine that wrote it (a shared folder has others').
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
#: ``.<name>.<host>-<pid>-<id>.tmp`` / ``.old``: what :func:`save_results` makes beside ``<name>``.
_SIBLING = r"\.{name}\.{host}-(?P<pid>\d+)-[0-9a-f]{{8}}\.(?P<kind>tmp|old)"


def _sibling(path: Path, kind: str) -> Path:
    """A new ``.<name>.<host>-<pid>-<id>.<kind>`` path beside ``path``: this process in it."""
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}")


def _writer_gone(pid: int, sibling: Path) -> bool:
    """Whether the save that made ``sibling`` has ended (its process is gone)."""
    if pid == os.getpid():
        return sibling not in _WRITING
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: alive
        return False
    return False


def recover(path: str | os.PathLike) -> Path | None:
    """Clean up after saves to ``path`` that were killed; nothing of the user's is lost.

    A save killed between the two renames of a replacement (a Zarr store,
    or a folder and a file replacing each other) leaves the earlier store as
    ``.<name>.<host>-<pid>-<id>.old`` and nothing at ``path``: it is put
    back. Temporaries (``.tmp``) and ``.old`` copies of finished
    replacements are removed. Only names :func:`save_results` makes on this
    machine (``<host>``, a CRC-32 of its host name) are touched, and only
    when their writer's process has ended.

    Parameters
    ----------
    path : path
        The target of the saves.

    Returns
    -------
    Path or None
        The store put back at ``path``, if one was.

    Raises
    ------
    xhmm.StorageError
        If an earlier store cannot be put back, naming where it is.
    """
    path = Path(path)
    pattern = re.compile(_SIBLING.format(name=re.escape(path.name), host=_HOST))
    try:
        found = sorted(path.parent.iterdir()) if path.parent.is_dir() else []
    except OSError:
        return None
    stale = [(p, m["kind"]) for p in found if (m := pattern.fullmatch(p.name))
             and _writer_gone(int(m["pid"]), p)]
    restored = None
    for sibling, kind in stale:
        if kind == "old" and restored is None and not path.exists():
            try:
                os.replace(sibling, path)
            except OSError as exc:
                raise StorageError(
                    f"nothing is at {str(path)!r}: a save replacing it was interrupted, "
                    f"and the earlier results at {str(sibling)!r} cannot be put back "
                    f"({exc.strerror or exc}); rename that back to {path.name!r}"
                ) from exc
            restored = path
        else:
            try:
                _remove(sibling)
            except OSError:  # e.g. a read-only folder: left for a later save
                pass
    return restored


def _finalize(_written, target: Path | _GuardedFile, tmp: Path, path: Path) -> Path:
    if isinstance(target, _GuardedFile):
        target.close()
        if target.error is not None:
            raise target.error
    if path.is_dir() or (tmp.is_dir() and path.exists()):
        # No single rename puts a folder over anything, or anything over a
        # folder: move the old one aside, put the new one in, then delete.
        # A kill in between leaves the old one as .old: recover() puts it back.
        old = _sibling(path, "old")
        _WRITING.add(old)
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            os.replace(old, path)
            raise
        finally:
            _WRITING.discard(old)
        _remove(old)
    else:
        os.replace(tmp, path)
    _WRITING.discard(tmp)
    return path


def open_results(path: str | os.PathLike, chunks: dict | str | None = None) -> xr.Dataset:
    """Reopen saved results lazily (dask-backed), restoring any MultiIndex.

    Reads what :func:`save_results` writes: a NetCDF file or a Zarr store.
    Data variables stay lazy; the 1-D coordinates (``state``, ``position``,
    ``is_interior``, ...) are loaded into NumPy
    (:func:`xhmm.frontend.coords.numpy_coords`), so boolean selections and
    ``groupby`` on them work as on a fresh result.

    Parameters
    ----------
    path : path
        A NetCDF file, or a Zarr store (a folder).
    chunks : dict or "auto", optional
        Dask chunks; by default the file's own chunking.

    Returns
    -------
    xr.Dataset
        uint16-stored posteriors decoded to float32 (NaN on exterior bins)
        from either format.

    Raises
    ------
    xhmm.StorageError
        If nothing is at ``path``.
    xhmm.MissingExtraError
        If it is a Zarr store and the ``zarr`` package is not installed.

    Notes
    -----
    If nothing is at ``path`` because a save replacing it was killed
    between its two renames, the earlier results are put back first
    (:func:`recover`).
    """
    path = Path(path)
    if not path.exists():
        recover(path)
    if path.is_dir():
        require("zarr", "zarr", "opening results as Zarr")
        engine = "zarr"
    elif path.is_file():
        engine = "h5netcdf"
    else:
        raise StorageError(f"no results file or Zarr store at {str(path)!r}")
    ds = xr.open_dataset(path, engine=engine, chunks={} if chunks is None else chunks)
    if engine == "zarr":
        # Zarr attributes are JSON, so scale_factor loses its float32 type and
        # xarray decodes to float64; present float32 as the NetCDF path does.
        ds = ds.assign({
            name: var.astype(np.float32) for name, var in ds.data_vars.items()
            if var.attrs.get("xhmm_storage_dtype") == "uint16"
        })
    multi = ds.attrs.pop(MULTIINDEX_ATTR, None)
    if multi:
        try:
            levels = json.loads(multi)
        except (ValueError, RecursionError) as exc:
            raise StorageError(
                f"cannot open {str(path)!r}: its attribute {MULTIINDEX_ATTR!r} is not "
                f"readable JSON ({exc})"
            ) from exc
        ds = ds.set_index(levels)
    return ds.assign_coords(numpy_coords(ds))
