"""Which machine runtimes a provider can run here (docs/runtimes.md): checked before a machine
is made, so that a runtime is refused by name (``NotSupported``), never run as another."""

from __future__ import annotations

import shutil

from contracts.models import GvisorPlatform, Runtime, RuntimeChoice


def runsc_binary(runsc: str) -> str | None:
    """The runsc to run (``runsc``: a name on PATH, or a path), None if there is none."""
    return shutil.which(runsc)


def refusal(provider: str, runtime: Runtime, runsc: str) -> str | None:
    """None if ``provider`` can run ``runtime`` machines on this host, else why not."""
    if runtime == "namespaces":
        return None
    if provider != "local":
        return (
            f"the {provider} provider does not run {runtime} machines (only the local provider "
            "does); use runtime namespaces, or provider local"
        )
    if runsc_binary(runsc) is None:
        return (
            f"the {runtime} runtime needs runsc, and this host has none ({runsc!r} is not found): "
            "`apt-get install runsc` (docs/runtimes.md), or use runtime namespaces"
        )
    return None


def choice(runtime: Runtime, platform: GvisorPlatform) -> RuntimeChoice:
    """A new machine's runtime as recorded: ``gvisor`` with the platform it runs on."""
    return (runtime, platform if runtime == "gvisor" else None)
