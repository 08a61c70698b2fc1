"""Read, check and shift one time chunk of the log-likelihood at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LikelihoodError

__all__ = ["LikelihoodReader", "Chunk", "bad_row_error"]


def bad_row_error(values: np.ndarray, where: str, columns: np.ndarray | None,
                  nan_hint: str) -> LikelihoodError:
    """The error for a log-likelihood row whose maximum is not finite.

    Parameters
    ----------
    values : (K,) ndarray
        The row over the interior bins.
    where : str
        Where the row is, e.g. ``"time index 12"``.
    columns : (K,) int ndarray or None
        Interior bins among all bins (None: all bins), to name the bin.
    nan_hint : str
        What to do about a NaN.

    Returns
    -------
    LikelihoodError
        Naming the first NaN or +inf bin, or saying every bin is -inf.
    """
    def bin_of(mask: np.ndarray) -> int:
        k = int(np.argmax(mask))
        return int(k if columns is None else columns[k])

    if np.isnan(values).any():
        return LikelihoodError(
            f"log_likelihood is NaN at {where}, bin {bin_of(np.isnan(values))}; {nan_hint}"
        )
    if np.isposinf(values).any():
        return LikelihoodError(
            f"log_likelihood is +inf at {where}, bin {bin_of(np.isposinf(values))}; "
            "log-likelihoods must be finite or -inf"
        )
    interior = "" if columns is None else " (interior bins only)"
    return LikelihoodError(
        f"every bin{interior} of log_likelihood is -inf at {where}: "
        "no state is possible at that step"
    )


@dataclass
class Chunk:
    """One engine chunk of log-likelihood rows, ready for the device.

    Attributes
    ----------
    index : int
        Chunk number.
    start, stop : int
        Time indices covered (``stop - start`` real rows).
    log_lik : (chunk_size, K) ndarray
        Interior-bin log-likelihood minus each row's maximum, in the compute
        dtype; rows past ``stop - start`` are zero padding.
    shift : (stop - start,) float64 ndarray
        The subtracted row maxima, added back to the log normalisers.
    """

    index: int
    start: int
    stop: int
    log_lik: np.ndarray
    shift: np.ndarray

    @property
    def n_valid(self) -> int:
        """Number of real (unpadded) rows."""
        return self.stop - self.start


class LikelihoodReader:
    """Pull fixed-size time chunks out of a NumPy or dask log-likelihood.

    Parameters
    ----------
    log_likelihood : (T, N) array-like
        NumPy array, ``np.memmap`` or dask array with time on axis 0. Only
        the rows of the requested chunk are read (dask computes just them).
    columns : (K,) int64 ndarray or None
        Interior bins; None means all N bins.
    chunk_size : int
        Rows per chunk (at most ``T``).
    dtype : dtype
        Compute dtype of the returned rows.
    """

    def __init__(
        self,
        log_likelihood,
        columns: np.ndarray | None,
        chunk_size: int,
        dtype: np.dtype | str,
    ) -> None:
        self.source = log_likelihood
        self.n_time = int(log_likelihood.shape[0])
        n_total = int(log_likelihood.shape[1])
        self.columns = (
            None
            if columns is None or len(columns) == n_total
            else np.asarray(columns, dtype=np.int64)
        )
        self.n_bins = n_total if self.columns is None else len(self.columns)
        # No chunk longer than the recording: padding beyond T is wasted memory.
        self.chunk_size = min(int(chunk_size), self.n_time)
        self.dtype = np.dtype(dtype)

    @property
    def n_chunks(self) -> int:
        """Number of chunks covering the time axis."""
        return -(-self.n_time // self.chunk_size)

    def bounds(self, index: int) -> tuple[int, int]:
        """Time indices ``(start, stop)`` of chunk ``index``."""
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.n_time)

    def read(self, index: int) -> Chunk:
        """Read, validate and shift chunk ``index``.

        Raises
        ------
        LikelihoodError
            On NaN or +inf in an interior bin, or a step whose interior bins
            are all -inf, naming the time index.
        """
        start, stop = self.bounds(index)
        block = self.source[start:stop]
        if hasattr(block, "compute"):
            block = block.compute()
        block = np.asarray(block)
        if self.columns is not None:
            block = block[:, self.columns]
        if not np.issubdtype(block.dtype, np.floating):
            block = block.astype(np.float64)
        shift = block.max(axis=1).astype(np.float64)
        finite_shift = np.isfinite(shift)
        if not finite_shift.all():
            self._raise_bad_row(block, start, int(np.argmin(finite_shift)))
        padded = np.zeros((self.chunk_size, self.n_bins), dtype=self.dtype)
        # Subtract in float64 (whatever the input dtype), round once to the
        # compute dtype.
        np.subtract(block, shift[:, None], out=padded[: stop - start], dtype=np.float64,
                    casting="unsafe")
        return Chunk(index, start, stop, padded, shift)

    def _raise_bad_row(self, block: np.ndarray, start: int, row: int) -> None:
        raise bad_row_error(
            block[row], f"time index {start + row}", self.columns,
            "use -inf for impossible bins and mark unused bins with is_interior",
        )
