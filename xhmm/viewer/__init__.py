"""Browse a result in a web page: ``xhmm.view(result)`` and ``xhmm view RESULTS``.

A Bokeh server (:class:`bokeh.server.server.Server`), started from Python on
127.0.0.1 and a free port, serves one page per browser session
(:mod:`xhmm.viewer.page`) fed by a :class:`~xhmm.viewer.recording.Recording`
of the result, which reads only the window shown. Bokeh is the ``view``
extra (``pip install "xhmm[view]"``), imported when a viewer starts.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Sequence

import xarray as xr

from ..errors import InputError
from ..extras import require

__all__ = ["view", "serve"]

#: The one address the server binds: this machine only.
ADDRESS = "127.0.0.1"


def _free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((ADDRESS, 0))
        return probe.getsockname()[1]


def _in_event_loop() -> bool:
    """Whether this thread runs an event loop (a Jupyter kernel does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def serve(recording, *, title: str, port: int = 0, open_browser: bool = True):
    """Serve the viewer of ``recording`` on 127.0.0.1 and say where in one line.

    Inside a running event loop (a notebook) the server starts on that loop
    and the page is shown in the output cell; the server is returned.
    Elsewhere it serves until Ctrl-C (SIGINT), then stops and returns None.

    Parameters
    ----------
    recording : xhmm.viewer.recording.Recording
    title : str
        Shown on the page and in the line printed.
    port : int, default 0
        0: a free port.
    open_browser : bool, default True
        Open the page in the default web browser (not in a notebook).

    Returns
    -------
    bokeh.server.server.Server or None
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from .page import make_document

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise InputError(f"port must be an int from 0 (a free port) to 65535, got {port!r}")
    port = port or _free_port()
    try:
        server = Server({"/": Application(FunctionHandler(make_document(recording, title)))},
                        address=ADDRESS, port=port,
                        allow_websocket_origin=[f"{ADDRESS}:{port}", f"localhost:{port}"])
    except OSError as exc:
        raise InputError(f"cannot serve on {ADDRESS}:{port}: {exc.strerror or exc}") from None
    server.start()
    url = f"http://{ADDRESS}:{port}/"
    notebook = _in_event_loop()
    print(f"xhmm view: {title} at {url}" + ("" if notebook else " (Ctrl-C stops it)"),
          flush=True)
    if notebook:
        if "IPython" in sys.modules:
            from IPython.display import IFrame, display

            display(IFrame(url, width=1180, height=1000))
        return server
    if open_browser:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("xhmm view: stopped", flush=True)
    return None


def view(result: xr.Dataset, *, true_position=None,
         events: xr.Dataset | Sequence[xr.Dataset] | None = None, port: int = 0,
         open_browser: bool = True, title: str = "result"):
    """Browse a result in a web page: overview, zoomable window, paths, events.

    Starts a Bokeh server on 127.0.0.1 (this machine only) and a free port
    and prints one line with its address. The page shows the state
    probabilities over the whole recording, a window of it (1-D: the
    posterior over position against time; 2-D: the posterior map at the
    cursor time with the paths of the window), the MAP position (and a
    carried most likely path and the true position), the state
    probabilities of the window, and the event list: clicking an event
    shows it. Every pan or zoom reads only the visible window, reduced to
    the figure's width on the server.

    In a notebook (a running event loop) the page is shown in the output
    cell and the server returned (``server.stop()`` ends it); elsewhere the
    call serves until Ctrl-C.

    Parameters
    ----------
    result : xr.Dataset
        A result of ``smooth`` or ``filter`` of one recording (fresh, or
        reopened with :func:`xhmm.open_results` / :func:`xhmm.open_run`),
        with ``acausal_posterior`` or ``causal_posterior`` over ``(time,
        state_bins)``. Bins with ``x_position`` and ``y_position``
        coordinates make a 2-D view; a ``position`` coordinate a 1-D one;
        without either the bins are drawn by their index.
    true_position : str or array-like, optional
        The animal's position: the name of a variable of ``result``, or
        one value (2-D: one ``(x, y)`` pair) per time step; by default the
        variable ``true_position`` when there is one.
    events : xr.Dataset or sequence of xr.Dataset, optional
        Results of :func:`xhmm.events` to list (``[]``: none); by default
        each state's events at probability 0.8.
    port : int, default 0
        The port; 0 picks a free one.
    open_browser : bool, default True
        Open the page in the default browser (outside a notebook).
    title : str, default "result"
        Shown on the page.

    Returns
    -------
    bokeh.server.server.Server or None
        In a notebook the running server; elsewhere None, once stopped.

    Raises
    ------
    xhmm.MissingExtraError
        Without Bokeh (``pip install "xhmm[view]"``).
    xhmm.InputError
        A result the viewer cannot read (see
        :class:`~xhmm.viewer.recording.Recording`), a bad port or one in use.
    """
    require("bokeh", "view", "xhmm.view (an interactive page)")
    from .recording import Recording

    recording = Recording(result, true_position=true_position, events=events)
    return serve(recording, title=title, port=port, open_browser=open_browser)
