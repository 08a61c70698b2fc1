"""Per-step time of the chunk kernels alone: Blocks, the dense matrix, the NumPy loop.

For a model of the benchmark harness (:mod:`xhmm.bench.workload`) one
process times, over ``--repeat`` interleaved rounds (so that load from other
processes falls on every side alike), one chunk of ``--rows`` steps of

- ``blocks``: :func:`xhmm.kernels.hmm.forward_chunk` and ``backward_chunk``
  with the model's structured operator (not for ``dense``);
- ``dense``: the same kernels with the model's dense matrix
  (:func:`xhmm.kernels.operators.dense_operator`);
- ``numpy``: the harness's NumPy loop on the same chunk (forward +
  backward);

and prints the fastest and median microseconds per step of each forward,
backward and their sum, and the ratios of the sums. Only the kernels: no
reading, checking, writing or summaries (see ``xhmm bench`` for whole
runs).

Usage: ``python benchmarks/kernel_steps.py [--model contfrag-1d] [-K 1000]
[--rows 2000] [--repeat 5]``; ``--sides dense,numpy`` to choose.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from xhmm.bench.baselines import numpy_forward_backward
from xhmm.bench.workload import MODELS, Problem
from xhmm.kernels.hmm import backward_chunk, forward_chunk
from xhmm.kernels.operators import dense_operator
from xhmm.transitions.plan import plan_transition


def kernels(operator, log_lik: np.ndarray, xs):
    """(forward, backward) calls of one chunk, each waiting for its result."""
    n_bins, n_rows = log_lik.shape[2], log_lik.shape[1]
    start = np.full((1, n_bins), 1 / n_bins, np.float32)
    n_valid = np.array([n_rows], np.int32)
    filtered, _, last, _ = jax.block_until_ready(
        forward_chunk(start, True, log_lik, n_valid, operator, xs, start))
    not_next = np.array([False])

    def forward():
        jax.block_until_ready(forward_chunk(start, True, log_lik, n_valid, operator, xs, start))

    def backward():
        jax.block_until_ready(backward_chunk(last, not_next, filtered, n_valid, operator, xs))

    backward()
    return forward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[m for m in MODELS if not m.endswith("-tv")],
                        default="contfrag-1d")
    parser.add_argument("-K", "--n-bins", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sides", default="blocks,dense,numpy")
    args = parser.parse_args()
    problem = Problem(args.rows, args.n_bins, model=args.model)
    mask = problem.interior
    log_lik, matrix, initial = problem.interior_inputs(problem.in_ram())
    log_lik = (log_lik - log_lik.max(axis=1, keepdims=True))[None].astype(np.float32)
    sides = args.sides.split(",")
    runs = {}
    if "blocks" in sides and args.model != "dense":
        plan = plan_transition(problem.transition, state_labels=problem.labels,
                               is_interior=mask, n_time=args.rows)
        print(plan.describe()["blocks"])
        runs["blocks"] = kernels(plan.device(np.float32, 1), log_lik, None)
    if "dense" in sides:
        runs["dense"] = kernels(dense_operator(matrix, np.float32, 1), log_lik, None)
    timed = {f"{side} {kind}": run for side, pair in runs.items()
             for kind, run in zip(("fwd", "bwd"), pair)}
    if "numpy" in sides:
        timed["numpy fwd+bwd"] = lambda: numpy_forward_backward(log_lik[0], matrix, initial,
                                                                args.rows)
    times = {name: [] for name in timed}
    for _ in range(args.repeat):
        for name, run in timed.items():
            tic = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - tic) / args.rows * 1e6)
    print(f"{args.model} K={int(mask.sum())}, {args.rows} steps, JAX on "
          f"{jax.default_backend()}: us per step (fastest / median of {args.repeat})")
    for name, values in times.items():
        print(f"  {name:14s} {min(values):9.1f} / {statistics.median(values):9.1f}")
    sums = {side: min(times[f"{side} fwd"]) + min(times[f"{side} bwd"]) for side in runs}
    if "numpy" in sides:
        sums["numpy"] = min(times["numpy fwd+bwd"])
    print("  fwd+bwd (fastest): " + ", ".join(f"{s} {v:.1f}" for s, v in sums.items()))
    names = list(sums)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            print(f"  {first} / {second} = {sums[first] / sums[second]:.3f}")


if __name__ == "__main__":
    main()
