"""Every bad input gets a clear xhmm error naming the culprit, before heavy work."""

from __future__ import annotations

import errno
import os
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

import xhmm
from xhmm.errors import XHMMError

from conftest import make_dataset, random_model, underflow_model

T, K = 40, 5


@pytest.fixture
def model():
    ll, A, p0 = random_model(np.random.default_rng(0), T, K)
    return make_dataset(ll), A, p0


class NoCompute(Callback):
    """Fails the test if any dask task runs while active."""

    def _start(self, dsk):
        raise AssertionError("dask computed before the input was validated")


def _stochastic(n):
    return np.full((n, n), 1 / n)


BAD_CALLS = {
    # name: (mutator(ds, A, p0) -> (ds, kwargs), error type, message fragment)
    "missing log_likelihood": (
        lambda ds, A, p0: (ds.rename(log_likelihood="ll"), dict(transition=A, initial=p0)),
        xhmm.InputError, "'log_likelihood'"),
    "missing time dim": (
        lambda ds, A, p0: (ds.rename(time="t"), dict(transition=A, initial=p0)),
        xhmm.DimensionError, "'time'"),
    "missing state_bins dim": (
        lambda ds, A, p0: (ds.rename(state_bins="bins"), dict(transition=A, initial=p0)),
        xhmm.DimensionError, "'state_bins'"),
    "extra dim": (
        lambda ds, A, p0: (ds.expand_dims(trial=2), dict(transition=A, initial=p0)),
        xhmm.DimensionError, "'trial'"),
    "empty time": (
        lambda ds, A, p0: (ds.isel(time=slice(0, 0)), dict(transition=A, initial=p0)),
        xhmm.DimensionError, "empty 'time'"),
    "string likelihood": (
        lambda ds, A, p0: (ds.assign(log_likelihood=ds.log_likelihood.astype(str)),
                           dict(transition=A, initial=p0)),
        xhmm.InputError, "dtype"),
    "no transition": (
        lambda ds, A, p0: (ds, dict(initial=p0)),
        xhmm.InputError, "transition"),
    "transition not square": (
        lambda ds, A, p0: (ds, dict(transition=A[:, :4], initial=p0)),
        xhmm.TransitionError, "square"),
    "transition wrong size": (
        lambda ds, A, p0: (ds, dict(transition=_stochastic(4), initial=p0)),
        xhmm.TransitionError, "(4, 4)"),
    "transition negative": (
        lambda ds, A, p0: (ds, dict(transition=np.where(np.eye(K) > 0, -0.1, A),
                                    initial=p0)),
        xhmm.TransitionError, "negative"),
    "transition NaN": (
        lambda ds, A, p0: (ds, dict(transition=np.where(np.eye(K) > 0, np.nan, A),
                                    initial=p0)),
        xhmm.TransitionError, "transition[0, 0] is nan"),
    "transition rows": (
        lambda ds, A, p0: (ds, dict(transition=A * 1.01, initial=p0)),
        xhmm.TransitionError, "row 0 sums to"),
    "transition into exterior": (
        lambda ds, A, p0: (ds.assign_coords(is_interior=("state_bins",
                                                         [True] * 4 + [False])),
                           dict(transition=A, initial=np.r_[p0[:4] / p0[:4].sum(), 0])),
        xhmm.TransitionError, "exterior"),
    "initial wrong length": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0[:3])),
        xhmm.InitialError, "shape (3,)"),
    "initial negative": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=np.r_[-0.1, 1.1, 0, 0, 0])),
        xhmm.InitialError, "initial[0]"),
    "initial zero": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=np.zeros(K))),
        xhmm.InitialError, "zero everywhere"),
    "initial NaN": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=np.r_[np.nan, p0[1:]])),
        xhmm.InitialError, "initial[0] is nan"),
    "initial sum": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0 * 2)),
        xhmm.InitialError, "sums to"),
    "is_interior not bool": (
        lambda ds, A, p0: (ds.assign_coords(is_interior=("state_bins", np.ones(K))),
                           dict(transition=A, initial=p0)),
        xhmm.InputError, "is_interior must be boolean"),
    "no interior bin": (
        lambda ds, A, p0: (ds.assign_coords(is_interior=("state_bins", np.zeros(K, bool))),
                           dict(transition=A, initial=p0)),
        xhmm.InputError, "no interior bin"),
    "chunk_size zero": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, chunk_size=0)),
        xhmm.ConfigError, "chunk_size"),
    "chunk_size float": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, chunk_size=10.5)),
        xhmm.ConfigError, "chunk_size"),
    "unknown posterior_dtype": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, posterior_dtype="int8")),
        xhmm.ConfigError, "posterior_dtype"),
    "unknown compute_dtype": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, compute_dtype="float16")),
        xhmm.ConfigError, "compute_dtype"),
    "unknown keyword": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, chunksize=10)),
        xhmm.ConfigError, "chunksize"),
    "config not a Config": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, config={"chunk_size": 3})),
        xhmm.ConfigError, "xhmm.Config"),
    "quantize with float16": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, quantize_posteriors=True,
                                    posterior_dtype="float16")),
        xhmm.ConfigError, "quantize_posteriors"),
    "resume without memmap": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, resume=True)),
        xhmm.ConfigError, "resume"),
    "progress not bool": (
        lambda ds, A, p0: (ds, dict(transition=A, initial=p0, progress="yes")),
        xhmm.ConfigError, "progress"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_is_named_before_any_compute(model, case):
    mutate, error, fragment = BAD_CALLS[case]
    ds, A, p0 = model
    ds = ds.assign(log_likelihood=(ds.log_likelihood.dims,
                                   da.from_array(ds.log_likelihood.values, chunks=10)))
    ds, kwargs = mutate(ds, A, p0)
    with NoCompute(), pytest.raises(error) as info:
        ds.hmm.smooth(**kwargs)
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "value, fragment",
    [(np.nan, "NaN at time index 23, bin 2"),
     (np.inf, "+inf at time index 23, bin 2")],
)
def test_non_finite_likelihood_names_time_and_bin(model, value, fragment):
    ds, A, p0 = model
    ll = ds.log_likelihood.values.copy()
    ll[23, 2] = value
    with pytest.raises(xhmm.LikelihoodError, match=fragment.replace("+", r"\+")):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, chunk_size=7)


