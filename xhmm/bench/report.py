"""Summaries of the harness's records: ratios, the terminal table, the plots."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from .memory import combine_runs
from .worker import DENSE_IMPL

__all__ = ["summarize", "format_table", "write_plots", "posterior_differences"]

_MIB = 2**20


def _key(record: dict[str, Any]) -> tuple[str, str, int, int]:
    return record.get("model", "dense"), record["impl"], record["n_time"], record["n_bins"]


def posterior_differences(records: list[dict[str, Any]]) -> dict[tuple, float]:
    """Largest |xhmm - dense path| posterior difference of each structured model.

    Parameters
    ----------
    records : list of dict
        Worker records; those with a ``posteriors_path`` (see
        :class:`~xhmm.bench.worker.RunSpec`) are compared.

    Returns
    -------
    dict of (model, T, K) to float
        Maximum absolute difference between ``xhmm`` and ``xhmm-dense`` over
        the causal and acausal posteriors of every time step and interior
        bin.
    """
    paths = {_key(r): r["posteriors_path"] for r in records
             if r.get("status") == "ok" and "posteriors_path" in r}
    out = {}
    for (model, impl, n_time, n_bins), path in paths.items():
        dense = paths.get((model, DENSE_IMPL, n_time, n_bins))
        if impl == "xhmm" and dense is not None:
            ours, theirs = np.load(path, mmap_mode="r"), np.load(dense, mmap_mode="r")
            out[model, n_time, n_bins] = float(np.max(np.abs(ours - theirs)))
    return out


def _ratios(ok: list[dict[str, Any]], reference: dict[tuple, float], key) -> list[float]:
    """Each round's wall time over the reference's wall time in the same round."""
    return [r["wall_s"] / reference[key(r)] for r in ok if key(r) in reference]


def summarize(records: list[dict[str, Any]],
              differences: dict[tuple, float] | None = None) -> list[dict[str, Any]]:
    """One row per (model, impl, T, K) over all rounds, with ratios.

    ``wall_s`` is the median over rounds of each round's median. Each ratio
    is the median over rounds of (this wall / the reference's wall in the
    same round), so both runs of a ratio met the same machine load:
    ``ratio_to_numpy`` against the NumPy loop on the same model,
    ``ratio_to_dense`` against the same model through xhmm's dense path
    (:data:`~xhmm.bench.worker.DENSE_IMPL`), and, for xhmm on a
    time-varying model (``*-tv``), ``ratio_to_static`` against xhmm on the
    same model with a static discrete transition (each round's ratio in
    ``ratios_to_numpy``, ``ratios_to_dense``, ``ratios_to_static``).
    ``memory`` combines the rounds with
    :func:`~xhmm.bench.memory.combine_runs`; ``input_mb_s``
    and ``output_mb_s`` are the log-likelihood bytes and the memmap bytes
    over the wall time; ``max_abs_diff_vs_dense`` comes from
    :func:`posterior_differences`.
    """
    differences = differences or {}
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[_key(record)].append(record)
    walls = {(*_key(r), r["round"]): r["wall_s"] for r in records if r["status"] == "ok"}

    def reference(model: str, impl: str) -> dict[tuple, float]:
        return {(n_time, n_bins, rnd): wall
                for (m, i, n_time, n_bins, rnd), wall in walls.items()
                if (m, i) == (model, impl)}

    rows = []
    for (model, impl, n_time, n_bins), group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        row: dict[str, Any] = {"model": model, "impl": impl, "n_time": n_time,
                               "n_bins": n_bins, "chunk_size": group[0]["chunk_size"],
                               "rounds": len(ok)}
        if not ok:
            row.update(status=group[0]["status"], note=group[0].get("note"))
            rows.append(row)
            continue
        wall = statistics.median(r["wall_s"] for r in ok)

        def same_round(r: dict[str, Any]) -> tuple:
            return r["n_time"], r["n_bins"], r["round"]

        ratios = {"numpy": _ratios(ok, reference(model, "numpy"), same_round),
                  "dense": _ratios(ok, reference(model, DENSE_IMPL), same_round)}
        if impl == "xhmm" and model.endswith("-tv"):
            ratios["static"] = _ratios(ok, reference(model.removesuffix("-tv"), "xhmm"),
                                       same_round)
        memory = combine_runs([r["memory"] for r in ok])
        last = ok[-1]
        row.update(
            status="ok", wall_s=wall, per_step_us=wall / n_time * 1e6,
            compile_s=statistics.median(r["compile_s"] for r in ok),
            compiles_warmup=last["compiles_warmup"],
            compiles_timed=max(r["compiles_timed"] for r in ok),
            memory=memory,
            **{k: last[k] for k in ("output_bytes", "memmap_bytes", "netcdf_bytes",
                                    "save_s", "marginal_log_likelihood", "input_bytes")
               if k in last},
        )
        for name, values in ratios.items():
            row[f"ratio_to_{name}"] = statistics.median(values) if values else None
            row[f"ratios_to_{name}"] = values
        if "input_bytes" in last:
            row["input_mb_s"] = last["input_bytes"] / wall / 1e6
        if "memmap_bytes" in last:
            row["output_mb_s"] = last["memmap_bytes"] / wall / 1e6
        if impl == "xhmm" and (model, n_time, n_bins) in differences:
            row["max_abs_diff_vs_dense"] = differences[model, n_time, n_bins]
        rows.append(row)
    return rows


def _mib(value: Any) -> str:
    return f"{value / _MIB:.1f}" if isinstance(value, int) else "n/a"


def _fixed(name: str, digits: int):
    def cell(row: dict[str, Any]) -> str | None:
        value = row.get(name)
        return None if value is None else f"{value:.{digits}f}"
    return cell


def _memory(name: str):
    return lambda row: _mib(row["memory"].get(name))


def _added(row: dict[str, Any]) -> str:
    mem = row["memory"]
    peak, start = mem.get("peak_anon"), mem.get("start_anon")
    return _mib(peak - start if isinstance(peak, int) and isinstance(start, int) else None)


#: Table columns: (header, cell of a row, shown only when some row has a value).
_COLUMNS = (
    ("model", lambda row: None if row["model"] == "dense" else row["model"], True),
    ("impl", lambda row: row["impl"], False),
    ("T", lambda row: str(row["n_time"]), False),
    ("K", lambda row: str(row["n_bins"]), False),
    ("wall s", _fixed("wall_s", 3), False),
    ("us/step", _fixed("per_step_us", 1), False),
    ("x numpy", lambda row: _fixed("ratio_to_numpy", 2)(row) or "n/a", False),
    ("x dense", _fixed("ratio_to_dense", 4), True),
    ("max |d| dense", lambda row: (None if row.get("max_abs_diff_vs_dense") is None
                                   else f"{row['max_abs_diff_vs_dense']:.1e}"), True),
    ("x static", _fixed("ratio_to_static", 3), True),
    ("compile s", _fixed("compile_s", 2), False),
    ("anon pk", _memory("peak_anon"), False),
    ("anon +", _added, False),
    ("file pk", _memory("peak_file"), False),
    ("maxrss", _memory("ru_maxrss"), False),
    ("device", _memory("device_peak"), False),
    ("output", lambda row: _mib(row.get("output_bytes")), False),
    ("memmap", lambda row: _mib(row.get("memmap_bytes")), False),
    ("NetCDF", lambda row: _mib(row.get("netcdf_bytes")), False),
    # rates matter for memmap runs: shown when the outputs are memmaps
    ("in MB/s", lambda row: row.get("output_mb_s") and _fixed("input_mb_s", 1)(row), True),
    ("out MB/s", _fixed("output_mb_s", 1), True),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as an aligned text table (sizes in MiB).

    Columns of the model, the ratios to the dense path and to the static
    model, the posterior difference and the memmap input/output rates appear
    only when some row has them.
    """
    ok = [row for row in rows if row["status"] == "ok"]
    columns = [(header, cell) for header, cell, optional in _COLUMNS
               if not optional or any(cell(row) is not None
                                      for row in (rows if header == "model" else ok))]
    lines = [tuple(header for header, _ in columns)]
    notes = []
    for row in rows:
        if row["status"] == "ok":
            lines.append(tuple(cell(row) or "" for _, cell in columns))
            continue
        lines.append(tuple((cell(row) or "") if header in ("model", "impl", "T", "K")
                           else row["status"] if header == "wall s" else ""
                           for header, cell in columns))
        notes.append(f"{row['impl']}: {row.get('note')}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    text = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append("(memory columns in MiB: anon pk = peak RssAnon, anon + = peak minus "
                "RssAnon at the start of the run, file pk = peak RssFile)")
    return "\n".join(text + notes)


def _series(rows, x_name: str, fixed_name: str):
    """{(label, fixed value): [(x, row), ...]} for series with at least 2 points.

    The label is the implementation, followed by the model unless dense.
    """
    series: dict[tuple, list] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            label = row["impl"] + ("" if row["model"] == "dense" else f" {row['model']}")
            series[(label, row[fixed_name])].append((row[x_name], row))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in series.items() if len(v) > 1}


