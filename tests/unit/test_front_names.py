"""No package front offers a private name: what another package needs of it is public."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("base", "contracts", "controlplane", "daemon", "environments", "fleet", "providers",
        "services")  # fmt: skip


def test_no_front_lists_a_private_name() -> None:
    private = []
    for top in TOPS:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            for node in ast.parse(init.read_text()).body:
                targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
                if isinstance(node, ast.Assign) and targets == ["__all__"]:
                    names = ast.literal_eval(node.value)
                    private += [f"{init.relative_to(ROOT)}: {n}" for n in names
                                if n.startswith("_")]  # fmt: skip
    assert private == []
