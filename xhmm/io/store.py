"""Streamed, chunked, compressed NetCDF or Zarr output and lazy reopening.

Posteriors are written block by block from their dask arrays, so saving a
result far larger than memory needs only a few blocks of RAM. uint16-stored
posteriors are written CF-packed (``scale_factor = 1/65534``,
``_FillValue = 65535``), so a plain ``xr.open_dataset`` / ``xr.open_zarr``
decodes them to floats with NaN restored. The file (or Zarr folder) is
written under a temporary name and renamed when complete: a crashed save
never leaves a file that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
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

__all__ = ["save_results", "open_results", "check_replaceable", "MULTIINDEX_ATTR",
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
    except (OSError, ValueError, AttributeError):
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
    ds = results
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
        in ``.zarr``. Written as ``.<name>.<id>.tmp`` beside it and renamed on
        success.
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
        False returns a ``dask.delayed`` object that writes (and renames)
        when computed.
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
        failed write.
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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write = _write(ds, tmp, engine, encoding)
    except Exception:
        _remove(tmp)
        raise
    finalize = dask.delayed(_finalize)(write, tmp, path)
    if not compute:
        return finalize
    try:
        # A pool of our own, shut down before any clean-up: when one task
        # fails the running ones still finish, and would put files back into
        # a removed Zarr store.
        workers = dask.config.get("num_workers", None) or CPU_COUNT
        with bar, ThreadPoolExecutor(workers) as pool, dask.config.set(pool=pool):
            return finalize.compute()
    except OSError as exc:
        _remove(tmp)
        raise StorageError(
            f"cannot write {str(path)!r} (up to {ds.nbytes:,} bytes before "
            f"compression): {exc.strerror or exc}; nothing was written under that name"
        ) from exc
    except BaseException:
        _remove(tmp)
        raise


def _write(ds: xr.Dataset, tmp: Path, engine: str, encoding: dict):
    """Start writing ``ds`` to ``tmp``; the returned delayed writes the data."""
    if engine == "zarr":
        # Dask blocks equal to the Zarr chunks: no two tasks write one chunk.
        ds = ds.assign({
            name: ds[name].chunk(dict(zip(ds[name].dims, enc["chunks"])))
            for name, enc in encoding.items() if "chunks" in enc
        })
        return ds.to_zarr(tmp, encoding=encoding, compute=False, zarr_format=2,
                          consolidated=True)
    extra = {}
    if engine == "h5netcdf" and any(e.get("dtype") == "float16" for e in encoding.values()):
        extra["invalid_netcdf"] = True  # HDF5 float16: readable by h5netcdf/h5py
    return ds.to_netcdf(tmp, engine=engine, encoding=encoding, compute=False, **extra)


def _remove(path: Path) -> None:
    """Delete the file or Zarr store (a folder) at ``path``, if any."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _finalize(_written, tmp: Path, path: Path) -> Path:
    if path.is_dir() or (tmp.is_dir() and path.exists()):
        # No single rename puts a folder over anything, or anything over a
        # folder: move the old one aside, put the new one in, then delete.
        old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            os.replace(old, path)
            raise
        _remove(old)
    else:
        os.replace(tmp, path)
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
    """
    path = Path(path)
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
        ds = ds.set_index(json.loads(multi))
    return ds.assign_coords(numpy_coords(ds))