def test_all_impossible_step_names_time(model):
    ds, A, p0 = model
    ll = ds.log_likelihood.values.copy()
    ll[31] = -np.inf
    with pytest.raises(xhmm.LikelihoodError, match="time index 31"):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, chunk_size=7)


def test_impossible_given_the_model_names_time():
    A = np.eye(3)  # absorbing: the chain never leaves bin 0
    p0 = np.array([1.0, 0, 0])
    ll = np.zeros((6, 3))
    ll[4, 0] = -np.inf
    # float32 cannot tell bins 1 and 2 (exactly unreachable) from lost ones
    with pytest.raises(xhmm.NumericalError, match="time index 1"):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, compute_dtype="float32")
    for dtype in ("auto", "float64"):  # auto: recomputed in float64, which knows
        with pytest.raises(xhmm.LikelihoodError, match="time index 4"):
            make_dataset(ll).hmm.smooth(transition=A, initial=p0, compute_dtype=dtype)


def test_exterior_nan_is_ignored():
    ll, A, p0 = random_model(np.random.default_rng(1), 12, 4)
    full = np.c_[np.full((12, 1), np.nan), ll]
    res = make_dataset(full, [False, True, True, True, True]).hmm.smooth(
        transition=A, initial=p0)
    assert np.isnan(res.acausal_posterior.values[:, 0]).all()
    assert np.isfinite(res.acausal_posterior.values[:, 1:]).all()


def test_memmap_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(xhmm.ConfigError, match="memmap_dir"):
        xhmm.Config(use_memmap=True, memmap_dir=f)


def test_memmap_dir_not_writable(model, tmp_path, monkeypatch):
    ds, A, p0 = model
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(
        tmp_path / "ro") else real_access(p, mode))
    (tmp_path / "ro").mkdir()
    with pytest.raises(xhmm.StorageError, match="not writable"):
        ds.hmm.smooth(transition=A, initial=p0, use_memmap=True, memmap_dir=tmp_path / "ro")


def test_disk_full_allocating_memmap(model, tmp_path, monkeypatch):
    ds, A, p0 = model

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(xhmm.StorageError, match=r"causal_posterior\.dat.*800 bytes needed"):
        ds.hmm.smooth(transition=A, initial=p0, use_memmap=True, memmap_dir=tmp_path / "m")


def test_disk_full_saving_netcdf(model, tmp_path):
    ds, A, p0 = model
    res = ds.hmm.smooth(transition=A, initial=p0, time_chunks=10, lazy=True)

    def full(block, block_info=None):
        if block_info[None]["chunk-location"][0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return block

    res["acausal_posterior"] = res.acausal_posterior.copy(
        data=res.acausal_posterior.data.map_blocks(full, dtype=np.float32))
    with pytest.raises(xhmm.StorageError, match="No space left.*nothing was written"):
        xhmm.save_results(res, tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []


def test_float32_precision_loss_is_an_error_and_the_default_is_right(reference):
    ll, A = underflow_model()
    K = A.shape[0]
    _, smooth, _ = reference(ll, A, np.full(K, 1 / K))
    ds = make_dataset(ll)
    with pytest.raises(xhmm.NumericalError, match="time index"):
        ds.hmm.smooth(transition=A, initial=np.full(K, 1 / K), compute_dtype="float32")
    for dtype in ("auto", "float64"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning: a warned result is not a result
            res = ds.hmm.smooth(transition=A, initial=np.full(K, 1 / K), chunk_size=20,
                                compute_dtype=dtype)
        # float64 compute, float32 storage: 1e-7 absolute
        np.testing.assert_allclose(res.acausal_posterior.values, smooth, atol=1e-7)
        assert res.attrs["xhmm_float64_chunks"] == 3


def test_every_error_is_an_xhmm_value_error():
    for name in xhmm.errors.__all__:
        cls = getattr(xhmm, name)
        if issubclass(cls, Warning):
            continue
        assert issubclass(cls, XHMMError) and issubclass(cls, ValueError), name
