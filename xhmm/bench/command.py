"""``xhmm bench``: the command line of the benchmark harness."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .baselines import BASELINES
from .report import format_table, posterior_differences, summarize, write_plots
from .worker import DENSE_IMPL, RunSpec
from .workload import INPUT_KINDS, MODELS, check_model_size

__all__ = ["add_arguments", "run"]

_SWEEPS = ("none", "T", "K", "both")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    values = _int_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive int, got {text!r}")
    return values[0]


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip() and v.strip() != "none"]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


def _name_list(text: str) -> list[str]:
    return _choices(text, (*BASELINES, DENSE_IMPL, "none"), "baseline(s)")


def _model_list(text: str) -> list[str]:
    models = _choices(text, MODELS, "model(s)")
    if not models:
        raise argparse.ArgumentTypeError("expected at least one model")
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xhmm bench``."""
    size = parser.add_argument_group("problem size")
    size.add_argument("-T", "--n-time", type=_positive_int, default=20_000, help="time steps")
    size.add_argument("-K", "--n-bins", type=_positive_int, default=1_000, help="state bins")
    size.add_argument("--seed", type=int, default=0)
    size.add_argument("--model", type=_model_list, default=["dense"], dest="models",
                      help="comma-separated from " + ", ".join(MODELS) + " (see "
                           "docs/benchmarks.md); -K is the number of interior bins")
    cfg = parser.add_argument_group("xhmm configuration")
    cfg.add_argument("--chunk-size", type=_positive_int, default=5_000)
    cfg.add_argument("--posterior-dtype", choices=("float32", "float16", "uint16"),
                     default="float32", help="storage dtype of the posteriors")
    cfg.add_argument("--compute-dtype", choices=("float32", "float64"), default="float32")
    cfg.add_argument("--memmap", action=argparse.BooleanOptionalAction, default=False,
                     help="memmap outputs (use_memmap)")
    cfg.add_argument("--lazy", action=argparse.BooleanOptionalAction, default=True,
                     help="lazy (dask) result posteriors (lazy_expand)")
    cfg.add_argument("--persist-causal", action=argparse.BooleanOptionalAction,
                     default=True, help="keep the causal posterior")
    cfg.add_argument("--input", choices=INPUT_KINDS, default="ram",
                     help="how xhmm gets the log-likelihood: in RAM, as a lazy dask "
                          "array generated block by block, or as a .npy memmap "
                          "(baselines always get it in RAM)")
    run_group = parser.add_argument_group("measurement")
    run_group.add_argument("--repeats", type=_positive_int, default=3,
                           help="timed runs per configuration after one warm-up")
    run_group.add_argument("--stat", choices=("median", "min"), default="median",
                           help="a configuration's time in one round: the median of its "
                                "timed runs, or the fastest (least disturbed by other "
                                "processes)")
    run_group.add_argument("--rounds", type=_positive_int, default=1,
                           help="repeat the whole set of configurations, interleaved; "
                                "ratios are medians over rounds")
    run_group.add_argument("--baselines", type=_name_list,
                           default=list(BASELINES),
                           help="comma-separated from numpy, non_local_detector, dynamax, "
                                f"{DENSE_IMPL} (a structured model's to_dense matrix "
                                "through xhmm's dense path), or none (peers not installed "
                                "are skipped with a note)")
    run_group.add_argument("--sweep", choices=_SWEEPS, default="none",
                           help="T: time and memory vs T at -K; K: time vs K at -T")
    run_group.add_argument("--sweep-T", type=_int_list,
                           default=[40_000, 80_000, 160_000, 320_000],
                           help="T values of the T sweep")
    run_group.add_argument("--sweep-K", type=_int_list, default=[100, 250, 500, 1_000],
                           help="K values of the K sweep")
    run_group.add_argument("--save", action=argparse.BooleanOptionalAction, default=True,
                           help="also time xhmm.save_results and report the NetCDF size")
    run_group.add_argument("--blas-threads", type=_positive_int, default=None,
                           help="set OPENBLAS/MKL/OMP_NUM_THREADS in every worker "
                                "(default: the libraries' own choice)")
    run_group.add_argument("--timeout", type=float, default=3_600,
                           help="seconds allowed per configuration")
    out = parser.add_argument_group("output")
    out.add_argument("--out", default="benchmarks/results", help="output folder")
    out.add_argument("--name", default=None,
                     help="file name stem (default bench-<UTC time>)")
    out.add_argument("--workdir", default=None,
                     help="scratch folder for memmaps and NetCDF files (default: a new "
                          "temporary folder)")
    out.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True)


def _points(args: argparse.Namespace) -> list[tuple[int, int]]:
    points = []
    if args.sweep in ("none", "T", "both"):
        sizes = args.sweep_T if args.sweep != "none" else [args.n_time]
        points += [(t, args.n_bins) for t in sizes]
    if args.sweep in ("K", "both"):
        points += [(args.n_time, k) for k in args.sweep_K if (args.n_time, k) not in points]
    return points


