"""The engine's chunk size: ``Config.chunk_size``, with ``"auto"`` resolved.

``"auto"`` takes the time blocks of a dask input when they make a sensible
engine chunk, so that the engine reads each block exactly as dask computes
it: regular blocks (all of one length but the last, which may be shorter)
of at least :data:`MIN_AUTO_ROWS` rows (or the whole recording in one
block) whose ``rows * interior bins * 4`` bytes fit in
:data:`CHUNK_BUDGET`. Otherwise (NumPy or memmap input, irregular blocks,
blocks too short or too large) it is :data:`FALLBACK_CHUNK_SIZE` rows,
lowered where needed so that one float32 chunk of one sequence fits in
:data:`CHUNK_BUDGET` (:func:`fallback_chunk_size`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHUNK_BUDGET", "MIN_AUTO_ROWS", "FALLBACK_CHUNK_SIZE", "fallback_chunk_size",
           "resolve_chunk_size"]

#: Bytes of one float32 chunk of one sequence (rows x interior bins x 4)
#: that ``"auto"`` allows.
CHUNK_BUDGET = 256 * 1024**2
#: Fewest rows per dask block that ``"auto"`` takes as the chunk size
#: (shorter chunks spend more time dispatching than computing).
MIN_AUTO_ROWS = 64
#: Rows per chunk of ``"auto"`` when the input's blocks are not taken.
FALLBACK_CHUNK_SIZE = 5_000
_FLOAT32_BYTES = 4


def fallback_chunk_size(n_bins: int) -> int:
    """:data:`FALLBACK_CHUNK_SIZE`, or fewer rows when ``n_bins`` makes one chunk too large.

    Parameters
    ----------
    n_bins : int
        Interior bins ``K``.

    Returns
    -------
    int
        ``min(5000, CHUNK_BUDGET // (4 K))``, at least 1.
    """
    return max(1, min(FALLBACK_CHUNK_SIZE, CHUNK_BUDGET // (_FLOAT32_BYTES * max(1, n_bins))))


def _time_blocks(log_likelihood: Any) -> tuple[int, ...] | None:
    """Lengths of the dask blocks along time (axis 1) of a ``(B, T, N)`` input.

    None when the input is not a dask array.
    """
    chunks = getattr(log_likelihood, "chunks", None)
    if not hasattr(log_likelihood, "compute") or not isinstance(chunks, tuple):
        return None
    if len(chunks) < 2 or not isinstance(chunks[1], tuple):
        return None
    return tuple(int(n) for n in chunks[1])


def resolve_chunk_size(chunk_size: int | str, log_likelihood: Any, n_bins: int) -> int:
    """The engine's rows per chunk for ``Config.chunk_size`` and an input.

    Parameters
    ----------
    chunk_size : int or "auto"
        ``Config.chunk_size`` (validated by :class:`xhmm.Config`); an int is
        returned as it is.
    log_likelihood : (B, T, N) array-like
        The engine's input (sequence, time, bins); its dask blocks along
        time are taken by ``"auto"`` when they fit (see the module
        docstring).
    n_bins : int
        Interior bins ``K``.

    Returns
    -------
    int
    """
    if chunk_size != "auto":
        return int(chunk_size)
    blocks = _time_blocks(log_likelihood)
    if not blocks:
        return fallback_chunk_size(n_bins)
    rows = blocks[0]
    regular = all(n == rows for n in blocks[:-1]) and blocks[-1] <= rows
    long_enough = rows >= MIN_AUTO_ROWS or len(blocks) == 1
    if regular and long_enough and rows * max(1, n_bins) * _FLOAT32_BYTES <= CHUNK_BUDGET:
        return rows
    return fallback_chunk_size(n_bins)
