"""xhmm: out-of-core HMM filtering and smoothing for xarray.

The methods are functions on a Dataset, a log-likelihood DataArray or a
NumPy / dask array (``xhmm.smooth``, ``xhmm.filter``, ``xhmm.map_estimate``,
``xhmm.most_likely_sequence``, ``xhmm.sample_paths``, ``xhmm.fit``; ``xhmm.events`` cuts a result
into events); importing the package also
registers the ``ds.hmm`` and ``da.hmm`` accessors, which forward to them.
``__all__`` is the public surface (docs/usage.md, "API reference", lists it);
``xhmm.transitions`` (transition models) and ``xhmm.plot`` (figures; it
imports matplotlib only when a figure is drawn) are its subpackages.
The functions, ``xhmm.transitions`` and ``xhmm.plot`` are imported on first
use, and with them JAX, numba and dask: ``import xhmm`` (and so ``xhmm
--help``) loads only xarray, the Config and the errors.

On GPUs JAX by default reserves 75 % of device memory when its backend starts.
xhmm keeps one chunk on the device at a time, so unless you set it yourself,
importing xhmm sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (allocate on
demand) before JAX starts; see ``docs/gpu.md``.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from importlib import import_module

from .config import Config
from .frontend import accessor as _accessor  # noqa: E402,F401  (registers ds.hmm)
from .frontend import dataarray_accessor as _dataarray_accessor  # noqa: E402,F401  (da.hmm)
from .frontend.coords import unstack_bins
from .errors import (
    ConfigError,
    DimensionError,
    IncompleteResultError,
    InitialError,
    InputError,
    InputWarning,
    LikelihoodError,
    MissingExtraError,
    NumericalError,
    NumericalWarning,
    ResumeError,
    StaleResultError,
    StorageError,
    TransitionError,
    XHMMError,
    XHMMWarning,
)

__version__ = "0.1.0"

__all__ = [
    "smooth",
    "filter",
    "map_estimate",
    "most_likely_sequence",
    "sample_paths",
    "fit",
    "events",
    "view",
    "Config",
    "save_results",
    "open_results",
    "open_run",
    "unstack_bins",
    "to_uint16",
    "from_uint16",
    "XHMMError",
    "ConfigError",
    "InputError",
    "DimensionError",
    "LikelihoodError",
    "TransitionError",
    "InitialError",
    "NumericalError",
    "NumericalWarning",
    "InputWarning",
    "XHMMWarning",
    "StorageError",
    "ResumeError",
    "IncompleteResultError",
    "StaleResultError",
    "MissingExtraError",
]

#: Public names imported on first use, with their modules: these import JAX,
#: numba and dask, which ``import xhmm`` (and so ``xhmm --help``) need not.
_LAZY = {
    **dict.fromkeys(["smooth", "filter", "fit", "map_estimate", "most_likely_sequence",
                     "sample_paths"], ".frontend.api"),
    **dict.fromkeys(["save_results", "open_results", "open_run"], ".io"),
    "events": ".frontend.events",
    "view": ".viewer",
    **dict.fromkeys(["to_uint16", "from_uint16"], ".kernels.codec"),
}
#: Subpackages reachable as attributes after ``import xhmm``, imported on first use.
_SUBPACKAGES = ("plot", "transitions")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBPACKAGES})
