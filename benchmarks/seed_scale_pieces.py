"""Where a step of a seed-scale run goes: the engine's pieces timed alone.

The NonLocal model of the benchmark harness (model
``nonlocal-2d``, K = 10,650 by default) with its log-likelihood in a
``.npy`` memmap and uint16 memmap outputs, as a recording-scale run would
be. One process times, chunk by chunk, what the engine does to each chunk
(the order of :mod:`xhmm.engine.loop`), each piece alone:

``read``
    :meth:`xhmm.engine.reader.LikelihoodReader.read` with the engine's
    reused buffers: rows from the memmap, interior columns, checks, the
    row-maximum shift.
``forward``, ``backward``
    The kernels (:func:`xhmm.kernels.hmm.forward_chunk`,
    :func:`~xhmm.kernels.hmm.backward_chunk`) with the structured operator,
    on the chunk already read, to the host (``np.asarray``).
``summaries``
    :func:`~xhmm.kernels.hmm.summarize_chunk` (state probabilities only)
    to the host.
``write``
    :func:`xhmm.engine.storage.write_rows` of a chunk into a uint16
    memmap, then :func:`~xhmm.engine.storage.sync_rows` (flush to disk).

and then a whole ``ds.hmm.smooth`` with the same settings. ``read``,
``forward``, ``summaries`` and ``write`` happen twice per step (uint16
storage does not hold the filtered rows exactly, so the backward pass reads
and filters each chunk again; both posteriors are summarised and written). Prints milliseconds
per step of each piece (median over chunks),
their sum as the engine runs them, the measured ``smooth``, and the
projection to ``--project`` steps.

Usage: ``python benchmarks/seed_scale_pieces.py [--bins 10650] [--steps 10000]
[--chunk-size 2000] [--project 1976441] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import xarray as xr

import xhmm  # noqa: F401  (registers ds.hmm)
from xhmm.bench.workload import Problem
from xhmm.engine.loop import HOST_BUFFERS
from xhmm.engine.reader import LikelihoodReader
from xhmm.engine.storage import alloc_out, sync_rows, write_rows
from xhmm.kernels.hmm import backward_chunk, forward_chunk, summarize_chunk
from xhmm.transitions.plan import plan_transition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bins", type=int, default=10_650)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    parser.add_argument("--project", type=int, default=1_976_441)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xhmm-pieces-", dir=args.workdir) as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, folder: Path) -> None:
    problem = Problem(args.steps, args.bins, model="nonlocal-2d")
    log_lik = problem.on_disk(folder / "log_likelihood.npy")
    columns = np.flatnonzero(problem.interior)
    states = np.unique(problem.labels, return_inverse=True)[1]
    onehot = np.eye(states.max() + 1, dtype=np.float32)[states[columns]]
    plan = plan_transition(problem.transition, state_labels=problem.labels,
                           is_interior=problem.interior, n_time=args.steps)
    operator = plan.device(np.float32, 1)
    reader = LikelihoodReader(log_lik[None], columns, args.chunk_size, "float32", [args.steps],
                              buffers=HOST_BUFFERS)
    out = alloc_out((args.steps, len(columns)), np.uint16, "posterior", folder)
    initial = jax.device_put(problem.initial[columns][None].astype(np.float32))
    onehot = jax.device_put(onehot)
    not_next = np.array([False])
    times: dict[str, list[float]] = {name: [] for name in
                                     ("read", "forward", "backward", "summaries", "write")}

    def timed(name, function, *arguments):
        tic = time.perf_counter()
        value = function(*arguments)
        times[name].append((time.perf_counter() - tic) / args.chunk_size * 1e3)
        return value

    def forward(chunk):
        filtered, log_norm, last, _ = forward_chunk(initial, True, chunk.log_lik,
                                                    chunk.n_valid, operator, None, initial)
        return np.asarray(filtered), np.asarray(log_norm), last

    def backward(filtered, n_valid):
        smoothed, first, _ = backward_chunk(initial, not_next, filtered, n_valid, operator,
                                            None)
        return np.asarray(smoothed), first

    def summaries(rows):
        return np.asarray(summarize_chunk(rows, onehot, argmax=False, entropy=False)[2])

    def write(rows, start, n_rows):
        write_rows(out, start, rows[0, :n_rows])
        sync_rows(out, start, start + n_rows)

    forward(reader.read(0))  # compile
    backward(forward(reader.read(0))[0], reader.n_valid(0))
    summaries(forward(reader.read(0))[0])
    for index in range(reader.n_chunks):
        chunk = timed("read", reader.read, index)
        filtered = timed("forward", forward, chunk)[0]
        timed("backward", backward, filtered, chunk.n_valid)
        timed("summaries", summaries, filtered)
        timed("write", write, filtered, chunk.start, chunk.stop - chunk.start)
    ms = {name: statistics.median(values) for name, values in times.items()}
    engine = (2 * (ms["read"] + ms["forward"] + ms["summaries"] + ms["write"])
              + ms["backward"])

    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), log_lik)},
                    coords=problem.coords())
    options = dict(initial=problem.initial, chunk_size=args.chunk_size,
                   posterior_dtype="uint16", use_memmap=True, overwrite=True,
                   memmap_dir=folder / "run", progress=False)
    ds.hmm.smooth(transition=problem.transition, **options)  # compile
    tic = time.perf_counter()
    ds.hmm.smooth(transition=problem.transition, **options)
    smooth = (time.perf_counter() - tic) / args.steps * 1e3

    print(f"nonlocal-2d K={len(columns)}, T={args.steps}, chunk {args.chunk_size}, "
          f"JAX on {jax.default_backend()}: ms per step (median over chunks)")
    for name, value in ms.items():
        print(f"  {name:10s} {value:7.3f}")
    print(f"  engine sum {engine:7.3f}  (2 x read, forward, summaries, write; backward)")
    print(f"  smooth     {smooth:7.3f}  (measured: memmap input, uint16 memmap outputs)")
    for label, value in (("engine sum", engine), ("smooth", smooth)):
        print(f"projected to T={args.project:,} from {label}: "
              f"{value * args.project / 3.6e6:.2f} h")


if __name__ == "__main__":
    main()
