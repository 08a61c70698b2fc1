"""The example notebooks execute from top to bottom (so they cannot rot).

They are committed with their outputs (``examples/run_notebooks.py`` executes
and cleans them), so the figures show where the repository is browsed; the
outputs carry no machine paths and no progress bars.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))
#: Where a machine path would start (the repository, scratch, home folders).
MACHINE_PATH = re.compile(r"/(?:work|tmp|home|root|Users|private/var)/")


@pytest.mark.parametrize("name", [  # the quick start in `make test`, every notebook in test-all
    name if name == "quickstart.ipynb" else pytest.param(name, marks=pytest.mark.slow)
    for name in NAMES])
def test_notebook_executes(name, tmp_path):
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    assert [out for out in outputs if out.get("output_type") == "error"] == []
    # progress bars in a kernel without ipywidgets: text bars, no tqdm warning
    stderr = "".join(out.get("text", "") for out in outputs if out.get("name") == "stderr")
    assert "TqdmWarning" not in stderr and "IProgress not found" not in stderr


def _texts(output) -> list[str]:
    """The text of an output (stream text, every non-image representation)."""
    texts = [output.get("text", "")]
    texts += [value for mime, value in output.get("data", {}).items()
              if isinstance(value, str) and not mime.startswith("image/")]
    return texts


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_clean_outputs(name):
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "run examples/run_notebooks.py"
    outputs = [out for cell in code for out in cell.outputs]
    assert all(out.get("output_type") != "error" for out in outputs)
    text = "\n".join(t for out in outputs for t in _texts(out))
    assert MACHINE_PATH.findall(text) == []
    assert not re.search(r"\d+%\|", text), "a progress bar was stored"
    streams = [out.get("text", "") for out in outputs if out.get("output_type") == "stream"]
    assert all(text.strip() for text in streams), "a blank stream (a cleared bar) was stored"
