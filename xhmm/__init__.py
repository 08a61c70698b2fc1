"""xhmm: out-of-core HMM filtering and smoothing for xarray.

Importing the package registers the ``ds.hmm`` Dataset accessor.
"""

from . import accessor as _accessor  # noqa: F401  (registers ds.hmm)
from .config import Config
from .errors import (
    ConfigError,
    DimensionError,
    IncompleteResultError,
    InitialError,
    InputError,
    LikelihoodError,
    NotImplementedFeatureError,
    NumericalError,
    NumericalWarning,
    ResumeError,
    StorageError,
    TransitionError,
    XHMMError,
)
from .io import open_results, save_results
from .kernels.codec import from_uint16, to_uint16

__version__ = "0.1.0"

__all__ = [
    "Config",
    "save_results",
    "open_results",
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
    "StorageError",
    "ResumeError",
    "IncompleteResultError",
    "NotImplementedFeatureError",
]
