"""numba kernels for posterior storage: uint16 quantisation and bin expansion.

uint16 storage holds ``round(p * 65534)`` for probabilities clipped to
[0, 1]; the code 65535 marks NaN. Decoding divides by 65534, so the absolute
error of a stored probability is at most ``0.5 / 65534`` (about 7.6e-6).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "UINT16_SCALE",
    "UINT16_NAN",
    "to_uint16",
    "from_uint16",
    "expand_interior",
]

UINT16_SCALE = 65534
UINT16_NAN = 65535

_JIT = dict(nopython=True, nogil=True, cache=True)


def _src(dtype):
    """A read-only 2-D array type: accepts writable and read-only inputs."""
    return numba.types.Array(dtype, 2, "A", readonly=True)


@numba.jit(
    [
        numba.void(_src(src), numba.uint16[:, :])
        for src in (numba.float32, numba.float64)
    ],
    **_JIT,
)
def _encode_uint16(src, dst):  # pragma: no cover - compiled
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            value = src[i, j]
            if np.isnan(value):
                dst[i, j] = UINT16_NAN
            else:
                value = min(max(value, 0.0), 1.0)
                dst[i, j] = np.uint16(np.floor(value * UINT16_SCALE + 0.5))


@numba.jit(
    [
        numba.void(_src(numba.uint16), dst[:, :])
        for dst in (numba.float32, numba.float64)
    ],
    **_JIT,
)
def _decode_uint16(src, dst):  # pragma: no cover - compiled
    scale = 1.0 / UINT16_SCALE
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            code = src[i, j]
            dst[i, j] = np.nan if code == UINT16_NAN else code * scale


@numba.jit(
    [
        numba.void(_src(src), numba.int64[:], dst[:, :])
        for src in (numba.float32, numba.float64)
        for dst in (numba.float32, numba.float64)
    ],
    **_JIT,
)
def _expand_float(src, columns, dst):  # pragma: no cover - compiled
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = np.nan
        for k in range(columns.shape[0]):
            dst[i, columns[k]] = src[i, k]


@numba.jit(
    [
        numba.void(_src(numba.uint16), numba.int64[:], dst[:, :])
        for dst in (numba.float32, numba.float64)
    ],
    **_JIT,
)
def _expand_uint16(src, columns, dst):  # pragma: no cover - compiled
    scale = 1.0 / UINT16_SCALE
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = np.nan
        for k in range(columns.shape[0]):
            code = src[i, k]
            dst[i, columns[k]] = np.nan if code == UINT16_NAN else code * scale


def to_uint16(probabilities: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Quantise probabilities to uint16 codes.

    Parameters
    ----------
    probabilities : ndarray of float32 or float64, 1-D or 2-D
        Values are clipped to [0, 1]; NaN becomes 65535.
    out : ndarray of uint16, optional
        Destination with the same shape (e.g. a slice of a memmap).

    Returns
    -------
    ndarray of uint16
    """
    src = np.asarray(probabilities)
    if src.dtype not in (np.float32, np.float64):
        src = src.astype(np.float64)
    if out is None:
        out = np.empty(src.shape, dtype=np.uint16)
    _encode_uint16(_as_2d(src), _as_2d(out))
    return out


def from_uint16(codes: np.ndarray, dtype: np.dtype | str = np.float32) -> np.ndarray:
    """Decode uint16 codes back to probabilities (65535 becomes NaN).

    Parameters
    ----------
    codes : ndarray of uint16, 1-D or 2-D
    dtype : {float32, float64}

    Returns
    -------
    ndarray of ``dtype``
    """
    src = np.asarray(codes, dtype=np.uint16)
    out = np.empty(src.shape, dtype=np.dtype(dtype))
    _decode_uint16(_as_2d(src), _as_2d(out))
    return out


def expand_interior(
    block: np.ndarray, columns: np.ndarray, n_total: int, dtype: np.dtype | str
) -> np.ndarray:
    """Expand interior-bin rows to all bins, NaN outside the interior.

    Parameters
    ----------
    block : (R, K_interior) ndarray of float16, float32, float64 or uint16
        Stored posterior rows; uint16 codes are decoded on the way.
    columns : (K_interior,) int64 ndarray
        Position of each interior bin among all ``n_total`` bins.
    n_total : int
        Number of state bins.
    dtype : {float32, float64}
        Output dtype.

    Returns
    -------
    (R, n_total) ndarray of ``dtype``
    """
    out = np.empty((block.shape[0], n_total), dtype=np.dtype(dtype))
    columns = np.ascontiguousarray(columns, dtype=np.int64)
    if block.dtype == np.uint16:
        _expand_uint16(np.ascontiguousarray(block), columns, out)
        return out
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float32)
    _expand_float(np.ascontiguousarray(block), columns, out)
    return out


def _as_2d(array: np.ndarray) -> np.ndarray:
    return array.reshape(1, -1) if array.ndim == 1 else array
