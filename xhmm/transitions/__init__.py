"""Structured and time-varying transitions.

``transition=`` of the ``ds.hmm`` methods takes a dense matrix or a
:class:`Blocks` transition over the discrete states of the ``state``
coordinate: ``A[i, j] = discrete[s(i), s(j)] * block[i, j]`` where each
(from, to) block is :class:`Uniform`, :class:`Identity`, :class:`Dense` or
:class:`RandomWalk`, and ``discrete`` may vary over time. Such a transition
runs block by block (a Gaussian random walk on a grid as two small dense
products), a small fraction of the dense product's cost.

:func:`plan_transition` resolves either kind against a Dataset's layout
into the engine's transition (:class:`xhmm.engine.transition.EngineTransition`);
:func:`to_dense` gives the equivalent matrix. :meth:`Blocks.to_spec`,
:meth:`Blocks.from_spec`, :func:`with_transition` and
:func:`stored_transition` write and read a transition as a JSON spec plus
named arrays (:mod:`xhmm.transitions.spec`).
:func:`from_non_local_detector` builds the transition (and the initial
distribution, interior and ``state_bins``) of a fitted non_local_detector
detector.
"""

from .analyse import analyse_dense
from .blocks import Blocks, Dense, Identity, RandomWalk, TransitionBlock, Uniform
from .dense import to_dense
from .detector import DetectorModel, from_non_local_detector
from .plan import plan_blocks, plan_transition
from .spec import SPEC_ATTR, stored_transition, with_transition
from .structured import StructuredTransition

__all__ = [
    "Blocks",
    "Uniform",
    "Identity",
    "Dense",
    "RandomWalk",
    "TransitionBlock",
    "to_dense",
    "plan_transition",
    "plan_blocks",
    "analyse_dense",
    "StructuredTransition",
    "SPEC_ATTR",
    "with_transition",
    "stored_transition",
    "DetectorModel",
    "from_non_local_detector",
]
