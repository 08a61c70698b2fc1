"""uint16 posterior codes and interior-to-full bin expansion.

uint16 stores ``round(p * 65534)`` with 65535 for NaN, so decoding is off by
at most half a step, ``0.5 / 65534``; decoding to float32 adds one float32
rounding of a value <= 1 (at most ``2**-25``).
"""

from __future__ import annotations

import numpy as np
import pytest

import xhmm
from xhmm.kernels.codec import expand_interior

STEP = 1.0 / 65534
HALF_STEP = 0.5 / 65534
NAN_CODE = 65535


def _probabilities(shape, dtype, seed):
    """Random probabilities in [0, 1] with both ends present.

    Parameters
    ----------
    shape : tuple of int
    dtype : {float32, float64}
    seed : int

    Returns
    -------
    ndarray
    """
    p = np.random.default_rng(seed).random(shape).astype(dtype)
    p.flat[0], p.flat[-1] = 0.0, 1.0
    return p


@pytest.mark.parametrize("shape", [(100_000,), (300, 400)])
@pytest.mark.parametrize("src", [np.float32, np.float64])
def test_round_trip_error(shape, src):
    p = _probabilities(shape, src, seed=1)
    codes = xhmm.to_uint16(p)
    assert codes.dtype == np.uint16 and codes.shape == shape
    assert codes.max() <= 65534
    exact = xhmm.from_uint16(codes, dtype=np.float64)
    err = np.abs(exact - p.astype(np.float64))
    # round to nearest step: mean about a quarter step (1.9e-6), under the
    # 1e-4 budget of the storage issue
    assert err.mean() < 1e-4
    # half a step, up to float64 rounding of p * 65534
    assert err.max() <= HALF_STEP * (1 + 1e-12)
    as_f32 = xhmm.from_uint16(codes)
    assert as_f32.dtype == np.float32 and as_f32.shape == shape
    # plus one float32 rounding of the decoded value
    assert np.abs(as_f32 - p.astype(np.float64)).max() <= HALF_STEP + 2.0**-25


def test_codes_are_rounded_scaled_probabilities():
    p = np.array([0.0, STEP, 0.5, 1.0 - STEP, 1.0, 0.4 * STEP, 0.6 * STEP])
    np.testing.assert_array_equal(
        xhmm.to_uint16(p), [0, 1, 32767, 65533, 65534, 0, 1]
    )
    decoded = xhmm.from_uint16(np.array([0, 1, 32767, 65534], dtype=np.uint16),
                               dtype=np.float64)
    np.testing.assert_array_equal(decoded, [0.0, STEP, 32767 * STEP, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_maps_to_reserved_code_and_back(dtype):
    p = np.array([[0.25, np.nan], [np.nan, 1.0]], dtype=dtype)
    codes = xhmm.to_uint16(p)
    np.testing.assert_array_equal(codes, [[16384, NAN_CODE], [NAN_CODE, 65534]])
    back = xhmm.from_uint16(codes, dtype=dtype)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(p))
    # 0.25 * 65534 = 16383.5 rounds half up to 16384
    assert back[0, 0] == pytest.approx(16384 * STEP, rel=2.0**-23)


def test_out_of_range_values_are_clipped():
    p = np.array([-0.3, -np.inf, -1e-12, 1.0 + 1e-12, 1.7, np.inf])
    np.testing.assert_array_equal(xhmm.to_uint16(p), [0, 0, 0, 65534, 65534, 65534])


def test_read_only_inputs():
    p = _probabilities((50, 60), np.float32, seed=2)
    p.setflags(write=False)
    codes = xhmm.to_uint16(p)
    codes.setflags(write=False)
    back = xhmm.from_uint16(codes)
    assert np.abs(back - p).max() <= HALF_STEP + 2.0**-25
    flat = p[0].copy()
    flat.setflags(write=False)
    np.testing.assert_array_equal(xhmm.to_uint16(flat), codes[0])


def test_strided_inputs_and_out_slices():
    p = _probabilities((40, 30), np.float64, seed=3)
    strided = p[::2, ::3]
    np.testing.assert_array_equal(xhmm.to_uint16(strided), xhmm.to_uint16(strided.copy()))
    # ``out=`` may be a row slice of a bigger buffer (as for memmap outputs):
    # only those rows are written
    buffer = np.full((50, 30), 7, dtype=np.uint16)
    returned = xhmm.to_uint16(p, out=buffer[5:45])
    np.testing.assert_array_equal(buffer[5:45], xhmm.to_uint16(p))
    assert (buffer[:5] == 7).all() and (buffer[45:] == 7).all()
    assert np.shares_memory(returned, buffer)


def test_lists_and_integer_arrays_are_accepted():
    np.testing.assert_array_equal(xhmm.to_uint16([0, 1]), [0, 65534])
    np.testing.assert_array_equal(xhmm.to_uint16(np.array([0, 2, -1])), [0, 65534, 0])


# -- expand_interior -----------------------------------------------------------
MASK = np.array([False, True, True, False, True, False, False, True])
COLUMNS = np.flatnonzero(MASK)


@pytest.mark.parametrize("out", [np.float32, np.float64])
@pytest.mark.parametrize("src", [np.float16, np.float32, np.float64])
def test_expand_float_blocks(src, out):
    block = _probabilities((6, COLUMNS.size), src, seed=4)
    block.setflags(write=False)
    full = expand_interior(block, COLUMNS, MASK.size, out)
    assert full.dtype == np.dtype(out) and full.shape == (6, MASK.size)
    assert np.isnan(full[:, ~MASK]).all()
    # the interior carries the stored values exactly (float16 and float32 fit
    # in float32; float64 to float32 is one rounding)
    rtol = 2.0**-24 if (src, out) == (np.float64, np.float32) else 0
    np.testing.assert_allclose(full[:, MASK], block.astype(np.float64), rtol=rtol, atol=0)


@pytest.mark.parametrize("out", [np.float32, np.float64])
def test_expand_uint16_blocks(out):
    codes = xhmm.to_uint16(_probabilities((6, COLUMNS.size), np.float64, seed=5))
    codes[2, 1] = NAN_CODE
    codes.setflags(write=False)
    full = expand_interior(codes, COLUMNS, MASK.size, out)
    assert full.dtype == np.dtype(out)
    assert np.isnan(full[:, ~MASK]).all()
    # decoded exactly as from_uint16 does
    np.testing.assert_array_equal(full[:, MASK], xhmm.from_uint16(codes, dtype=out))
    assert np.isnan(full[2, COLUMNS[1]])
    assert np.isfinite(np.delete(full[:, MASK].ravel(), 2 * COLUMNS.size + 1)).all()


def test_expand_all_interior_is_a_copy():
    block = _probabilities((4, MASK.size), np.float32, seed=6)
    full = expand_interior(block, np.arange(MASK.size), MASK.size, np.float32)
    np.testing.assert_array_equal(full, block)
    assert not np.shares_memory(full, block)
