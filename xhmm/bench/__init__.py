"""Benchmark harness: ``python -m xhmm bench`` (see ``docs/benchmarks.md``).

Modules: :mod:`.workload` (synthetic problems), :mod:`.baselines` (the NumPy
loop and optional peers), :mod:`.memory` (RSS sampling), :mod:`.worker` (one
configuration measured in a fresh process), :mod:`.report` (ratios, table,
plots) and :mod:`.command` (the command line).
"""

from .command import add_arguments, run

__all__ = ["add_arguments", "run"]
