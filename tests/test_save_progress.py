"""The progress bar of ``xhmm.save_results``: on when asked, off otherwise."""

import numpy as np
import pytest
import xarray as xr

import xhmm


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    ll = rng.normal(size=(400, 6))
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"time": np.arange(400)})
    return ds.hmm.smooth(transition=np.full((6, 6), 1 / 6), initial=np.full(6, 1 / 6),
                         progress=False, time_chunks=100)


def test_progress_true_draws_a_bar(results, tmp_path, capsys):
    path = xhmm.save_results(results, tmp_path / "r.nc", progress=True)
    err = capsys.readouterr().err
    assert "xhmm save r.nc" in err and "task" in err
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back.acausal_posterior.values,
                                      results.acausal_posterior.values)


@pytest.mark.parametrize("progress", [False, None])  # None: stderr is not a terminal here
def test_no_bar_unless_watched(results, tmp_path, capsys, progress):
    xhmm.save_results(results, tmp_path / "r.nc", progress=progress)
    assert capsys.readouterr().err == ""


def test_bad_progress_value_is_rejected_before_writing(results, tmp_path):
    with pytest.raises(xhmm.ConfigError, match="progress must be True, False or None"):
        xhmm.save_results(results, tmp_path / "r.nc", progress="yes")
    assert list(tmp_path.iterdir()) == []
