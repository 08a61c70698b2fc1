"""The tile diagonals that hold a dense block's non-zeros.

A dense block whose far entries are exactly zero in the compute dtype (a
1-D Gaussian random walk: ``exp(-d^2 / 2 var)`` underflows to 0 a few
dozen bins away) runs as a
:class:`~xhmm.kernels.structured.BandedBlock`: the block is cut into
``TILE x TILE`` tiles and only the tile diagonals ``column - row`` holding a
non-zero are multiplied. Nothing is truncated: the tiles left out are zero
in the dtype the products run in.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TILE", "MAX_DIAGONAL_FRACTION", "band_offsets", "tile_stacks"]

#: Tile size (64 x 64 float32 tiles are 16 KiB, in cache).
TILE = 64
#: Banded only when the kept tile diagonals are at most this fraction of all.
MAX_DIAGONAL_FRACTION = 0.5


def _tiles(matrix: np.ndarray) -> np.ndarray:
    """The matrix zero-padded to whole tiles, as (n_tiles, TILE, n_tiles, TILE)."""
    n_tiles = -(-matrix.shape[0] // TILE)
    padded = np.zeros((n_tiles * TILE, n_tiles * TILE), dtype=matrix.dtype)
    padded[:matrix.shape[0], :matrix.shape[1]] = matrix
    return padded.reshape(n_tiles, TILE, n_tiles, TILE)


def band_offsets(matrix: np.ndarray) -> tuple[int, ...] | None:
    """Tile diagonals holding a non-zero of a square matrix, if few enough.

    Parameters
    ----------
    matrix : (n, n) ndarray
        In the compute dtype (its zeros are what may be skipped).

    Returns
    -------
    tuple of int or None
        Sorted offsets ``column tile - row tile``; None when the matrix is
        not square, smaller than two tiles, or the diagonals are more than
        :data:`MAX_DIAGONAL_FRACTION` of all tiles.
    """
    if matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2 * TILE:
        return None
    tiles = _tiles(matrix)
    rows, cols = np.nonzero(tiles.any(axis=(1, 3)))
    offsets = np.unique(cols - rows)
    if offsets.size > MAX_DIAGONAL_FRACTION * tiles.shape[0]:
        return None
    return tuple(int(offset) for offset in offsets)


def tile_stacks(matrix: np.ndarray, offsets: tuple[int, ...]) -> np.ndarray:
    """``out[k, i]`` = tile (``i``, ``i + offsets[k]``), zero past the last tile.

    Returns
    -------
    (len(offsets), n_tiles, TILE, TILE) ndarray
    """
    tiles = _tiles(matrix)
    n_tiles = tiles.shape[0]
    out = np.zeros((len(offsets), n_tiles, TILE, TILE), dtype=matrix.dtype)
    for k, offset in enumerate(offsets):
        rows = np.arange(max(0, -offset), min(n_tiles, n_tiles - offset))
        out[k, rows] = tiles[rows, :, rows + offset, :]
    return out
