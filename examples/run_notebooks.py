"""Execute the example notebooks and store them with clean outputs.

Each notebook runs top to bottom in a fresh kernel inside a temporary folder
(the files it writes land there and are deleted), then its outputs are
cleaned before it is written back in place:

- progress bars (tqdm's text bars on stderr, and the blank lines that
  clear them) are dropped;
- machine paths are replaced: the temporary folder by ``.``, the repository
  by ``<repo>``, the home folder by ``~``, other ``/tmp/...`` paths by
  ``<tmp>``, the user's name by ``<user>``;
- execution timestamps are removed from the cell metadata.

Usage (repository root, with xhmm importable)::

    python examples/run_notebooks.py                  # every examples/*.ipynb
    python examples/run_notebooks.py examples/quickstart.ipynb

A cell that raises stops the script with nbclient's error naming the cell,
and the notebook is left as it was.
"""

from __future__ import annotations

import argparse
import getpass
import re
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: A tqdm text bar: "name:  40%|####      | 4/10 [00:01<00:02, 3.1it/s]".
_BAR = re.compile(r"\d+%\|.*\|\s*[\d.]+[kMG]?/[\d.]+[kMG]?\s*\[")


def _replacements(scratch: Path) -> list[tuple[str, str]]:
    """``(machine string, stand-in)`` pairs, longest machine string first."""
    pairs = [(str(scratch.resolve()), "."), (str(scratch), "."), (str(ROOT), "<repo>"),
             (str(Path.home()), "~")]
    pairs = [(old, new) for old, new in pairs if old not in ("", "/")]
    pairs.sort(key=lambda pair: -len(pair[0]))
    user = getpass.getuser()
    if len(user) > 2:  # a short name would match inside other words
        pairs.append((f"/{user}/", "/<user>/"))
    return pairs


def clean_text(text: str, replacements: list[tuple[str, str]]) -> str:
    """``text`` with machine paths replaced (see the module docstring)."""
    for old, new in replacements:
        text = text.replace(old, new)
    return re.sub(r"/tmp/[\w.\-/]+", "<tmp>", text)


def _clean_output(output: dict, replacements: list[tuple[str, str]]) -> dict | None:
    """The output cleaned, or None to drop it (a progress bar)."""
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        if output.get("name") == "stderr":  # bars, and the blank lines that clear them
            kept = [line for line in re.split(r"[\r\n]", text)
                    if line.strip() and not _BAR.search(line)]
            if not kept:
                return None
            text = "\n".join(kept) + "\n"
        output["text"] = clean_text(text, replacements)
        return output
    for mime, value in output.get("data", {}).items():
        if isinstance(value, str) and not mime.startswith("image/"):
            output["data"][mime] = clean_text(value, replacements)
    return output


def clean(notebook, scratch: Path) -> None:
    """Clean every output of ``notebook`` in place."""
    replacements = _replacements(scratch)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs = [_clean_output(out, replacements) for out in cell.outputs]
        cell.outputs = [out for out in outputs if out is not None]


def run(path: Path, timeout: int = 600) -> None:
    """Execute the notebook at ``path`` in a temporary folder and write it back cleaned."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="xhmm-notebook-") as scratch:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": scratch}})
        client.execute()
        clean(notebook, Path(scratch))
    nbformat.write(notebook, path)


def main() -> None:
    """Run the notebooks named on the command line (default: all examples)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted(HERE.glob("*.ipynb")))
    args = parser.parse_args()
    for path in args.notebooks:
        run(path)
        print(f"executed and cleaned {path}")


if __name__ == "__main__":
    main()
