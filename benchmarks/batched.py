"""Measure many-sequence runs: batched vs one at a time, and dask.distributed.

Two modes (run ``python benchmarks/batched.py MODE --help``):

``speedup``
    ``B`` sequences of ``T`` steps over ``K`` bins, smoothed by the chunked
    engine one sequence at a time (:func:`xhmm.engine.loop.run_engine` with B = 1, the
    engine behind ``ds.hmm.smooth``) and as one batch
    (the same engine with B sequences, behind
    :func:`xhmm.smooth`). Kernels are compiled ahead of
    time, before timing; input validation is outside both timings. Prints
    seconds per sequence (best of ``--repeat``) and the speed-up.
``cluster``
    :func:`xhmm.smooth` on a ``LocalCluster`` of 1, 2, ...
    worker processes (one thread each unless told otherwise) over a lazily
    generated dask log-likelihood (each worker computes its sequences' chunks
    itself) with memmap outputs. Unless ``--dask-malloc-trim``, dask's
    ``MALLOC_TRIM_THRESHOLD_`` is unset for the workers. Prints the wall time of a cold run (workers import JAX
    and compile) and of a warm run, each worker's peak resident memory
    (``VmHWM``) and its CPU time in the warm run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def transition_matrix(n_bins: int) -> np.ndarray:
    """Dense random-walk transition: Gaussian kernel of width K/50 plus a floor."""
    x = np.arange(n_bins, dtype=np.float64)
    width = max(1.0, n_bins / 50)
    A = np.exp(-0.5 * ((x[:, None] - x[None, :]) / width) ** 2) + 1e-3 / n_bins
    return A / A.sum(axis=1, keepdims=True)


def sequence_block(seq: int, start: int, stop: int, n_bins: int) -> np.ndarray:
    """Rows ``start:stop`` of sequence ``seq``: a moving Gaussian bump plus noise."""
    rng = np.random.default_rng([seq, start])
    t = np.arange(start, stop, dtype=np.float64)
    centre = 0.5 * (n_bins - 1) * (1 + np.sin(2 * np.pi * (t + 137 * seq) / 2_000.0))
    bins = np.arange(n_bins, dtype=np.float64)
    ll = -0.5 * ((bins[None, :] - centre[:, None]) / max(1.0, n_bins / 20)) ** 2
    ll += rng.standard_normal((stop - start, n_bins))
    return ll.astype(np.float32)


def _lazy_block(block_info=None, *, n_bins: int) -> np.ndarray:
    (seq, _), (start, stop), _ = block_info[None]["array-location"]
    return sequence_block(seq, start, stop, n_bins)[None]


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return -1


def _cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds used by this process so far."""
    t = os.times()
    return t.user, t.system


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _compile_kernels(B: int, C: int, K: int) -> None:
    """Compile (without running) the kernels for one sequence and for ``B``."""
    import jax

    from xhmm.kernels.hmm import backward_chunk, forward_chunk
    from xhmm.kernels.operators import dense_operator

    def zeros(*shape, dtype=np.float32):
        return jax.device_put(np.zeros(shape, dtype))

    for n in (1, B):
        op = dense_operator(np.zeros((K, K)), np.float32, n)
        n_valid = np.full(n, C, np.int32)
        forward_chunk.lower(zeros(n, K), True, zeros(n, C, K), n_valid, op, None,
                            zeros(n, K)).compile()
        backward_chunk.lower(zeros(n, K), np.ones(n, bool), zeros(n, C, K), n_valid, op,
                             None).compile()


