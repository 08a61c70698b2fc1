"""Code blocks of the user docs, executed by the tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def section_code(page: str, heading: str) -> list[str]:
    """The ``python`` code blocks of one ``## heading`` section of a page, in order."""
    text = (ROOT / page).read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_migrating_example(namespace: dict) -> dict:
    """Execute MIGRATING.md's "From a fitted detector" blocks in ``namespace``."""
    blocks = section_code("MIGRATING.md", "From a fitted detector")
    assert len(blocks) == 3
    for block in blocks:
        exec(compile(block, "MIGRATING.md", "exec"), namespace)
    return namespace

