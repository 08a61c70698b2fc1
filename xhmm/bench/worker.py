"""Measure one configuration in this process (run by the harness in a fresh one).

``python -m xhmm.bench.worker SPEC.json RECORD.json`` reads a :class:`RunSpec`,
runs the implementation once to warm up (compiling what it needs), then
``repeats`` timed runs, each under an :class:`~xhmm.bench.memory.RssSampler`,
and writes the measurement record as JSON. A fresh process per configuration
keeps one run's peak memory (and ``ru_maxrss``) out of another's.

``xhmm`` runs the model as a user gives it (a
:class:`~xhmm.transitions.Blocks` for the structured models);
``xhmm-dense`` (:data:`DENSE_IMPL`) runs the same model through the dense
path: the matrix of :func:`xhmm.transitions.to_dense`, given without the
``state`` coordinate so that no block analysis applies.
"""

from __future__ import annotations

import gc
import json
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .baselines import BASELINES, missing_note
from .memory import RssSampler, combine_runs, device_peak_bytes, ru_maxrss_bytes
from .workload import Problem

__all__ = ["DENSE_IMPL", "POSTERIORS_FILE", "RunSpec", "measure", "main"]

#: The implementation name of xhmm run on the model's dense matrix.
DENSE_IMPL = "xhmm-dense"
#: File (in the spec's workdir) holding the last run's interior posteriors.
POSTERIORS_FILE = "posteriors.npy"

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@dataclass
class RunSpec:
    """One configuration to measure.

    Attributes
    ----------
    impl : str
        ``"xhmm"``, :data:`DENSE_IMPL` or a name in
        :data:`~xhmm.bench.baselines.BASELINES`.
    n_time, n_bins : int
        Problem size T and K (interior bins).
    chunk_size : int
        xhmm's ``chunk_size``; the peers' chunks are as many.
    posterior_dtype, compute_dtype : str
        xhmm Config fields (baselines use ``compute_dtype`` too).
    use_memmap, lazy, persist_causal : bool
        xhmm Config fields (``lazy`` is ``lazy_expand``).
    input_kind : {"ram", "dask", "memmap"}
        How xhmm receives the log-likelihood; baselines always get RAM.
    repeats : int
        Timed runs after the warm-up.
    statistic : {"median", "min"}
        How the timed runs make ``wall_s``: their median, or the fastest
        (the run least disturbed by other processes on a shared machine).
    save : bool
        Also time ``xhmm.save_results`` of the last result.
    seed : int
    workdir : str
        Scratch folder (memmap outputs, NetCDF file, memmap input).
    model : str
        One of :data:`~xhmm.bench.workload.MODELS`.
    keep_posteriors : bool
        xhmm only: save the last run's causal and acausal posteriors over
        the interior bins to :data:`POSTERIORS_FILE` (for comparing
        implementations).
    """

    impl: str
    n_time: int
    n_bins: int
    chunk_size: int = 5_000
    posterior_dtype: str = "float32"
    compute_dtype: str = "float32"
    use_memmap: bool = False
    lazy: bool = True
    persist_causal: bool = True
    input_kind: str = "ram"
    repeats: int = 3
    save: bool = True
    seed: int = 0
    workdir: str = "."
    model: str = "dense"
    keep_posteriors: bool = False
    statistic: str = "median"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        """Build from a dict, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class _CompileLog:
    """Counts and sums JAX compile events (trace, lowering, backend compile)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.compiles = 0
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name: str, duration: float, **_: Any) -> None:
        if name in _COMPILE_EVENTS:
            self.seconds += duration
            self.compiles += name == _COMPILE_EVENTS[-1]

    def snapshot(self) -> tuple[float, int]:
        """(seconds, backend compiles) so far."""
        return self.seconds, self.compiles


def _xhmm_runner(spec: RunSpec, problem: Problem) -> Callable[[], Any]:
    import xarray as xr

    import xhmm  # noqa: F401  (registers ds.hmm)

    ll = problem.log_likelihood(spec.input_kind, spec.workdir)
    dense_path = spec.impl == DENSE_IMPL
    transition = problem.dense_transition() if dense_path else problem.transition
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords=problem.coords(with_states=not dense_path))
    options = dict(
        chunk_size=spec.chunk_size, posterior_dtype=spec.posterior_dtype,
        compute_dtype=spec.compute_dtype, persist_causal=spec.persist_causal,
        lazy=spec.lazy, progress=False,
    )
    if spec.use_memmap:
        options.update(use_memmap=True, memmap_dir=Path(spec.workdir) / "memmap",
                       overwrite=True)

    def once():
        return ds.hmm.smooth(transition=transition, initial=problem.initial, **options)

    return once


def _baseline_runner(spec: RunSpec, problem: Problem) -> Callable[[], Any]:
    function = BASELINES[spec.impl]
    ll, transition, initial = problem.interior_inputs(problem.in_ram())

    def once():
        return function(ll, transition, initial, spec.chunk_size, spec.compute_dtype)

    return once


