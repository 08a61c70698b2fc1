"""``is_missing``: steps without data get a flat likelihood, read lazily.

The reference is the float64 forward-backward of ``tests/conftest.py`` with
the missing rows set to 0. Results run with ``compute_dtype="float64"`` are
compared as in ``tests/test_golden.py``: posteriors within ``F64_RTOL |ref|
+ F64_ATOL`` (the float64 answer rounded once to float32 storage) and the
marginal log-likelihood within :func:`tolerances.mll_atol` at 1e-12 a step.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from conftest import make_dataset, random_model, reference_forward_backward
from tolerances import F64_ATOL, F64_RTOL, mll_atol
from xhmm.errors import DimensionError, InputError
from xhmm.frontend.missing import MissingRowsAsFlat, flat_where_missing
from xhmm.transitions import Blocks, Uniform, stored_transition

T, K = 60, 7
MISSING_STEPS = [0, 5, 6, 7, 31, 59]
F64 = {"compute_dtype": "float64", "posterior_out_dtype": "float64", "progress": False}


def _model(seed=0):
    rng = np.random.default_rng(seed)
    ll, A, p0 = random_model(rng, T, K)
    missing = np.zeros(T, bool)
    missing[MISSING_STEPS] = True
    data = ll.copy()
    data[missing] = np.nan  # never looked at
    flat = ll.copy()
    flat[missing] = 0.0
    return data, flat, missing, A, p0


def _assert_reference(res, flat, A, p0, causal=True):
    filtered, smoothed, mll = reference_forward_backward(flat, A, p0)
    names = (["causal_posterior"] if causal else []) + (
        ["acausal_posterior"] if "acausal_posterior" in res else [])
    for name in names:
        want = filtered if name == "causal_posterior" else smoothed
        np.testing.assert_allclose(res[name].values, want, rtol=F64_RTOL, atol=F64_ATOL,
                                   err_msg=name)
    assert abs(float(res.marginal_log_likelihood) - mll) <= mll_atol(flat, mll, 1e-12)


@pytest.mark.parametrize("backend", ["numpy", "dask"])
def test_smooth_matches_reference_with_missing_rows_zeroed(backend):
    data, flat, missing, A, p0 = _model()
    if backend == "dask":
        data = da.from_array(data, chunks=(9, 4))
    res = make_dataset(data).hmm.smooth(A, p0, is_missing=missing, chunk_size=8, **F64)
    _assert_reference(res, flat, A, p0)


def test_dataset_variable_filter_and_map_estimate():
    data, flat, missing, A, p0 = _model(1)
    ds = make_dataset(data).assign(is_missing=("time", missing))
    _assert_reference(ds.hmm.filter(A, p0, chunk_size=16, **F64), flat, A, p0)
    est = ds.hmm.map_estimate(A, p0, chunk_size=16, **F64)
    _, smoothed, _ = reference_forward_backward(flat, A, p0)
    np.testing.assert_array_equal(est.map_state_bin.values, smoothed.argmax(axis=1))


def test_marginal_adds_zero_per_missing_step_and_nld_convention_adds_one():
    """non_local_detector 0.6.9 sets missing rows to 1.0: same posterior, +1 a step."""
    data, flat, missing, A, p0 = _model(2)
    ds = make_dataset(data)
    res = ds.hmm.smooth(A, p0, is_missing=missing, **F64)
    ones = flat.copy()
    ones[missing] = 1.0
    nld_style = make_dataset(ones).hmm.smooth(A, p0, **F64)
    np.testing.assert_allclose(res.acausal_posterior.values, nld_style.acausal_posterior.values,
                               rtol=2 * F64_RTOL, atol=F64_ATOL)
    gap = float(nld_style.marginal_log_likelihood) - float(res.marginal_log_likelihood)
    assert gap == pytest.approx(missing.sum(), abs=1e-9)


def test_every_step_missing_propagates_the_prior():
    data, _, _, A, p0 = _model(3)
    res = make_dataset(data).hmm.smooth(A, p0, is_missing=np.ones(T, bool), **F64)
    predicted = p0 @ np.linalg.matrix_power(A, 4)
    np.testing.assert_allclose(res.acausal_posterior.values[4], predicted, rtol=F64_RTOL,
                               atol=F64_ATOL)
    assert float(res.marginal_log_likelihood) == pytest.approx(0.0, abs=1e-12)


def test_dataarray_accessor_argument_and_coordinate():
    data, flat, missing, A, p0 = _model(4)
    ll = make_dataset(data).log_likelihood
    _assert_reference(ll.hmm.smooth(A, p0, is_missing=missing, **F64), flat, A, p0)
    with_coord = ll.assign_coords(is_missing=("time", missing))
    _assert_reference(with_coord.hmm.smooth(A, p0, **F64), flat, A, p0)


@pytest.mark.parametrize("shared", [False, True], ids=["per-sequence", "shared"])
def test_sequences(shared):
    models = [_model(seed) for seed in (5, 6, 7)]
    _, _, _, A, p0 = models[0]
    rng = np.random.default_rng(8)
    missing = np.stack([m[2] for m in models])
    if not shared:
        missing[1] = rng.random(T) < 0.3
        missing[2] = False  # a sequence with no missing step
    lls = np.stack([m[1] for m in models])
    data = np.where(missing[:, :, None], np.nan, lls)
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"), data)})
    given = missing[0] if shared else xr.DataArray(missing, dims=("sequence", "time"))
    res = ds.hmm.smooth(A, p0, is_missing=given, batch_size=2, chunk_size=16, **F64)
    for s in range(3):
        flat = np.where(missing[s][:, None], 0.0, lls[s])
        _assert_reference(res.isel(sequence=s), flat, A, p0)
    as_variable = ds.assign(is_missing=(("sequence", "time"), missing))
    again = as_variable.hmm.smooth(A, p0, batch_size=2, chunk_size=16, **F64)
    np.testing.assert_array_equal(again.acausal_posterior.values, res.acausal_posterior.values)


class Recorder:
    """A (B, T, N) array-like that records the rows it was asked for."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.keys = []

    def __getitem__(self, key):
        self.keys.append(key)
        return self.array[key]


