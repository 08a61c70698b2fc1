"""How many sequences to put in one engine batch.

Per batch about six ``(B, C, K)`` arrays are alive at once (the
log-likelihood block read on the host, its shifted copy on the device,
filtered rows, predictions and smoothed rows on the device, one host copy of
an output) plus the transition twice (host and device).
:func:`choose_batch_size` picks the largest ``B`` with
``itemsize * (2 K^2 + 6 B C K)`` within a bytes budget;
:func:`default_memory_budget` is 80 % of the free memory of an accelerator,
or :data:`HOST_MEMORY_BUDGET` on CPU.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["choose_batch_size", "default_memory_budget", "HOST_MEMORY_BUDGET"]

#: Batch memory budget in bytes when the device is the CPU (host RAM).
HOST_MEMORY_BUDGET = 2 * 1024**3
#: ``(B, C, K)`` arrays alive at once per batch (see the module docstring).
_BLOCKS_PER_BATCH = 6


def choose_batch_size(
    n_sequences: int,
    n_bins: int,
    chunk_size: int,
    compute_dtype: np.dtype | str,
    memory_budget: int,
) -> int:
    """Largest batch (at most ``n_sequences``, at least 1) within a bytes budget.

    Parameters
    ----------
    n_sequences : int
    n_bins : int
        Interior bins ``K``.
    chunk_size : int
        Rows per chunk ``C``.
    compute_dtype : dtype
        The dtype chunks are computed in (``Config.attempt_dtype``).
    memory_budget : int
        Bytes the batch may use: ``itemsize * (2 K^2 + 6 B C K)`` must fit.

    Returns
    -------
    int
    """
    item = np.dtype(compute_dtype).itemsize
    free = memory_budget - 2 * n_bins * n_bins * item
    per_sequence = _BLOCKS_PER_BATCH * chunk_size * n_bins * item
    return int(max(1, min(n_sequences, free // per_sequence)))


def default_memory_budget() -> int:
    """Bytes a batch may use on this process's first JAX device.

    80 % of an accelerator's free memory (``bytes_limit - bytes_in_use``),
    or :data:`HOST_MEMORY_BUDGET` when the device is the CPU.
    """
    stats = jax.local_devices()[0].memory_stats()
    if stats and "bytes_limit" in stats:
        return int(0.8 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    return HOST_MEMORY_BUDGET
