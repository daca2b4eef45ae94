"""A docker machine on gVisor (the ``gvisor`` runtime on the ``docker`` provider,
docs/runtimes.md "Docker"): the same container as a ``namespaces`` machine's, run by the
engine's ``runsc`` runtime instead of ``runc``.

Every container of a machine names its runtime (``HostConfig.Runtime``): ``runsc`` for a
gvisor machine, ``runc`` for any other, so that an engine whose default runtime is another
never runs a machine on a runtime it was not made for. Before a gvisor machine's container is
made, the engine is asked how it registered ``runsc`` (``controlplane.policy.engine_refusal``):
without it, or without the host kernel's network stack in the container's own namespace
(``--network=host``, where the machine's egress rules are), the machine is refused by name.

The machine's first process is root *of gVisor's kernel* (``as_gvisor``), as a local gvisor
machine's is (providers/gvisor/runsc.py): this runsc does not run the execute-only loader a
``namespaces`` container starts through (it reads a program to load it), so the supervisor
and the daemon start from the image's interpreter, the token is root's alone (0400), and each
daemon takes it as root, makes itself non-dumpable and becomes the machine's uid
(``DAEMON_RUN_AS_VAR``). The supervisor keeps three capabilities of gVisor's kernel only
(``CAP_SETUID``, ``CAP_SETGID``, ``CAP_KILL``); ``no-new-privileges`` stays.

Nothing runs as root in it but the supervisor (``refuse_root``): the engine's runsc has no
user namespace and its gofer is the host's root, so a file root wrote in the machine's volumes
would be the host's uid 0 (set-user-ID bit and all). So ``machines.exec {user: root}`` is
refused by name, and there is no ``sudo`` (daemon/supervision/sudo.py) (docs/limitations.md).
"""

from __future__ import annotations

from typing import Any

import aiodocker

from base.tokenfd import DAEMON_RUN_AS_VAR, LOADER_VAR
from contracts.errors import NotSupported, ProviderError
from contracts.models import GvisorPlatform
from controlplane.policy import DOCKER_RUNTIME, Placement, engine_refusal
from providers.docker.image import FLEET_LIB

#: The runtime of a container of a machine of each runtime.
ENGINE_RUNTIMES = {"gvisor": DOCKER_RUNTIME, "namespaces": "runc"}


def with_engine_runtime(config: dict[str, Any], runtime: str) -> dict[str, Any]:
    """``config`` (a machine container's) run by the engine's runtime for ``runtime``."""
    config["HostConfig"]["Runtime"] = ENGINE_RUNTIMES[runtime]
    return config


#: The supervisor's argv, then its daemon's, from the machine image's interpreter.
_PYTHON = [f"{FLEET_LIB}/python3", "-s", "-P", "-m"]
GVISOR_ARGV = [*_PYTHON, "daemon.supervise", *_PYTHON, "daemon"]
#: Root's token file: the first process, root of gVisor's kernel, reads it.
ROOT = (0, 0)


def as_gvisor(config: dict[str, Any], user: tuple[int, int]) -> dict[str, Any]:
    """A gvisor machine's container (``config``, a namespaces one's, of the machine image or a
    layer over it): its first process root of gVisor's kernel with three capabilities, each
    daemon ``user`` (uid, gid), started from the image's interpreter."""
    env = [
        e for e in config["Env"] if not e.startswith((f"{LOADER_VAR}=", f"{DAEMON_RUN_AS_VAR}="))
    ]
    # The image's own loader variable emptied: nothing starts through the execute-only loader.
    env += [f"{LOADER_VAR}=", "{}={}:{}".format(DAEMON_RUN_AS_VAR, *user)]
    config |= {"Env": env, "User": "0:0", "Entrypoint": [], "Cmd": GVISOR_ARGV}
    config["HostConfig"]["CapAdd"] = ["SETUID", "SETGID", "KILL"]
    return with_engine_runtime(config, "gvisor")


def refuse_image(machine_id: str, what: str) -> NotSupported:
    """A gvisor machine that would run an image other than the platform's machine image (a
    fork's layer is one: its source ran that image): the runtime of another starts through
    the execute-only loader."""
    return NotSupported(
        f"machine {machine_id} runs {what}, which the docker provider does not run on gvisor: "
        "use the local provider, or runtime namespaces (docs/limitations.md)",
        data={"runtime": "gvisor", "provider": "docker"},
    )


async def make_gvisor(
    docker: aiodocker.Docker, platform: GvisorPlatform, machine_id: str,
    config: dict[str, Any], place: Placement, user: tuple[int, int],
) -> None:  # fmt: skip
    """``config`` made a gvisor machine's, whose daemons are ``user``; NotSupported by name
    where the engine or the machine cannot run one."""
    if place.image is not None:
        raise refuse_image(machine_id, "an environment's image")
    await check_engine(docker, platform)
    as_gvisor(config, user)


async def check_engine(docker: aiodocker.Docker, platform: GvisorPlatform) -> None:
    """NotSupported, naming what to register, unless the engine runs gvisor machines."""
    try:
        info = await docker.system.info()
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: cannot ask the engine's runtimes: {exc.message}") from None
    why = engine_refusal(info.get("Runtimes"), platform)
    if why is not None:
        raise NotSupported(why, data={"runtime": "gvisor", "provider": "docker"})


def refuse_root(machine_id: str, c: aiodocker.containers.DockerContainer | None) -> NotSupported:
    """Why nothing runs as root in the machine's container ``c``: on ``runc`` there is no root
    for a machine; on this engine's ``runsc`` there is no user namespace and its gofer is the
    host's root, so a file root wrote in the machine's volumes would be the host's uid 0 (a
    set-user-ID file of the host's root among them)."""
    if c is None or c["HostConfig"].get("Runtime") != ENGINE_RUNTIMES["gvisor"]:
        return NotSupported(f"machine {machine_id}'s container runs on the host's kernel: "
                            "nothing runs as root in it",
                            data={"runtime": "namespaces", "user": "root"})  # fmt: skip
    return NotSupported(
        f"root in machine {machine_id} would write its home as the host's root (the engine's "
        "runsc maps no user namespace): root inside runs on the local provider's gvisor "
        "machines (docs/runtimes.md)",
        data={"runtime": "gvisor", "provider": "docker", "user": "root"},
    )
