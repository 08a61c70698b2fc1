"""Optional dependencies: ``import xhmm`` works without them, using one names its extra."""

import subprocess
import sys

import numpy as np
import pytest

import xhmm
from xhmm.cli import main
from xhmm.extras import require
from xhmm.synthetic import simulate_decoding

#: The optional packages and the extra of xhmm that installs each.
EXTRAS = {"matplotlib": "plot", "zarr": "zarr", "distributed": "distributed",
          "bokeh": "view"}


def test_require_returns_the_module():
    assert require("numpy.linalg", "plot", "anything") is np.linalg


def test_require_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # importing it raises ImportError
    with pytest.raises(xhmm.MissingExtraError) as info:
        require("matplotlib.pyplot", "plot", "drawing a figure")
    assert str(info.value) == ("drawing a figure needs the 'matplotlib' package, which is not "
                               'installed: pip install "xhmm[plot]"')
    assert isinstance(info.value, ImportError)  # `except ImportError` still catches it


@pytest.fixture(scope="module")
def result():
    return simulate_decoding(0.2, seed=1).hmm.smooth(progress=False)


@pytest.mark.parametrize("draw", [xhmm.plot.plot_decoding, xhmm.plot.plot_posterior,
                                  xhmm.plot.plot_state_probabilities])
def test_plots_without_matplotlib_name_the_plot_extra(result, draw, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(xhmm.MissingExtraError, match=r'pip install "xhmm\[plot\]"'):
        draw(result)


def test_demo_without_matplotlib_names_the_plot_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--duration", "2"]) == 2
    err = capsys.readouterr().err
    assert 'xhmm demo (it draws a figure) needs the \'matplotlib\' package' in err
    assert 'pip install "xhmm[plot]"' in err
    assert not (tmp_path / "demo").exists()


def test_the_viewer_without_bokeh_names_the_view_extra(result, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setitem(sys.modules, "bokeh", None)
    with pytest.raises(xhmm.MissingExtraError, match=r'pip install "xhmm\[view\]"'):
        xhmm.view(result)
    xhmm.save_results(result, tmp_path / "r.nc")
    assert main(["view", str(tmp_path / "r.nc"), "--no-browser"]) == 2
    assert ("xhmm view needs the 'bokeh' package, which is not installed: "
            'pip install "xhmm[view]"') in capsys.readouterr().err


def test_import_and_smooth_without_any_extra(tmp_path):
    """A fresh interpreter where matplotlib, zarr and distributed cannot be imported."""
    script = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({sorted(EXTRAS)!r}, None))\n"
        "import numpy as np, xhmm\n"
        "res = xhmm.smooth(np.log(np.full((30, 3), 1 / 3)), np.full((3, 3), 1 / 3), "
        "np.full(3, 1 / 3), progress=False)\n"
        f"xhmm.save_results(res, {str(tmp_path / 'r.nc')!r})\n"
        "print(float(xhmm.open_results("
        f"{str(tmp_path / 'r.nc')!r}).acausal_posterior.sum()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) == pytest.approx(30, abs=1e-3)
