"""What a machine is made from: its instance's environment resolved to an image of the
machine's Docker engine, before the provider starts it (contracts/gateway_environments.py).

``resolve_image`` is the one place an environment becomes an image. ``image`` is looked up on
the engine; ``dockerfile`` and ``devcontainer`` go to ``build_image`` (the environments'
builder); no environment at all to ``find_devcontainer`` (a repo's devcontainer.json), else the
platform's default environment. A machine that cannot have its environment fails at stage
``environment`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiodocker
import structlog

from contracts.errors import EnvironmentInvalid, ImageNotFound, ProviderError
from contracts.gateway_environments import DEFAULT_ENVIRONMENT, Environment
from contracts.models import Machine
from environments import build as eb, cache as build_cache, record
from environments.machine import build_for_machine
from providers.docker_image import MACHINE_HOME
from services.common.bus import Bus
from services.common.settings import Settings
from services.common.store import Store

log = structlog.get_logger(__name__)

STAGE = "environment"


@dataclass(frozen=True)
class EnvironmentContext:
    """Everything resolving (or building) a machine's environment may need."""

    store: Store
    bus: Bus
    machine: Machine
    #: The Docker engine the machine's image must be on (None: no engine configured).
    docker: aiodocker.Docker | None
    #: The event that asked for the machine (builds derive their events' ids from it).
    cause_event_id: str
    settings: Settings


@dataclass(frozen=True)
class Resolved:
    #: ``Machine.environment``: ``default`` or the environment's one-line description.
    environment: str
    #: The image ID on the engine; None: the provider's own default.
    image: str | None


async def resolve_image(ctx: EnvironmentContext, environment: Environment | None) -> Resolved:
    """The image the machine runs. Raises ImageNotFound, what the builder raises
    (EnvironmentRefused, EnvironmentInvalid, FeatureUnavailable, BuildFailed) or ProviderError:
    the machine then fails at stage ``environment``."""
    if environment is None:
        environment = await find_devcontainer(ctx)
    if environment is None:
        return Resolved(DEFAULT_ENVIRONMENT, None)
    if ctx.docker is None:
        raise ProviderError(f"{environment.describe()}: no Docker engine is configured")
    if environment.image is not None:
        return Resolved(environment.describe(), await image_id(ctx.docker, environment.image))
    return Resolved(environment.describe(), await build_image(ctx, environment))


def pool_key(provider: str, image: str | None) -> str:
    """The warm pool a machine of ``image`` (None: the default) may come from."""
    return provider if image is None else f"{provider}@{image}"


async def image_id(docker: aiodocker.Docker, ref: str) -> str:
    """The ID (``sha256:...``) of ``ref`` on the engine; ImageNotFound if it has none."""
    try:
        info = await docker.images.inspect(ref)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            raise ImageNotFound(f"image {ref!r} is not on the machine's Docker engine") from None
        raise ProviderError(f"docker: looking for image {ref!r}: {exc.message}") from None
    return str(info["Id"])


async def build_image(ctx: EnvironmentContext, environment: Environment) -> str:
    """The image ID of a ``dockerfile`` or ``devcontainer`` environment, built on
    ``ctx.docker`` (or found in the builds' cache) from a host-side checkout of its repo; a
    devcontainer's lifecycle commands are recorded for the setup pusher to run."""
    assert ctx.docker is not None
    repos = {r.path: r for r in await ctx.store.list_repos(ctx.machine.instance_id)}
    repo = repos.get(environment.repo or "")
    if repo is None:
        raise EnvironmentInvalid(f"{environment.describe()}: the instance has no such repo now")
    source: eb.EnvironmentSource
    if environment.dockerfile is not None:
        source = eb.DockerfileSource(environment.dockerfile.path, environment.dockerfile.context)
    else:
        assert environment.devcontainer is not None
        source = eb.DevcontainerSource(environment.devcontainer.path)
    mid = ctx.machine.id

    def say(line: str) -> None:
        log.info("environment.build_log", machine_id=mid, line=line)

    made = await build_for_machine(
        ctx.docker, build_cache.from_settings(ctx.settings), repo, source,
        checkouts=ctx.settings.data_path / "checkouts", home=MACHINE_HOME, say=say,
    )  # fmt: skip
    if made.lifecycle is not None:
        await record.save(ctx.store, mid, made.lifecycle)
    log.info("environment.built", machine_id=mid, image=made.built.image,
             build=made.built.build_id)  # fmt: skip
    return made.built.image


async def find_devcontainer(ctx: EnvironmentContext) -> Environment | None:
    """With no environment set: the devcontainer environment of the first of the instance's
    repos that has a devcontainer file; None: the platform's default."""
    return None
