"""gvisor machines on the docker provider, with the real engine and its real ``runsc`` runtime
(``./run test`` registers it: docs/runtimes.md "Docker"): the machine's container runs on
gVisor's kernel, its processes are none of the host's, root inside is refused by name, and a warm
pool of runc containers never stands in for it; a namespaces machine beside it stays runc.

One stack for the module (tests/gvisor_stack.py, NATS on the Docker machines' gateway), its
containers removed when it ends (tests/attack_stack.py); each test makes machines of its own on
it (one is stopped, one forked), but the two that only act inside one under names of their own
share it (`machine`). The test of an engine that cannot run the platform's runsc takes a stack
of its own: its platform is a setting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
import pytest_asyncio

from base.tokenfd import SUDO_SOCKET
from contracts.errors import NotSupported
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from fleet.up import UpOptions
from fleet.up.stack import check_sandbox
from providers.docker import LABEL_POOL, MACHINE_HOME
from providers.docker.code import TOKEN_FILE
from tests.attack_stack import attack_stack
from tests.conftest import running_stack
from tests.docker_env import (
    docker_gateway,
    docker_image,
    home_of,
    inspect,
    nats_server,
    remove_containers,
)
from tests.gvisor_stack import gvisor_settings
from tests.integration.test_gvisor import host_cmdlines, host_processes_of
from tests.integration.test_warm_pool import docker_pooled

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
# remove_containers: the tests run in the Docker engine's lanes (tests/conftest.py); the module's
# stack removes its containers itself.
pytestmark = pytest.mark.usefixtures("remove_containers")
#: The module's event loop, for the tests on its stack.
on_the_modules_stack = pytest.mark.asyncio(loop_scope="module")

#: A daemon on ptrace traps every syscall: on a loaded host its answers take seconds.
READY_S = 240


@pytest.fixture(scope="module")
def stack_settings(
    tmp_path_factory: pytest.TempPathFactory, docker_image: tuple[str, str]
) -> Iterator[Settings]:
    """A docker warm pool of one (runc containers): a gvisor create must never get one."""
    with gvisor_settings(tmp_path_factory.mktemp("docker-gvisor"), docker_image[0],
                         warm_pool="docker=1", warm_pool_min_available_mb=0,
                         rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(stack_settings: Settings) -> AsyncIterator[FleetClient]:
    """The module's stack: no test stops it, restarts a service or changes its settings."""
    async with attack_stack(stack_settings) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def machine(stack: FleetClient) -> str:
    """A docker gvisor machine for the tests that only act inside it as its user, under names
    of their own: none finds what another made."""
    return await made(stack, "gv-docker-shared", "gvisor")


async def made(stack: FleetClient, name: str, runtime: str) -> str:
    inst = await stack.create_instance(name)
    created = await stack.create_machine(inst.id, "docker", runtime=runtime)  # type: ignore[arg-type]
    got = await stack.wait_for(created.id, ("ready", "failed"), timeout_s=READY_S)
    assert got.status is MachineStatus.READY, got.status_reason
    return created.id


