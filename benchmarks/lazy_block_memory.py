"""Peak host memory of computing one block of a lazy posterior, vs its size.

Writes a memmap-backed interior posterior (T x K, storage dtype), wraps it as
the lazy masked posterior (all N bins), then computes one block and reads the
process's peak resident memory (VmHWM, reset just before via
/proc/self/clear_refs) and how much of it is anonymous.

Usage: python benchmarks/lazy_block_memory.py [--n-time 200000] [--n-bins 2000]
       [--time-chunks 25000] [--storage uint16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import dask
import dask.array
import numpy as np

from xhmm.engine.storage import alloc_out, write_rows
from xhmm.frontend.lazy import SequenceRows, lazy_masked_posterior


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def main() -> None:
    """Measure and print one block's peak memory against its size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-time", type=int, default=200_000)
    parser.add_argument("--n-bins", type=int, default=2_000)
    parser.add_argument("--time-chunks", type=int, default=25_000)
    parser.add_argument("--storage", default="uint16")
    args = parser.parse_args()
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
        block_bytes = args.time_chunks * N * 4
        total_bytes = T * N * 4
        # warm up numba and dask once on a tiny block
        lazy.blocks[0][:1].compute()
        print(f"posterior {T} x {N} float32 = {total_bytes / 2**20:,.0f} MiB "
              f"(stored as {args.storage})")
        print(f"one block {args.time_chunks} x {N} float32 = {block_bytes / 2**20:,.1f} MiB")
        sink = np.lib.format.open_memmap(Path(folder) / "sink.npy", mode="w+",
                                         dtype=np.float32, shape=(T, N))
        ways = {
            # what a worker holds while streaming blocks to disk (save_results)
            "da.store of one block": lambda: dask.array.store(
                lazy.blocks[1], sink[args.time_chunks:2 * args.time_chunks], lock=False),
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
