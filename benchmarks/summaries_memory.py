"""Peak host memory of the per-step summaries with no stored posterior, against T.

``ds.hmm.map_estimate(emit_hpd=0.95, emit_consistency=True)`` (the smoother
with ``persist_causal=False`` keeping no posterior: ``emit_map``, the HPD
region and the posterior-consistency summaries, computed chunk by chunk)
with memmap outputs and a lazy (dask) log-likelihood generated block by
block when read (:meth:`xhmm.bench.workload.Problem.lazy`: nothing of size
T in memory), on the harness's dense model with a ``position`` coordinate
(so ``hpd_area`` is computed too). Each T runs in a fresh process (so
peaks do not carry over): one warm-up call on two chunks, then the measured
call under :class:`xhmm.bench.memory.RssSampler`. Prints the peaks and the
ratio of the last T's anonymous peak to the first's (the summaries' own
output, ``(T,)`` float32 variables, is part of it).

Usage::

    python benchmarks/summaries_memory.py -K 256 --sweep-T 20000,400000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

import xhmm  # noqa: F401  (registers ds.hmm)
from xhmm.bench.memory import RssSampler
from xhmm.bench.workload import Problem

MIB = 2**20
SUMMARIES = dict(emit_hpd=0.95, emit_consistency=True)


def problem(n_time: int, n_bins: int):
    """(Dataset with a lazy log-likelihood and a position coordinate, transition, initial)."""
    work = Problem(n_time, n_bins)
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), work.lazy())},
                    coords={"position": ("state_bins", 2.0 * work.positions[:, 0],
                                         {"units": "cm"})})
    return ds, work.transition, work.initial


def worker(args) -> None:
    """One T: warm up on two chunks, then measure (run in a fresh process)."""
    kw = dict(chunk_size=args.chunk_size, progress=False, **SUMMARIES)
    with tempfile.TemporaryDirectory() as folder:
        small, transition, initial = problem(2 * args.chunk_size, args.n_bins)
        small.hmm.map_estimate(transition=transition, initial=initial,
                               memmap_dir=f"{folder}/warm-up", **kw)
        ds, _, _ = problem(args.n_time, args.n_bins)
        start = time.perf_counter()
        with RssSampler() as sampler:
            res = ds.hmm.map_estimate(transition=transition, initial=initial,
                                      memmap_dir=f"{folder}/run", **kw)
        seconds = time.perf_counter() - start
        disk = sum(path.stat().st_size for path in Path(folder, "run").iterdir())
        kept = sorted(name for name in res.data_vars if res[name].sizes.get("time"))
        assert np.isfinite(res.hpd_area.values).all()
    print(json.dumps({"n_time": args.n_time, "seconds": seconds, "memmap_bytes": disk,
                      "variables": kept, **sampler.result}))


def sweep(args) -> None:
    """Each T of the sweep in a fresh process; prints the peaks and their ratio."""
    rows = []
    for n_time in (int(value) for value in args.sweep_T.split(",")):
        command = [sys.executable, __file__, "worker", "-T", str(n_time),
                   "-K", str(args.n_bins), "--chunk-size", str(args.chunk_size)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"T={n_time:>8,}: {row['seconds']:6.2f} s, anon peak "
              f"{row['peak_anon'] / MIB:7.1f} MiB (start {row['start_anon'] / MIB:7.1f}), "
              f"file peak {row['peak_file'] / MIB:7.1f} MiB, memmap_dir "
              f"{row['memmap_bytes'] / MIB:7.1f} MiB", flush=True)
    print(f"variables: {', '.join(rows[-1]['variables'])}")
    ratio = rows[-1]["peak_anon"] / rows[0]["peak_anon"]
    print(f"anonymous peak T={rows[-1]['n_time']:,} / T={rows[0]['n_time']:,}: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("-K", "--n-bins", type=int, default=256)
    parser.add_argument("--sweep-T", default="20000,400000")
    parser.add_argument("--chunk-size", type=int, default=5_000)
    one = sub.add_parser("worker")
    one.add_argument("-T", "--n-time", type=int, required=True)
    one.add_argument("-K", "--n-bins", type=int, required=True)
    one.add_argument("--chunk-size", type=int, required=True)
    args = parser.parse_args()
    (worker if args.command == "worker" else sweep)(args)


if __name__ == "__main__":
    main()
