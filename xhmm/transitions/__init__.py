"""Structured and time-varying transitions.

``transition=`` of the ``ds.hmm`` methods takes a dense matrix or a
:class:`Blocks` transition over the discrete states of the ``state``
coordinate: ``A[i, j] = discrete[s(i), s(j)] * block[i, j]`` where each
(from, to) block is a registered block kind (``Uniform``, ``Identity``,
``Dense``, ``RandomWalk``, ...: one module each, see
:mod:`xhmm.transitions.block`), and ``discrete`` may vary over time. Such
a transition runs block by block (a Gaussian random walk on a grid as two
small dense products), a small fraction of the dense product's cost.

:func:`to_dense` gives the equivalent matrix; the engine's plan of either
kind (:func:`xhmm.transitions.plan.plan_transition`, an
:class:`xhmm.engine.transition.EngineTransition`) is internal. :func:`to_spec`,
:func:`from_spec`, :func:`with_transition` and
:func:`stored_transition` write and read a transition as a JSON spec plus
named arrays (:mod:`xhmm.transitions.spec`). :func:`covariate_discrete` is
the time-varying discrete transition of coefficients fitted by
``xhmm.fit(covariates=...)`` on a design matrix.
:func:`from_non_local_detector` builds the transition (and the initial
distribution, interior and ``state_bins``) of a fitted non_local_detector
detector.
"""

import importlib
import pkgutil

from .block import TransitionBlock, block_kinds
from .blocks import Blocks
from .covariates import covariate_discrete
from .dense import to_dense
from .detector import DetectorModel, from_non_local_detector
from .spec import from_spec, stored_transition, to_spec, with_transition

# Every module of the package is imported, so each block kind (one module
# each, see xhmm.transitions.block) registers itself and is exported here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
_BLOCKS = {cls.__name__: cls for cls in block_kinds().values()}
globals().update(_BLOCKS)

__all__ = [
    "Blocks",
    *sorted(_BLOCKS),
    "TransitionBlock",
    "to_dense",
    "to_spec",
    "from_spec",
    "with_transition",
    "stored_transition",
    "covariate_discrete",
    "DetectorModel",
    "from_non_local_detector",
]
