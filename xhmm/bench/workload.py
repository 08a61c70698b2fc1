"""Synthetic decoding problems for the benchmarks.

The log-likelihood is a Gaussian bump around a smoothly moving position plus
noise, generated in fixed blocks of :data:`GEN_BLOCK` rows, each from its own
seed. The values therefore do not depend on how the array is held (RAM, lazy
dask, memmap file) or on the engine's chunk size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["GEN_BLOCK", "INPUT_KINDS", "Problem", "transition_matrix"]

#: Rows generated per block (independent of the engine chunk size).
GEN_BLOCK = 5_000
#: How the log-likelihood is presented to the implementation under test.
INPUT_KINDS = ("ram", "dask", "memmap")


def transition_matrix(n_bins: int) -> np.ndarray:
    """Dense row-stochastic random-walk transition (float64).

    A Gaussian kernel of width ``n_bins / 50`` bins (at least 1) plus a small
    uniform floor, so every entry is positive and the matrix is dense like a
    decoding model's mixture of continuous and fragmented states.
    """
    x = np.arange(n_bins, dtype=np.float64)
    width = max(1.0, n_bins / 50)
    A = np.exp(-0.5 * ((x[:, None] - x[None, :]) / width) ** 2) + 1e-3 / n_bins
    return A / A.sum(axis=1, keepdims=True)


def _block(index: int, n_time: int, n_bins: int, seed: int) -> np.ndarray:
    """Rows ``[index * GEN_BLOCK, ...)`` of the log-likelihood (float32)."""
    start = index * GEN_BLOCK
    stop = min(start + GEN_BLOCK, n_time)
    rng = np.random.default_rng([seed, index])
    t = np.arange(start, stop, dtype=np.float64)
    centre = 0.5 * (n_bins - 1) * (1 + np.sin(2 * np.pi * t / 2_000.0))
    bins = np.arange(n_bins, dtype=np.float64)
    width = max(1.0, n_bins / 20)
    ll = -0.5 * ((bins[None, :] - centre[:, None]) / width) ** 2
    ll += rng.standard_normal((stop - start, n_bins))
    return ll.astype(np.float32)


def _dask_block(block_info=None, *, n_time: int, n_bins: int, seed: int) -> np.ndarray:
    index = block_info[None]["chunk-location"][0]
    return _block(index, n_time, n_bins, seed)


class Problem:
    """One synthetic problem: log-likelihood, transition and initial.

    Parameters
    ----------
    n_time, n_bins : int
        Time steps and state bins.
    seed : int
        Base seed of the log-likelihood blocks.
    """

    def __init__(self, n_time: int, n_bins: int, seed: int = 0) -> None:
        self.n_time = int(n_time)
        self.n_bins = int(n_bins)
        self.seed = int(seed)
        self.transition = transition_matrix(self.n_bins)
        self.initial = np.full(self.n_bins, 1.0 / self.n_bins)

    @property
    def n_blocks(self) -> int:
        """Number of generation blocks."""
        return -(-self.n_time // GEN_BLOCK)

    def in_ram(self) -> np.ndarray:
        """The whole (T, K) float32 log-likelihood as a NumPy array."""
        out = np.empty((self.n_time, self.n_bins), dtype=np.float32)
        for index in range(self.n_blocks):
            start = index * GEN_BLOCK
            out[start:start + GEN_BLOCK] = _block(index, self.n_time, self.n_bins, self.seed)
        return out

    def lazy(self):
        """A dask array computing each block of rows only when it is read."""
        import dask.array as da

        chunks = ((GEN_BLOCK,) * (self.n_time // GEN_BLOCK)
                  + ((self.n_time % GEN_BLOCK,) if self.n_time % GEN_BLOCK else ()),
                  (self.n_bins,))
        return da.map_blocks(
            _dask_block, dtype=np.float32, chunks=chunks,
            meta=np.empty((0, 0), dtype=np.float32),
            n_time=self.n_time, n_bins=self.n_bins, seed=self.seed,
        )

    def on_disk(self, path: str | Path) -> np.memmap:
        """The log-likelihood written to ``path`` and opened read-only as a memmap."""
        out = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=(self.n_time, self.n_bins)
        )
        for index in range(self.n_blocks):
            start = index * GEN_BLOCK
            out[start:start + GEN_BLOCK] = _block(index, self.n_time, self.n_bins, self.seed)
        out.flush()
        del out
        return np.load(path, mmap_mode="r")

    def log_likelihood(self, kind: str, workdir: str | Path):
        """The log-likelihood held as ``kind`` (one of :data:`INPUT_KINDS`)."""
        if kind == "ram":
            return self.in_ram()
        if kind == "dask":
            return self.lazy()
        if kind == "memmap":
            return self.on_disk(Path(workdir) / "log_likelihood.npy")
        raise ValueError(f"unknown input kind {kind!r}; choose from {INPUT_KINDS}")

