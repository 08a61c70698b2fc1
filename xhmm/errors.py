"""Exception hierarchy of xhmm.

Every error xhmm raises on purpose derives from :class:`XHMMError`, which is a
:class:`ValueError` because the cause is almost always bad input. Messages name
the variable, dimension, field, index or path at fault, the value found and
what was expected.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    "StaleResultError",
    "MissingExtraError",
    "XHMMWarning",
    "NumericalWarning",
    "InputWarning",
    "caller_stacklevel",
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


class StaleResultError(StorageError):
    """A result's memmap files were replaced by a later run in the same folder."""


class MissingExtraError(XHMMError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class XHMMWarning(UserWarning):
    """Base class of the warnings xhmm issues (the command line prints them)."""


class NumericalWarning(XHMMWarning):
    """The computation may have lost precision (e.g. float32 near underflow)."""


class InputWarning(XHMMWarning):
    """An input is valid but looks like a mistake (e.g. probabilities, not logs)."""


_PACKAGE = Path(__file__).resolve().parent


def caller_stacklevel() -> int:
    """The ``stacklevel`` that attributes a warning to the first frame outside xhmm.

    Call it in the function that calls :func:`warnings.warn`; the warning then
    points at the user's line that started the run, however deep in xhmm it
    was issued.

    Returns
    -------
    int
        1 for the calling function itself, 2 for its caller, and so on.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
