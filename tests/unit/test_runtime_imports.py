"""`./run up` installs fleetd's runtime dependencies alone (`pip install -e .`, no dev extras):
no module a fleetd process runs may import a package that only the dev extras (or nothing)
install. The allowed set is what the runtime's requirements bring, followed through each
installed distribution's own requirements (markers evaluated for no extra)."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
#: The packages fleetd's processes import: the services, the daemon, the CLI and what they use.
RUNTIME_PACKAGES = ("fleet", "services", "daemon", "providers", "controlplane", "base",
                    "contracts", "environments")  # fmt: skip


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions() -> set[str]:
    """fleetd's runtime requirements and theirs, transitively, by normalized name."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in metadata.requires("fleetd") or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(req.name) or []]
    return seen


def imported_top_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_runtime_module_imports_what_only_the_dev_extras_install() -> None:
    allowed = runtime_distributions()
    first_party = set(RUNTIME_PACKAGES) | {"tests", "bench", "docsite"}
    owners = metadata.packages_distributions()
    wrong: list[str] = []
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted(imported_top_names(path)):
                if name in sys.stdlib_module_names or name in first_party:
                    continue
                dists = {_norm(d) for d in owners.get(name, [])}
                if not dists & allowed:
                    why = ", ".join(sorted(dists)) or "no installed distribution"
                    wrong.append(f"{path.relative_to(ROOT)} imports {name} ({why})")
    assert wrong == []


def test_the_dev_extras_are_not_in_the_runtime_set() -> None:
    """The check above can fail: pytest (dev only) is outside what the runtime brings."""
    allowed = runtime_distributions()
    assert "pytest" not in allowed
    assert "mypy" not in allowed
    assert {"nats-py", "aiohttp", "ipykernel", "jupyter-client"} <= allowed
