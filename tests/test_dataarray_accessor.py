"""``da.hmm`` on a log-likelihood DataArray gives what ``ds.hmm`` gives on its Dataset."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xhmm.frontend.dataarray_accessor import DataArrayHMMAccessor

from conftest import make_dataset, random_model


@pytest.fixture
def model():
    ll, A, p0 = random_model(np.random.default_rng(5), 30, 6)
    ds = make_dataset(ll, [True] * 5 + [False],
                      state=("state_bins", ["a", "a", "b", "b", "b", "b"]),
                      position=("state_bins", np.arange(6.0)))
    return ds, A[:5, :5] / A[:5, :5].sum(axis=1, keepdims=True), p0[:5] / p0[:5].sum()


@pytest.mark.parametrize("method, options", [
    ("smooth", {"chunk_size": 7}),
    ("filter", {"emit_map": True}),
    ("map_estimate", {}),
])
def test_results_equal_the_dataset_path(model, method, options):
    ds, A, p0 = model
    ll = ds.log_likelihood.rename("anything")  # any name; coords come along
    from_array = getattr(ll.hmm, method)(A, p0, progress=False, **options)
    from_dataset = getattr(ds.hmm, method)(transition=A, initial=p0, progress=False,
                                           **options)
    xr.testing.assert_identical(from_array.compute(), from_dataset.compute())


def test_many_sequences(model):
    ds, A, p0 = model
    other = ds.assign(log_likelihood=(ds.log_likelihood.dims, ds.log_likelihood.values[::-1]))
    many = xr.concat([ds, other], dim="sequence")
    res = many.log_likelihood.hmm.smooth(A, p0, progress=False)
    expected = many.hmm.smooth(transition=A, initial=p0, progress=False)
    xr.testing.assert_identical(res.compute(), expected.compute())


def test_registered_by_importing_xhmm():
    assert isinstance(xr.DataArray(np.zeros((2, 2))).hmm, DataArrayHMMAccessor)
