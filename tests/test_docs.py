"""The user docs stay in step with the code: Config table, figure, links."""

import re
from pathlib import Path

import pytest

import xhmm

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "MIGRATING.md", "docs/usage.md", "docs/cli.md", "docs/design.md"]


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


def test_structured_transitions_example_runs(tmp_path, monkeypatch):
    """The usage page's structured-transition code runs as written, in order."""
    monkeypatch.chdir(tmp_path)  # it writes model.nc
    blocks = re.findall(r"```python\n(.*?)```", _section("docs/usage.md",
                                                         "Structured transitions"), re.S)
    assert len(blocks) == 4
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, "docs/usage.md", "exec"), namespace)
    plan = namespace["plan"]
    assert plan["kind"] == "blocks" and plan["n_bins"] == 770
    assert "Non-Local Continuous->Non-Local Continuous: separable 20x20" in plan["blocks"]
    assert (tmp_path / "model.nc").is_file()
