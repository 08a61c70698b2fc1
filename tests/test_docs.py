"""The user docs stay in step with the code: Config table, figure, links, examples."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import xhmm
from conftest import reference_forward_backward
from doc_examples import code_blocks, migrating_namespace, run_migrating_example, run_page
from fake_detector import FakeNonLocalDetector, nld_transition
from tolerances import F32_ATOL, mll_atol

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "MIGRATING.md", "docs/usage.md", "docs/cli.md", "docs/design.md",
         "docs/benchmarks.md", "docs/storage.md", "docs/view.md", "docs/after-the-decode.md",
         "benchmarks/results/HISTORY.md"]
#: Pages whose python and bash blocks run, in page order, one namespace and folder each.
CODE_PAGES = ["README.md", "docs/usage.md", "docs/storage.md", "docs/scale-out.md",
              "docs/gpu.md", "docs/errors.md", "docs/cli.md", "docs/view.md",
              "docs/after-the-decode.md", "MIGRATING.md"]
#: Pages with blocks that are not run: benchmark commands of minutes each.
NOT_RUN = {"docs/benchmarks.md"}


@pytest.fixture(scope="module")
def ran_page(tmp_path_factory):
    """Run a page's code blocks once (:func:`doc_examples.run_page`); its namespace and folder."""
    done: dict[str, tuple[dict, Path]] = {}

    def run(page: str) -> tuple[dict, Path]:
        if page not in done:
            folder = tmp_path_factory.mktemp(page.replace("/", "-").replace(".", "-"))
            namespace = None
            if page == "MIGRATING.md":
                namespace = migrating_namespace(FakeNonLocalDetector(n_dims=2,
                                                                     movement_mean=0.5))
            done[page] = (run_page(page, folder, namespace), folder)
            if "matplotlib.pyplot" in sys.modules:
                sys.modules["matplotlib.pyplot"].close("all")
        return done[page]

    return run


@pytest.mark.parametrize("page", CODE_PAGES)
def test_every_code_block_of_a_page_runs(page, ran_page):
    """Each python block runs without raising, in page order; each ``xhmm`` line of a
    bash block exits with status 0 (:func:`doc_examples.run_page` raises otherwise)."""
    ran_page(page)


def test_every_page_with_code_is_run():
    pages = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("*.md"),
                                                      *ROOT.glob("docs/*.md")]
                   if code_blocks(str(p.relative_to(ROOT))))
    assert sorted(set(pages) - NOT_RUN) == sorted(p for p in CODE_PAGES if code_blocks(p))


def test_usage_documents_every_config_field():
    text = (ROOT / "docs" / "usage.md").read_text()
    missing = [name for name in xhmm.Config.field_names() if f"| `{name}` |" not in text]
    assert missing == []


def test_readme_quick_start_and_figure():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "(docs/demo.png)" in text
    assert (ROOT / "docs" / "demo.png").stat().st_size > 50_000


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    path = ROOT / page
    links = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    local = [link.split("#")[0] for link in links if "://" not in link]
    broken = [link for link in local if link and not (path.parent / link).exists()]
    assert broken == []


@pytest.mark.parametrize("page", ["README.md", "docs/design.md"])
def test_module_maps_name_existing_paths(page):
    text = (ROOT / page).read_text()
    named = set(re.findall(r"`((?:xhmm|tests)/[\w./]*)`", text))
    assert named, "no module paths found"
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def _section(page: str, title: str) -> str:
    text = (ROOT / page).read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_structured_transitions_example_runs(ran_page):
    """The usage page's structured-transition code gives the plan it describes."""
    namespace, folder = ran_page("docs/usage.md")
    assert len(re.findall(r"```python\n", _section("docs/usage.md",
                                                   "Structured transitions"))) == 5
    plan = namespace["plan"]
    assert plan["kind"] == "blocks" and plan["n_bins"] == 770
    assert "Non-Local Continuous->Non-Local Continuous: separable 20x20" in plan["blocks"]
    track = namespace["res_track"].attrs["xhmm_transition"]
    assert "outbound->outbound: tiled 300x300 (tiles of 8 bins, up to 6 per tile) " \
           "(directional random walk, increasing)" in track
    assert (folder / "model.nc").is_file()


def test_migrating_example_runs_on_a_fitted_detector():
    """The example, on a stand-in with a fitted 0.6.9 detector's attributes.

    Both results (Blocks and dense transition) equal the float64 reference
    on the detector's own transition with the missing rows zeroed, within
    the float32 tolerances of ``tests/tolerances.py``.
    """
    det = FakeNonLocalDetector(n_dims=2, movement_mean=0.5)
    n_time = 60
    time = np.arange(n_time) / 500.0
    position = np.column_stack([np.linspace(0, 15, n_time), np.linspace(0, 8, n_time)])
    position[[3, 4, 30]] = np.nan
    spec = run_migrating_example(dict(det=det, time=time, position_time=time,
                                      position=position, spike_times=[]))
    ix = det.is_track_interior_state_bins_
    missing = np.isnan(position).any(axis=1)
    ll = det.compute_log_likelihood(time).astype(np.float64)
    ll[missing] = 0.0
    p0 = det.initial_conditions_[ix] / det.initial_conditions_[ix].sum()
    _, smoothed, mll = reference_forward_backward(ll, nld_transition(det), p0)
    assert 1 <= spec["history"].sizes["iteration"] <= 3
    assert spec["fitted"].discrete.sizes["from_state"] == len(det.state_names)
    assert spec["res_fitted"].acausal_posterior.sizes["state_bins"] == ix.size
    for res in (spec["res"], spec["res_dense"]):
        assert res.acausal_posterior.sizes["state_bins"] == ix.size
        np.testing.assert_allclose(res.acausal_posterior.values[:, ix], smoothed, rtol=0,
                                   atol=F32_ATOL)
        assert abs(float(res.marginal_log_likelihood) - mll) <= mll_atol(ll, mll, 1e-6)


def test_readme_make_commands_are_makefile_targets_and_ci_runs_test_all():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    named = set(re.findall(r"`make ([\w-]+)", readme))
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    assert {"demo", "test", "test-all", "test-min"} <= named
    assert named <= targets
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci[-1] == "make test-all"
    # before it, only the browser of tests/test_view.py is installed where it is missing
    assert not any("make" in line for line in ci[:-1])
    assert any("apt-get install" in line and "chromium chromium-driver" in line
               for line in ci[:-1])
