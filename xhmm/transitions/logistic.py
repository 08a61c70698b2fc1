"""Multinomial logistic regression of expected transitions on a design matrix.

The M-step of the covariate fit (:mod:`xhmm.transitions.covariates`): for
each from-state ``s``, with design rows ``x_t`` (``P`` covariates) and
responses ``y_t[s, s']`` (the expected moves of step ``t`` plus prior
pseudo-counts), maximise

``Q_s(W_s) = sum_t sum_s' y_t[s, s'] log softmax(x_t W_s)[s'] - (l2 / 2) ||W_s||^2``

over the coefficients ``W_s`` (``P x S``). Identifiability: the column of a
reference to-state (the from-state itself where that move is allowed, else
the first allowed one) is fixed at 0, so each coefficient is the change in
the log-odds of moving to ``s'`` rather than to the reference per unit of
its covariate; moves that are not allowed (zero in the starting transition)
stay impossible and have no coefficients. The L2 penalty applies to the
covariates marked ``penalized`` (not the intercept).

Newton's method on the free coefficients, in float64, with every pass over
time accumulated block by block (the data are read a block of rows at a
time, so ``T`` can exceed memory): gradient ``sum_t x_t (y_t - n_t p_t)``
and Hessian ``-sum_t n_t x_t x_t' (diag(p_t) - p_t p_t')`` (``n_t`` the
row's total response). Each step is damped by backtracking until ``Q_s``
rises by at least a fraction of the Newton decrement, so an M-step never
decreases ``Q`` (generalised EM). ``Q`` is concave, so Newton converges to
its maximum. Standard errors are the square roots of the diagonal of the
inverse of ``-Hessian`` at the result: the complete-data information, which
treats the expected moves as observed and so leaves out the uncertainty of
the hidden states (the standard errors are lower bounds of the observed-data
ones, close to them when the states are well identified).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

__all__ = ["MoveRegression", "reference_states"]

#: Newton steps per M-step at most.
NEWTON_STEPS = 20
#: Stop when the Newton decrement ``g' (-H)^-1 g`` is below this times ``max(1, |Q_s|)``.
NEWTON_TOL = 1e-12
#: Halvings of a step before giving up on it (Q is then at its maximum to rounding).
HALVINGS = 40
#: A damped step is taken once Q rises by this fraction of the decrement times the step.
ARMIJO = 1e-4
#: Values per block of rows (the Hessian's ``C x P m`` products), about 32 MiB of float64.
BLOCK_VALUES = 1 << 22


def reference_states(allowed: np.ndarray) -> np.ndarray:
    """The reference to-state of each from-state: itself where allowed, else the first allowed."""
    first = np.argmax(allowed, axis=1)
    return np.where(np.diag(allowed), np.arange(allowed.shape[0]), first)


@dataclass
class MoveRegression:
    """The M-step's data and model: design rows and expected moves of each sequence.

    Attributes
    ----------
    design : list of (T_b, P) array-like
        Each sequence's design rows (NumPy, memmap or dask); row ``t``
        drives the move from step ``t`` to ``t + 1``.
    moves : list of (T_b, S, S) array-like
        Each sequence's expected moves of each step (rows past
        ``lengths[b] - 1`` are not read).
    lengths : list of int
        Real steps of each sequence (its ``lengths[b] - 1`` moves are used).
    allowed : (S, S) bool ndarray
        Moves that may happen; the others keep probability 0.
    penalized : (P,) bool ndarray
        Covariates whose coefficients the L2 penalty applies to.
    l2_penalty : float
        ``lambda`` of ``-(lambda / 2) ||W||^2``.
    prior : (S, S) ndarray, optional
        Pseudo-counts added to the moves, spread evenly over all moves of
        all sequences (0 where not allowed).
    """

    design: list
    moves: list
    lengths: list
    allowed: np.ndarray
    penalized: np.ndarray
    l2_penalty: float = 0.0
    prior: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.allowed = np.asarray(self.allowed, dtype=bool)
        self.penalized = np.asarray(self.penalized, dtype=bool)
        self.reference = reference_states(self.allowed)
        n_states = self.allowed.shape[0]
        self.free = [np.flatnonzero(self.allowed[s] & (np.arange(n_states) != self.reference[s]))
                     for s in range(n_states)]
        n_moves = sum(max(int(n) - 1, 0) for n in self.lengths)
        prior = np.zeros((n_states,) * 2) if self.prior is None else np.asarray(self.prior, float)
        self.share = np.where(self.allowed, prior, 0.0) / max(n_moves, 1)
        width = len(self.penalized) * max(1, max(map(len, self.free))) + self.allowed.size
        self.rows = max(256, BLOCK_VALUES // width)

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` blocks of rows: design (C, P) and responses (C, S, S), float64."""
        for design, moves, length in zip(self.design, self.moves, self.lengths):
            for lo in range(0, int(length) - 1, self.rows):
                hi = min(lo + self.rows, int(length) - 1)
                x = np.asarray(design[lo:hi], dtype=np.float64)
                y = np.asarray(moves[lo:hi], dtype=np.float64) + self.share
                yield x, np.where(self.allowed, y, 0.0)

    def log_probabilities(self, x: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
        """``log p(s' | s, x_t)``, (C, S, S); ``-inf`` where a move is not allowed."""
        n_states = coefficients.shape[0]
        linear = (x @ coefficients.transpose(1, 0, 2).reshape(x.shape[1], -1)).reshape(
            len(x), n_states, n_states)
        logits = np.where(self.allowed, linear, -np.inf)
        peak = logits.max(axis=-1, keepdims=True)
        return logits - peak - np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))

    def statistics(self, coefficients: np.ndarray, second: bool = True
                   ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """``Q_s``, its gradient and (``second``) Hessian in the free coefficients, per ``s``.

        The gradient and Hessian of from-state ``s`` are over
        ``coefficients[s][:, free[s]]`` flattened row-major (covariate, to-state).
        The Hessian, ``-sum_t n_t x_t x_t' (diag(p_t) - p_t p_t')``, is formed
        as ``Z'Z`` with ``Z = sqrt(n) x (x) p`` less one ``x' diag(n p_a) x``
        per to-state ``a``: matrix products of ``C x P m`` values.
        """
        n_states, n_cov = coefficients.shape[:2]
        value = np.zeros(n_states)
        grads = [np.zeros((n_cov, f.size)) for f in self.free]
        hessians = [np.zeros((n_cov * f.size,) * 2) for f in self.free]
        for x, y in self.blocks():
            log_p = self.log_probabilities(x, coefficients)
            value += (y * np.where(self.allowed, log_p, 0.0)).sum(axis=(0, 2))
            p = np.exp(log_p)
            total = y.sum(axis=-1)  # (C, S)
            for s, free in enumerate(self.free):
                if free.size == 0:
                    continue
                p_free = p[:, s, free]
                grads[s] += x.T @ (y[:, s, free] - total[:, s, None] * p_free)
                if second:
                    scaled = x * np.sqrt(total[:, s])[:, None]
                    z = (scaled[:, :, None] * p_free[:, None, :]).reshape(len(x), -1)
                    hessians[s] += z.T @ z
                    for a in range(free.size):
                        hessians[s][a::free.size, a::free.size] -= (
                            (scaled * p_free[:, a, None]).T @ scaled)
        penalty = self.l2_penalty * self.penalized
        for s, free in enumerate(self.free):
            own = coefficients[s][:, free]
            value[s] -= 0.5 * float((penalty[:, None] * own ** 2).sum())
            grads[s] -= penalty[:, None] * own
            for a in range(free.size):
                hessians[s][a::free.size, a::free.size] -= np.diag(penalty)
        return value, [g.ravel() for g in grads], hessians

    def _moved(self, coefficients: np.ndarray, s: int, step: np.ndarray) -> np.ndarray:
        out = coefficients.copy()
        out[s][:, self.free[s]] += step.reshape(out.shape[1], -1)
        return out

    def maximise(self, coefficients: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Damped Newton steps from ``coefficients`` (S, P, S) until ``Q`` stops rising.

        Returns
        -------
        coefficients : (S, P, S) ndarray
            0 in each reference column, NaN where a move is not allowed.
        standard_errors : (S, P, S) ndarray
            NaN in the reference columns and where a move is not allowed
            (or where ``-Hessian`` is singular).
        q_start, q_end : (S,) ndarray
            ``Q_s`` at the start and the end (``q_end >= q_start``).
        """
        current = np.where(self.allowed[:, None, :], np.nan_to_num(coefficients), 0.0)
        for s, ref in enumerate(self.reference):
            current[s, :, ref] = 0.0
        value, grads, hessians = self.statistics(current)
        start = value.copy()
        active = {s for s, free in enumerate(self.free) if free.size}
        for _ in range(NEWTON_STEPS):
            steps = {}
            for s in sorted(active):
                step = _solve(-hessians[s], grads[s])
                decrement = float(grads[s] @ step)
                if not decrement > NEWTON_TOL * max(1.0, abs(value[s])):
                    continue
                steps[s] = (step, decrement)
            active = set(steps)
            scale = dict.fromkeys(steps, 1.0)
            for _ in range(HALVINGS):
                if not scale:
                    break
                trial = current.copy()
                for s, size in scale.items():
                    trial[s] = self._moved(current, s, size * steps[s][0])[s]
                t_value, t_grads, t_hessians = self.statistics(trial)
                for s in list(scale):
                    if t_value[s] >= value[s] + ARMIJO * scale[s] * steps[s][1]:
                        current[s] = trial[s]
                        value[s], grads[s], hessians[s] = t_value[s], t_grads[s], t_hessians[s]
                        del scale[s]
                    else:
                        scale[s] /= 2
            active -= set(scale)  # no rise found: at the maximum to rounding
            if not active:
                break
        errors = np.full(current.shape, np.nan)
        for s, free in enumerate(self.free):
            if free.size:
                errors[s][:, free] = _standard_errors(hessians[s]).reshape(current.shape[1], -1)
        fitted = np.where(self.allowed[:, None, :], current, np.nan)
        return fitted, errors, start, value


def _solve(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix^-1 vector``, least squares where ``matrix`` is singular."""
    try:
        return np.linalg.solve(matrix, vector)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(matrix, vector, rcond=None)[0]


def _standard_errors(hessian: np.ndarray) -> np.ndarray:
    """``sqrt(diag((-hessian)^-1))``, NaN where ``-hessian`` is singular."""
    try:
        covariance = np.linalg.inv(-hessian)
    except np.linalg.LinAlgError:
        return np.full(hessian.shape[0], np.nan)
    diagonal = np.diag(covariance)
    return np.where(diagonal >= 0, np.sqrt(np.abs(diagonal)), np.nan)
