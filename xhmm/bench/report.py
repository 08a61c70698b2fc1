"""Summaries of the harness's records: ratios, the terminal table, the plots."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .memory import combine_runs

__all__ = ["summarize", "format_table", "write_plots"]

_MIB = 2**20


def _key(record: dict[str, Any]) -> tuple[str, int, int]:
    return record["impl"], record["n_time"], record["n_bins"]


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (impl, T, K) over all rounds, with ratios to the NumPy loop.

    ``wall_s`` is the median over rounds of each round's median; ``ratio`` is
    the median over rounds of (this impl's wall / the NumPy loop's wall in the
    same round), so both runs of a ratio met the same machine load.
    ``memory`` combines the rounds with :func:`~xhmm.bench.memory.combine_runs`.
    """
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[_key(record)].append(record)
    numpy_by_round = {
        (r["n_time"], r["n_bins"], r["round"]): r["wall_s"]
        for r in records if r["impl"] == "numpy" and r["status"] == "ok"
    }
    rows = []
    for (impl, n_time, n_bins), group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        row: dict[str, Any] = {"impl": impl, "n_time": n_time, "n_bins": n_bins,
                               "chunk_size": group[0]["chunk_size"],
                               "rounds": len(ok)}
        if not ok:
            row.update(status=group[0]["status"], note=group[0].get("note"))
            rows.append(row)
            continue
        wall = statistics.median(r["wall_s"] for r in ok)
        ratios = [r["wall_s"] / numpy_by_round[(n_time, n_bins, r["round"])]
                  for r in ok if (n_time, n_bins, r["round"]) in numpy_by_round]
        memory = combine_runs([r["memory"] for r in ok])
        last = ok[-1]
        row.update(
            status="ok", wall_s=wall, per_step_us=wall / n_time * 1e6,
            ratio_to_numpy=statistics.median(ratios) if ratios else None,
            ratios_to_numpy=ratios,
            compile_s=statistics.median(r["compile_s"] for r in ok),
            compiles_warmup=last["compiles_warmup"],
            compiles_timed=max(r["compiles_timed"] for r in ok),
            memory=memory,
            **{k: last[k] for k in ("output_bytes", "memmap_bytes", "netcdf_bytes",
                                    "save_s", "marginal_log_likelihood") if k in last},
        )
        rows.append(row)
    return rows


def _mib(value: Any) -> str:
    return f"{value / _MIB:.1f}" if isinstance(value, int) else "n/a"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as an aligned text table (sizes in MiB)."""
    header = ("impl", "T", "K", "wall s", "us/step", "x numpy", "compile s",
              "anon pk", "anon +", "file pk", "maxrss", "device",
              "output", "memmap", "NetCDF")
    lines = [header]
    notes = []
    for row in rows:
        if row["status"] != "ok":
            lines.append((row["impl"], str(row["n_time"]), str(row["n_bins"]),
                          row["status"], *[""] * (len(header) - 4)))
            notes.append(f"{row['impl']}: {row.get('note')}")
            continue
        mem = row["memory"]
        added = (mem["peak_anon"] - mem["start_anon"]
                 if isinstance(mem.get("peak_anon"), int)
                 and isinstance(mem.get("start_anon"), int) else None)
        ratio = row["ratio_to_numpy"]
        lines.append((
            row["impl"], str(row["n_time"]), str(row["n_bins"]),
            f"{row['wall_s']:.3f}", f"{row['per_step_us']:.1f}",
            "n/a" if ratio is None else f"{ratio:.2f}",
            f"{row['compile_s']:.2f}", _mib(mem.get("peak_anon")), _mib(added),
            _mib(mem.get("peak_file")), _mib(mem.get("ru_maxrss")),
            _mib(mem.get("device_peak")), _mib(row.get("output_bytes")),
            _mib(row.get("memmap_bytes")), _mib(row.get("netcdf_bytes")),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append("(memory columns in MiB: anon pk = peak RssAnon, anon + = peak minus "
                "RssAnon at the start of the run, file pk = peak RssFile)")
    return "\n".join(text + notes)


def _series(rows, x_name: str, fixed_name: str):
    """{(impl, fixed value): [(x, row), ...]} for series with at least 2 points."""
    series: dict[tuple, list] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            series[(row["impl"], row[fixed_name])].append((row[x_name], row))
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
    import matplotlib

    matplotlib.use("Agg")
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
