"""The package's layout: documented where it is, and free of import cycles.

``docs/design.md`` (its module map) and README's layout table must name
only modules that exist and, between them, every module of the package
(a folder entry such as ``xhmm/cli/`` covers the modules below it). The
import graph of ``xhmm/`` (every ``import``, at module level or inside a
function) must have no cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "xhmm"
NAMED = re.compile(r"`(xhmm/[\w/]*(?:\.py|/))`")


def _modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py"))


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _named(doc: str, heading: str) -> set[str]:
    return set(NAMED.findall(_section((ROOT / doc).read_text(), heading)))


@pytest.mark.parametrize("doc, heading", [("docs/design.md", "## Module map"),
                                          ("README.md", "## Layout")])
def test_every_named_module_exists_and_every_module_is_named(doc, heading):
    named = _named(doc, heading)
    assert named, f"no module named in {doc} {heading}"
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert not missing, f"{doc} names modules that do not exist: {missing}"
    folders = tuple(name for name in named if name.endswith("/"))
    unnamed = [m for m in _modules() if m not in named and not m.startswith(folders)]
    assert not unnamed, f"{doc} {heading} does not name: {unnamed}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """The xhmm modules ``path`` imports, wherever in the file the import stands."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("xhmm"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("xhmm"):
                target = node.module
            else:
                continue
            submodules = {f"{target}.{alias.name}" for alias in node.names}
            found.update(m for m in submodules if _exists(m))
            if node.module or not all(_exists(m) for m in submodules):
                found.add(target)
    if "pkgutil.iter_modules(__path__)" in path.read_text():  # imports its whole package
        found.update(_module_name(p) for p in path.parent.glob("*.py") if p != path)
    return {m for m in found if _exists(m) and m != name}


def test_no_import_cycle():
    graph = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    # Importing a submodule runs its packages' __init__ first; an edge *to* a
    # parent package is what could close a cycle, so all edges count.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles in xhmm/: {cycles}"


def test_the_cycle_check_sees_function_level_imports(tmp_path, monkeypatch):
    """The check above must fail on a cycle hidden inside a function."""
    package = tmp_path / "xhmm"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import f\n")
    (package / "b.py").write_text("def f():\n    from .a import g\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle()