@pytest.mark.timeout(900)
@on_the_modules_stack
async def test_a_docker_gvisor_machine_runs_on_gvisors_kernel_never_in_a_pooled_runc_container(
    stack: FleetClient, stack_settings: Settings
) -> None:
    slot = await docker_pooled(stack_settings)  # a runc container waits, ready to be claimed
    mid = await made(stack, "gv-docker", "gvisor")
    got = await stack.get_machine(mid)
    assert (got.runtime, got.runtime_platform) == ("gvisor", "ptrace")
    info = await inspect(mid)
    assert info["HostConfig"]["Runtime"] == "runsc", info["HostConfig"]
    assert not (info["Config"]["Labels"] or {}).get(LABEL_POOL)  # its own, never the pool's
    assert slot not in info["Config"]["Hostname"]

    kernel = await stack.exec(mid, ["dmesg"], timeout_s=60)
    assert "gVisor" in kernel.stdout, kernel
    user = await stack.exec(mid, ["id", "-un"], timeout_s=60)
    assert (user.exit_code, user.stdout) == (0, "fleet\n"), user  # its own uid, named
    # The daemon's token is root's (of gVisor's kernel): the machine's user cannot read it.
    token = await stack.exec(mid, ["cat", TOKEN_FILE], timeout_s=60)
    assert token.exit_code != 0, token
    assert "Permission denied" in token.stderr, token
    # Its first process is root of gVisor's kernel, with the container's three capabilities
    # of it (CAP_KILL, CAP_SETGID, CAP_SETUID), no more.
    caps = await stack.exec(mid, ["grep", "CapEff", "/proc/1/status"], timeout_s=60)
    assert caps.stdout.split() == ["CapEff:", "00000000000000e0"], caps
    # A command that stays: neither it nor the daemon is a process of the host; runsc's own
    # processes stand for the container.
    marker = "sleep 617.41"
    await stack.start_process(mid, marker.split())
    inside = await stack.exec(mid, ["ps", "-eo", "args"], timeout_s=60)
    assert marker in inside.stdout, inside
    assert "daemon.supervise" in inside.stdout, inside
    assert marker not in "\n".join(host_cmdlines())
    assert not host_processes_of(mid)
    assert [c for c in host_cmdlines() if "runsc" in c and info["Id"] in c]

    # Beside it, a namespaces machine on the same engine stays runc, and never root.
    other = await made(stack, "ns-docker", "namespaces")
    assert (await inspect(other))["HostConfig"]["Runtime"] == "runc"
    assert "gVisor" not in (await stack.exec(other, ["cat", "/proc/version"])).stdout
    with pytest.raises(NotSupported) as refused:
        await stack.exec(other, ["id", "-u"], user="root")
    assert refused.value.data == {"runtime": "namespaces", "user": "root"}
    # Its memory is not kept on this provider: a pause is refused by name.
    with pytest.raises(NotSupported) as no_pause:
        await stack.pause_machine(mid)
    assert no_pause.value.data == {"runtime": "gvisor", "provider": "docker"}
    assert (await stack.get_machine(mid)).status is MachineStatus.READY


def test_fleet_up_refuses_docker_gvisor_unless_the_engine_runs_runsc_as_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``./run test`` registered the engine's runsc for ptrace; a platform it was not registered
    for is refused by name, with how to register it."""
    assert check_sandbox(UpOptions(provider="docker", runtime="gvisor")) is None
    monkeypatch.setenv("FLEET_GVISOR_PLATFORM", "kvm")
    why = check_sandbox(UpOptions(provider="docker", runtime="gvisor"))
    assert why is not None
    assert "--platform=kvm" in why
    assert "daemon.json" in why
    assert "refusing" in why


@pytest.fixture
def kvm_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, gvisor_platform="kvm")


async def test_a_docker_gvisor_machine_the_engine_cannot_run_as_asked_fails_by_name(
    kvm_settings: Settings,
) -> None:
    """The engine's runsc runs ptrace, the platform asks kvm: the machine fails at its start,
    naming what to register; no container of it is made, on runc or otherwise."""
    async with running_stack(kvm_settings) as stack:
        inst = await stack.create_instance("gv-kvm")
        created = await stack.create_machine(inst.id, "docker", runtime="gvisor")
        got = await stack.wait_for(created.id, ("ready", "failed"), timeout_s=READY_S)
        assert got.status is MachineStatus.FAILED
        assert "--platform=kvm" in got.status_reason, got.status_reason
        assert "runsc" in got.status_reason
        assert await inspect(created.id) is None


@pytest.mark.timeout(900)
@on_the_modules_stack
async def test_a_fork_of_a_docker_gvisor_machine_runs_on_gvisor_with_its_sources_home(
    stack: FleetClient,
) -> None:
    """A fork (its home, without memory) keeps its source's runtime: its container names
    runsc too, never runc; forking with memory is refused by the provider's name."""
    mid = await made(stack, "gv-fork", "gvisor")
    wrote = await stack.exec(mid, ["sh", "-c", "echo kept > notes.txt"], timeout_s=60)
    assert wrote.exit_code == 0, wrote
    with pytest.raises(NotSupported) as refused:
        await stack.fork_machine(mid, memory=True)
    assert refused.value.data == {"runtime": "gvisor", "provider": "docker"}
    [fork] = await stack.fork_machine(mid)
    assert fork.runtime == "gvisor"
    got = await stack.wait_for(fork.id, ("ready", "failed"), timeout_s=READY_S)
    assert got.status is MachineStatus.READY, got.status_reason
    assert (await inspect(fork.id))["HostConfig"]["Runtime"] == "runsc"
    assert "gVisor" in (await stack.exec(fork.id, ["dmesg"], timeout_s=60)).stdout
    assert (await stack.exec(fork.id, ["cat", "notes.txt"], timeout_s=60)).stdout == "kept\n"
    with pytest.raises(NotSupported):  # its source's rule: no root on this provider
        await stack.exec(fork.id, ["id", "-u"], timeout_s=60, user="root")


