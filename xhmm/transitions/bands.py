"""The band that holds a dense block's non-zeros, cut into windowed tiles.

A square block whose entries far from the diagonal are exactly zero in the
compute dtype (a 1-D Gaussian random walk: ``exp(-d^2 / 2 var)`` underflows
to 0 a few dozen bins away) runs as a
:class:`~xhmm.kernels.structured.BandedBlock`. The bins are cut into tiles
of ``width`` bins, at least the band's reach ``max |column - row|``, so each
tile of the product needs only its own tile and its two neighbours: one
``(3 width, width)`` window of the matrix per tile, all multiplied in one
batched matrix product. Nothing is truncated: what the windows leave out is
zero in the dtype the products run in.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_WINDOW_FRACTION", "band_width", "windows"]

#: Banded only when a window row (3 tile widths) is at most this fraction of
#: the block's size: half the multiply-adds of the dense product or fewer.
MAX_WINDOW_FRACTION = 0.5


def band_width(matrix: np.ndarray) -> int | None:
    """Tile width for a square matrix's band, if the band is narrow enough.

    Parameters
    ----------
    matrix : (n, n) ndarray
        In the compute dtype (its zeros are what may be skipped).

    Returns
    -------
    int or None
        The band's reach ``max |column - row|`` over the non-zeros, rounded
        up to a multiple of 8 (at least 8); None when the matrix is not
        square or three such widths exceed :data:`MAX_WINDOW_FRACTION` of
        ``n``.
    """
    n = matrix.shape[0]
    if matrix.shape[1] != n:
        return None
    rows, cols = np.nonzero(matrix)
    reach = int(np.abs(cols - rows).max(initial=0))
    width = 8 * max(1, -(-reach // 8))
    if 3 * width > MAX_WINDOW_FRACTION * n:
        return None
    return width


def windows(matrix: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of each tile, for ``p @ matrix`` and for ``matrix @ r``.

    Parameters
    ----------
    matrix : (n, n) ndarray
    width : int
        Tile width, at least the band's reach.

    Returns
    -------
    forward, backward : (n_tiles, width, 3 width) ndarrays
        With the bins zero-padded by one tile before and to whole tiles
        after, tile ``t`` covering padded bins ``(t + 1) width ...``:
        ``forward[t, c, r] = matrix[t width - width + r, t width + c]`` (the
        rows of tiles ``t - 1 .. t + 1`` into the columns of tile ``t``) and
        ``backward[t, c, r] = matrix[t width + c, t width - width + r]``;
        zero outside the matrix. Each tile's window is stored with the
        contraction (``r``) last (XLA's batched product on CPU is as fast
        with it first: contfrag-1d at K = 1,000, 17.6-18.6 us a filter and
        smoother step either way).
    """
    n = matrix.shape[0]
    n_tiles = -(-n // width)
    padded = np.zeros(((n_tiles + 2) * width,) * 2, dtype=matrix.dtype)
    padded[width:width + n, width:width + n] = matrix
    forward = np.empty((n_tiles, width, 3 * width), dtype=matrix.dtype)
    backward = np.empty_like(forward)
    for t in range(n_tiles):
        around, own = slice(t * width, (t + 3) * width), slice((t + 1) * width, (t + 2) * width)
        forward[t] = padded[around, own].T
        backward[t] = padded[own, around]
    return forward, backward
