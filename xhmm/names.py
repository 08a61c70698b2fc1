"""Names and constants shared by every layer: dimension names, the stochastic tolerance."""

from __future__ import annotations

__all__ = ["TIME", "BINS", "STATES", "SEQUENCE", "SAMPLE", "SEQUENCE_LENGTH", "STOCHASTIC_ATOL",
           "TIME_DIM_ATTR", "SPEC_ATTR"]

#: The time dimension of ``log_likelihood`` and of the results.
TIME = "time"
#: The state-bin dimension (discrete states x positions).
BINS = "state_bins"
#: The dimension of per-state summaries (``state`` names the coordinate).
STATES = "states"
#: The dimension of independent recordings.
SEQUENCE = "sequence"
#: The dimension of the posterior path samples (``sample_paths``).
SAMPLE = "sample"
#: The variable giving each sequence's number of real time steps.
SEQUENCE_LENGTH = "sequence_length"
#: Largest accepted |row sum - 1| of a transition and |sum - 1| of ``initial``.
STOCHASTIC_ATOL = 1e-4
#: Result attribute naming the time dim when the caller's is not ``time``
#: (what :func:`xhmm.save_results` chunks along).
TIME_DIM_ATTR = "xhmm_time_dim"
#: The Dataset attribute holding a stored transition's JSON spec
#: (:func:`xhmm.transitions.with_transition`).
SPEC_ATTR = "xhmm_transition_spec"