def write_plots(rows: list[dict[str, Any]], stem: Path) -> list[Path]:
    """Time and memory vs T, time vs K (where the rows sweep them), as PNGs.

    Parameters
    ----------
    rows : list of dict
        Output of :func:`summarize`.
    stem : Path
        Path prefix; files are ``{stem}-time_vs_T.png`` and so on.

    Returns
    -------
    list of Path
        The files written.
    """
    require("matplotlib", "plot", "plotting benchmark results").use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_t = _series(rows, "n_time", "n_bins")
    by_k = _series(rows, "n_bins", "n_time")
    if by_t:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (impl, n_bins), points in by_t.items():
            ax.plot([x for x, _ in points], [r["wall_s"] for _, r in points], "o-",
                    label=f"{impl} (K={n_bins})")
        ax.set(xscale="log", yscale="log", xlabel="time steps T", ylabel="wall time (s)",
               title="smooth: wall time vs T")
        ax.legend()
        written.append(_save(fig, plt, stem, "time_vs_T"))
        fig, ax = plt.subplots(figsize=(6, 4))
        for (impl, n_bins), points in by_t.items():
            xs = [x for x, _ in points]
            for key, style in (("peak_anon", "o-"), ("peak_file", "s--")):
                ys = [r["memory"].get(key) for _, r in points]
                if all(isinstance(y, int) for y in ys):
                    ax.plot(xs, [y / _MIB for y in ys], style,
                            label=f"{impl} {key} (K={n_bins})")
        ax.set(xscale="log", xlabel="time steps T", ylabel="peak RSS (MiB)",
               title="smooth: peak host memory vs T")
        ax.legend(fontsize="small")
        written.append(_save(fig, plt, stem, "memory_vs_T"))
    if by_k:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (impl, n_time), points in by_k.items():
            ax.plot([x for x, _ in points], [r["per_step_us"] for _, r in points], "o-",
                    label=f"{impl} (T={n_time})")
        ax.set(xscale="log", yscale="log", xlabel="state bins K",
               ylabel="time per step (us)", title="smooth: time per step vs K")
        ax.legend()
        written.append(_save(fig, plt, stem, "time_vs_K"))
    return written


def _save(fig, plt, stem: Path, name: str) -> Path:
    path = Path(f"{stem}-{name}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
