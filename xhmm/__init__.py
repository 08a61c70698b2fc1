"""xhmm: out-of-core HMM filtering and smoothing for xarray.

The methods are functions on a Dataset, a log-likelihood DataArray or a
NumPy / dask array (``xhmm.smooth``, ``xhmm.filter``, ``xhmm.map_estimate``,
``xhmm.most_likely_sequence``, ``xhmm.fit``); importing the package also
registers the ``ds.hmm`` and ``da.hmm`` accessors, which forward to them.
``__all__`` is the public surface (docs/usage.md, "API reference", lists it);
``xhmm.transitions`` (transition models) and ``xhmm.plot`` (figures; it
imports matplotlib only when a figure is drawn) are its subpackages.

On GPUs JAX by default reserves 75 % of device memory when its backend starts.
xhmm keeps one chunk on the device at a time, so unless you set it yourself,
importing xhmm sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (allocate on
demand) before JAX starts; see ``docs/gpu.md``.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

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
from . import plot, transitions  # noqa: F401  (xhmm.plot, xhmm.transitions)
from .frontend.api import filter, fit, map_estimate, most_likely_sequence, smooth
from .io import open_results, open_run, save_results
from .kernels.codec import from_uint16, to_uint16

__version__ = "0.1.0"

__all__ = [
    "smooth",
    "filter",
    "map_estimate",
    "most_likely_sequence",
    "fit",
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
