"""The example notebooks execute from top to bottom (so they cannot rot)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.ipynb")))
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
