"""How long the viewer's server takes to answer a pan or zoom on a long memmap result.

Makes a memmap run of a synthetic recording (``--n-time`` steps at 2 ms,
two states over ``--bin-size`` cm bins: 110 state bins at 4 cm) with the
engine, opens it as ``xhmm view RUN`` does (``open_path``), then times the
page's update (``Page.refresh``: read the visible window, reduce it to the
figure's width, fill the Bokeh sources) for random windows, from
``--min-steps`` to the longest window the viewer reads at once.

Usage: python benchmarks/view_window.py [--n-time 2000000] [--windows 30] [--run DIR]

With ``--run DIR`` the run is kept, and tests/test_view.py times the page on it
in headless chromium (``XHMM_VIEW_RESULTS=DIR``, the command printed last).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bokeh.document import Document

import xhmm  # noqa: F401  (registers ds.hmm)
from xhmm.cli.view import open_path
from xhmm.synthetic import simulate_decoding
from xhmm.viewer.page import Page
from xhmm.viewer.recording import Recording


def make_run(folder: Path, n_time: int, bin_size: float, chunk_size: int) -> float:
    """Smooth a synthetic recording into a memmap run in ``folder``; seconds taken."""
    began = time.perf_counter()
    ds = simulate_decoding(n_time * 0.002, bin_size=bin_size, time_chunk=50_000, seed=0)
    ds.hmm.smooth(chunk_size=chunk_size, use_memmap=True, memmap_dir=str(folder),
                  persist_causal=False, progress=False, overwrite=True)
    return time.perf_counter() - began


def main() -> None:
    """Time the update for random windows and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-time", type=int, default=2_000_000)
    parser.add_argument("--bin-size", type=float, default=4.0, help="cm (4: 110 state bins)")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--windows", type=int, default=30, help="random windows timed")
    parser.add_argument("--min-steps", type=int, default=1_000)
    parser.add_argument("--run", type=Path, help="the memmap run folder: made there (and "
                        "kept) when it holds no run, else opened")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or Path(scratch) / "run"
        if not (run / "manifest.json").is_file():
            seconds = make_run(run, args.n_time, args.bin_size, args.chunk_size)
            print(f"memmap run of T={args.n_time:,}: {seconds:.1f} s")
        began = time.perf_counter()
        recording = Recording(open_path(run))
        print(f"open + events + overview: {time.perf_counter() - began:.2f} s "
              f"(T={recording.n_steps:,}, {recording.result.sizes['state_bins']} state bins, "
              f"{recording.events['start'].size:,} events)")
        began = time.perf_counter()
        page = Page(recording, Document(), "bench")
        print(f"first page: {time.perf_counter() - began:.2f} s; longest window "
              f"{recording.max_steps:,} steps")
        rng = np.random.default_rng(args.seed)
        times, lengths = [], []
        for _ in range(args.windows):
            n = int(np.exp(rng.uniform(np.log(args.min_steps), np.log(recording.max_steps))))
            n = min(n, recording.n_steps)
            first = int(rng.integers(0, recording.n_steps - n + 1))
            page.x_range.update(start=recording.time[first],
                                end=recording.time[first + n - 1])
            began = time.perf_counter()
            page.refresh()
            times.append(time.perf_counter() - began)
            lengths.append(n)
        times = np.array(times) * 1e3
        longest = np.array(lengths) >= recording.max_steps // 2
        print(f"update of a random window ({args.min_steps:,} to {recording.max_steps:,} "
              f"steps), ms: median {np.median(times):.0f}, 90th percentile "
              f"{np.percentile(times, 90):.0f}, max {times.max():.0f} "
              f"over {times.size} windows")
        if longest.any():
            print(f"windows of {recording.max_steps // 2:,}+ steps: median "
                  f"{np.median(times[longest]):.0f} ms, max {times[longest].max():.0f} ms")
        if args.run is not None:
            print(f"in a browser: XHMM_VIEW_RESULTS={run} python -m pytest "
                  "tests/test_view.py -k result_of_yours -s")


if __name__ == "__main__":
    main()
