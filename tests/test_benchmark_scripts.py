"""Every script in ``benchmarks/`` runs at a tiny size and prints its figures.

The scripts call the kernels and engine directly, so a change of a
kernel's signature breaks them without breaking the package; this runs
each one (in its own process, as documented in docs/benchmarks.md) on a
problem small enough for CI and checks the line that carries its result.
No timing is asserted. Each run starts Python and JAX and compiles its
kernels (about 5-10 s on 2 cores), so the file is marked ``slow``: ``make
test-all`` (CI) runs it, ``make test`` leaves it out (it exercises the
benchmark scripts, not behaviour of the package).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# (script and arguments, a fragment of the line that reports the result)
RUNS = [
    (["kernel_steps.py", "--model", "contfrag-1d", "-K", "40", "--rows", "20",
      "--repeat", "1"], "blocks / dense = "),
    (["engine_overhead.py", "scan", "-T", "200", "-K", "20", "--chunk-size", "50",
      "--rounds", "1"], "median ratio xhmm / bare scan: "),
    (["engine_overhead.py", "auto-benign", "-T", "200", "-K", "20", "--chunk-size", "50",
      "--rounds", "1"], "median ratio"),
    (["structured_step.py", "--grid", "6", "--hole", "2", "--track-bins", "20",
      "--repeat", "1"], "pullback dense"),
    (["seed_scale_pieces.py", "--bins", "100", "--steps", "200", "--chunk-size", "50"],
     "projected to T=1,976,441 from smooth: "),
    (["lazy_block_memory.py", "--n-time", "200", "--n-bins", "20", "--time-chunks", "50"],
     "lazy.blocks[1].compute()"),
    (["lazy_block_memory.py", "--save", "-T", "300", "-K", "40", "--time-chunks", "auto"],
     "save peak / run peak = "),
    (["persist_causal.py", "--duration", "1", "--repeats", "1", "--chunk-size", "100"],
     "persist_causal=False: median"),
    (["batched.py", "speedup", "--n-bins", "10", "--n-time", "50", "--batch", "3",
      "--chunk-size", "20", "--single", "2", "--repeat", "1"], "speed-up per sequence: "),
    (["viterbi.py", "time", "--model", "dense", "-T", "60", "-K", "8", "--chunk-size", "20",
      "--rounds", "1"], "median ratio most_likely_sequence / smooth: "),
    (["viterbi.py", "kernels", "-K", "8", "--chunk-size", "20", "--rounds", "1"],
     "backtrack"),
    (["viterbi.py", "time", "--method", "sample_paths", "--n-samples", "3", "-T", "60", "-K",
      "8", "--chunk-size", "20", "--rounds", "1"], "median time per sample path / smooth"),
    (["summaries_memory.py", "-K", "8", "--sweep-T", "100,400", "--chunk-size", "40"],
     "anonymous peak T=400 / T=100: "),
    (["view_window.py", "--n-time", "20000", "--chunk-size", "5000", "--windows", "3",
      "--min-steps", "200"], "update of a random window"),
]


@pytest.mark.parametrize("command, reports", RUNS, ids=lambda value: (
    " ".join(value[:2]) if isinstance(value, list) else None))
def test_benchmark_script_runs(command, reports, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / command[0]), *command[1:]],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert reports in done.stdout, done.stdout[-3000:]
