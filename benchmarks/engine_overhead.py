"""What the engine and ``compute_dtype="auto"`` cost, as ratios measured in one run.

Three comparisons, each interleaved over ``--rounds`` rounds (median of the
per-round ratios; this 2-core machine is shared and noisy):

``scan``
    ``ds.hmm.smooth`` per step (forward + backward, one sequence, dense
    transition, float32, RAM outputs, lazy results not computed) against a
    bare ``jax.lax.scan`` of the same products: ``A.T @ p`` per step
    forward, ``A @ r`` per step backward and one ``(C, K) @ (K, K)`` product
    per chunk, with the same rescaling arithmetic, chunk by chunk, nothing
    written back.
``auto-benign``
    ``compute_dtype="auto"`` against ``"float32"`` on the bench workload
    (:mod:`xhmm.bench.workload`: a positive floor everywhere, so no chunk
    needs float64).
``auto-float64``
    ``"auto"`` against ``"float64"`` plus ``"float32"`` on a banded model
    with exact zeros and a peaked likelihood that now and then peaks where
    the prediction is zero, so every chunk falls back.

``--clock cpu`` times the process's CPU seconds (all threads) instead of
wall seconds: other jobs on the machine then disturb the ratio less.

Usage: ``python benchmarks/engine_overhead.py scan -T 45000 -K 176``,
``... auto-benign -T 20000 -K 1000``, ``... auto-float64 -T 20000 -K 300``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import xhmm  # noqa: F401  (registers ds.hmm)
from xhmm.bench.workload import Problem


#: The clock of every timing: wall time, or the CPU time of the whole process
#: (all threads; less sensitive to other jobs on a shared machine).
CLOCK = {"now": time.perf_counter}


def _smooth_seconds(ds, A, p0, **config) -> float:
    start = CLOCK["now"]()
    res = ds.hmm.smooth(transition=A, initial=p0, progress=False, **config)
    res.marginal_log_likelihood.values  # noqa: B018  (the engine has run)
    return CLOCK["now"]() - start


def _filter_seconds(ds, A, p0, **config) -> float:
    """A float32 forward pass that keeps going where it lost precision."""
    from xhmm.kernels.hmm import forward_chunk
    from xhmm.kernels.operators import dense_operator

    chunk = config["chunk_size"]
    ll = ds.log_likelihood.values.astype(np.float32)
    op = dense_operator(A, np.float32, 1)
    p = jnp.asarray(p0[None], jnp.float32)
    start = time.perf_counter()
    prev = p
    for first in range(0, ll.shape[0], chunk):
        rows = np.zeros((1, chunk, ll.shape[1]), np.float32)
        block = ll[first:first + chunk]
        rows[0, :len(block)] = block - block.max(axis=1, keepdims=True)
        out = forward_chunk(prev, first == 0, rows, np.array([len(block)], np.int32), op,
                            None, p)
        prev = jax.block_until_ready(out)[2]
    return time.perf_counter() - start


def _bare_scan(ll: np.ndarray, A: np.ndarray, p0: np.ndarray, chunk: int):
    """Forward and backward as bare scans of the same products, chunk by chunk."""
    A = jnp.asarray(A, jnp.float32)
    At = jnp.asarray(np.ascontiguousarray(A.T))

    @jax.jit
    def forward(prev, rows):
        def step(p, row):
            w = jnp.log(At @ p) + row
            w = jnp.exp(w - w.max())
            f = w / w.sum()
            return f, f
        return jax.lax.scan(step, prev, rows)

    @jax.jit
    def backward(carry, filt):
        pred = filt @ A

        def step(c, inputs):
            f, q = inputs
            s = f * (A @ jnp.where(q > 0, c / jnp.where(q > 0, q, 1), 0))
            s = s / s.sum()
            return s, s
        return jax.lax.scan(step, carry, (filt, pred), reverse=True)

    n_time = ll.shape[0]
    starts = range(0, n_time - n_time % chunk, chunk)
    chunks = [jnp.asarray(ll[s:s + chunk], jnp.float32) for s in starts]
    begin = time.perf_counter()
    prev = jnp.asarray(p0, jnp.float32)
    kept = []
    for rows in chunks:
        prev, filt = forward(prev, rows)
        kept.append(filt)
    carry = kept[-1][-1]
    for filt in reversed(kept):
        carry, _ = jax.block_until_ready(backward(carry, filt))
    return time.perf_counter() - begin


def _rounds(name_a, run_a, name_b, run_b, rounds):
    run_a(), run_b()  # compile and warm up
    ratios = []
    for r in range(rounds):
        a, b = run_a(), run_b()
        ratios.append(a / b)
        print(f"round {r + 1}: {name_a} {a:.3f} s, {name_b} {b:.3f} s, ratio {a / b:.3f}",
              flush=True)
    print(f"median ratio {name_a} / {name_b}: {statistics.median(ratios):.3f}")


def _workload(n_time: int, n_bins: int):
    problem = Problem(n_time, n_bins)
    ll = problem.in_ram() if callable(problem.in_ram) else problem.in_ram
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)})
    return ds, np.asarray(ll), problem.transition, problem.initial


def scan(args) -> None:
    n_time = args.n_time - args.n_time % args.chunk_size
    ds, ll, A, p0 = _workload(n_time, args.n_bins)
    _rounds("xhmm", lambda: _smooth_seconds(ds, A, p0, chunk_size=args.chunk_size,
                                            compute_dtype="float32"),
            "bare scan", lambda: _bare_scan(ll, A, p0, args.chunk_size), args.rounds)
    print(f"(T={n_time}, K={args.n_bins}, chunk {args.chunk_size})")


def auto_benign(args) -> None:
    ds, _, A, p0 = _workload(args.n_time, args.n_bins)
    kw = dict(chunk_size=args.chunk_size)
    res = ds.hmm.smooth(transition=A, initial=p0, progress=False, **kw)
    print(f"chunks recomputed in float64 by auto: {res.attrs['xhmm_float64_chunks']}")
    _rounds("auto", lambda: _smooth_seconds(ds, A, p0, compute_dtype="auto", **kw),
            "float32", lambda: _smooth_seconds(ds, A, p0, compute_dtype="float32", **kw),
            args.rounds)


def auto_float64(args) -> None:
    rng = np.random.default_rng(0)
    T, K = args.n_time, args.n_bins
    A = np.zeros((K, K))
    for i in range(K):
        A[i, max(0, i - 2):i + 3] = rng.random(min(K, i + 3) - max(0, i - 2)) + 0.1
    A /= A.sum(axis=1, keepdims=True)
    walk = np.clip(np.cumsum(rng.integers(-1, 2, T)) + K // 2, 0, K - 1)
    # 5 % of the steps peak half the track away, where the prediction is 0
    peak = np.where(rng.random(T) < 0.05, (walk + K // 2) % K, walk)
    ll = -60.0 * np.minimum(np.abs(np.arange(K)[None, :] - peak[:, None]) / 4, 1.0)
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)})
    p0 = np.full(K, 1 / K)
    kw = dict(chunk_size=args.chunk_size)
    res = ds.hmm.smooth(transition=A, initial=p0, progress=False, **kw)
    n_chunks = -(-T // args.chunk_size)
    print(f"chunks recomputed in float64 by auto: {res.attrs['xhmm_float64_chunks']} "
          f"of {n_chunks}")

    # explicit float32 checks itself by the same recomputation, so the float32
    # attempt is timed as a forward filter alone
    def both():
        return (_smooth_seconds(ds, A, p0, compute_dtype="float64", **kw)
                + _filter_seconds(ds, A, p0, compute_dtype="float32", **kw))

    _rounds("auto", lambda: _smooth_seconds(ds, A, p0, compute_dtype="auto", **kw),
            "float64 + float32 forward", both, args.rounds)
    _rounds("auto", lambda: _smooth_seconds(ds, A, p0, compute_dtype="auto", **kw),
            "float64", lambda: _smooth_seconds(ds, A, p0, compute_dtype="float64", **kw),
            args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["scan", "auto-benign", "auto-float64"])
    parser.add_argument("-T", "--n-time", type=int, default=20_000)
    parser.add_argument("-K", "--n-bins", type=int, default=1_000)
    parser.add_argument("--chunk-size", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or the process's CPU time over all threads")
    args = parser.parse_args()
    if args.clock == "cpu":
        CLOCK["now"] = time.process_time
    {"scan": scan, "auto-benign": auto_benign, "auto-float64": auto_float64}[args.mode](args)


if __name__ == "__main__":
    main()
