"""Per-step time of the dense kernels: XLA's products vs the host BLAS.

For each K, one process times, interleaved over ``--repeat`` rounds (so
load from other processes falls on all sides alike):

- ``xla``: :func:`xhmm.kernels.hmm.forward_chunk` and ``backward_chunk``
  with the dense matrix on the device (XLA's products);
- ``host``: the same kernels with the products in NumPy's BLAS through
  ``jax.pure_callback`` (:class:`xhmm.kernels.operators.HostMatrix`);
- ``numpy``: the NumPy loop of the harness
  (:func:`xhmm.bench.baselines.numpy_forward_backward`) on the same chunk.

Prints the median milliseconds per step of the forward and backward
kernels and of the NumPy loop (forward + backward), and the ratios.

Usage: ``python benchmarks/dense_host_blas.py [--bins 1000,4000,10650]
[--rows 50] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import xhmm.kernels.operators as operators
from xhmm.bench.baselines import numpy_forward_backward
from xhmm.bench.workload import transition_matrix
from xhmm.kernels.hmm import backward_chunk, forward_chunk


def kernels(matrix: np.ndarray, log_lik: np.ndarray, host: bool):
    """Timed forward and backward calls of one chunk, with the products where asked."""
    threshold = operators.HOST_BLAS_MIN_BINS
    operators.HOST_BLAS_MIN_BINS = 1 if host else matrix.shape[0] + 1
    try:
        op = operators.dense_operator(matrix, np.float32, 1)
    finally:
        operators.HOST_BLAS_MIN_BINS = threshold
    n_bins = matrix.shape[0]
    n_rows = log_lik.shape[1]
    start = np.full((1, n_bins), 1 / n_bins, np.float32)
    n_valid = np.array([n_rows], np.int32)
    filtered, _, last = jax.block_until_ready(
        forward_chunk(start, True, log_lik, n_valid, op, None, start))
    not_next = np.array([False])

    def forward():
        jax.block_until_ready(forward_chunk(start, True, log_lik, n_valid, op, None, start))

    def backward():
        jax.block_until_ready(backward_chunk(last, not_next, filtered, n_valid, op, None))

    backward()
    return forward, backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bins", default="1000,4000,10650")
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.default_backend()}; ms per step, "
          f"median of {args.repeat}")
    for n_bins in (int(k) for k in args.bins.split(",")):
        matrix = transition_matrix(n_bins)
        rng = np.random.default_rng(0)
        log_lik = rng.standard_normal((1, args.rows, n_bins)).astype(np.float32)
        log_lik -= log_lik.max(axis=2, keepdims=True)
        xla_f, xla_b = kernels(matrix, log_lik, host=False)
        host_f, host_b = kernels(matrix, log_lik, host=True)
        initial = np.full(n_bins, 1 / n_bins)

        def loop():
            numpy_forward_backward(log_lik[0], matrix, initial, args.rows)

        runs = {"xla fwd": xla_f, "host fwd": host_f, "xla bwd": xla_b, "host bwd": host_b,
                "numpy fwd+bwd": loop}
        times = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, run in runs.items():
                tic = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - tic) / args.rows * 1e3)
        ms = {name: statistics.median(values) for name, values in times.items()}
        xla, host = ms["xla fwd"] + ms["xla bwd"], ms["host fwd"] + ms["host bwd"]
        print(f"K={n_bins}: " + ", ".join(f"{name} {value:.3f}" for name, value in ms.items())
              + f"; fwd+bwd xla {xla:.3f} host {host:.3f}, host/xla {host / xla:.2f}, "
              f"xla/numpy {xla / ms['numpy fwd+bwd']:.2f}, "
              f"host/numpy {host / ms['numpy fwd+bwd']:.2f}")


if __name__ == "__main__":
    main()