def speedup(args: argparse.Namespace) -> None:
    from xhmm.config import Config
    from xhmm.engine.loop import run_engine
    from xhmm.transitions.dense_transition import DenseTransition

    K, T, B, C = args.n_bins, args.n_time, args.batch, args.chunk_size
    A = DenseTransition(transition_matrix(K))
    p0 = np.full(K, 1.0 / K)
    ll = np.stack([sequence_block(s, 0, T, K) for s in range(B)])
    cfg = Config(chunk_size=C, progress=False)
    n_single = min(args.single, B)
    print(f"K={K} T={T} B={B} chunk_size={C} float32, cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    _compile_kernels(B, C, K)

    singles, batched = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for s in range(n_single):
            one = run_engine(ll[s:s + 1], A, p0, cfg, smooth=True)
        singles.append((time.perf_counter() - t0) / n_single)
        t0 = time.perf_counter()
        batch = run_engine(ll, A, p0, cfg, smooth=True, sequence_ids=np.arange(B))
        batched.append((time.perf_counter() - t0) / B)
    diff = float(np.abs(batch.acausal[n_single - 1] - one.acausal[0]).max())
    single, multi = min(singles), min(batched)
    print(f"one at a time ({n_single} sequences timed): {single:.3f} s per sequence "
          f"({single / T * 1e3 / 2:.2f} ms per step per pass)")
    print(f"batched (B={B}):                    {multi:.3f} s per sequence "
          f"({multi / T * 1e3 / 2:.2f} ms per step per pass)")
    print(f"speed-up per sequence: {single / multi:.2f}x  (best of {args.repeat}; "
          f"max |batched - single| posterior difference {diff:.1e})")


def cluster(args: argparse.Namespace) -> None:
    import dask
    import dask.array as da
    import xarray as xr
    from distributed import Client, LocalCluster

    import xhmm

    K, T, S, C = args.n_bins, args.n_time, args.sequences, args.chunk_size
    A = transition_matrix(K)
    p0 = np.full(K, 1.0 / K)
    time_chunks = (C,) * (T // C) + ((T % C,) if T % C else ())
    ll = da.map_blocks(
        _lazy_block, dtype=np.float32, chunks=((1,) * S, time_chunks, (K,)),
        meta=np.empty((0, 0, 0), dtype=np.float32), n_bins=K,
    )
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), ll)})
    env = {}
    if args.xla_single_thread:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    if not args.dask_malloc_trim:
        # dask's default MALLOC_TRIM_THRESHOLD_=65536 (set before a worker
        # starts) turns off glibc's adaptive mmap threshold, so every
        # chunk-sized array is a fresh mmap and page faults (docs/scale-out.md).
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    trim = dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_")
    print(f"K={K} T={T} S={S} chunk_size={C} float32 memmap outputs, cpu count "
          f"{os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, worker env {env}, "
          f"MALLOC_TRIM_THRESHOLD_={trim}", flush=True)
    with tempfile.TemporaryDirectory(prefix="xhmm-bench-", dir=args.tmp) as tmp:
        for n_workers in args.workers:
            with LocalCluster(n_workers=n_workers, processes=True,
                              threads_per_worker=args.threads_per_worker,
                              dashboard_address=None, env=env) as lc, Client(lc) as client:
                walls, cpu = [], []
                for attempt in ("cold", "warm"):
                    out = Path(tmp) / f"w{n_workers}-{attempt}"
                    cpu.append(client.run(_cpu_seconds))
                    t0 = time.perf_counter()
                    res = xhmm.smooth(ds, A, p0, client=client, chunk_size=C,
                                           use_memmap=True, memmap_dir=out, progress=False)
                    walls.append(time.perf_counter() - t0)
                peaks = client.run(_peak_rss)
                end = client.run(_cpu_seconds)
                warm_cpu = {w: np.subtract(end[w], cpu[1][w]) for w in end}
                batches = sorted(p.name for p in out.iterdir())
            mll = res.marginal_log_likelihood.values
            print(f"{n_workers} worker(s) x {args.threads_per_worker} thread(s): "
                  f"{len(batches)} batches; wall cold {walls[0]:.1f} s, "
                  f"warm {walls[1]:.1f} s; peak RSS per worker "
                  f"{', '.join(_mib(v) for v in peaks.values())}; warm-run CPU s (user/sys) "
                  f"per worker {', '.join(f'{u:.1f}/{s:.1f}' for u, s in warm_cpu.values())}; "
                  f"sum of marginal log-likelihoods {mll.sum():.6f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("speedup", help="batched vs one sequence at a time")
    p.add_argument("--n-bins", type=int, default=1_000)
    p.add_argument("--n-time", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--single", type=int, default=16,
                   help="sequences timed one at a time (fewer saves time at large K)")
    p.add_argument("--repeat", type=int, default=3)
    p.set_defaults(func=speedup)
    p = sub.add_parser("cluster", help="LocalCluster with 1, 2, ... worker processes")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--n-bins", type=int, default=1_000)
    p.add_argument("--n-time", type=int, default=2_000)
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--chunk-size", type=int, default=500)
    p.add_argument("--xla-single-thread", action="store_true",
                   help="XLA_FLAGS=--xla_cpu_multi_thread_eigen=false on the workers")
    p.add_argument("--dask-malloc-trim", action="store_true",
                   help="keep dask's MALLOC_TRIM_THRESHOLD_=65536 on the workers")
    p.add_argument("--tmp", default=None, help="folder for the memmap outputs")
    p.set_defaults(func=cluster)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
