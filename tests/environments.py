"""Images for environment tests, made with no registry: a static busybox (Debian's
busybox-static, which ./run test installs) in a root file system of its own, ``docker
import``-ed under a tag named by its content (made once per engine, never removed)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import msgspec
import pytest
from aiohttp import ClientWebSocketResponse

from contracts.gateway.environments import Environment
from contracts.gateway.types import RefreshCodeResult
from contracts.status import MachineStatus
from controlplane.settings import Settings
from environments import cache
from environments.shared_builds import SharedBuilds
from fleet.cli.tunnel import open_tunnel
from fleet.client import FleetClient
from tests.waiters import wait_until

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "echo", "id", "env", "mkdir", "rm", "test", "httpd", "sleep", "nc",
           "mv", "ln", "mkfifo")  # fmt: skip


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    async with aiodocker.Docker() as d:
        yield d


@pytest.fixture
async def store(docker: aiodocker.Docker, tmp_path: Path) -> AsyncIterator[cache.BuildCache]:
    """A build cache under a repository of its own; what it made is removed after."""
    repo = f"fleetd-env-test-{uuid.uuid4().hex[:10]}"
    yield cache.BuildCache(state_dir=tmp_path / "state", max_bytes=0, repository=repo,
                           feature_timeout_s=1.0)  # fmt: skip
    for image in await docker.images.list():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{repo}:"):
                await docker.images.delete(tag)


@pytest.fixture
async def shared() -> AsyncIterator[SharedBuilds]:
    """The builds and checkouts a test's calls share, as a process's do; a build still running
    at the test's end is cancelled and joined."""
    async with SharedBuilds() as builds:
        yield builds


def busybox_rootfs(extra: dict[str, bytes] | None = None) -> bytes:
    """A root file system with nothing but a static busybox: no libc, no Python, no
    /etc/passwd; /opt is everyone's to write in (a local machine runs as a uid of its own).
    ``extra``: more files (path: content), in directories the root already has."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("opt", 0o1777), ("tmp", 0o1777)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for path, content in (extra or {}).items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(content), 0o755, 0
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


async def busybox_image(
    docker: aiodocker.Docker, extra: dict[str, bytes] | None = None, env: str = ""
) -> str:
    """The busybox image's tag (with ``extra`` files, and ``env``'s ``NAME=value`` in its
    config), imported when this engine lacks it."""
    body = busybox_rootfs(extra)
    named = hashlib.sha256(body + env.encode()).hexdigest()[:12]
    tag = f"fleet-test-busybox:{named}"
    try:
        await docker.images.inspect(tag)
        return tag
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise
    repo, _, version = tag.partition(":")
    params = {"fromSrc": "-", "repo": repo, "tag": version}
    if env:
        params["changes"] = f"ENV {env}"
    async with docker._query("images/create", "POST", params=params, data=io.BytesIO(body),
                             headers={"Content-Type": "application/x-tar"}) as resp:  # fmt: skip
        answer = await resp.text()
    assert '"error"' not in answer, answer
    return tag


async def ready(stack: FleetClient, instance_id: str, provider: str) -> str:
    """A new machine of the instance, ready."""
    m = await stack.create_machine(instance_id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason
    return m.id


async def out(stack: FleetClient, mid: str, *argv: str) -> str:
    """What ``argv`` printed; it must succeed."""
    r = await stack.exec(mid, list(argv), timeout_s=30)
    assert r.exit_code == 0, (argv, r.stderr)
    return r.stdout


async def read_until(ws: ClientWebSocketResponse, marker: bytes) -> bytes:
    """The WebSocket's bytes until ``marker`` came (or it closed)."""
    seen = b""
    async for msg in ws:
        seen += msg.data if isinstance(msg.data, bytes) else b""
        if marker in seen:
            break
    await ws.close()
    return seen


async def stop_start_keeps_what_it_wrote(stack: FleetClient, mid: str, provider: str) -> None:
    """A file written outside the home is there after a stop and start, and not in the
    instance's next machine (after archive)."""
    await out(stack, mid, "sh", "-c", "echo kept > /opt/tool")
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    await stack.start_machine(mid)
    assert (await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)).status.value == "ready"
    assert await out(stack, mid, "cat", "/opt/tool") == "kept\n"
    instance_id = (await stack.archive_machine(mid)).instance_id
    again = await ready(stack, instance_id, provider)
    assert (await stack.exec(again, ["test", "-e", "/opt/tool"])).exit_code == 1


async def refresh_code(stack: FleetClient, mid: str) -> RefreshCodeResult:
    """machines.refreshCode, then the wait for the daemon it restarts to report in again
    (until then the machine's daemon answers no call: 1502)."""
    refreshed = await stack.refresh_code(mid)
    sha = refreshed.to_git_sha
    assert sha

    async def runs_it() -> bool:
        return (await stack.get_machine(mid)).daemon_git_sha == sha

    await wait_until(runs_it, timeout=30, every=0.2)
    return refreshed


async def refresh_code_runs(stack: FleetClient, mid: str) -> None:
    """machines.refreshCode: the daemon re-executes into the platform's code (through the
    runtime's loader) and answers again."""
    await refresh_code(stack, mid)
    assert await out(stack, mid, "echo", "after") == "after\n"


