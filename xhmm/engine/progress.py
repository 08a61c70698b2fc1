"""Progress bars (tqdm), on only where someone is watching.

Two kinds of bar share one rule for when to show them (:func:`progress_enabled`)
and one choice of bar (:func:`tqdm_class`): the engine's forward and backward
passes count time steps (:func:`progress_bar`), and dask computations such as
:func:`xhmm.save_results` count tasks (:func:`dask_progress`).

In a notebook without ipywidgets the text bar is used, and tqdm's automatic
choice (``tqdm.auto``, which ``tqdm.dask`` imports) is never imported: it warns
"IProgress not found" there.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from dask.callbacks import Callback

from ..errors import ConfigError

__all__ = ["progress_enabled", "progress_bar", "tqdm_class", "dask_progress"]


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_enabled(setting: bool | None) -> bool:
    """Resolve a progress setting such as ``Config.progress``.

    Parameters
    ----------
    setting : bool or None
        True or False as given; None means on when stderr is a terminal or
        this is a Jupyter notebook, off otherwise (CI, logs, pipes).

    Returns
    -------
    bool
    """
    if setting is not None:
        return setting
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) or _in_notebook()


def tqdm_class() -> type:
    """The tqdm bar to draw: the notebook widget where it can show, else the text bar.

    Returns
    -------
    type
        ``tqdm.notebook.tqdm`` in a Jupyter notebook with ipywidgets,
        otherwise ``tqdm.std.tqdm``.
    """
    from tqdm.std import tqdm

    if not _in_notebook():
        return tqdm
    try:
        import ipywidgets  # noqa: F401
        from tqdm.notebook import IProgress
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return tqdm
    return tqdm if IProgress is None else notebook_tqdm


def progress_bar(
    enabled: bool, total: int, desc: str, unit: str = "step"
) -> AbstractContextManager:
    """A bar counting up to ``total``, or a do-nothing stand-in.

    Parameters
    ----------
    enabled : bool
        False returns the stand-in (see :func:`progress_enabled`).
    total : int
    desc : str
        Label of the bar.
    unit : str, default "step"

    Returns
    -------
    context manager
        Entering it gives an object with ``update(n=1)``.
    """
    if not enabled:
        return nullcontext(_Silent())
    return tqdm_class()(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)


def dask_progress(progress: bool | None, desc: str) -> AbstractContextManager:
    """A context in which dask computations drive a bar over their tasks.

    Parameters
    ----------
    progress : bool or None
        True shows the bar, False hides it, None decides as
        :func:`progress_enabled` does.
    desc : str
        Label of the bar.

    Returns
    -------
    context manager
        A dask callback drawing one bar per computation run inside the
        ``with`` block (closed when it finishes), or a do-nothing context.

    Raises
    ------
    xhmm.ConfigError
        If ``progress`` is not True, False or None.
    """
    if progress is not None and not isinstance(progress, bool):
        raise ConfigError(f"progress must be True, False or None, got {progress!r}")
    if not progress_enabled(progress):
        return nullcontext()
    return _TaskBar(desc)


class _Silent:
    def update(self, n: int = 1) -> None:
        """Ignore progress."""


class _TaskBar(Callback):
    """Dask scheduler callback advancing a tqdm bar by one per finished task."""

    def __init__(self, desc: str) -> None:
        super().__init__()
        self.desc = desc
        self.bar: Any = None

    def _start_state(self, dsk: Mapping, state: dict[str, Any]) -> None:
        total = len(state["ready"]) + len(state["waiting"])
        self.bar = tqdm_class()(total=total, desc=self.desc, unit="task", leave=False)

    def _posttask(self, key: Any, result: Any, dsk: Mapping, state: dict[str, Any],
                  worker_id: Any) -> None:
        self.bar.update()

    def _finish(self, dsk: Mapping, state: dict[str, Any], errored: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
