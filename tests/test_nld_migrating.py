"""MIGRATING.md's statements, checked against the real non_local_detector 0.6.9.

Runs ``benchmarks/nld_migrating_check.py`` (minutes: it fits detectors on
non_local_detector's own simulation) where non_local_detector is installed;
skipped elsewhere, as in this project's own environment.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "nld_migrating_check.py"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("non_local_detector") is None,
                    reason="non_local_detector is not installed")
def test_migrating_statements_hold_against_non_local_detector():
    done = subprocess.run([sys.executable, str(SCRIPT), "--steps", "2000"],
                          capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert lines and not [line for line in lines if line.startswith("FAIL")], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
