"""A docker machine on gVisor (the ``gvisor`` runtime on the ``docker`` provider,
docs/runtimes.md "Docker"): the same container as a ``namespaces`` machine's, run by the
engine's ``runsc`` runtime instead of ``runc``.

Every container of a machine names its runtime (``HostConfig.Runtime``): ``runsc`` for a
gvisor machine, ``runc`` for any other, so that an engine whose default runtime is another
never runs a machine on a runtime it was not made for. Before a gvisor machine's container is
made, the engine is asked how it registered ``runsc`` (``providers/runtimes.engine_refusal``):
without it, or without the host kernel's network stack in the container's own namespace
(``--network=host``, where the machine's egress rules are), the machine is refused by name.

The machine's first process is root *of gVisor's kernel* (``as_gvisor``), as a local gvisor
machine's is (providers/gvisor.py): this runsc does not run the execute-only loader a
``namespaces`` container starts through (it reads a program to load it), so the supervisor
and the daemon start from the image's interpreter, the token is root's alone (0400), and each
daemon takes it as root, makes itself non-dumpable and becomes the machine's uid
(``DAEMON_RUN_AS_VAR``). The supervisor keeps three capabilities of gVisor's kernel only
(``CAP_SETUID``, ``CAP_SETGID``, ``CAP_KILL``); ``no-new-privileges`` stays.

Root inside is ``docker exec -u 0``: uid 0 of gVisor's kernel, with no capability.
The engine's runsc has no user namespace and its gofer is the host's root, so a file root
writes in the machine's volumes is the host's uid 0 (set-user-ID bit and all): a docker gvisor
machine has no ``sudo`` (daemon/sudo.py) for its every process to do so (docs/limitations.md).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiodocker

from contracts.daemon_rpc import ExecCommandParams, ExecCommandResult
from contracts.errors import NotSupported, ProviderError
from contracts.models import GvisorPlatform
from core.tokenfd import DAEMON_RUN_AS_VAR, LOADER_VAR
from providers.docker_image import FLEET_LIB
from providers.gvisor import OUTPUT_CAP
from providers.limits import Placement
from providers.runtimes import DOCKER_RUNTIME, engine_refusal

#: How long past a root command's timeout its answer waits for ``timeout`` to end it.
_KILL_GRACE_S = 10.0
#: ``timeout -s KILL``'s status for a command it killed.
_KILLED = 128 + 9
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


async def exec_as_root(
    machine_id: str, c: aiodocker.containers.DockerContainer | None, p: ExecCommandParams
) -> ExecCommandResult:
    """``p`` run as uid 0 in the machine's container ``c`` (``docker exec -u 0``), which must
    run on gVisor (NotSupported on the host's kernel); output capped per stream. The engine
    cannot end an exec's process, so the machine image's ``timeout`` runs it and SIGKILLs it
    (its process group) at its timeout."""
    if c is None or not c["State"]["Running"]:
        raise ProviderError(f"machine {machine_id} has no running container")
    if c["HostConfig"].get("Runtime") != ENGINE_RUNTIMES["gvisor"]:
        raise NotSupported(f"machine {machine_id}'s container runs on the host's kernel: "
                           "nothing runs as root in it",
                           data={"runtime": "namespaces", "user": "root"})  # fmt: skip
    # Its options end at the duration: a command named "-x" is a command.
    argv = ["timeout", "-s", "KILL", f"{p.timeout_s:g}s", *p.command]
    try:
        run = await c.exec(argv, user="0:0", environment=p.env or None, workdir=p.cwd)
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: cannot exec in {c.id[:12]}: {exc.message}") from None
    out, err = bytearray(), bytearray()
    began, waited = time.monotonic(), False
    try:
        async with asyncio.timeout(p.timeout_s + _KILL_GRACE_S), run.start(detach=False) as io:
            while (msg := await io.read_out()) is not None:
                into = out if msg.stream == 1 else err
                into += msg.data[: OUTPUT_CAP + 1 - len(into)]
    except TimeoutError:
        waited = True  # ``timeout`` did not end it: its answer says so, whatever runs on
    code = (await run.inspect()).get("ExitCode")
    killed = code == _KILLED and time.monotonic() - began >= p.timeout_s
    return ExecCommandResult(
        exit_code=code if isinstance(code, int) and not waited else -1,
        stdout=bytes(out[:OUTPUT_CAP]).decode(errors="replace"),
        stderr=bytes(err[:OUTPUT_CAP]).decode(errors="replace"),
        timed_out=waited or killed,
        truncated=len(out) > OUTPUT_CAP or len(err) > OUTPUT_CAP,
    )
