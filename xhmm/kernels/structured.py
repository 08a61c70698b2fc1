"""Structured transition operators: blocks over discrete states.

The state bins (interior only, ``K`` of them) belong to ``S`` discrete
states. The transition factors as

``A[i, j] = discrete[s(i), s(j)] * block[s(i), s(j)][i, j]``

where each block is row-stochastic over the interior bins of its to-state.
:class:`BlocksOperator` implements the products of
:mod:`xhmm.kernels.operators` block by block, so a product costs the sum of
its blocks' costs instead of ``K * K``. A block is any pytree with the four
products of :class:`xhmm.transitions.block.KernelBlock` (``forward``,
``backward``, ``max_forward``, ``max_column``); each block kind defines its
own in its module of :mod:`xhmm.transitions` (a uniform row, a gather, a
dense or banded matrix, a separable random walk on a grid, ...), so this
operator never names a kind.

The discrete matrix is either a leaf of the operator (static) or the
operator's per-step input ``x`` of shape (S, S) (time-varying): the blocks
never depend on the step, so a chunk's block products are computed once and
each row is then scaled by its own discrete entries.

Max-product (``max_predict``, for the Viterbi decoder) goes block by block
too: each block's ``max_forward`` gives, for every to-bin, the largest
``p[i] * block[i, j]`` and its from-bin ``i`` at the same cost as its
product (the random walk in two stages: ``max_a gx[a, c] * max_b p[a, b] *
gy[b, d]``, since every factor is non-negative), and the blocks into each
to-state are compared after scaling by their discrete entries. Ties go to
the lowest index within a block (within each stage for the random walk) and
then to the lowest interior from-bin across blocks. ``max_column`` (the
Viterbi backtrack's back-pointer of one to-bin per sequence) computes the
same candidates for that to-bin only, with the same products and ties:
each block's ``max_column`` is one entry of its ``max_forward``, bit for bit.

Every shape and index array is fixed when the operator is built, so the
scans compile once per layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .maxproduct import keep_better

__all__ = ["BlocksOperator"]


@dataclass(frozen=True)
class BlocksOperator:
    """A transition over discrete states made of blocks (module docstring).

    The interior bins are permuted so each state's bins are contiguous
    (``perm``), the blocks act on those slices and the result is permuted
    back (``inv_perm``).

    Parameters
    ----------
    discrete : (S, S) array or None
        The discrete transition; None when it is time-varying and comes as
        the per-step input ``x``.
    blocks : tuple of blocks
        Each with the products of :class:`xhmm.transitions.block.KernelBlock`,
        one per (from, to) pair of ``pairs``.
    perm, inv_perm : (K,) int arrays or None
        State-ordered position -> interior bin, and back; None when the
        states are already contiguous and in order.
    offsets : tuple of int
        ``S + 1`` bounds of each state's slice in state order, static.
    pairs : tuple of (int, int)
        (from, to) states of each block, static; pairs without a block
        (zero discrete probability) contribute nothing.
    """

    discrete: jax.Array | None
    blocks: tuple[Any, ...]
    perm: jax.Array | None
    inv_perm: jax.Array | None
    offsets: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]

    def predict(self, p: jax.Array, x: Any = None) -> jax.Array:
        """``p @ A`` for each row of ``p`` (B, K); ``x`` is the (S, S) discrete."""
        discrete = self.discrete if x is None else x
        return self._apply(p, lambda s, t: discrete[s, t], forward=True)

    def pullback(self, r: jax.Array, x: Any = None) -> jax.Array:
        """``A @ r[b]`` for each row of ``r`` (B, K); ``x`` is the (S, S) discrete."""
        discrete = self.discrete if x is None else x
        return self._apply(r, lambda s, t: discrete[s, t], forward=False)

    def predict_chunk(self, rows: jax.Array, xs: Any = None) -> jax.Array:
        """``rows[:, i] @ A_i`` for a (B, C, K) chunk; ``xs`` is (C, S, S) or None.

        The block products do not depend on the row, so each is one product
        over the whole chunk; a time-varying discrete then scales row ``i``
        by ``xs[i]``.
        """
        if xs is None:
            return self._apply(rows, lambda s, t: self.discrete[s, t], forward=True)
        return self._apply(rows, lambda s, t: xs[:, s, t][:, None], forward=True)

    def transition_counts(self, filtered: jax.Array, ratios: jax.Array, xs: Any = None,
                          states: Any = None, per_step: bool = False) -> jax.Array:
        """Expected state-to-state transitions of a (B, C, K) chunk, (B, S, S).

        Block by block: ``discrete[s, s'] * sum_c filtered_s . (block @ ratios_s')``,
        one backward block product per pair (the states are the operator's
        own, in the order of ``offsets``; ``states`` is not needed).
        ``per_step``: each row's, (B, C, S, S), not summed over ``c``.
        """
        def parts(values):
            arranged = self._ordered(values)
            return [arranged[..., lo:hi] for lo, hi in self._bounds()]

        f_parts, r_parts = parts(filtered), parts(ratios)
        n_states = len(self.offsets) - 1
        lead = filtered.shape[:2] if per_step else filtered.shape[:1]
        counts = jnp.zeros(lead + (n_states, n_states), filtered.dtype)
        for (s, t), block in zip(self.pairs, self.blocks):
            per_row = jnp.sum(f_parts[s] * block.backward(r_parts[t]), axis=-1)  # (B, C)
            coef = self.discrete[s, t] if xs is None else xs[:, s, t][None, :]
            moves = coef * per_row
            counts = counts.at[..., s, t].set(moves if per_step else jnp.sum(moves, axis=-1))
        return counts

    def max_predict(self, p: jax.Array, x: Any = None) -> tuple[jax.Array, jax.Array]:
        """``max_i p[b, i] * A[i, j]`` and its argmax (interior bins) for each row of ``p``.

        Each block's candidates, scaled by their discrete entry, are compared
        in each to-state; ties go to the lowest interior from-bin (0 where
        the maximum is 0).
        """
        bounds = self._bounds()
        best = self._max_candidates(p, x, lambda block, part, t: block.max_forward(part))
        lead = p.shape[:-1]
        values, sources = [], []
        for found, (lo, hi) in zip(best, bounds):
            shape = lead + (hi - lo,)
            values.append(jnp.zeros(shape, p.dtype) if found is None
                          else jnp.broadcast_to(found[0], shape))
            sources.append(jnp.zeros(shape, jnp.int32) if found is None
                           else jnp.broadcast_to(found[1], shape))
        values = jnp.concatenate(values, -1)
        # Where every candidate is 0 they all tie: the lowest from-bin is 0.
        sources = jnp.where(values > 0, jnp.concatenate(sources, -1), 0)
        if self.inv_perm is None:
            return values, sources
        return jnp.take(values, self.inv_perm, axis=-1), jnp.take(sources, self.inv_perm, axis=-1)

    def max_column(self, p: jax.Array, j: jax.Array, x: Any = None
                   ) -> tuple[jax.Array, jax.Array]:
        """Entry ``j[b]`` of :meth:`max_predict` for each row ``b`` of ``p`` (B, K).

        Every block's :meth:`max_column` at ``j[b]``'s place in its to-state
        (clipped into the block's range, so each block runs for every row),
        compared as in :meth:`max_predict`; each row then takes the
        candidates of its own to-state.
        """
        bounds = self._bounds()
        position = j if self.inv_perm is None else jnp.take(self.inv_perm, j)

        def block_max(block, part, t):
            lo, hi = bounds[t]
            return block.max_column(part, jnp.clip(position - lo, 0, hi - lo - 1))

        value = jnp.zeros(p.shape[:1], p.dtype)
        source = jnp.zeros(p.shape[:1], jnp.int32)
        for found, (lo, hi) in zip(self._max_candidates(p, x, block_max), bounds):
            if found is not None:
                inside = (position >= lo) & (position < hi)
                value = jnp.where(inside, found[0], value)
                source = jnp.where(inside, found[1], source)
        # Where every candidate is 0 they all tie: the lowest from-bin is 0.
        return value, jnp.where(value > 0, source, 0)

    def _ordered(self, values: jax.Array) -> jax.Array:
        """``values`` over the interior bins (last axis) in state order."""
        return values if self.perm is None else jnp.take(values, self.perm, axis=-1)

    def _bounds(self) -> list[tuple[int, int]]:
        """Each state's slice of the state-ordered bins."""
        return list(zip(self.offsets[:-1], self.offsets[1:]))

    def _max_candidates(self, p: jax.Array, x: Any, block_max: Callable
                        ) -> list[tuple[jax.Array, jax.Array] | None]:
        """The best scaled block candidate into each to-state (None: no block).

        ``block_max(block, part, t)`` gives a block's values and from-bins
        (relative to the from-state's slice ``part`` of ``p``) for to-state
        ``t``; they are scaled by the discrete entry (``x`` when
        time-varying), the from-bins made interior bins, and the blocks into
        one to-state compared in order (larger, then lower from-bin).
        """
        discrete = self.discrete if x is None else x
        arranged = self._ordered(p)
        bounds = self._bounds()
        best: list[tuple[jax.Array, jax.Array] | None] = [None] * len(bounds)
        for (s, t), block in zip(self.pairs, self.blocks):
            lo, hi = bounds[s]
            values, source = block_max(block, arranged[..., lo:hi], t)
            source = source + lo
            if self.perm is not None:
                source = jnp.take(self.perm, source)
            candidate = (discrete[s, t] * values, source)
            best[t] = candidate if best[t] is None else keep_better(*best[t], *candidate)
        return best

    def _apply(self, values: jax.Array, coef: Callable[[int, int], Any],
               forward: bool) -> jax.Array:
        """Sum ``coef(s, t) * block product`` into each destination state."""
        arranged = self._ordered(values)
        bounds = self._bounds()
        parts = [arranged[..., lo:hi] for lo, hi in bounds]
        sums: list[jax.Array | None] = [None] * len(bounds)
        for (s, t), block in zip(self.pairs, self.blocks):
            if forward:
                dst, product = t, block.forward(parts[s])
            else:
                dst, product = s, block.backward(parts[t])
            term = coef(s, t) * product
            sums[dst] = term if sums[dst] is None else sums[dst] + term
        # The states' sums side by side; a rank-one sum (one value per row)
        # is selected into its slice afterwards instead of broadcast into
        # the concatenate: XLA on CPU fuses a concatenate of broadcast
        # pieces into its consumers as a slow element-by-element loop
        # (contfrag-1d at K = 1,000: smoother step 13.1 us with it, 8.6 us
        # this way; NonLocal at K = 10,650 unchanged).
        lead = arranged.shape[:-1]
        wide = [total is not None and (total.shape[-1] > 1 or hi - lo == 1)
                for total, (lo, hi) in zip(sums, bounds)]
        out = jnp.concatenate([
            total if is_wide else jnp.zeros(lead + (hi - lo,), arranged.dtype)
            for total, is_wide, (lo, hi) in zip(sums, wide, bounds)], axis=-1)
        state = np.repeat(np.arange(len(bounds)), [hi - lo for lo, hi in bounds])
        for t, (total, is_wide) in enumerate(zip(sums, wide)):
            if total is not None and not is_wide:
                out = jnp.where(state == t, total, out)
        return out if self.inv_perm is None else jnp.take(out, self.inv_perm, axis=-1)


jax.tree_util.register_dataclass(
    BlocksOperator,
    data_fields=["discrete", "blocks", "perm", "inv_perm"],
    meta_fields=["offsets", "pairs"],
)
