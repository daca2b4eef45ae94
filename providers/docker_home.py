"""Where a stopped ``docker`` machine's home is: it has no container to find it from.

A machine's home is normally its own volume, ``fleet-<machineId>-home``. One that came from the
warm pool has the pool slot's volume (volumes cannot be renamed), so its stop records that name
in the label of an empty volume, ``fleet-<machineId>-home-ref``; its start mounts that home
again, and its archive removes both.
"""

from __future__ import annotations

import aiodocker

from contracts.errors import ProviderError

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
