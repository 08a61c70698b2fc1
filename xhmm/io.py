"""Streamed, chunked, compressed NetCDF output and lazy reopening.

Posteriors are written block by block from their dask arrays, so saving a
result far larger than memory needs only a few blocks of RAM. uint16-stored
posteriors are written CF-packed (``scale_factor = 1/65534``,
``_FillValue = 65535``), so a plain ``xr.open_dataset`` decodes them to float32
with NaN restored. The file is written under a temporary name and renamed
when complete: a crashed save never leaves a file that looks finished.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from .errors import StorageError
from .kernels.codec import UINT16_NAN, UINT16_SCALE
from .engine.progress import dask_progress

__all__ = ["save_results", "open_results", "MULTIINDEX_ATTR"]

#: Result attribute recording MultiIndexes (dim -> level names) reset for saving.
MULTIINDEX_ATTR = "xhmm_multiindex"
#: Target uncompressed size of one HDF5 chunk.
_HDF5_CHUNK_BYTES = 4 * 2**20


def _hdf5_rows(var: xr.DataArray, time_chunk: int | None) -> int:
    n_time = var.sizes["time"]
    if time_chunk is not None:
        return max(1, min(int(time_chunk), n_time))
    row_bytes = max(1, int(np.prod([s for d, s in var.sizes.items() if d != "time"]))) * 4
    target = max(1, min(n_time, _HDF5_CHUNK_BYTES // row_bytes))
    if var.chunks is None:
        return target
    blocks = var.chunksizes["time"]
    if len(blocks) == 1:
        return target
    step = blocks[0]
    # HDF5 chunks that tile each dask block exactly, so blocks never share one.
    return max(d for d in range(1, min(step, target) + 1) if step % d == 0)


def _encoding(ds: xr.Dataset, complevel: int, time_chunk: int | None) -> dict:
    encoding: dict[str, dict] = {}
    for name, var in ds.data_vars.items():
        enc: dict = {}
        if var.ndim:
            enc.update(zlib=True, complevel=complevel, shuffle=True)
        if "time" in var.dims:
            rows = _hdf5_rows(var, time_chunk)
            enc["chunksizes"] = tuple(rows if d == "time" else s for d, s in var.sizes.items())
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


def _prepare(results: xr.Dataset, time_chunk: int | None) -> xr.Dataset:
    ds = results
    multi = {
        index.dim: list(index.index.names)
        for index in ds.xindexes.get_unique()
        if isinstance(index, xr.indexes.PandasMultiIndex)
    }
    if multi:
        ds = ds.reset_index(list(multi))
        ds = ds.drop_vars([d for d in multi if d in ds.coords])
        ds.attrs[MULTIINDEX_ATTR] = json.dumps(multi)
    if time_chunk is not None:
        ds = ds.chunk({"time": int(time_chunk)})
    return ds


def save_results(
    results: xr.Dataset,
    path: str | os.PathLike,
    *,
    engine: str = "h5netcdf",
    complevel: int = 4,
    time_chunk: int | None = None,
    compute: bool = True,
    overwrite: bool = False,
    progress: bool | None = None,
):
    """Write results to a chunked, compressed NetCDF file, block by block.

    Parameters
    ----------
    results : xr.Dataset
        A result of ``ds.hmm.smooth`` / ``filter`` (lazy or eager).
    path : path
        Destination. Written as ``.<name>.<id>.tmp`` beside it and renamed on
        success.
    engine : {"h5netcdf", "netcdf4"}
    complevel : int, default 4
        gzip level, 0-9.
    time_chunk : int, optional
        Rows per HDF5 chunk (the data are rechunked to match). By default
        chunks of about 4 MiB that tile the result's dask blocks.
    compute : bool, default True
        False returns a ``dask.delayed`` object that writes (and renames)
        when computed.
    overwrite : bool, default False
        Replace an existing file at ``path``.
    progress : bool, optional
        Show a progress bar over the write (when ``compute=True``). None
        (default) shows it when attached to a terminal or notebook, as
        ``Config.progress`` does.

    Returns
    -------
    Path or dask.delayed.Delayed
    """
    path = Path(path)
    if engine not in ("h5netcdf", "netcdf4"):
        raise StorageError(f"engine must be 'h5netcdf' or 'netcdf4', got {engine!r}")
    if not isinstance(complevel, int) or not 0 <= complevel <= 9:
        raise StorageError(f"complevel must be an int from 0 to 9, got {complevel!r}")
    if time_chunk is not None and (not isinstance(time_chunk, int) or time_chunk <= 0):
        raise StorageError(f"time_chunk must be a positive int, got {time_chunk!r}")
    bar = dask_progress(progress, f"xhmm save {path.name}")
    if path.exists() and not overwrite:
        raise StorageError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise StorageError(f"folder {str(path.parent)!r} of the output file does not exist")
    if not os.access(path.parent, os.W_OK):
        raise StorageError(f"folder {str(path.parent)!r} is not writable")
    ds = _prepare(results, time_chunk)
    encoding = _encoding(ds, complevel, time_chunk)
    extra = {}
    if engine == "h5netcdf" and any(e.get("dtype") == "float16" for e in encoding.values()):
        extra["invalid_netcdf"] = True  # HDF5 float16: readable by h5netcdf/h5py
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write = ds.to_netcdf(tmp, engine=engine, encoding=encoding, compute=False, **extra)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    finalize = dask.delayed(_finalize)(write, tmp, path)
    if not compute:
        return finalize
    try:
        with bar:
            return finalize.compute()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(
            f"cannot write {str(path)!r} (up to {ds.nbytes:,} bytes before "
            f"compression): {exc.strerror or exc}; nothing was written under that name"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _finalize(_written, tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)
    return path


def open_results(path: str | os.PathLike, chunks: dict | str | None = None) -> xr.Dataset:
    """Reopen saved results lazily (dask-backed), restoring any MultiIndex.

    Parameters
    ----------
    path : path
    chunks : dict or "auto", optional
        Dask chunks; by default the file's own chunking.

    Returns
    -------
    xr.Dataset
    """
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"no results file at {str(path)!r}")
    ds = xr.open_dataset(path, engine="h5netcdf", chunks={} if chunks is None else chunks)
    multi = ds.attrs.pop(MULTIINDEX_ATTR, None)
    if multi:
        ds = ds.set_index(json.loads(multi))
    return ds
