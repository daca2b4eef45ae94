"""ssh into a docker machine as a user does: its SSH server (openssh-server in the image, started
at setup on the machine's loopback) reached with ``ProxyCommand='fleet machines tunnel %h 22'``,
with a key set by ``instances.setSshKeys``; a key it was not given is refused, and the server
listens on nothing but the machine's loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


def keypair(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


async def ssh(
    settings: Settings, key: Path, machine_id: str, command: str | None, *,
    program: str = "ssh", stdin: bytes | None = None,
) -> tuple[int, str]:  # fmt: skip
    """``program`` (ssh, sftp) to the machine through a tunnel: its exit code and output.
    ``command`` None: no command (a login shell, or sftp's batch), ``stdin`` what it reads."""
    proxy = f"{sys.executable} -c 'from fleet.cli.entry import main; main()' machines tunnel %h 22"
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        program, "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", f"ProxyCommand={proxy}",
        *(["-b", "-"] if program == "sftp" else []),
        f"fleet@{machine_id}", *([command] if command is not None else []),
        env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.timeout(300)  # a container and two ssh sessions, on a busy host
async def test_ssh_through_a_tunnel_into_a_docker_machine(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    allowed = keypair(tmp_path / "allowed")
    keypair(tmp_path / "stranger")
    inst = await stack.create_instance("ssh")
    await stack.set_ssh_keys(inst.id, [allowed])
    machine = await stack.create_machine(inst.id, "docker")
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=180)
    assert done.status is MachineStatus.READY, done.status_reason

    async def sshd_listens() -> bool:
        return 22 in {p.port for p in (await stack.machine_ports(machine.id)).ports}

    await wait_until(sshd_listens, timeout=30)
    code, out = await ssh(settings, tmp_path / "allowed", machine.id, "echo hello; id -u; pwd")
    assert code == 0, out
    uid = (await stack.exec(machine.id, ["id", "-u"])).stdout.strip()  # the machine's own
    assert out.splitlines()[-3:] == ["hello", uid, "/home/fleet"], out
    code, out = await ssh(settings, tmp_path / "stranger", machine.id, "echo in")
    assert code == 255, out
    assert "Permission denied" in out
    # A tracked process of the machine (restarted if it dies), on the loopback only.
    [sshd] = [p for p in await stack.list_processes(machine.id) if p.tag == "sshd"]
    assert sshd.restart == "always"
    bound = {(p.address, p.family) for p in (await stack.machine_ports(machine.id)).ports
             if p.port == 22}  # fmt: skip
    assert ("127.0.0.1", "ipv4") in bound  # and [::1] where the container has IPv6
    assert {address for address, _ in bound} <= {"127.0.0.1", "::1"}


@pytest.mark.timeout(300)  # a container and four sessions, on a busy host
async def test_an_ssh_session_gets_the_machines_environment(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    """The platform's and the instance's variables (the pushed .env) in every session, a
    command's and a login shell's, with nothing sourced; a change in the next session; sftp,
    which starts as every session does, still works."""
    key = tmp_path / "key"
    inst = await stack.create_instance("ssh-env")
    await stack.set_ssh_keys(inst.id, [keypair(key)])
    await stack.set_env("FLEET_TEST_PLATFORM_VAR", "for every instance")
    await stack.set_env("RELEASE", "1", inst.id)
    machine = await stack.create_machine(inst.id, "docker")
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=180)
    assert done.status is MachineStatus.READY, done.status_reason
    mid = machine.id

    async def sshd_listens() -> bool:
        return 22 in {p.port for p in (await stack.machine_ports(mid)).ports}

    await wait_until(sshd_listens, timeout=30)
    code, out = await ssh(settings, key, mid, "printenv FLEET_TEST_PLATFORM_VAR RELEASE HOME")
    assert code == 0, out
    assert out.splitlines()[-3:] == ["for every instance", "1", "/home/fleet"], out

    await stack.set_env("RELEASE", "2", inst.id)  # pushed to the running machine

    async def pushed() -> bool:
        return (await stack.exec(mid, ["printenv", "RELEASE"])).stdout == "2\n"

    await wait_until(pushed, timeout=30)
    code, out = await ssh(settings, key, mid, None, stdin=b"printenv RELEASE; echo $0\n")
    assert code == 0, out
    assert out.splitlines()[-2:] == ["2", "-sh"], out  # a login shell, as sshd starts one

    code, out = await ssh(settings, key, mid, None, program="sftp", stdin=b"ls .fleet/.env\n")
    assert code == 0, out
    assert out.splitlines()[-1].strip() == ".fleet/.env", out
