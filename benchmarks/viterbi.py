"""Time and memory of ``most_likely_sequence`` and ``sample_paths`` against ``smooth``.

``--method sample_paths --n-samples N`` measures ``ds.hmm.sample_paths``
(``N`` paths, seed 0) instead of ``most_likely_sequence`` in ``time`` and
``memory``; ``time`` then also prints the time per sample path over the
smoother's. Three measurements:

``time``
    ``ds.hmm.most_likely_sequence`` and ``ds.hmm.smooth`` on the same model
    in the same process, RAM outputs, default Config (float32 with the
    float64 fall-back): a warm-up call of each (compiling), then
    ``--rounds`` rounds of one call of each, back to back. Prints each
    round's times and the ratio Viterbi / smooth, and the median ratio.
    Models: ``dense`` (:class:`xhmm.bench.workload.Problem`: a Gaussian
    likelihood bump on a sinusoidal path, a dense random-walk transition
    with a uniform floor) and ``structured`` (non_local_detector's NonLocal
    model on a ``--grid`` x ``--grid`` grid as
    :class:`xhmm.transitions.Blocks`, see ``benchmarks/structured_step.py``,
    with a likelihood bump on a circular path over the grid).
``kernels``
    The two chunk kernels alone (:func:`xhmm.kernels.viterbi.viterbi_forward_chunk`
    and :func:`xhmm.kernels.viterbi.viterbi_backtrack_chunk`) on one chunk
    of ``--chunk-size`` rows, one sequence, float32, a random dense
    transition: ``--rounds`` interleaved calls of each after a compiling
    one; prints the minimum per step and the ratio backtrack / forward.
``memory``
    Peak host memory of the method with memmap outputs and a lazy (dask)
    log-likelihood of the ``--workload`` model (a
    :class:`xhmm.bench.workload.Problem`), at each ``--sweep-T``: each T in a fresh
    process (so peaks do not carry over), one warm-up call on two chunks,
    then the measured call under :class:`xhmm.bench.memory.RssSampler`.
    Prints the peaks and the growth of the anonymous peak from the first T
    to the last.

Usage::

    python benchmarks/viterbi.py time --model dense -T 20000 -K 1000
    python benchmarks/viterbi.py time --model structured --grid 22 -T 20000
    python benchmarks/viterbi.py kernels -K 1000 --chunk-size 2000
    python benchmarks/viterbi.py memory -K 256 --sweep-T 40000,320000
    python benchmarks/viterbi.py time --method sample_paths --n-samples 100 -K 256
    python benchmarks/viterbi.py memory --method sample_paths --n-samples 100 \
        --workload nonlocal-2d -K 256 --sweep-T 20000,400000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import xhmm  # noqa: F401  (registers ds.hmm)
from xhmm.bench.memory import RssSampler
from xhmm.bench.workload import MODELS, Problem
from xhmm.kernels.operators import dense_operator
from xhmm.kernels.viterbi import viterbi_backtrack_chunk, viterbi_forward_chunk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured_step import nonlocal_model, sticky  # noqa: E402

MIB = 2**20


def dense_problem(n_time: int, n_bins: int, lazy: bool = False, model: str = "dense"):
    """(Dataset, transition, initial) of the benchmark harness's problem (dense by default)."""
    problem = Problem(n_time, n_bins, model=model)
    data = problem.lazy() if lazy else problem.in_ram()
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), data)},
                    coords=problem.coords())
    return ds, problem.transition, problem.initial


def method(ds: xr.Dataset, args):
    """The measured method of ``ds.hmm``: ``--method``, with ``--n-samples`` paths."""
    if args.method == "sample_paths":
        return partial(ds.hmm.sample_paths, n_samples=args.n_samples, seed=0)
    return ds.hmm.most_likely_sequence


