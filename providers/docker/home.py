"""Where a stopped ``docker`` machine's home is: it has no container to find it from.

A machine's home is normally its own volume, ``fleet-<machineId>-home``. One that came from the
warm pool has the pool slot's volume (volumes cannot be renamed), so its stop records that name
in the label of an empty volume, ``fleet-<machineId>-home-ref``; its start mounts that home
again, and its archive removes both.
"""

from __future__ import annotations

import aiodocker

from contracts.errors import ProviderError
from providers.docker.code import code_volume, secret_volume
from providers.docker.image import MACHINE_HOME

#: On an empty volume per machine: ``LABEL_MACHINE`` and the name of the machine's home volume.
LABEL_HOME = "fleet.home"


def home_ref_name(machine_id: str) -> str:
    return f"fleet-{machine_id}-home-ref"


async def remember_home(
    docker: aiodocker.Docker, machine_id: str, volume: str, labels: dict[str, str]
) -> None:
    """Record a stopped machine's home volume in an empty volume of its own; ``labels``: the
    machine's and its stack's (what finds it again, and what a cleanup of the stack removes)."""
    if await stopped_home(docker, machine_id) == volume:
        return
    try:
        await docker.volumes.create(  # type: ignore[no-untyped-call]
            {"Name": home_ref_name(machine_id),
             "Labels": {**labels, LABEL_HOME: volume}}
        )  # fmt: skip
    except aiodocker.DockerError as exc:
        what = f"cannot record {machine_id}'s home"
        raise ProviderError(f"docker: {what}: {exc.message}") from None


async def stopped_home(docker: aiodocker.Docker, machine_id: str) -> str | None:
    """The home volume a stopped machine recorded (None: its own, or none recorded)."""
    try:
        vol = await docker.volumes.get(home_ref_name(machine_id))  # type: ignore[no-untyped-call]
        info = await vol.show()
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise ProviderError(f"docker: {exc.message}") from None
    label = (info.get("Labels") or {}).get(LABEL_HOME)
    return str(label) if label else None


def home_volumes(c: aiodocker.containers.DockerContainer) -> list[str]:
    """The named volume(s) a container has as its home."""
    return [m["Name"] for m in c["Mounts"] or []
            if m.get("Type") == "volume" and m.get("Destination") == MACHINE_HOME]  # fmt: skip


async def remove_volume(docker: aiodocker.Docker, name: str) -> None:
    try:
        vol = await docker.volumes.get(name)  # type: ignore[no-untyped-call]
        await vol.delete()
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise ProviderError(f"docker: volume {name}: {exc.message}") from None


async def remove_home(docker: aiodocker.Docker, name: str) -> None:
    """A home volume and the platform's volumes beside it."""
    for each in (name, code_volume(name), secret_volume(name)):
        await remove_volume(docker, each)


async def volume_exists(docker: aiodocker.Docker, name: str) -> bool:
    try:
        await (await docker.volumes.get(name)).show()  # type: ignore[no-untyped-call]
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return False
        raise ProviderError(f"docker: volume {name}: {exc.message}") from None
    return True
