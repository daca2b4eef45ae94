"""Which machine runtimes a provider can run here (docs/runtimes.md): checked before a machine
is made, so that a runtime is refused by name (``NotSupported``), never run as another.

The ``local`` provider runs ``runsc`` itself (providers/gvisor/runsc.py); the ``docker`` provider
has its engine run a container with the runtime registered as ``runsc`` (``engine_refusal`` checks
how the engine registered it, docs/runtimes.md "Docker").
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from contracts.models import GvisorPlatform, Runtime, RuntimeChoice

#: Providers that run gvisor machines.
GVISOR_PROVIDERS = ("local", "docker")
#: Providers whose gvisor machines keep their memory through a pause or a fork: those whose
#: runsc fleetd drives itself. The engine's runsc runs a docker machine on the host kernel's
#: network stack, which runsc cannot checkpoint.
MEMORY_PROVIDERS = ("local",)
#: The Docker engine's name of the runtime a gvisor machine's container runs with.
DOCKER_RUNTIME = "runsc"
#: Its arguments a docker gvisor machine needs: its own network namespace's stack, the host
#: kernel's (so the machine's egress policy, written there, holds: providers/egress/nftables.py).
DOCKER_RUNSC_NETWORK = "--network=host"


def runsc_binary(runsc: str) -> str | None:
    """The runsc to run (``runsc``: a name on PATH, or a path), None if there is none."""
    return shutil.which(runsc)


#: The oldest runsc whose checkpoint keeps a machine's listeners and loopback connections
#: (docs/runtimes.md, Versions): an older one's panics on them, so such a machine never pauses.
RUNSC_MIN = 20240729
_RUNSC_VERSION = re.compile(r"runsc version (?:0\.0~|release-)(\d{8})")


def runsc_version(runsc: str) -> int | None:
    """The date runsc's version names (``0.0~20240729.0``: 20240729), None if it says none."""
    try:
        said = subprocess.run([runsc, "--version"], capture_output=True, text=True, timeout=30,
                              check=False).stdout[:4096]  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _RUNSC_VERSION.search(said)
    return int(found.group(1)) if found else None


def too_old(runsc: str) -> str | None:
    """Why ``runsc`` is too old for gvisor machines (none: it is new enough)."""
    version = runsc_version(runsc)
    if version is not None and version >= RUNSC_MIN:
        return None
    have = "an unknown version" if version is None else f"0.0~{version}"
    return (
        f"runsc ({runsc}) is {have}, older than 0.0~{RUNSC_MIN}, the first whose checkpoint "
        "keeps a machine's listeners and connections: a gvisor machine that serves anything "
        "could not be paused, forked or snapshotted with its memory. Install a newer one: "
        "Debian 13's runsc, or on Debian 12 `apt-get install -t bookworm-backports runsc` "
        "(./run up does it; docs/runtimes.md, Versions)"
    )


def refusal(provider: str, runtime: Runtime, runsc: str) -> str | None:
    """None if ``provider`` can run ``runtime`` machines on this host, else why not."""
    if runtime == "namespaces":
        return None
    if provider not in GVISOR_PROVIDERS:
        return (
            f"the {provider} provider does not run {runtime} machines (only the "
            f"{' and '.join(GVISOR_PROVIDERS)} providers do); use runtime namespaces, or "
            "provider local or docker"
        )
    if provider == "docker":  # the engine's runsc, checked against the engine at each start
        return None
    if runsc_binary(runsc) is None:
        return (
            f"the {runtime} runtime needs runsc, and this host has none ({runsc!r} is not found): "
            "`apt-get install runsc` (docs/runtimes.md), or use runtime namespaces"
        )
    return None


def choice(runtime: Runtime, platform: GvisorPlatform) -> RuntimeChoice:
    """A new machine's runtime as recorded: ``gvisor`` with the platform it runs on."""
    return (runtime, platform if runtime == "gvisor" else None)


def keeps_memory(runtime: str, provider: str) -> bool:
    """Whether a machine of ``runtime`` on ``provider`` can be paused or forked with memory."""
    return runtime == "gvisor" and provider in MEMORY_PROVIDERS


def docker_runsc_args(platform: GvisorPlatform) -> list[str]:
    """The ``runtimeArgs`` the engine's ``runsc`` is registered with (docs/runtimes.md)."""
    return [f"--platform={platform}", DOCKER_RUNSC_NETWORK]


def engine_refusal(runtimes: Mapping[str, Any] | None, platform: GvisorPlatform) -> str | None:
    """None if a Docker engine whose ``docker info`` lists ``runtimes`` runs gvisor machines
    on ``platform``, else why not and how to register it."""
    snippet = {
        "runtimes": {
            DOCKER_RUNTIME: {"path": "/usr/bin/runsc", "runtimeArgs": docker_runsc_args(platform)}
        }
    }
    how = (
        f"register it in the engine's /etc/docker/daemon.json ({json.dumps(snippet)}), then "
        "reload dockerd (systemctl reload docker, or SIGHUP): docs/runtimes.md"
    )  # fmt: skip
    got = (runtimes or {}).get(DOCKER_RUNTIME)
    if not isinstance(got, Mapping):
        return f"the Docker engine has no {DOCKER_RUNTIME} runtime for gvisor machines: {how}"
    args = got.get("runtimeArgs") or []
    if not isinstance(args, list) or any(a not in args for a in docker_runsc_args(platform)):
        return (
            f"the Docker engine's {DOCKER_RUNTIME} runtime runs with {args!r}, and gvisor "
            f"machines need {docker_runsc_args(platform)!r}: {how}"
        )
    return None
