"""Each package's front (its ``__init__.py``, base/lazy_front.py): what it offers, said three
times (``__all__``, its ``if TYPE_CHECKING:`` imports, the table its ``__getattr__`` reads),
the same each time, each name the very object of its module; and importing a front loads none
of its modules until a name is asked for, as importing one module of a package did before it had
a front (the CLI's start, an idle keeper, a service that needs one constant of a provider).
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("base", "contracts", "controlplane", "daemon", "environments", "fleet", "providers",
        "services")  # fmt: skip


def fronts() -> list[str]:
    found = []
    for top in TOPS:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            if "lazy_front(" in init.read_text():
                found.append(".".join(init.parent.relative_to(ROOT).parts))
    return found


Bindings = dict[str, tuple[str, str]]


def said(package: str) -> tuple[list[str], Bindings, Bindings]:
    """(``__all__``, what the TYPE_CHECKING imports bind, what the lazy table binds): each
    binding a name -> (module, the name there)."""
    tree = ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text())
    listed: list[str] = []
    typed: Bindings = {}
    table: Bindings = {}
    for node in tree.body:
        targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(node, ast.Assign) and targets == ["__all__"]:
            listed = list(ast.literal_eval(node.value))
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":  # fmt: skip
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.dump(imp)
                assert imp.module is not None
                for a in imp.names:
                    sub = f"{imp.module}.{a.name}"
                    typed[a.asname or a.name] = (
                        (sub, "") if imp.module == package else (imp.module, a.name)
                    )
            for assign in node.orelse:
                assert isinstance(assign, ast.Assign)
                assert isinstance(assign.value, ast.Call)
                for module, names in ast.literal_eval(assign.value.args[1]).items():
                    for spelled in names:
                        name, _, offered = spelled.partition(" as ")
                        table[offered or name] = (f"{package}.{module}", name)
    return listed, typed, table


FRONTS = fronts()


def test_there_are_fronts() -> None:
    assert {"providers.docker", "fleet.client", "controlplane.store",
            "services.gateway.rpc"} <= set(FRONTS)  # fmt: skip


@pytest.mark.parametrize("package", FRONTS)
def test_a_front_says_one_thing_three_times(package: str) -> None:
    listed, typed, table = said(package)
    assert listed == sorted(listed, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    assert set(listed) == set(typed)
    modules = {name for name, (_, attr) in typed.items() if attr == ""}  # public modules
    assert {n: w for n, w in typed.items() if n not in modules} == table


@pytest.mark.parametrize("package", FRONTS)
def test_each_name_a_front_offers_is_its_modules_own(package: str) -> None:
    front = importlib.import_module(package)
    _, typed, _ = said(package)
    for name, (module, attr) in typed.items():
        if attr == "":  # a public module: ``from package import name`` imports it
            assert getattr(front, name, None) in (None, sys.modules.get(module))
            sub = importlib.import_module(module)
            assert getattr(front, name) is sub, name
        else:
            assert getattr(front, name) is getattr(importlib.import_module(module), attr), name
    with pytest.raises(AttributeError):
        front.no_such_name  # noqa: B018


LOADS = """
import json, sys
before = set(sys.modules)
import {package}
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith("{package}."))))
"""


@pytest.mark.parametrize("package", FRONTS)
def test_importing_a_front_loads_none_of_its_modules(package: str) -> None:
    out = subprocess.run([sys.executable, "-c", LOADS.format(package=package)],
                         capture_output=True, text=True, timeout=60, check=True,
                         cwd=ROOT).stdout  # fmt: skip
    assert json.loads(out) == []
