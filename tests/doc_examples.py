"""Code blocks of the user docs, executed by the tests."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: A fenced block: its language tag and its text, up to the closing fence.
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
#: A block importing this shows non_local_detector's own code (MIGRATING.md's "The call"):
#: not run here (the tests run on a stand-in detector);
#: ``benchmarks/nld_migrating_check.py`` checks the page against the package itself.
NLD_IMPORT = re.compile(r"^\s*(from|import) non_local_detector\b", re.M)


@dataclass(frozen=True)
class CodeBlock:
    """One fenced ``python`` or ``bash`` block of a page."""

    page: str
    line: int
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def code_blocks(page: str) -> list[CodeBlock]:
    """The ``python`` and ``bash`` blocks of ``page``, in page order."""
    text = (ROOT / page).read_text()
    return [CodeBlock(page, text.count("\n", 0, m.start()) + 2, m.group(1), m.group(2))
            for m in _FENCE.finditer(text) if m.group(1) in ("python", "bash")]


def section_code(page: str, heading: str) -> list[str]:
    """The ``python`` code blocks of one ``## heading`` section of a page, in order."""
    text = (ROOT / page).read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def xhmm_commands(code: str) -> list[list[str]]:
    """The ``xhmm ...`` command lines of a bash block, as argument lists.

    Other lines (``make``, ``pip install``, ``python -c ...``) set up an
    environment and are not run.
    """
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "xhmm":
            commands.append([sys.executable, "-m", "xhmm", *words[1:]])
    return commands


def run_page(page: str, folder: Path, namespace: dict | None = None) -> dict:
    """Run every block of ``page`` in order, in ``folder``, in one namespace.

    Python blocks are executed; the ``xhmm`` lines of bash blocks run as
    ``python -m xhmm`` in a subprocess and must exit with status 0. A block
    that imports non_local_detector (:data:`NLD_IMPORT`) is skipped.
    Returns the namespace.
    """
    namespace = {"__name__": "__docs__"} if namespace is None else namespace
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    previous = Path.cwd()
    os.chdir(folder)
    try:
        for block in code_blocks(page):
            if NLD_IMPORT.search(block.code):
                continue
            if block.language == "python":
                exec(compile(block.code, block.where, "exec"), namespace)
                continue
            for command in xhmm_commands(block.code):
                done = subprocess.run(command, capture_output=True, text=True, env=env,
                                      timeout=300)
                assert done.returncode == 0, (
                    f"{block.where}: {shlex.join(command[2:])} exited {done.returncode}:\n"
                    f"{done.stderr[-2000:]}")
    finally:
        os.chdir(previous)
    return namespace


def migrating_namespace(det) -> dict:
    """What MIGRATING.md's blocks take as given, from a (fake) fitted detector ``det``.

    The arguments of ``det.predict`` (``time``, ``position_time``,
    ``position``, ``spike_times``, a few positions NaN) and those of
    non_local_detector's ``chunked_filter_smoother`` in "The call", which
    are over the interior bins.
    """
    from fake_detector import nld_transition

    import xhmm

    n_time = 60
    time = np.arange(n_time) / 500.0
    n_dims = det.environments[0].place_bin_centers_.shape[1]
    position = np.column_stack([np.linspace(0, 15, n_time), np.linspace(0, 8, n_time)])
    position = position[:, :n_dims]
    position[[3, 4, 30]] = np.nan
    interior = det.is_track_interior_state_bins_
    return dict(
        det=det, time=time, position_time=time, position=position, spike_times=[],
        log_likelihoods=det.compute_log_likelihood(time), is_track_interior=interior,
        state_bins_index=xhmm.transitions.from_non_local_detector(det).state_bins,
        transition=nld_transition(det), initial=det.initial_conditions_[interior],
        state_ind=det.state_ind_[interior], log_likelihood_args=(time, position, []),
        n_interior_bins=int(interior.sum()),
    )


def run_migrating_example(namespace: dict) -> dict:
    """Execute MIGRATING.md's "From a fitted detector" blocks in ``namespace``."""
    blocks = section_code("MIGRATING.md", "From a fitted detector")
    assert len(blocks) == 3
    for block in blocks:
        exec(compile(block, "MIGRATING.md", "exec"), namespace)
    return namespace
