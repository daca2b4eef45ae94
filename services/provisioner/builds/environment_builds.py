"""This host's environment builds, for the gateway's ``environments.*`` methods
(contracts/gateway/env_builds.py): list the builds cache, build an instance's environment now,
remove a build no machine runs."""

from __future__ import annotations

import posixpath
from collections.abc import Callable

import aiodocker
import structlog

from contracts.errors import (
    EnvironmentInUse,
    EnvironmentInvalid,
    InvalidParams,
    NotFound,
    ProviderError,
)
from contracts.gateway import env_builds as geb
from contracts.models import Machine
from contracts.rpc.jsonrpc import handles
from contracts.status import TERMINAL
from controlplane.settings import Settings
from controlplane.store import Store
from environments import cache
from environments.build import check_devcontainer
from environments.machine_environment import build_for_machine
from environments.shared_builds import SharedBuilds
from environments.sources import checkout
from providers.docker import MACHINE_HOME
from services.provisioner.builds import image_policy
from services.provisioner.builds.environment import build_source

log = structlog.get_logger(__name__)


class EnvironmentBuilds:
    """Its builds and checkouts are ``shared``'s, the process's (a machine's resolution builds
    and checks out under the same)."""

    def __init__(self, store: Store, settings: Settings, engine: Callable[[], aiodocker.Docker],
                 shared: SharedBuilds) -> None:  # fmt: skip
        self.store = store
        self.settings = settings
        self.engine = engine
        self.shared = shared
        self.cache = cache.from_settings(settings)

    def _docker(self) -> aiodocker.Docker:
        return self.engine()

    async def _users(self) -> dict[str, list[Machine]]:
        """This host's machines that still run their image, by image ID."""
        users: dict[str, list[Machine]] = {}
        for m in await self.store.list_machines():
            if m.environment_image and m.status not in TERMINAL and m.host_id in (
                None, self.settings.host_id
            ):  # fmt: skip
                users.setdefault(m.environment_image, []).append(m)
        return users

    @handles(geb.HOST_LIST_ENVIRONMENTS)
    async def list(self, _p: geb.ListEnvironmentsParams, _: None) -> geb.EnvironmentList:
        entries = await cache.entries(self._docker(), self.cache)
        users = await self._users()
        out = []
        for e in entries:
            ms = users.get(e["id"], [])
            out.append(geb.EnvironmentBuild(
                id=e["tag"].partition(":")[2], image=e["tag"], image_id=e["id"], size=e["size"],
                last_used=e["lastUsed"], machines=[m.id for m in ms],
                instances=sorted({m.instance_id for m in ms}),
            ))  # fmt: skip
        return geb.EnvironmentList(host_id=self.settings.host_id, environments=out)

    @handles(geb.HOST_BUILD_ENVIRONMENT)
    async def build(self, p: geb.BuildEnvironmentParams, _: None) -> geb.EnvironmentBuilt:
        await self.store.get_instance(p.instance_id)  # NotFound
        env = await self.store.environments.of_instance(p.instance_id)
        if env is None:
            raise InvalidParams(
                f"field `instanceId`: instance {p.instance_id} has no environment set "
                "(instances.setEnvironment); auto-detection resolves at machines.create",
                field="$.instanceId",
            )
        docker = self._docker()
        policy = await image_policy.for_instance(self.store, p.instance_id)
        if env.image is not None:
            found = await policy.image_id(docker, env.image)
            return geb.EnvironmentBuilt(instance_id=p.instance_id, environment=env.describe(),
                                        id=found, image_id=found)  # fmt: skip
        repo, source = await build_source(self.store, p.instance_id, env)

        def say(line: str) -> None:
            log.info("environment.build_log", instance_id=p.instance_id, line=line)

        made = await build_for_machine(
            docker, self.cache, repo, source, shared=self.shared,
            checkouts=self.settings.data_path / "checkouts", home=MACHINE_HOME, say=say,
            check_image=lambda ref: policy.check(docker, ref),
        )  # fmt: skip
        built = made.built
        await self.store.environments.add_build(p.instance_id, built.image)
        log.info("environment.built", instance_id=p.instance_id, build=built.build_id)
        return geb.EnvironmentBuilt(instance_id=p.instance_id, environment=env.describe(),
                                    id=built.build_id[:32], image_id=built.image)  # fmt: skip

    @handles(geb.HOST_CHECK_ENVIRONMENT)
    async def check(self, p: geb.CheckEnvironmentParams, _: None) -> geb.EnvironmentChecked:
        """A devcontainer environment's file, checked on a checkout of its repo as a machine's
        resolution would check it; what cannot be looked at now is skipped (and checked then)."""
        if p.environment.devcontainer is None:
            return geb.EnvironmentChecked(skipped="not a devcontainer environment")
        repo, _source = await build_source(self.store, p.instance_id, p.environment)
        if repo.has_credentials:  # the host's checkout has no token
            return geb.EnvironmentChecked(skipped=f"repo {repo.path} has credentials")
        try:
            tree = await checkout(repo, self.settings.data_path / "checkouts",
                                  locks=self.shared.checkouts, limits=self.cache.clone)  # fmt: skip
        except (EnvironmentInvalid, ValueError) as exc:
            return geb.EnvironmentChecked(skipped=f"repo {repo.path}: {exc}")
        workspace = posixpath.join(MACHINE_HOME, repo.path)
        path = check_devcontainer(tree, p.environment.devcontainer.path, workspace)
        if path is None:
            return geb.EnvironmentChecked(skipped=f"repo {repo.path} has no devcontainer.json yet")
        log.info("environment.checked", instance_id=p.instance_id, repo=repo.path, path=path)
        return geb.EnvironmentChecked(path=path)

    @handles(geb.HOST_DELETE_ENVIRONMENT)
    async def delete(self, p: geb.DeleteEnvironmentParams, _: None) -> geb.EnvironmentDeleted:
        docker = self._docker()
        entries = await cache.entries(docker, self.cache)
        found = [e for e in entries if e["tag"].partition(":")[2].startswith(p.environment_id)]
        if not found:
            raise NotFound(f"no cached environment build {p.environment_id} on this host")
        if len(found) > 1:
            raise InvalidParams(
                f"field `environmentId`: {p.environment_id} names {len(found)} builds; give more",
                field="$.environmentId",
            )
        e = found[0]
        using = [m.id for m in (await self._users()).get(e["id"], [])]
        if using:
            raise _in_use(e["tag"], using)
        try:
            await cache.remove(docker, self.cache, e["tag"])
        except aiodocker.DockerError as exc:
            if exc.status == 409:  # a container (a warm pool's, say) holds it
                raise _in_use(e["tag"], [], exc.message) from None
            raise ProviderError(f"docker: removing {e['tag']}: {exc.message}") from None
        return geb.EnvironmentDeleted(id=e["tag"].partition(":")[2], image=e["tag"])


def _in_use(tag: str, machines: list[str], engine: str = "") -> EnvironmentInUse:
    who = f"machines {', '.join(machines)} run it" if machines else f"the engine: {engine}"
    return EnvironmentInUse(f"environment build {tag} is in use ({who}); archive them first",
                            data={"machines": machines})  # fmt: skip
