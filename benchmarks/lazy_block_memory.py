"""Peak host memory of lazy posterior blocks: one block, or a whole run and its save.

Default mode: writes a memmap-backed interior posterior (T x K, storage
dtype), wraps it as the lazy masked posterior (all N bins), then computes one
block and reads the process's peak resident memory (VmHWM, reset just before
via /proc/self/clear_refs) and how much of it is anonymous.

``--save`` mode: smooths the benchmark's NonLocal 2-D model (K interior
bins, log-likelihood in a ``.npy`` memmap, memmap outputs in the storage
dtype) and then writes the lazy result with ``xhmm.save_results``, measuring
the peak RSS (VmHWM, anonymous and file-backed) of the run and of the save;
the save's peak over the run's is the figure. Run it once per
``--time-chunks`` value, each in a fresh process.

Usage: python benchmarks/lazy_block_memory.py [--n-time 200000] [--n-bins 2000]
       [--time-chunks 25000|auto] [--storage uint16]
       python benchmarks/lazy_block_memory.py --save [--n-time 20000] [--n-bins 9800]
       [--time-chunks auto] [--storage uint16] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dask
import dask.array
import numpy as np
import xarray as xr

import xhmm
from xhmm.bench.memory import RssSampler
from xhmm.bench.workload import Problem
from xhmm.engine.storage import alloc_out, write_rows
from xhmm.frontend.lazy import SequenceRows, block_rows, lazy_masked_posterior


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _rows_or_auto(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def run_and_save(args: argparse.Namespace, folder: Path) -> None:
    """Smooth the NonLocal 2-D model into memmaps, save the lazy result, print both peaks."""
    problem = Problem(args.n_time, args.n_bins, model="nonlocal-2d")
    ll = problem.on_disk(folder / "log_likelihood.npy")
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)}, coords=problem.coords())
    with RssSampler() as run:
        res = ds.hmm.smooth(transition=problem.transition, initial=problem.initial,
                            memmap_dir=folder / "run", posterior_dtype=args.storage,
                            time_chunks=args.time_chunks, progress=False)
    rows = res.acausal_posterior.data.chunks[0][0]
    block = rows * problem.n_state_bins * res.acausal_posterior.dtype.itemsize
    print(f"T = {args.n_time:,}, K = {args.n_bins:,} (N = {problem.n_state_bins:,}), "
          f"{args.storage} memmap outputs, time_chunks={args.time_chunks!r}: "
          f"lazy blocks of {rows:,} rows = {block / 2**20:,.1f} MiB")
    start = time.perf_counter()
    with RssSampler() as save:
        xhmm.save_results(res, folder / "results.nc", progress=False)
    seconds = time.perf_counter() - start
    for label, peaks in (("run", run.result), ("save_results", save.result)):
        print(f"{label:13s} peak RSS (VmHWM) {_gib(peaks['peak_hwm'])}, "
              f"anon {_gib(peaks['peak_anon'])}, file {_gib(peaks['peak_file'])}")
    ratio = (save.result["peak_hwm"] or 0) / max(1, run.result["peak_hwm"] or 0)
    print(f"save {seconds:.1f} s; save peak / run peak = {ratio:.2f}")


def main() -> None:
    """Measure and print one block's peak memory against its size (or a run and its save)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-time", "-T", type=int, default=None,
                        help="default 200,000 (20,000 with --save)")
    parser.add_argument("--n-bins", "-K", type=int, default=None,
                        help="default 2,000 (9,800 with --save)")
    parser.add_argument("--time-chunks", type=_rows_or_auto, default=None,
                        help="rows per lazy block or auto; default 25,000 (auto with --save)")
    parser.add_argument("--storage", default="uint16")
    parser.add_argument("--save", action="store_true",
                        help="smooth and save_results, measuring both peaks")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    defaults = (20_000, 9_800, "auto") if args.save else (200_000, 2_000, 25_000)
    for name, value in zip(("n_time", "n_bins", "time_chunks"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.save:
        with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
            run_and_save(args, Path(folder))
        return
    T, N = args.n_time, args.n_bins
    mask = np.ones(N, bool)
    mask[::10] = False
    K = int(mask.sum())
    with tempfile.TemporaryDirectory() as folder:
        buf = alloc_out((1, T, K), args.storage, "acausal_posterior", folder)
        rng = np.random.default_rng(0)
        for start in range(0, T, 10_000):
            rows = rng.random((min(10_000, T - start), K)).astype(np.float32)
            write_rows(buf[0], start, rows / rows.sum(axis=1, keepdims=True))
        buf.flush()
        del buf
        buf = alloc_out((1, T, K), args.storage, "acausal_posterior", folder, mode="r")
        lazy = lazy_masked_posterior(SequenceRows(buf, 0, T, T), mask, args.time_chunks,
                                     "float32")
        rows = min(block_rows(args.time_chunks, N, "float32"), T)
        block_bytes = rows * N * 4
        total_bytes = T * N * 4
        # warm up numba and dask once on a tiny block
        lazy.blocks[0][:1].compute()
        print(f"posterior {T} x {N} float32 = {total_bytes / 2**20:,.0f} MiB "
              f"(stored as {args.storage})")
        print(f"one block {rows} x {N} float32 = {block_bytes / 2**20:,.1f} MiB")
        sink = np.lib.format.open_memmap(Path(folder) / "sink.npy", mode="w+",
                                         dtype=np.float32, shape=(T, N))
        ways = {
            # what a worker holds while streaming blocks to disk (save_results)
            "da.store of one block": lambda: dask.array.store(
                lazy.blocks[1], sink[rows:2 * rows], lock=False),
            # .compute() adds dask's final copy of the result
            "lazy.blocks[1].compute()": lambda: lazy.blocks[1].compute(),
        }
        for label, compute in ways.items():
            Path("/proc/self/clear_refs").write_text("5")
            base_rss = _status("VmRSS") - _status("RssFile")
            with dask.config.set(scheduler="sync"):
                result = compute()
            peak = _status("VmHWM") - _status("RssFile")
            del result
            print(f"{label:26s} peak anonymous growth {(peak - base_rss) / 2**20:7.1f} MiB "
                  f"= {(peak - base_rss) / block_bytes:.2f} x block")


if __name__ == "__main__":
    main()
