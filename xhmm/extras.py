"""Optional dependencies, imported where they are used.

``pip install xhmm`` installs what smoothing and NetCDF need. Figures need
matplotlib (the ``plot`` extra), Zarr stores the ``zarr`` extra, a dask
cluster the ``distributed`` extra and the viewer Bokeh (the ``view``
extra); :func:`require` imports such a module at the point of use, so
``import xhmm`` works without any of them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or say which extra of xhmm installs it.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"matplotlib.pyplot"``.
    extra : str
        The extra of xhmm that installs it, e.g. ``"plot"``.
    purpose : str
        What needs it, the start of the message, e.g. ``"drawing a figure"``.

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    xhmm.MissingExtraError
        If the module cannot be imported; the message names the package and
        the ``pip install "xhmm[<extra>]"`` that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".", 1)[0]
        raise MissingExtraError(
            f"{purpose} needs the '{package}' package, which is not installed: "
            f'pip install "xhmm[{extra}]"'
        ) from exc
