"""xhmm: out-of-core HMM filtering and smoothing, from the command line.

Each sub-command lives in its own module (:mod:`xhmm.cli.decode` for
``smooth`` and ``filter``, :mod:`xhmm.cli.info`, :mod:`xhmm.cli.demo`, and the
benchmark harness :mod:`xhmm.bench`), which exposes ``add_arguments(parser)``
and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from ..errors import XHMMError

__all__ = ["main"]

_COMMANDS = {
    "demo": ("xhmm.cli.demo", "simulate a decoding problem, smooth it, save and plot"),
    "bench": ("xhmm.bench", "benchmark smooth against a NumPy loop and peers"),
    "smooth": ("xhmm.cli.decode", "filter and smooth a log-likelihood file into results.nc"),
    "filter": ("xhmm.cli.decode", "filter (causal only) a log-likelihood file into results.nc"),
    "info": ("xhmm.cli.info", "describe a results file: sizes, dtypes, Config, completeness"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name; None reads ``sys.argv``.

    Returns
    -------
    int
        Exit status: the sub-command's, or 2 when it raised an
        :class:`xhmm.XHMMError` (printed as one ``xhmm: error:`` line).
    """
    parser = argparse.ArgumentParser(prog="xhmm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in _COMMANDS.items():
        module = import_module(module_name)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except XHMMError as exc:
        print(f"xhmm: error: {exc}", file=sys.stderr)
        return 2
