"""A progress bar over the tasks of a dask computation (e.g. saving results).

The engine's forward and backward bars live in :mod:`xhmm.engine.progress`;
this module reuses its rule for when to show a bar: on when attached to a
terminal or a notebook, off otherwise (CI, logs), unless told explicitly.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from .engine.progress import progress_enabled, tqdm_class
from .errors import ConfigError

__all__ = ["dask_progress"]


def dask_progress(progress: bool | None, desc: str) -> AbstractContextManager:
    """A context in which dask computations drive a tqdm bar.

    Parameters
    ----------
    progress : bool or None
        True shows the bar, False hides it, None decides as
        ``Config.progress=None`` does (terminal or notebook only).
    desc : str
        Label of the bar.

    Returns
    -------
    context manager
        A ``tqdm.dask.TqdmCallback`` (one bar over all tasks computed inside
        the ``with`` block, closed when they finish) or a do-nothing context.

    Raises
    ------
    xhmm.ConfigError
        If ``progress`` is not True, False or None.
    """
    if progress is not None and not isinstance(progress, bool):
        raise ConfigError(f"progress must be True, False or None, got {progress!r}")
    if not progress_enabled(progress):
        return nullcontext()
    from tqdm.dask import TqdmCallback

    return TqdmCallback(tqdm_class=tqdm_class(), desc=desc, unit="task", leave=False)
