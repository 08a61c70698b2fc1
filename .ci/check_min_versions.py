"""Check that .ci/min-versions.txt pins every floor of pyproject.toml exactly.

Every runtime dependency must be pinned at its ">=" floor; a package of an
extra (plot, test, ...), where pinned, too. Otherwise the minimum-versions cell would test
versions other than the lowest ones the ranges allow.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def floor(req: Requirement) -> str | None:
    return next((s.version for s in req.specifier if s.operator == ">="), None)


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / ".ci" / "min-versions.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            pins[canonicalize_name(req.name)] = spec.version
    errors = []
    extras = [t for group in project["optional-dependencies"].values() for t in group]
    for text, required in [(t, True) for t in project["dependencies"]] + [
            (t, False) for t in extras]:
        req = Requirement(text)
        name, low = canonicalize_name(req.name), floor(req)
        if name not in pins:
            if required:
                errors.append(f"{req.name}: not pinned")
        elif low is None:
            errors.append(f"{req.name}: pinned, but pyproject.toml gives no >= floor")
        elif Version(pins[name]) != Version(low):
            errors.append(f"{req.name}: pinned {pins[name]}, floor is {low}")
    for error in errors:
        print(f".ci/min-versions.txt vs pyproject.toml: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