async def files_terminal_and_port(stack: FleetClient, mid: str, tmp_path: Path) -> None:
    """A file uploaded and downloaded, a terminal's output, a port reached through a tunnel
    (busybox's httpd, on the machine's loopback)."""
    (tmp_path / "up.txt").write_text("uploaded\n")
    await stack.upload(mid, tmp_path / "up.txt", "up.txt")
    assert await out(stack, mid, "cat", "up.txt") == "uploaded\n"
    await stack.download(mid, "up.txt", tmp_path / "down.txt")
    assert (tmp_path / "down.txt").read_text() == "uploaded\n"
    opened = await stack.open_session(mid, ["sh", "-c", "echo in-a-terminal; sleep 30"])
    ws = await stack.attach_session(mid, opened.session_id)
    assert b"in-a-terminal" in await read_until(ws, b"in-a-terminal")
    await out(stack, mid, "sh", "-c", "mkdir -p www && echo served > www/index.html")
    await stack.start_process(mid, ["httpd", "-f", "-p", "127.0.0.1:8123", "-h", "www"], tag="web")

    async def listening() -> bool:  # machines.ports reads the machine's /proc/net
        return 8123 in [p.port for p in (await stack.machine_ports(mid)).ports]

    await wait_until(listening, timeout=30)
    tunnel = await open_tunnel(stack, mid, 8123)
    await tunnel.send_bytes(b"GET /index.html HTTP/1.0\r\n\r\n")
    assert b"served" in await read_until(tunnel, b"served")


class BusyboxPool:
    """A test class's stack keeps one docker machine of the environment {image: busybox} warm
    (``FLEET_WARM_POOL=docker@IMAGE=1``)."""

    @pytest.fixture
    async def busybox(self) -> str:
        async with aiodocker.Docker() as docker:
            return await busybox_image(docker)

    @pytest.fixture
    def stack_settings(self, settings: Settings, busybox: str) -> Settings:
        return msgspec.structs.replace(settings, warm_pool=f"docker@{busybox}=1",
                                       warm_pool_min_available_mb=0)  # fmt: skip


#: A library whose constructor records, in ``$MARKS`` (else the image's ``/opt``), who loaded
#: it: the process's ``/proc/self/status`` (its uids, gids and capabilities).
PRELOAD_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char path[512], status[8192];
    const char *dir = getenv("MARKS");
    snprintf(path, sizeof path, "%s/preloaded.%d", dir ? dir : "/opt", (int)getpid());
    int in = open("/proc/self/status", O_RDONLY), out = open(path, O_WRONLY | O_CREAT, 0644);
    ssize_t n = in < 0 ? 0 : read(in, status, sizeof status);
    if (out >= 0 && n > 0) write(out, status, (size_t)n);
}
"""
PRELOAD_LIB = "lib/fleet-test-preload.so"


def preload_library(tmp_path: Path) -> bytes:
    """``PRELOAD_C`` compiled; checked to mark a process that preloads it on this host."""
    src, lib, marks = tmp_path / "preload.c", tmp_path / "preload.so", tmp_path / "marks"
    src.write_text(PRELOAD_C)
    marks.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib, src], check=True, timeout=60)
    env = {"LD_PRELOAD": str(lib), "MARKS": str(marks), "PATH": "/usr/bin:/bin"}
    subprocess.run(["true"], env=env, check=True, timeout=30)
    assert list(marks.iterdir()), "the library marks nothing when preloaded"
    return lib.read_bytes()


async def preloading_image(docker: aiodocker.Docker, tmp_path: Path) -> str:
    """The busybox image whose ``/etc/ld.so.preload`` (and whose config's ``LD_PRELOAD``)
    names ``PRELOAD_LIB``: every dynamic program that reads them runs its constructor."""
    lib = preload_library(tmp_path)
    extra = {"etc/ld.so.preload": f"/{PRELOAD_LIB}\n".encode(), PRELOAD_LIB: lib}
    return await busybox_image(docker, extra, env=f"LD_PRELOAD=/{PRELOAD_LIB}")


async def preloading_machine(stack: FleetClient, tmp_path: Path, provider: str) -> str:
    """A ready machine of ``preloading_image``, in which the image's library never ran with
    privileges nor in the platform's processes (``assert_never_privileged``)."""
    async with aiodocker.Docker() as docker:
        tag = await preloading_image(docker, tmp_path)
    inst = await stack.create_instance(f"preload-{provider}")
    await stack.set_environment(inst.id, Environment(image=tag))
    mid = await ready(stack, inst.id, provider)
    assert_never_privileged(await preloaded_as(stack, mid))
    return mid


async def preloaded_as(stack: FleetClient, mid: str) -> list[dict[str, list[str]]]:
    """Each mark the image's library left in the machine: the ``Name``, ``Uid``, ``Gid`` and
    ``CapEff`` lines of the process that loaded it."""
    listed = await out(stack, mid, "sh", "-c", "for f in /opt/preloaded.*; do "
                       '[ -e "$f" ] && { cat "$f"; echo ===; }; done; true')  # fmt: skip
    marks = []
    for status in listed.split("===\n"):
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields:
            marks.append({k: fields[k].split() for k in ("Name", "Uid", "Gid", "CapEff")})
    return marks


def assert_never_privileged(marks: list[dict[str, list[str]]]) -> None:
    """No process that ran the image's code was root or held a capability, and none was the
    platform's (its supervisor and daemon start through its loader, ``ld.so``: they hold the
    machine's token)."""
    for mark in marks:
        assert mark["Name"] != ["ld.so"], mark
        assert "0" not in mark["Uid"], mark
        assert "0" not in mark["Gid"], mark
        assert int(mark["CapEff"][0], 16) == 0, mark
