"""Disk footprint and wall time of a memmap run with and without the causal posterior.

Usage: python benchmarks/persist_causal.py [--duration 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import xhmm  # noqa: F401  (registers ds.hmm)
from xhmm.synthetic import simulate_decoding


def main() -> None:
    """Time both settings on the same synthetic recording and print the sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds at 2 ms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=5_000)
    args = parser.parse_args()
    ds = simulate_decoding(duration=args.duration, seed=2)
    print(f"T={ds.sizes['time']}, state_bins={ds.sizes['state_bins']}, "
          f"chunk_size={args.chunk_size}")
    ds.hmm.smooth(chunk_size=args.chunk_size, progress=False)  # compile once
    for persist in (True, False):
        times, disk = [], 0
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                ds.hmm.smooth(chunk_size=args.chunk_size, use_memmap=True,
                              memmap_dir=os.path.join(folder, "run"),
                              persist_causal=persist, progress=False)
                times.append(time.perf_counter() - start)
                run = os.path.join(folder, "run")
                disk = sum(os.path.getsize(os.path.join(run, f)) for f in os.listdir(run))
        print(f"persist_causal={persist}: median {np.median(times):.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in times)}), "
              f"memmap_dir {disk / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