def structured_problem(n_time: int, n_grid: int):
    """(Dataset, Blocks, initial) of the NonLocal model with a moving likelihood bump."""
    transition, labels, mask = nonlocal_model(n_grid, 3, sticky(4, 0.98))
    axis = np.arange(n_grid) * 2.0
    xs, ys = (grid.ravel() for grid in np.meshgrid(axis, axis, indexing="ij"))
    t = np.arange(n_time)
    radius = np.ptp(axis) / 3
    cx = axis.mean() + radius * np.cos(2 * np.pi * t / 2_000)
    cy = axis.mean() + radius * np.sin(2 * np.pi * t / 2_000)
    bump = -0.5 * ((xs[None] - cx[:, None]) ** 2 + (ys[None] - cy[:, None]) ** 2) / 16
    rng = np.random.default_rng(0)
    ll = np.concatenate([np.full((n_time, 2), -5.0), bump, bump - 1.0], axis=1)
    ll = (ll + rng.standard_normal(ll.shape)).astype(np.float32)
    ll[:, ~mask] = np.nan
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"state": ("state_bins", labels),
                            "is_interior": ("state_bins", mask)})
    return ds, transition, mask / mask.sum()


def time_both(args) -> None:
    """Rounds of smooth and most_likely_sequence on one model, in this process."""
    if args.model == "dense":
        ds, transition, initial = dense_problem(args.n_time, args.n_bins)
    else:
        ds, transition, initial = structured_problem(args.n_time, args.grid)
    kw = dict(transition=transition, initial=initial, chunk_size=args.chunk_size,
              progress=False)
    calls = {"smooth": ds.hmm.smooth, args.method: method(ds, args)}
    for call in calls.values():
        result = call(**kw)  # compile
    print(f"{args.model}: T={ds.sizes['time']}, K={ds.sizes['state_bins']} "
          f"({json.loads(result.attrs['xhmm_transition'])['kind']}), "
          f"chunk {args.chunk_size}, float64 chunks {result.attrs['xhmm_float64_chunks']}")
    ratios = []
    for number in range(args.rounds):
        seconds = {}
        for name, call in calls.items():
            start = time.perf_counter()
            call(**kw)
            seconds[name] = time.perf_counter() - start
        ratios.append(seconds[args.method] / seconds["smooth"])
        print(f"round {number + 1}: smooth {seconds['smooth']:.2f} s, "
              f"{args.method} {seconds[args.method]:.2f} s, ratio {ratios[-1]:.2f}",
              flush=True)
    print(f"median ratio {args.method} / smooth: {statistics.median(ratios):.2f}")
    if args.method == "sample_paths":
        print(f"median time per sample path / smooth ({args.n_samples} paths): "
              f"{statistics.median(ratios) / args.n_samples:.4f}")


def time_kernels(args) -> None:
    """Forward and backtrack chunk kernels, interleaved, minimum per step."""
    n_bins, n_rows = args.n_bins, args.chunk_size
    rng = np.random.default_rng(0)
    matrix = rng.random((n_bins, n_bins)) + 0.01
    operator = dense_operator(matrix / matrix.sum(axis=1, keepdims=True), np.float32, 1)
    log_lik = jnp.asarray(-5 * rng.random((1, n_rows, n_bins)), jnp.float32)
    uniform = jnp.full((1, n_bins), 1 / n_bins, jnp.float32)
    inputs = (uniform, True, log_lik, jnp.array([n_rows]), operator, None, uniform)
    kernels = {
        "forward": lambda: viterbi_forward_chunk(*inputs),
        "backtrack": lambda: viterbi_backtrack_chunk(*inputs, jnp.zeros(1, jnp.int32),
                                                     jnp.array([False])),
    }
    seconds = {name: [] for name in kernels}
    for number in range(args.rounds + 1):
        for name, kernel in kernels.items():
            start = time.perf_counter()
            jax.block_until_ready(kernel())
            if number:  # the first call compiles
                seconds[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in seconds.items()}
    print(f"K={n_bins}, chunk {n_rows}: forward {1e6 * best['forward'] / n_rows:.1f} us/step, "
          f"backtrack {1e6 * best['backtrack'] / n_rows:.1f} us/step, "
          f"ratio {best['backtrack'] / best['forward']:.2f}")


