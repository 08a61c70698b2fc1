"""Draw the seed-scale projection of the NonLocal model from ``xhmm bench`` JSON files.

Per-step time of ``smooth`` against T for the Blocks runs (memmap outputs,
uint16), the same model's per-step time through the dense path, and the
per-step time that projects to one hour at the seed's T; the right axis
reads the projection in hours.

Usage: ``python benchmarks/plot_seed_scale.py BLOCKS.json [BLOCKS.json ...]
--dense DENSE.json --out docs/benchmarks/seed-scale-nonlocal-2d.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEED_T = 1_976_441


def per_step_ms(path: Path, impl: str) -> list[tuple[int, float]]:
    """(T, ms per step) of each ok summary row of ``impl`` in a harness JSON."""
    rows = json.loads(path.read_text())["summary"]
    return sorted((row["n_time"], row["per_step_us"] / 1e3) for row in rows
                  if row["impl"] == impl and row["status"] == "ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("blocks", nargs="+", type=Path)
    parser.add_argument("--dense", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    points = sorted(p for path in args.blocks for p in per_step_ms(path, "xhmm"))
    dense = per_step_ms(args.dense, "xhmm-dense")
    hours = 1e-3 / 3600 * SEED_T  # hours per (ms per step)

    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot([t for t, _ in points], [ms for _, ms in points], "o",
            label="Blocks: memmap input, uint16 memmap outputs")
    for n_time, ms in dense:
        ax.axhline(ms, color="tab:red", ls="--",
                   label=f"same model, dense path (T={n_time:,})")
    ax.axhline(1 / hours, color="tab:green", ls=":", label="1 h at the seed's T")
    ax.set(xscale="log", yscale="log", xlabel="time steps T of the measured run",
           ylabel="ms per step (forward + backward)",
           title=f"NonLocal 2-D, K=10,650, 2-core CPU: projection to T={SEED_T:,}")
    right = ax.secondary_yaxis("right", functions=(lambda ms: ms * hours,
                                                   lambda h: h / hours))
    right.set_ylabel("projected hours")
    ax.legend(fontsize="small", loc="center right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
