"""The platform's runtime in a docker machine of any image (an environment's).

The daemon is the platform's, never the image's: the machine image's ``/usr`` (its Python, libc
and the execute-only loader copy) and its daemon libraries (``/opt/fleet/lib``) are copied once,
per machine image, into two volumes, which a machine mounts read-only under ``RUNTIME_DIR``.
The supervisor and the daemon start through that loader with ``--library-path`` (the image's
own ``/lib`` and ``ld.so.cache`` are never read, so an image with no libc at all works); Python
finds its prefix from its own path. Nothing is installed into the image, and nothing of the
runtime reaches the environment of the machine's commands: no ``LD_LIBRARY_PATH``, no
``PYTHONHOME``; the daemon drops ``PYTHONPATH`` and ``RUNTIME_LIBS_VAR`` for them.

A volume is filled by the engine's copy-up: a container of the machine image, created (never
started) with the empty volume mounted over the directory, gets the volume filled with it.
The home volume of a new machine is filled so too, from the machine image's home (owned by
uid 1000, whatever users the environment's image has), and given to the machine's user (its own
host uid, providers/docker/users.py, or a devcontainer's ``remoteUser``: ``give_new_home``).
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp

from base.loader import LIBRARY_FLAGS
from base.tasks import finished
from base.tokenfd import LOADER_VAR, RUNTIME_LIBS_VAR
from contracts.errors import ProviderError
from providers.docker.image import LOADER, MACHINE_HOME, MACHINE_UID

RUNTIME_DIR = "/run/fleet/runtime"
#: What of the machine image is brought in: (its directory, where the machine has it).
_PARTS = (("/usr", f"{RUNTIME_DIR}/usr"), ("/opt/fleet/lib", f"{RUNTIME_DIR}/lib"))
_PYTHON_LINK = posixpath.join(posixpath.dirname(LOADER), "python3")


@dataclass(frozen=True)
class Runtime:
    volumes: tuple[tuple[str, str], ...]  # (volume, target)
    #: The interpreter's path in the machine image (``/usr/bin/python3.11``, say).
    python: str

    def mounts(self) -> list[dict[str, Any]]:
        return [
            {"Type": "volume", "Source": vol, "Target": target, "ReadOnly": True,
             "VolumeOptions": {"NoCopy": True}}
            for vol, target in self.volumes
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        prefix = posixpath.dirname(posixpath.dirname(self.python))
        libs = [f"{RUNTIME_DIR}{prefix}/lib", f"{RUNTIME_DIR}/usr/lib/x86_64-linux-gnu"]
        return {
            "PYTHONPATH": f"{RUNTIME_DIR}/lib",
            "PYTHONDONTWRITEBYTECODE": "1",
            LOADER_VAR: RUNTIME_DIR + LOADER,
            RUNTIME_LIBS_VAR: ":".join(dict.fromkeys(libs)),
            "HOME": MACHINE_HOME,
            "FLEET_HOME": MACHINE_HOME,
            "FLEET_SANDBOXED": "1",
        }

    def argv(self) -> list[str]:
        """The supervisor's argv, then its daemon's (``daemon.supervise`` takes the rest)."""
        env = self.env()
        one = [env[LOADER_VAR], *LIBRARY_FLAGS, "--library-path", env[RUNTIME_LIBS_VAR],
               RUNTIME_DIR + self.python, "-s", "-P", "-m"]  # fmt: skip
        return [*one, "daemon.supervise", *one, "daemon"]


class RuntimeVolumes:
    """The runtime's volumes on one engine, made once per machine image."""

    def __init__(self, docker: aiodocker.Docker) -> None:
        self.docker = docker
        self._lock = asyncio.Lock()
        self._known: dict[str, Runtime] = {}

    async def ensure(self, machine_image: str) -> Runtime:
        async with self._lock:
            if machine_image not in self._known:
                self._known[machine_image] = await self._make(machine_image)
            return self._known[machine_image]

    async def _make(self, machine_image: str) -> Runtime:
        key = (await self.docker.images.inspect(machine_image))["Id"].removeprefix("sha256:")
        volumes = tuple((f"fleetd-runtime-{key[:16]}-{target.rsplit('/', 1)[-1]}", target)
                        for _, target in _PARTS)  # fmt: skip
        mounts = [(vol, src) for (vol, _), (src, _) in zip(volumes, _PARTS, strict=True)]
        python = await copy_up(self.docker, machine_image, mounts, read_link=_PYTHON_LINK)
        return Runtime(volumes, python)


