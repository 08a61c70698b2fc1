"""``xhmm demo``: decode position from simulated place cells, save and plot.

Simulates an animal running back and forth on a track with gaps, with place
cells firing Poisson spikes and occasional "fragmented" epochs in which the
spikes report random positions (:mod:`xhmm.synthetic`); smooths the two-state
model with memmap outputs and lazy results; saves the results to compressed
NetCDF; reopens them lazily and draws the posterior and state probabilities.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["add_arguments", "run"]

#: Duration in seconds of ``--long``: a 40-minute recording.
LONG_DURATION = 2_400.0
#: The demo's events: P(fragmented) at or above this ...
EVENT_THRESHOLD = 0.8
#: ... for at least this long (seconds), runs closer than the gap merged.
EVENT_MIN_DURATION = 0.02
EVENT_MERGE_GAP = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xhmm demo``."""
    parser.add_argument("--out", default="demo-output", help="output folder "
                        "(default: demo-output)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of recording to simulate (default: 60)")
    parser.add_argument("--long", action="store_true",
                        help=f"recording scale: {LONG_DURATION / 60:.0f} minutes at 2 ms "
                        "bins (overrides --duration), uint16 posteriors, no stored "
                        "causal posterior, progress bars")
    parser.add_argument("--n-cells", type=int, default=40, help="place cells (default: 40)")
    parser.add_argument("--chunk-size", type=int, default=5_000,
                        help="time steps per engine chunk (default: 5000)")
    parser.add_argument("--window", type=float, default=15.0,
                        help="seconds drawn in the figure, from the middle of the "
                        "recording (default: 15)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _size(path: Path) -> str:
    from .info import disk_bytes

    return f"{disk_bytes(path) / 1e6:,.1f} MB"


class _Clock:
    """Prints one line per stage with its wall time."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def lap(self, stage: str, detail: str = "") -> None:
        now = time.perf_counter()
        print(f"  {stage:<9}{now - self.last:7.1f} s  {detail}".rstrip(), flush=True)
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


def _events_line(found, fragmented: np.ndarray) -> str:
    """How the events found match the simulation's fragmented epochs."""
    spans = list(zip(found.start_index.values, found.stop_index.values + 1))
    in_event = np.zeros(fragmented.size, bool)
    for start, stop in spans:
        in_event[start:stop] = True
    epoch = np.cumsum(np.diff(fragmented.astype(np.int8), prepend=0) == 1) * fragmented
    caught = np.unique(epoch[in_event & fragmented]).size
    outside = sum(not fragmented[start:stop].any() for start, stop in spans)
    return (f"events: {len(spans)} with P(fragmented) >= {EVENT_THRESHOLD:g} for "
            f">= {EVENT_MIN_DURATION * 1e3:g} ms; {caught} of {epoch.max()} simulated "
            f"fragmented epochs overlap one, {outside} events lie outside every epoch")


def run(args: argparse.Namespace) -> int:
    """Simulate, smooth (memmap + lazy), save NetCDF, reopen and plot.

    Returns
    -------
    int
        0 on success.
    """
    from .. import events, open_results, save_results
    from ..extras import require

    require("matplotlib", "plot", "xhmm demo (it draws a figure)").use("Agg")
    import matplotlib.pyplot as plt

    from ..plot import plot_decoding
    from ..synthetic import simulate_decoding

    for flag, value in (("--chunk-size", args.chunk_size), ("--window", args.window),
                        ("--n-cells", args.n_cells)):
        if not value > 0:
            raise ConfigError(f"{flag} must be positive, got {value!r}")
    duration = LONG_DURATION if args.long else args.duration
    options = {"chunk_size": args.chunk_size}
    if args.long:
        options.update(quantize_posteriors=True, persist_causal=False, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock()

    ds = simulate_decoding(duration, n_cells=args.n_cells, seed=args.seed,
                           time_chunk=args.chunk_size)
    n_time = ds.sizes["time"]
    interior = int(ds.is_interior.sum())
    print(f"xhmm demo: {duration:g} s at {ds.attrs['dt_s'] * 1e3:g} ms bins = {n_time:,} steps; "
          f"{ds.sizes['state_bins']} state bins ({interior} on the track: 2 states x "
          f"{interior // 2} positions); {ds.sizes['cell']} place cells")
    clock.lap("simulate", "(likelihood computed lazily, chunk by chunk)")

    memmap_dir = out / "memmap"
    res = ds.hmm.smooth(use_memmap=True, memmap_dir=memmap_dir, overwrite=True,
                        emit_map=True, **options)
    clock.lap("smooth", f"memmap outputs: {memmap_dir}/ ({_size(memmap_dir)}, "
              f"{res.acausal_posterior.attrs['xhmm_storage_dtype']})")

    nc = save_results(res, out / "demo_results.nc", overwrite=True,
                      progress=options.get("progress"))
    clock.lap("save", f"{nc} ({_size(nc)}, gzip)")

    truth = ds.true_position.values
    error = np.abs(res.map_position.values - truth)
    fragmented = ds.true_state.values == "fragmented"
    detected = res.acausal_state_probabilities.sel(states="fragmented").values > 0.5

    middle = 0.5 * duration
    half = 0.5 * min(args.window, duration)
    window = slice(middle - half, middle + half)
    with open_results(nc) as back:
        fig = plot_decoding(
            back,
            time=window,
            true_position=ds.true_position,
            true_state=ds.true_state,
            title="xhmm: position decoded from simulated place cells "
            f"({window.start:g}–{window.stop:g} s of {duration:g} s)",
        )
        found = events(back, "fragmented", threshold=EVENT_THRESHOLD,
                       merge_gap=EVENT_MERGE_GAP, min_duration=EVENT_MIN_DURATION)
    png = out / "demo.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    clock.lap("plot", f"{png} (from the reopened NetCDF)")
    csv = out / "demo_events.csv"
    found.to_dataframe().to_csv(csv)
    clock.lap("events", f"{csv} (xhmm.events of the reopened NetCDF)")

    print(f"decoding error: median |MAP - true position| = {np.median(error):.1f} cm "
          f"(track {ds.attrs['track_length_cm']:g} cm, bins {ds.attrs['bin_size_cm']:g} cm)")
    if fragmented.any():
        print(f"fragmented epochs: {detected[fragmented].mean():.0%} of their steps "
              f"detected (P > 0.5), {detected[~fragmented].mean():.1%} false alarms")
    print(_events_line(found, fragmented))
    print(f"marginal log-likelihood: {float(res.marginal_log_likelihood):,.1f}")
    print(f"total time: {clock.total():.1f} s")
    return 0