def _specs(args: argparse.Namespace, workdir: Path) -> list[RunSpec]:
    """Every configuration of one round.

    A time-varying model has no single dense matrix: it runs in xhmm only.
    The dense model has no separate dense path. When a structured model runs
    both in xhmm and through the dense path, both keep their posteriors for
    :func:`~xhmm.bench.report.posterior_differences`.
    """
    specs = []
    for model in args.models:
        impls = ["xhmm"]
        if not model.endswith("-tv"):
            impls += [impl for impl in args.baselines
                      if not (impl == DENSE_IMPL and model == "dense")]
        compare = DENSE_IMPL in impls
        for n_time, n_bins in _points(args):
            for impl in impls:
                specs.append(RunSpec(
                    impl=impl, n_time=n_time, n_bins=n_bins, chunk_size=args.chunk_size,
                    posterior_dtype=args.posterior_dtype, compute_dtype=args.compute_dtype,
                    use_memmap=args.memmap, lazy=args.lazy,
                    persist_causal=args.persist_causal,
                    input_kind=args.input if impl in ("xhmm", DENSE_IMPL) else "ram",
                    repeats=args.repeats, statistic=args.stat,
                    save=args.save and impl == "xhmm",
                    seed=args.seed, model=model,
                    keep_posteriors=compare and impl in ("xhmm", DENSE_IMPL),
                    workdir=str(workdir / f"{model}-{impl}-{n_time}-{n_bins}"),
                ))
    return specs


def _run_worker(spec: RunSpec, timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Measure ``spec`` in a fresh Python process and return its record."""
    Path(spec.workdir).mkdir(parents=True, exist_ok=True)
    spec_path = Path(spec.workdir) / "spec.json"
    record_path = Path(spec.workdir) / "record.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    record_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "xhmm.bench.worker", str(spec_path), str(record_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        return {**asdict(spec), "status": "failed", "note": f"timed out after {timeout} s"}
    if record_path.exists():
        return json.loads(record_path.read_text())
    tail = (done.stderr or "").strip().splitlines()[-3:]
    return {**asdict(spec), "status": "failed",
            "note": f"worker exited with {done.returncode}: {' | '.join(tail)}"}


def _worker_env(blas_threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if blas_threads is not None:
        for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
            env[name] = str(blas_threads)
    return env


def _meta(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    import jax
    import numpy as np

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "args": dict(vars(args)),
        "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__,
        "jax": jax.__version__, "jax_backend": jax.default_backend(),
        "env": {k: env[k] for k in ("XLA_FLAGS", "OPENBLAS_NUM_THREADS",
                                    "MKL_NUM_THREADS", "OMP_NUM_THREADS") if k in env},
        "loadavg_start": list(os.getloadavg()),
    }


def run(args: argparse.Namespace) -> int:
    """Run every configuration, print the table, write JSON and plots."""
    for model in args.models:
        for _, n_bins in _points(args):
            check_model_size(model, n_bins)
    env = _worker_env(args.blas_threads)
    meta = _meta(args, env)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (args.name or "bench-" + dt.datetime.now(dt.timezone.utc)
                  .strftime("%Y%m%dT%H%M%SZ"))
    with tempfile.TemporaryDirectory(prefix="xhmm-bench-", dir=args.workdir) as tmp:
        specs = _specs(args, Path(tmp))
        records = []
        for round_index in range(args.rounds):
            for spec in specs:
                print(f"[round {round_index + 1}/{args.rounds}] {spec.model} {spec.impl} "
                      f"T={spec.n_time} K={spec.n_bins} ...", file=sys.stderr, flush=True)
                # posteriors of the first round are enough for the comparison
                keep = spec.keep_posteriors and round_index == 0
                record = _run_worker(replace(spec, keep_posteriors=keep), args.timeout, env)
                record["round"] = round_index
                records.append(record)
        differences = posterior_differences(records)
    meta["loadavg_end"] = list(os.getloadavg())
    rows = summarize(records, differences)
    table = format_table(rows)
    print(table)
    plots = write_plots(rows, stem) if args.plots else []
    json_path = Path(f"{stem}.json")
    json_path.write_text(json.dumps(
        {"meta": meta, "summary": rows, "records": records,
         "table": table, "plots": [p.name for p in plots]}, indent=1))
    print(f"\nJSON: {json_path}")
    for path in plots:
        print(f"plot: {path}")
    # A peer that fails (e.g. built for another JAX) is a note, not an error.
    required = {"xhmm", "numpy", DENSE_IMPL}
    return 1 if any(r["status"] == "failed" and r["impl"] in required
                    for r in records) else 0