@pytest.mark.timeout(900)
@on_the_modules_stack
async def test_a_docker_gvisor_machine_stopped_and_started_is_gvisor_again_with_its_home(
    stack: FleetClient,
) -> None:
    mid = await made(stack, "gv-stop", "gvisor")
    wrote = await stack.exec(mid, ["sh", "-c", "echo kept > notes.txt"], timeout_s=60)
    assert wrote.exit_code == 0, wrote
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=120)
    await stack.start_machine(mid)
    got = await stack.wait_for(mid, ("ready", "failed"), timeout_s=READY_S)
    assert got.status is MachineStatus.READY, got.status_reason
    assert (await inspect(mid))["HostConfig"]["Runtime"] == "runsc"
    assert (await stack.exec(mid, ["cat", "notes.txt"], timeout_s=60)).stdout == "kept\n"
    assert "gVisor" in (await stack.exec(mid, ["dmesg"], timeout_s=60)).stdout


@pytest.mark.timeout(900)
@on_the_modules_stack
async def test_a_docker_gvisor_machine_has_no_sudo_for_its_roots_files_are_the_hosts(
    stack: FleetClient, machine: str
) -> None:
    """Root inside writes its files in the machine's volumes as the host's uid 0 on this
    provider (docs/limitations.md): neither the ``sudo`` program nor its broker's socket is
    there for the machine's processes to reach root through."""
    mid = machine
    sudo = await stack.exec(mid, ["sh", "-c", "sudo id -u"], timeout_s=60)
    assert sudo.exit_code != 0, sudo
    assert sudo.stdout == "", sudo
    broker = await stack.exec(mid, ["sh", "-c", f"test -e {SUDO_SOCKET}"], timeout_s=60)
    assert broker.exit_code != 0, broker
    assert (await stack.exec(mid, ["id", "-un"], timeout_s=60)).stdout == "fleet\n"


@pytest.mark.timeout(900)
@on_the_modules_stack
async def test_root_in_a_docker_gvisor_machine_is_refused_its_home_never_the_hosts_roots(
    stack: FleetClient, machine: str
) -> None:
    """The engine's runsc maps no user namespace and its gofer is the host's root: a file root
    inside wrote in the home volume would be the host's uid 0, a set-user-ID one of the host's
    root among them. So root is refused by name, and nothing in the volume is root's."""
    mid = machine
    made_pub = await stack.exec(mid, ["sh", "-c", "chmod 0755 ~ && mkdir -m 0777 ~/pub"])
    assert made_pub.exit_code == 0, made_pub
    pub = f"{MACHINE_HOME}/pub"
    plant = f"cp /bin/true {pub}/t; chmod 4755 {pub}/t; touch {pub}/f"
    with pytest.raises(NotSupported) as refused:
        await stack.exec(mid, ["sh", "-c", plant], timeout_s=60, user="root")
    assert refused.value.data == {"runtime": "gvisor", "provider": "docker", "user": "root"}
    assert "host's root" in str(refused.value)
    # The same as the machine's user: its files, its uid.
    done = await stack.exec(mid, ["sh", "-c", plant], timeout_s=60)
    assert done.exit_code == 0, done
    home = await home_of(mid)
    assert (home / "pub" / "t").is_file()
    assert [str(p) for p in [home, *home.rglob("*")] if p.lstat().st_uid == 0] == []
