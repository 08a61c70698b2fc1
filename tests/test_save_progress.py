"""Progress bars: ``xhmm.save_results``'s, on when asked, off otherwise; the passes' step counts."""

import importlib
import sys
import types

import numpy as np
import pytest
import tqdm
import xarray as xr
from tqdm.std import TqdmWarning

import xhmm
from xhmm.engine import progress as engine_progress

# tqdm's automatic notebook/terminal choice, which warns in a notebook without
# ipywidgets when first imported.
TQDM_AUTO = ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook", "tqdm.dask")


def decode(method: str, n_time: int, **options) -> xr.Dataset:
    """``ds.hmm.<method>`` of a random 6-bin log-likelihood."""
    ll = np.random.default_rng(0).normal(size=(n_time, 6))
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"time": np.arange(n_time)})
    return getattr(ds.hmm, method)(transition=np.full((6, 6), 1 / 6),
                                   initial=np.full(6, 1 / 6), **options)


@pytest.fixture(scope="module")
def results():
    return decode("smooth", 400, progress=False, time_chunks=100)


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


class ZMQInteractiveShell:
    """Stands for the shell of a Jupyter kernel (tqdm and xhmm look at its name)."""


@pytest.fixture
def notebook_without_ipywidgets(monkeypatch):
    """A Jupyter kernel as tqdm detects one, without ipywidgets.

    tqdm's automatic modules are unloaded for the test (and restored after),
    so importing them now would warn; xhmm's own notebook check is replaced
    by one that records its calls.
    """
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = ZMQInteractiveShell
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    calls = []
    monkeypatch.setattr(engine_progress, "_in_notebook", lambda: calls.append(1) or True)
    saved = {name: sys.modules.pop(name, None) for name in TQDM_AUTO}
    yield calls
    for name, module in saved.items():
        attribute = name.rpartition(".")[2]
        if module is None:
            sys.modules.pop(name, None)
            vars(tqdm).pop(attribute, None)
        else:
            sys.modules[name] = module
            setattr(tqdm, attribute, module)


def test_the_fake_notebook_makes_tqdm_auto_warn(notebook_without_ipywidgets):
    with pytest.warns(TqdmWarning, match="IProgress not found"):
        importlib.import_module("tqdm.auto")


def test_notebook_without_ipywidgets_gets_text_bars_and_no_tqdm_warning(
    results, tmp_path, capsys, recwarn, notebook_without_ipywidgets
):
    assert engine_progress.tqdm_class() is tqdm.std.tqdm
    xhmm.save_results(results, tmp_path / "r.nc", progress=None)
    decode("filter", 50, progress=None)

    assert notebook_without_ipywidgets  # the notebook branch decided progress=None
    err = capsys.readouterr().err
    assert "xhmm save r.nc" in err and "xhmm forward" in err
    assert [w.message for w in recwarn if issubclass(w.category, TqdmWarning)] == []
    assert not set(TQDM_AUTO) & set(sys.modules)


@pytest.mark.parametrize("chunk_size", [200, 250])  # 500 rows: a short last chunk, and none
def test_pass_bars_count_the_rows(monkeypatch, chunk_size):
    """Both passes end at T of T steps, whatever padding the last chunk has."""
    ends = {}

    class Recorded(tqdm.std.tqdm):
        def close(self):
            ends[self.desc] = (self.n, self.total)
            super().close()

    monkeypatch.setattr(engine_progress, "tqdm_class", lambda: Recorded)
    decode("smooth", 500, chunk_size=chunk_size, progress=True)
    assert ends == {"xhmm forward": (500, 500), "xhmm backward": (500, 500)}
