"""A whole ``smooth`` with and without the scratch file of filtered rows.

A memmap smoother run that stores uint16 keeps the float32 filtered rows in
``filtered_scratch.dat`` for the backward pass (:mod:`xhmm.engine.loop`);
without it the backward pass reads and filters each chunk again. This times
the same run (model ``nonlocal-2d`` of the benchmark harness, log-likelihood
in a ``.npy`` memmap, uint16 memmap outputs) both ways, alternately in one
process, the second way by replacing the engine's ``_Run._open_scratch``
with a no-op. Prints milliseconds per step of each round and the paired
ratios.

Usage: ``python benchmarks/scratch_ab.py [--bins 10650] [--steps 20000]
[--chunk-size 5000] [--rounds 3] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import xarray as xr

import xhmm  # noqa: F401  (registers ds.hmm)
from xhmm.bench.workload import Problem
from xhmm.engine import loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bins", type=int, default=10_650)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xhmm-scratch-", dir=args.workdir) as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, folder: Path) -> None:
    problem = Problem(args.steps, args.bins, model="nonlocal-2d")
    log_lik = problem.on_disk(folder / "log_likelihood.npy")
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), log_lik)},
                    coords=problem.coords())
    options = dict(transition=problem.transition, initial=problem.initial,
                   chunk_size=args.chunk_size, posterior_dtype="uint16", use_memmap=True,
                   overwrite=True, memmap_dir=folder / "run", progress=False)
    ds.hmm.smooth(**options)  # compile
    with_scratch = loop._Run._open_scratch
    ways = {"scratch": with_scratch, "recompute": lambda run: None}
    times: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(args.rounds):
            for name, open_scratch in ways.items():
                loop._Run._open_scratch = open_scratch
                tic = time.perf_counter()
                ds.hmm.smooth(**options)
                times[name].append((time.perf_counter() - tic) / args.steps * 1e3)
    finally:
        loop._Run._open_scratch = with_scratch
    for name, values in times.items():
        print(f"{name:10s} ms/step: " + " ".join(f"{v:.3f}" for v in values)
              + f"  median {statistics.median(values):.3f}")
    ratios = [a / b for a, b in zip(times["scratch"], times["recompute"])]
    print("paired ratio scratch/recompute: " + " ".join(f"{r:.2f}" for r in ratios)
          + f"  median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