async def copy_up(
    docker: aiodocker.Docker, image: str, mounts: list[tuple[str, str]], read_link: str = ""
) -> str:
    """Fill each (volume, directory) that is new or empty with ``image``'s directory (the
    engine copies it up when the container is created); the target of the symbolic link
    ``read_link`` in ``image`` ('' when not asked)."""
    config: dict[str, Any] = {
        "Image": image, "Cmd": ["true"], "NetworkDisabled": True,
        "HostConfig": {"Mounts": [{"Type": "volume", "Source": vol, "Target": target}
                                  for vol, target in mounts]},
    }  # fmt: skip
    async with helper_container(docker, config, f"fill {mounts}") as helper:
        return await _link_target(helper, read_link) if read_link else ""


@contextlib.asynccontextmanager
async def helper_container(
    docker: aiodocker.Docker, config: dict[str, Any], what: str
) -> AsyncIterator[aiodocker.containers.DockerContainer]:
    """A container of ``config`` for one job of the platform's, removed after it; the engine's
    refusal, at its creation or during the job, is ``ProviderError`` ("cannot ``what``")."""
    try:
        helper = await created(docker, config)
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: cannot {what}: {exc.message}") from None
    try:
        yield helper
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: cannot {what}: {exc.message}") from None
    finally:
        await _removed(helper)


async def _removed(helper: aiodocker.containers.DockerContainer) -> None:
    """``helper`` removed. A cancellation that comes meanwhile goes on only once it is gone:
    a shielded removal alone let it go on at once, and the caller's cleanup that came next
    found the helper's volumes still in use (a pool slot's home left behind)."""
    await finished(helper.delete(force=True))


async def created(docker: aiodocker.Docker, config: dict[str, Any],
                  name: str | None = None) -> aiodocker.containers.DockerContainer:  # fmt: skip
    """A container of ``config``, made. A caller cancelled meanwhile is not left with one the
    engine makes after it gave up (its volumes would be in use, and made again unlabelled):
    the engine's answer is awaited, and what it made removed, before the cancellation goes on."""
    making = asyncio.ensure_future(docker.containers.create(config, name=name))
    try:
        return await asyncio.shield(making)
    except asyncio.CancelledError:
        with contextlib.suppress(aiodocker.DockerError, aiohttp.ClientError, OSError):
            await (await making).delete(force=True)
        raise


async def _link_target(c: aiodocker.containers.DockerContainer, path: str) -> str:
    try:
        tar: tarfile.TarFile = await c.get_archive(path)  # type: ignore[no-untyped-call]
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: the machine image has no {path}: {exc.message}") from None
    with tar:
        member = tar.getmembers()[0]
    if not member.issym() or not member.linkname.startswith("/"):
        raise ProviderError(f"docker: {path} in the machine image is not an absolute link")
    return member.linkname


async def give_new_home(
    docker: aiodocker.Docker, image: str, volume: str, user: tuple[int, int]
) -> None:
    """A home volume just made, filled with the machine image's home (uid 1000's) and given to
    ``user``, the machine's (its own uid, or a devcontainer's ``remoteUser``)."""
    await copy_up(docker, image, [(volume, MACHINE_HOME)])
    if user != (MACHINE_UID, MACHINE_UID):
        await give_volume(docker, image, volume, MACHINE_HOME, user)


async def give_volume(
    docker: aiodocker.Docker, image: str, volume: str, target: str, user: tuple[int, int]
) -> None:
    """Everything in ``volume`` to ``user`` (uid, gid): ``chown -R`` (which follows no link) in
    a container of ``image``, the platform's machine image, with the volume alone mounted at
    ``target``, no network and only the capabilities chown needs. Only for a volume just
    filled from that image: the platform's own files, never a machine's."""
    uid, gid = user
    config: dict[str, Any] = {
        "Image": image, "User": "0:0", "Entrypoint": ["chown", "-R", f"{uid}:{gid}", target],
        "Cmd": [], "NetworkDisabled": True,
        "HostConfig": {
            "Mounts": [{"Type": "volume", "Source": volume, "Target": target}],
            "NetworkMode": "none", "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"],
            # A directory of uid 1000's that is 0700 is passed with DAC_READ_SEARCH, no more.
            "CapDrop": ["ALL"], "CapAdd": ["CHOWN", "DAC_READ_SEARCH"],
        },
    }  # fmt: skip
    async with helper_container(docker, config, f"give {volume} to {uid}:{gid}") as helper:
        await helper.start()
        done = await helper.wait(timeout=120)
        if done.get("StatusCode") != 0:
            # Its last lines alone (the engine cuts a line at 16 KiB): read whole, a log is
            # as long as the tool made it.
            said = "".join(await helper.log(stdout=True, stderr=True, tail="20")).strip()[-300:]
            raise ProviderError(f"docker: chown of {volume} to {uid}:{gid} failed: {said}")
