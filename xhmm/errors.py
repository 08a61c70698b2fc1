"""Exception hierarchy of xhmm.

Every error xhmm raises on purpose derives from :class:`XHMMError`, which is a
:class:`ValueError` because the cause is almost always bad input. Messages name
the variable, dimension, field, index or path at fault, the value found and
what was expected.
"""

from __future__ import annotations

__all__ = [
    "XHMMError",
    "ConfigError",
    "InputError",
    "DimensionError",
    "LikelihoodError",
    "TransitionError",
    "InitialError",
    "NumericalError",
    "StorageError",
    "ResumeError",
    "IncompleteResultError",
    "NotImplementedFeatureError",
    "NumericalWarning",
]


class XHMMError(ValueError):
    """Base class of all errors raised by xhmm."""


class ConfigError(XHMMError):
    """A :class:`xhmm.Config` field or keyword argument has a bad value."""


class InputError(XHMMError):
    """An input variable is missing or has the wrong type."""


class DimensionError(InputError):
    """An input has missing, extra or wrongly sized dimensions."""


class LikelihoodError(InputError):
    """``log_likelihood`` holds NaN, +inf, or a step with no possible bin."""


class TransitionError(InputError):
    """The transition matrix is not a valid row-stochastic matrix."""


class InitialError(InputError):
    """The initial distribution is not a valid probability vector."""


class NumericalError(XHMMError):
    """The computation lost the answer (e.g. underflow in float32)."""


class StorageError(XHMMError):
    """Writing or reading output storage failed (disk full, read-only, ...)."""


class ResumeError(StorageError):
    """A resumable run's manifest does not match the requested run."""


class IncompleteResultError(StorageError):
    """Results were requested from a run or file that did not finish."""


class NotImplementedFeatureError(XHMMError, NotImplementedError):
    """A Config option was turned on whose feature is not available yet."""


class NumericalWarning(UserWarning):
    """The computation may have lost precision (e.g. float32 near underflow)."""
