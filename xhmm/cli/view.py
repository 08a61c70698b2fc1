"""``xhmm view``: browse a result in a web page served on this machine (127.0.0.1)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run", "open_path"]

#: dask's block size while opening a memmap run: a window reads whole blocks, so small ones.
RUN_BLOCK = "4MiB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xhmm view``."""
    parser.add_argument("results", type=Path, metavar="RESULTS",
                        help="a NetCDF file or Zarr store of smooth or filter results, or "
                        "the folder of a finished memmap run (--memmap-dir)")
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1 (default: 0, a free one)")
    parser.add_argument("--no-browser", action="store_true",
                        help="do not open a web browser (open the address printed)")
    parser.add_argument("--event-state", action="append", metavar="STATE",
                        help="list the events of this state; repeat for several "
                        "(default: every state)")
    parser.add_argument("--threshold", type=float, default=0.8, metavar="P",
                        help="an event: the state's probability >= P (default: 0.8)")
    parser.add_argument("--min-duration", type=float, default=0.0, metavar="SECONDS",
                        help="list events at least this long, in time units "
                        "(default: 0)")
    parser.add_argument("--true-position", metavar="VARIABLE",
                        help="variable of RESULTS holding the animal's position (default: "
                        "true_position when there is one)")


def open_path(path: Path):
    """The result at ``path``, lazily: a memmap run folder (its ``manifest.json``) with
    :func:`xhmm.open_run` in blocks of :data:`RUN_BLOCK`, else :func:`xhmm.open_results`."""
    import dask

    from ..engine.storage import MANIFEST
    from ..io import open_results, open_run

    if (path / MANIFEST).is_file():
        with dask.config.set({"array.chunk-size": RUN_BLOCK}):
            return open_run(path)
    return open_results(path)


def run(args: argparse.Namespace) -> int:
    """Open the results lazily and serve the viewer until Ctrl-C.

    Returns
    -------
    int
        0 once stopped.
    """
    from ..extras import require

    require("bokeh", "view", "xhmm view")
    from ..viewer import serve
    from ..viewer.recording import Recording

    path = args.results
    result = open_path(path)
    recording = Recording(result, true_position=args.true_position,
                          event_states=args.event_state,
                          threshold=args.threshold, min_duration=args.min_duration)
    serve(recording, title=path.name, port=args.port, open_browser=not args.no_browser)
    return 0
