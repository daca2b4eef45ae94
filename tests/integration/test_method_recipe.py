"""docs/architecture.md's recipe "Add a gateway method", followed in a copy of the tree: a
method `machines.echo` is its spec (with its policy) and its handler, plus its tests; one command
regenerates the rest, and the gateway serves it through every table (scope, audit, routes,
client) with nothing else edited. A process of its own runs the copy's tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SKIP = shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "build",
                               "screenshots", "*.egg-info", ".pytest_cache", ".mypy_cache",
                               ".ruff_cache", "site")  # fmt: skip

SPEC = """

class EchoParams(Params, kw_only=True):
    machine_id: MachineId
    text: str


class Echoed(Result, kw_only=True):
    text: str


MACHINES_ECHO = MethodSpec(
    "machines.echo", EchoParams, Echoed, "Say it back.", (NotFound, Forbidden),
    scope="machines:read", reads=True,
)
"""

HANDLER = """    @handles(g.MACHINES_ECHO)
    async def machines_echo(self, p: g.EchoParams, c: Caller) -> g.Echoed:
        await self.access.machine(c, p.machine_id)
        return g.Echoed(text=p.text)

"""

TEST = """
import pytest

from fleet.client import FleetClient
from tests.fast.conftest import World


@pytest.mark.gateway_method("machines.echo")
async def test_echo_says_it_back(world: World, fleet: FleetClient) -> None:
    m = await world.ready_machine()
    assert await world.rpc("machines.echo", {"machineId": m.id, "text": "hi"}) == {"text": "hi"}
    assert (await fleet.machines_echo(m.id, "again")).text == "again"
"""


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: the recipe's anchor {old!r} moved"
    path.write_text(text.replace(old, new))


def test_a_new_method_is_its_spec_its_handler_and_its_tests(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=_SKIP, symlinks=True)
    # 1. The contract: the spec, its policy on it, in GATEWAY_METHODS.
    rpc = tree / "contracts" / "gateway_rpc.py"
    _edit(rpc, "MethodSpec, NoParams\n", "MethodSpec, NoParams, Params, Result\n")
    _edit(rpc, "\nGATEWAY_METHODS", SPEC + "\n\nGATEWAY_METHODS")
    _edit(rpc, "    *SECRETS_METHODS,\n)", "    *SECRETS_METHODS,\n    MACHINES_ECHO,\n)")
    # 2. The handler, on the object of its area.
    _edit(tree / "services" / "gateway" / "api.py", "    @handles(RPC_DISCOVER)\n",
          HANDLER + "    @handles(RPC_DISCOVER)\n")  # fmt: skip
    # 3. The tests: a fast test of it, and its sample in the rights table's walk.
    (tree / "tests" / "fast" / "test_echo.py").write_text(TEST)
    _edit(tree / "tests" / "fast" / "test_rights_table.py",
          '"machines.get": Sample(mm),', '"machines.get": Sample(mm), "machines.echo": '
          'Sample({**mm, "text": "x"}),')  # fmt: skip
    run = [sys.executable, "-m", "codegen"]
    made = subprocess.run(run, cwd=tree, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
             "tests/fast/test_echo.py", "tests/fast/test_rights_table.py",
             "tests/unit/test_people.py", "tests/unit/test_codegen.py"]  # fmt: skip
    ran = subprocess.run(tests, cwd=tree, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "passed" in ran.stdout
