"""docs/architecture.md's recipe "Add a gateway method", followed in a copy of the tree: a
method `machines.echo` is its spec (with its policy) and its handler, plus its tests; one command
regenerates the rest, and the gateway serves it through every table (scope, audit, routes,
client) with nothing else edited. A method that is one daemon method, `machines.daemonVersion`,
is its spec alone (``passes``): no handler. And "Add a host capability": a host method is its
spec and its handler, asked by the gateway's one host caller. A process of its own runs each
copy's tests."""

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

from fleet.client.client import FleetClient
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
    tree = _copy(tmp_path)
    # 1. The contract: the spec, its policy on it, in GATEWAY_METHODS.
    rpc = tree / "contracts" / "gateway" / "rpc.py"
    _edit(
        rpc,
        "MethodSpec, NoParams\n",
        "MethodSpec, NoParams, Params, Result\n",
    )
    _add_spec(rpc, SPEC, "MACHINES_ECHO")
    # 2. The handler, on the object of its area.
    _edit(tree / "services" / "gateway" / "rpc" / "api.py", "    @handles(RPC_DISCOVER)\n",
          HANDLER + "    @handles(RPC_DISCOVER)\n")  # fmt: skip
    # 3. The tests: a fast test of it, and its sample in the rights table's walk.
    _add_tests(tree, "test_echo.py", TEST, '"machines.echo": Sample({**mm, "text": "x"}),')
    _regenerate_and_test(tree, "tests/fast/test_echo.py")


PASS_THROUGH = """

MACHINES_DAEMON_VERSION = MethodSpec(
    "machines.daemonVersion", MachineRef, d.GetVersionResult, "The machine's daemon's version.",
    (NotFound, Forbidden), scope="machines:read", reads=True,
    passes=PassThrough(d.GET_VERSION, look=True),
)
"""

PASS_THROUGH_TEST = """
import pytest

from fleet.client.client import FleetClient
from tests.fast.conftest import World


@pytest.mark.gateway_method("machines.daemonVersion")
async def test_the_daemons_version_comes_through(world: World, fleet: FleetClient) -> None:
    m = await world.ready_machine()
    fake = world.daemons[m.id]
    said = {"version": fake.version, "gitSha": fake.git_sha}
    assert await world.rpc("machines.daemonVersion", {"machineId": m.id}) == said
    assert (await fleet.machines_daemon_version(m.id)).git_sha == fake.git_sha
    assert world.daemons.calls[-1].method == "daemon.getVersion"
"""


def test_a_daemon_method_passed_through_is_its_spec_and_its_tests(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    # 1. The contract: the spec, which names the daemon method it passes through to.
    _add_spec(tree / "contracts" / "gateway" / "rpc.py", PASS_THROUGH, "MACHINES_DAEMON_VERSION")
    # 2. No handler. 3. The tests.
    _add_tests(tree, "test_daemon_version.py", PASS_THROUGH_TEST,
               '"machines.daemonVersion": Sample(mm),')  # fmt: skip
    _regenerate_and_test(tree, "tests/fast/test_daemon_version.py")


HOST_SPEC = """

class ProviderNamed(Result, kw_only=True):
    provider: str


MACHINE_PROVIDER = MethodSpec(
    "host.machineProvider", HostMachineParams, ProviderNamed,
    "The provider that runs the machine on its host.", errors=(NotFound,),
)
"""

HOST_HANDLER = """    @handles(h.MACHINE_PROVIDER)
    async def machine_provider(self, p: h.HostMachineParams, _: None) -> h.ProviderNamed:
        machine, _provider = await self._own(p.machine_id)
        return h.ProviderNamed(provider=machine.provider)

"""

GATEWAY_SPEC = """

MACHINES_PROVIDER = MethodSpec(
    "machines.provider", MachineRef, h.ProviderNamed, "The provider that runs the machine.",
    (NotFound, Forbidden), scope="machines:read", reads=True,
    passes=PassThrough(h.MACHINE_PROVIDER, host=True),
)
"""

HOST_TEST = """
import pytest

from fleet.client.client import FleetClient
from tests.fast.conftest import World


@pytest.mark.gateway_method("machines.provider")
async def test_the_machines_host_names_its_provider(world: World, fleet: FleetClient) -> None:
    m = await world.ready_machine()
    said = await world.rpc("machines.provider", {"machineId": m.id})
    assert said == {"provider": m.provider}
    assert (await fleet.machines_provider(m.id)).provider == m.provider
"""


def test_a_host_capability_is_its_spec_its_handler_and_its_tests(tmp_path: Path) -> None:
    """docs/architecture.md's "Add a host capability", served through the gateway: the host
    spec and the gateway spec that passes through to it (contracts/host/rpc.py,
    contracts/gateway/rpc.py), the handler on the provisioner's part that does it
    (services/provisioner/host_rpc_server.py): three product files, nothing else edited (no
    Protocol, no client method, no dispatcher entry, no gateway handler)."""
    tree = _copy(tmp_path)
    # 1. The contracts: the host spec, in HOST_METHODS; the gateway's, passing through to it.
    methods = "\nHOST_METHODS: tuple[AnySpec, ...] = (\n"
    _edit(tree / "contracts" / "host" / "rpc.py", methods,
          f"{HOST_SPEC}\n{methods}    MACHINE_PROVIDER,\n")  # fmt: skip
    rpc = tree / "contracts" / "gateway" / "rpc.py"
    d_import = "from contracts.daemon import rpc as d\n"
    _edit(rpc, d_import, d_import + "from contracts.host import rpc as h\n")
    _add_spec(rpc, GATEWAY_SPEC, "MACHINES_PROVIDER")
    # 2. The handler, on the provisioner's part that does it. 3. The tests.
    anchor = "    @handles(h.RESTART_DAEMON)\n"
    _edit(tree / "services" / "provisioner" / "host_rpc_server.py", anchor, HOST_HANDLER + anchor)
    _add_tests(tree, "test_host_provider.py", HOST_TEST, '"machines.provider": Sample(mm),')
    _regenerate_and_test(tree, "tests/fast/test_host_provider.py")


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=_SKIP, symlinks=True)
    return tree


def _add_spec(rpc: Path, spec: str, name: str) -> None:
    """``spec`` in contracts/gateway/rpc.py, and ``name`` in GATEWAY_METHODS."""
    _edit(rpc, "\nGATEWAY_METHODS", spec + "\n\nGATEWAY_METHODS")
    text = rpc.read_text()
    start = text.index("\nGATEWAY_METHODS: tuple[AnySpec, ...] = (\n")
    end = text.index("\n)\n", start)  # the tuple's last entry, whichever it is
    rpc.write_text(f"{text[:end]}\n    {name},{text[end:]}")


def _add_tests(tree: Path, name: str, test: str, sample: str) -> None:
    """A fast test of the method, and its sample in the rights table's walk."""
    (tree / "tests" / "fast" / name).write_text(test)
    _edit(tree / "tests" / "fast" / "test_rights_table.py", '"machines.get": Sample(mm),',
          f'"machines.get": Sample(mm), {sample}')  # fmt: skip


def _regenerate_and_test(tree: Path, test: str) -> None:
    """One command regenerates the rest; then the method's test, the rights table's walk and
    the tables' own tests pass in the copy."""
    run = [sys.executable, "-m", "codegen"]
    made = subprocess.run(run, cwd=tree, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", test,
             "tests/fast/test_rights_table.py", "tests/unit/test_people.py",
             "tests/unit/test_codegen.py"]  # fmt: skip
    ran = subprocess.run(tests, cwd=tree, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "passed" in ran.stdout
