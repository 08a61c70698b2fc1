"""Results on disk: NetCDF and Zarr files, and finished memmap runs.

:func:`save_results` / :func:`open_results` (:mod:`xhmm.io.store`) write and
reopen a result Dataset; :func:`open_run` (:mod:`xhmm.io.runs`) reopens the
outputs of a finished memmap run from its folder alone.
"""

from .runs import open_run
from .store import open_results, save_results

__all__ = ["save_results", "open_results", "open_run"]