def memory_worker(args) -> None:
    """One T: warm up on two chunks, then measure (run in a fresh process)."""
    with tempfile.TemporaryDirectory() as folder:
        small, transition, initial = dense_problem(2 * args.chunk_size, args.n_bins, lazy=True,
                                                   model=args.workload)
        kw = dict(transition=transition, initial=initial, chunk_size=args.chunk_size,
                  progress=False)
        method(small, args)(memmap_dir=f"{folder}/warm-up", **kw)
        ds, _, _ = dense_problem(args.n_time, args.n_bins, lazy=True, model=args.workload)
        start = time.perf_counter()
        with RssSampler() as sampler:
            method(ds, args)(memmap_dir=f"{folder}/run", **kw)
        seconds = time.perf_counter() - start
        disk = sum(path.stat().st_size for path in Path(folder, "run").iterdir())
    print(json.dumps({"n_time": args.n_time, "seconds": seconds, "memmap_bytes": disk,
                      **sampler.result}))


def memory_sweep(args) -> None:
    """Each T of the sweep in a fresh process; prints the peaks and their growth."""
    rows = []
    for n_time in (int(value) for value in args.sweep_T.split(",")):
        command = [sys.executable, __file__, "memory-worker", "-T", str(n_time),
                   "-K", str(args.n_bins), "--chunk-size", str(args.chunk_size),
                   "--method", args.method, "--n-samples", str(args.n_samples),
                   "--workload", args.workload]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"T={n_time:>8,}: {row['seconds']:6.2f} s, anon peak "
              f"{row['peak_anon'] / MIB:7.1f} MiB (start {row['start_anon'] / MIB:7.1f}), "
              f"file peak {row['peak_file'] / MIB:7.1f} MiB, memmap_dir "
              f"{row['memmap_bytes'] / MIB:7.1f} MiB", flush=True)
    growth = rows[-1]["peak_anon"] / rows[0]["peak_anon"] - 1
    print(f"anonymous peak from T={rows[0]['n_time']:,} to T={rows[-1]['n_time']:,}: "
          f"{100 * growth:+.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("time", help="most_likely_sequence vs smooth, same process")
    timing.add_argument("--model", choices=("dense", "structured"), default="dense")
    timing.add_argument("-T", "--n-time", type=int, default=20_000)
    timing.add_argument("-K", "--n-bins", type=int, default=1_000, help="dense model only")
    timing.add_argument("--grid", type=int, default=22, help="structured model: grid side")
    timing.add_argument("--chunk-size", type=int, default=5_000)
    timing.add_argument("--rounds", type=int, default=3)
    kernel = sub.add_parser("kernels", help="the forward and backtrack chunk kernels")
    kernel.add_argument("-K", "--n-bins", type=int, default=1_000)
    kernel.add_argument("--chunk-size", type=int, default=2_000)
    kernel.add_argument("--rounds", type=int, default=5)
    memory = sub.add_parser("memory", help="peak host memory vs T, memmap outputs")
    memory.add_argument("-K", "--n-bins", type=int, default=256)
    memory.add_argument("--sweep-T", default="40000,80000,160000,320000")
    memory.add_argument("--chunk-size", type=int, default=5_000)
    memory.add_argument("--workload", choices=MODELS, default="dense")
    worker = sub.add_parser("memory-worker")
    worker.add_argument("-T", "--n-time", type=int, required=True)
    worker.add_argument("-K", "--n-bins", type=int, required=True)
    worker.add_argument("--chunk-size", type=int, required=True)
    worker.add_argument("--workload", choices=MODELS, required=True)
    for command in (timing, memory, worker):
        command.add_argument("--method", choices=("most_likely_sequence", "sample_paths"),
                             default="most_likely_sequence")
        command.add_argument("--n-samples", type=int, default=100,
                             help="paths of sample_paths")
    args = parser.parse_args()
    commands = {"time": time_both, "kernels": time_kernels, "memory": memory_sweep,
                "memory-worker": memory_worker}
    commands[args.command](args)


if __name__ == "__main__":
    main()
