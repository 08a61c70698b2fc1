"""``xhmm info``: what a results file or Zarr store holds, how it was made, whether it is whole."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from ..config import Config
from ..errors import ConfigError, StorageError

__all__ = ["add_arguments", "run", "describe", "Completeness", "disk_bytes"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xhmm info``."""
    parser.add_argument("results", type=Path, metavar="RESULTS",
                        help="a NetCDF file or Zarr store written by xhmm "
                        "(xhmm.save_results or xhmm smooth/filter/viterbi)")


def disk_bytes(path: Path) -> int:
    """Bytes a file, or every file under a folder (a Zarr store), takes on disk."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass
class Completeness:
    """Whether every chunk of every HDF5 variable of a file was written.

    Attributes
    ----------
    complete : bool or None
        None when the file is not HDF5 (e.g. NetCDF-3, or a Zarr store)
        and cannot be checked.
    detail : str
        One line saying why.
    storage : dict of str to int
        Bytes each variable takes on disk (HDF5 files and Zarr stores).
    """

    complete: bool | None
    detail: str
    storage: dict[str, int]


def _completeness(path: Path) -> Completeness:
    import h5py

    if path.name.startswith(".") and path.name.endswith(".tmp"):
        return Completeness(False, "a temporary file of a save that did not finish", {})
    if path.is_dir():
        # A Zarr store: a chunk of fill values alone is not stored, so a
        # missing chunk may be an empty one.
        storage = {p.name: disk_bytes(p) for p in path.iterdir() if p.is_dir()}
        return Completeness(None, "a Zarr store: unwritten chunks cannot be told from "
                            "chunks of fill values", storage)
    try:
        handle = h5py.File(path, "r")
    except OSError:
        return Completeness(None, "not an HDF5 file: chunks cannot be checked", {})
    storage: dict[str, int] = {}
    missing: list[str] = []
    with handle:
        datasets: list[h5py.Dataset] = []
        handle.visititems(
            lambda _, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None
        )
        for dset in datasets:
            name = dset.name.lstrip("/")
            storage[name] = dset.id.get_storage_size()
            if dset.chunks is None or dset.size == 0:
                continue
            expected = math.prod(-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True))
            written = dset.id.get_num_chunks()
            if written < expected:
                missing.append(f"{name}: {written} of {expected} chunks written")
    if missing:
        return Completeness(False, "; ".join(missing), storage)
    return Completeness(True, "every chunk of every variable is written", storage)


def _bytes(n: float) -> str:
    units = ("B", "kB", "MB", "GB", "TB")
    step = 0
    while n >= 1000 and step < len(units) - 1:
        n /= 1000
        step += 1
    return f"{n:,.0f} B" if step == 0 else f"{n:,.1f} {units[step]}"


def _config_lines(ds: xr.Dataset) -> list[str]:
    text = ds.attrs.get("xhmm_config")
    if text is None:
        return ["config: not recorded (no 'xhmm_config' attribute; not written by xhmm?)"]
    try:
        config = Config.from_json(text)
    except (ConfigError, TypeError, json.JSONDecodeError, RecursionError) as exc:
        return [f"config: unreadable 'xhmm_config' attribute ({exc})"]
    # Only the fields the result recorded (a most_likely_sequence result leaves
    # out the posterior settings). The dtype the posteriors were stored in:
    # quantize_posteriors=True stores uint16 whatever posterior_dtype says.
    recorded = json.loads(text)
    values = {name: value for name, value in config.to_dict().items() if name in recorded}
    if "posterior_dtype" in values:
        values["posterior_dtype"] = config.storage_dtype
    width = max(map(len, values))
    return ["config used (xhmm_config):"] + [
        f"  {name:<{width}} = {value!r}" for name, value in values.items()
    ]


def describe(path: Path) -> tuple[list[str], bool | None]:
    """The lines ``xhmm info`` prints for ``path``, and whether it is complete.

    Parameters
    ----------
    path : Path
        A NetCDF file, or a Zarr store (a folder).

    Returns
    -------
    lines : list of str
    complete : bool or None
        See :class:`Completeness`.

    Raises
    ------
    xhmm.StorageError
        If nothing is at ``path``, it cannot be opened as NetCDF (a file) or
        Zarr (a folder).
    xhmm.MissingExtraError
        If it is a folder and the ``zarr`` package is missing.
    """
    from ..extras import require

    if path.is_dir():
        require("zarr", "zarr", f"reading {str(path)!r} (a Zarr store)")
        engine, kind = "zarr", "Zarr"
    elif path.is_file():
        engine, kind = None, "NetCDF"
    else:
        raise StorageError(f"no results file or Zarr store at {str(path)!r}")
    check = _completeness(path)
    try:
        ds = xr.open_dataset(path, engine=engine, chunks=None)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"cannot open {str(path)!r} as {kind}: {first}") from exc
    with ds:
        state = {True: "yes", False: "NO", None: "unknown"}[check.complete]
        lines = [
            f"{path}: {_bytes(disk_bytes(path))}",
            f"complete: {state} ({check.detail})",
            "dimensions: " + ", ".join(f"{d} {n:,}" for d, n in ds.sizes.items()),
        ]
        rows = []
        for name, var in {**ds.data_vars, **ds.coords}.items():
            stored = var.encoding.get("dtype", var.dtype)
            raw = var.size * var.dtype.itemsize
            on_disk = check.storage.get(str(name))
            rows.append((
                str(name), " x ".join(map(str, var.dims)) or "scalar",
                "x".join(map(str, var.shape)) or "()",
                f"{stored} -> {var.dtype}" if str(stored) != str(var.dtype) else str(var.dtype),
                _bytes(raw),
                "-" if on_disk is None else _bytes(on_disk),
            ))
        header = ("variable", "dims", "shape", "dtype (stored -> read)", "in memory", "on disk")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        ]
        if "marginal_log_likelihood" in ds.data_vars:
            lines.append(
                f"marginal log-likelihood: {float(ds.marginal_log_likelihood):,.3f}"
            )
        lines += _config_lines(ds)
    return lines, check.complete


def run(args: argparse.Namespace) -> int:
    """Print the description; exit status 1 when the file is incomplete."""
    lines, complete = describe(args.results)
    print("\n".join(lines))
    return 1 if complete is False else 0
