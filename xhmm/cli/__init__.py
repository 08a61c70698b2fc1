"""xhmm: out-of-core HMM filtering and smoothing, from the command line.

Each sub-command lives in its own module (:mod:`xhmm.cli.decode` for
``smooth``, ``filter``, ``viterbi`` and ``sample``, :mod:`xhmm.cli.info`,
:mod:`xhmm.cli.demo`, :mod:`xhmm.cli.view`, and the
benchmark harness :mod:`xhmm.bench`), which exposes ``add_arguments(parser)``
and ``run(args) -> int``. Only the module of the command given is imported,
and its heavy imports (JAX, dask, xarray's readers) wait until ``run``: help,
``--version`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from importlib import import_module

from .. import __version__
from ..config import Config
from ..errors import XHMMError, XHMMWarning

__all__ = ["main", "cli_message"]

_COMMANDS = {
    "demo": ("xhmm.cli.demo", "simulate a decoding problem, smooth it, save and plot"),
    "bench": ("xhmm.bench", "benchmark smooth against a NumPy loop and peers"),
    "smooth": ("xhmm.cli.decode", "filter and smooth a log-likelihood file into results.nc"),
    "filter": ("xhmm.cli.decode", "filter (causal only) a log-likelihood file into results.nc"),
    "viterbi": ("xhmm.cli.decode",
                "most likely sequence (Viterbi path) of a log-likelihood file into path.nc"),
    "sample": ("xhmm.cli.decode",
               "paths drawn from the posterior of a log-likelihood file into samples.nc"),
    "info": ("xhmm.cli.info", "describe a results file or Zarr store: sizes, dtypes, Config, "
                                "completeness"),
    "view": ("xhmm.cli.view", "browse results in a web page on this machine (needs the view "
                              "extra)"),
}


_FIELDS = "|".join(sorted(Config.field_names(), key=len, reverse=True))
_SNAKE_FIELDS = "|".join(n for n in Config.field_names() if "_" in n)
#: A Config keyword as messages write it: ``Config.name``, ``name=value``, or
#: a bare ``snake_case`` field name (single words such as "resume" are prose
#: unless written with ``Config.`` or ``=``).
_KEYWORD = re.compile(
    rf"(?:Config\.(?P<qualified>{_FIELDS})\b|\b(?P<assigned>{_FIELDS})(?==)"
    rf"|\b(?P<bare>{_SNAKE_FIELDS})\b)(?:=(?P<value>'[^']*'|[^\s,;:)]+))?"
)


def _as_flag(match: re.Match) -> str:
    name = match["qualified"] or match["assigned"] or match["bare"]
    flag = name.replace("_", "-")
    value = match["value"]
    if value == "False":
        return f"--no-{flag}"
    if value is None or value == "True":
        return f"--{flag}"
    return f"--{flag} {value}"


def cli_message(text: str) -> str:
    """A message of xhmm as the command line prints it: on one line, with flags.

    ``Config.chunk_size`` becomes ``--chunk-size``, ``overwrite=True``
    ``--overwrite``, ``persist_causal=False`` ``--no-persist-causal`` and
    ``compute_dtype='float64'`` ``--compute-dtype 'float64'``, so the message
    names what the user of the command line types.

    Parameters
    ----------
    text : str
        The message of an :class:`xhmm.XHMMError` or :class:`xhmm.XHMMWarning`.

    Returns
    -------
    str
    """
    return _KEYWORD.sub(_as_flag, " ".join(text.split()))


def _show_warning(show):
    """``warnings.showwarning`` printing xhmm's warnings as one ``xhmm: warning:`` line."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, XHMMWarning):
            print(f"xhmm: warning: {cli_message(str(message))}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


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
        :class:`xhmm.XHMMError` (printed as one ``xhmm: error:`` line, see
        :func:`cli_message`), or 130 when interrupted (Ctrl-C, SIGINT:
        one ``xhmm: interrupted`` line, no traceback; a memmap run is left
        resumable). Warnings of xhmm are printed as one
        ``xhmm: warning:`` line each and do not change the status.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="xhmm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xhmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # The command is the first argument that is not an option (xhmm's own
    # options take no value); only its module is imported.
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in _COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            command_parser.set_defaults(command=name)
            module = import_module(module_name)
            module.add_arguments(command_parser)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        # Each warning once (per message), whatever filters the environment set.
        warnings.simplefilter("default", XHMMWarning)
        warnings.showwarning = _show_warning(warnings.showwarning)
        try:
            return int(module.run(args) or 0)
        except XHMMError as exc:
            print(f"xhmm: error: {cli_message(str(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("xhmm: interrupted; a run with --memmap-dir continues where it stopped "
                  "with --resume", file=sys.stderr)
            return 130
