"""``xhmm demo``: smooth a small synthetic decoding problem, save and plot it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xhmm demo``."""
    parser.add_argument("--out", default="demo-output", help="output folder")
    parser.add_argument("--n-time", type=int, default=4_000, help="time steps")
    parser.add_argument("--n-bins", type=int, default=100, help="position bins")
    parser.add_argument("--seed", type=int, default=0)


def _random_walk(n_bins: int, width: float) -> np.ndarray:
    x = np.arange(n_bins)
    A = np.exp(-0.5 * ((x[:, None] - x[None, :]) / width) ** 2)
    return A / A.sum(axis=1, keepdims=True)


def run(args: argparse.Namespace) -> int:
    """Simulate, smooth with memmap + lazy results, save NetCDF and a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import save_results

    rng = np.random.default_rng(args.seed)
    T, K = args.n_time, args.n_bins
    A = _random_walk(K, 2.0)
    true = np.empty(T, dtype=np.int64)
    true[0] = K // 2
    for t in range(1, T):
        true[t] = rng.choice(K, p=A[true[t - 1]])
    bins = np.arange(K)
    ll = -0.5 * ((bins[None, :] - (true[:, None] + rng.normal(0, 6, (T, 1)))) / 6.0) ** 2
    ds = xr.Dataset(
        {"log_likelihood": (("time", "state_bins"), ll)},
        coords={"time": np.arange(T) * 0.002, "position": ("state_bins", bins * 2.0)},
    ).chunk(time=1_000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    res = ds.hmm.smooth(transition=A, initial=np.full(K, 1 / K), chunk_size=1_000,
                        emit_map=True, use_memmap=True,
                        memmap_dir=out / "memmap", overwrite=True)
    nc = save_results(res, out / "demo_results.nc", overwrite=True)
    elapsed = time.perf_counter() - start
    error = np.median(np.abs(res.map_position.values - true * 2.0))
    fig, ax = plt.subplots(figsize=(10, 4))
    res.acausal_posterior.T.plot.imshow(ax=ax, x="time", cmap="bone_r", add_colorbar=False)
    ax.plot(res.time, true, color="tab:red", lw=0.8, label="true position bin")
    ax.legend(loc="upper right")
    png = out / "demo_posterior.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"smoothed T={T} steps x {K} bins in {elapsed:.2f} s")
    print(f"median |MAP - true position| = {error:.2f}")
    print(f"results: {nc}\nfigure:  {png}")
    return 0