def test_masking_reads_only_the_rows_asked_for():
    data, _, missing, _, _ = _model()
    source = Recorder(data[None])
    view = flat_where_missing(source, missing[None])
    assert isinstance(view, MissingRowsAsFlat)
    block = view[:, 4:9]
    assert source.keys == [(slice(None), slice(4, 9))]
    assert block.dtype == data.dtype and block.shape == (1, 5, K)
    np.testing.assert_array_equal(block[0, 1:4], 0.0)  # steps 5, 6, 7
    np.testing.assert_array_equal(block[0, [0, 4]], data[[4, 8]])
    picked = view[np.array([0]), slice(0, 2)]
    np.testing.assert_array_equal(picked[0, 0], 0.0)
    lazy = flat_where_missing(da.from_array(data[None], chunks=(1, 10, K)), missing[None])
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy[0, 5:8].compute(), 0.0)


def test_float32_input_keeps_its_dtype():
    data, _, missing, _, _ = _model()
    view = flat_where_missing(data[None].astype(np.float32), missing[None])
    assert view[:, :3].dtype == np.float32
    unmasked = data[None]
    assert flat_where_missing(unmasked, None) is unmasked


@pytest.mark.parametrize(
    "value, error, match",
    [
        (np.zeros(T - 1, bool), DimensionError, r"is_missing has shape \(59,\); expected"),
        (np.zeros((2, T), bool), DimensionError, "is_missing has shape"),
        (np.zeros(T), InputError, "is_missing must be boolean.*float64.*fillna"),
        (np.zeros(T, int), InputError, "is_missing must be boolean.*int"),
        (xr.DataArray(np.zeros(T, bool), dims="step"), DimensionError,
         r"is_missing has dims \('step',\)"),
    ],
    ids=["length", "2-D", "float", "int", "dims"],
)
def test_bad_is_missing_is_named(value, error, match):
    data, _, _, A, p0 = _model()
    ds = make_dataset(data)
    with pytest.raises(error, match=match):
        ds.hmm.smooth(A, p0, is_missing=value)
    if isinstance(value, np.ndarray) and value.shape == (T,):  # as a Dataset variable
        with pytest.raises(error, match=match):
            ds.assign(is_missing=("time", np.asarray(value))).hmm.smooth(A, p0)


def test_bad_per_sequence_shape_is_named():
    data, _, _, A, p0 = _model()
    ds = xr.Dataset({"log_likelihood": (("sequence", "time", "state_bins"),
                                        np.stack([data, data]))})
    with pytest.raises(DimensionError, match=r"is_missing has shape \(3, 60\).*\(2, 60\)"):
        ds.hmm.smooth(A, p0, is_missing=np.zeros((3, T), bool))


def test_fit_with_missing_steps_is_the_fit_with_those_rows_zeroed():
    rng = np.random.default_rng(9)
    labels = np.array(["a"] * 4 + ["b"] * 3)
    blocks = {(s, t): Uniform() for s in "ab" for t in "ab"}
    start = Blocks([[0.8, 0.2], [0.3, 0.7]], blocks)
    ll = rng.normal(size=(T, labels.size)) * 2
    missing = np.zeros(T, bool)
    missing[MISSING_STEPS] = True
    flat = np.where(missing[:, None], 0.0, ll)
    p0 = np.full(labels.size, 1 / labels.size)
    fits = []
    for data, given in ((np.where(missing[:, None], np.nan, ll), missing), (flat, None)):
        ds = make_dataset(data, state=("state_bins", labels))
        fits.append(ds.hmm.fit(start, p0, is_missing=given, max_iter=3, **F64))
    history, expected_history = fits
    fitted, expected = stored_transition(history), stored_transition(expected_history)
    np.testing.assert_allclose(history.marginal_log_likelihood.values,
                               expected_history.marginal_log_likelihood.values, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(fitted.discrete), np.asarray(expected.discrete),
                               rtol=1e-12)