def _keep_posteriors(spec: RunSpec, problem: Problem, result: Any) -> str:
    """Save the interior causal and acausal posteriors; return the file's path."""
    path = Path(spec.workdir) / POSTERIORS_FILE
    mask = problem.interior
    np.save(path, np.stack([result[name].values[:, mask]
                            for name in ("causal_posterior", "acausal_posterior")]))
    return str(path)


def _sizes(spec: RunSpec, result: Any) -> dict[str, Any]:
    """Output sizes; for xhmm also the memmap files and the saved NetCDF."""
    if spec.impl not in ("xhmm", DENSE_IMPL):
        arrays, marginal = result
        return {"output_bytes": int(sum(a.nbytes for a in arrays)),
                "marginal_log_likelihood": marginal}
    out: dict[str, Any] = {
        "output_bytes": int(sum(v.nbytes for v in result.data_vars.values())),
        "marginal_log_likelihood": float(result.marginal_log_likelihood),
    }
    folder = result.attrs.get("xhmm_memmap_dir")
    if folder:
        out["memmap_bytes"] = int(sum(p.stat().st_size for p in Path(folder).glob("*")
                                      if p.is_file()))
    if spec.save:
        import xhmm

        path = Path(spec.workdir) / "results.nc"
        with RssSampler() as sampler:
            start = time.perf_counter()
            xhmm.save_results(result, path, overwrite=True)
            out["save_s"] = time.perf_counter() - start
        out["netcdf_bytes"] = path.stat().st_size
        out["save_memory"] = sampler.result
    return out


def measure(spec: RunSpec) -> dict[str, Any]:
    """Warm up, time ``spec.repeats`` runs and collect memory and sizes.

    Returns
    -------
    dict
        The spec's fields plus ``status`` and, when ``"ok"``: ``wall_s``
        (median or fastest, see ``statistic``), ``wall_all_s``, ``per_step_us``, ``warmup_s``,
        ``compile_s``, ``compiles_warmup``, ``compiles_timed``,
        ``generate_s``, ``memory`` (peaks of the timed runs), sizes
        (``input_bytes``: the float32 log-likelihood the implementation
        reads, all state bins for xhmm, the interior ones for baselines)
        and, for xhmm, ``save_s``/``netcdf_bytes`` and, with
        ``keep_posteriors``, ``posteriors_path``.
    """
    record: dict[str, Any] = asdict(spec)
    note = missing_note(spec.impl)
    if note is not None:
        record.update(status="skipped", note=note)
        return record
    uses_jax = spec.impl != "numpy"
    compile_log = _CompileLog() if uses_jax else None
    Path(spec.workdir).mkdir(parents=True, exist_ok=True)
    problem = Problem(spec.n_time, spec.n_bins, spec.seed, spec.model)
    uses_xhmm = spec.impl in ("xhmm", DENSE_IMPL)
    start = time.perf_counter()
    once = (_xhmm_runner if uses_xhmm else _baseline_runner)(spec, problem)
    record["generate_s"] = time.perf_counter() - start
    record["input_bytes"] = spec.n_time * (problem.n_state_bins if uses_xhmm
                                           else problem.n_bins) * 4

    start = time.perf_counter()
    result = once()
    record["warmup_s"] = time.perf_counter() - start
    record["compile_s"], record["compiles_warmup"] = (
        compile_log.snapshot() if uses_jax else (0.0, 0))
    del result
    times, peaks = [], []
    for _ in range(spec.repeats):
        gc.collect()
        with RssSampler() as sampler:
            start = time.perf_counter()
            result = once()
            times.append(time.perf_counter() - start)
        peaks.append(sampler.result)
        if len(times) < spec.repeats:
            del result
    record["compiles_timed"] = (
        compile_log.snapshot()[1] - record["compiles_warmup"] if uses_jax else 0)
    wall = statistics.median(times) if spec.statistic == "median" else min(times)
    memory = combine_runs(peaks)
    memory["ru_maxrss"] = ru_maxrss_bytes()
    device = device_peak_bytes() if uses_jax else None
    memory["device_peak"] = "n/a" if device is None else device
    record.update(
        status="ok", wall_s=wall, wall_all_s=times,
        per_step_us=wall / spec.n_time * 1e6, memory=memory,
    )
    record.update(_sizes(spec, result))
    if spec.keep_posteriors and uses_xhmm:
        record["posteriors_path"] = _keep_posteriors(spec, problem, result)
    return record


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m xhmm.bench.worker SPEC.json RECORD.json``."""
    spec_path, record_path = (argv if argv is not None else sys.argv[1:])[:2]
    spec = RunSpec.from_dict(json.loads(Path(spec_path).read_text()))
    try:
        record = measure(spec)
    except Exception as exc:  # reported in the record, not fatal to the sweep
        record = asdict(spec)
        record.update(status="failed", note=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    finally:
        shutil.rmtree(Path(spec.workdir) / "memmap", ignore_errors=True)
    Path(record_path).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
