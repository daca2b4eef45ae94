"""The provisioner's resolution of a machine's environment
(services/provisioner/builds/environment.py) with the builder connected: a Dockerfile and a
devcontainer.json in a repo of the instance are checked out on the host, built on the real
engine (once per content), and a devcontainer's lifecycle is recorded for the setup pusher; a
repo that cannot be fetched fails by name."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiodocker
import msgspec
import pytest

from contracts.errors import EnvironmentInvalid
from contracts.gateway.environments import DevcontainerSource, DockerfileSource, Environment
from contracts.models import Repo
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from environments.lifecycle_commands import MachineLifecycle
from environments.shared_builds import SharedBuilds
from services.provisioner.builds.environment import (
    DevcontainerDetector,
    EnvironmentContext,
    resolve_image,
)
from tests.conftest import git
from tests.environments import busybox_image, shared
from tests.gitcmd import repo_with

__all__ = ["shared"]  # a fixture, imported for its tests


@pytest.mark.timeout(180)
async def test_dockerfile_and_devcontainer_environments_resolve_to_built_images(
    settings: Settings, store: Store, bus: Bus, shared: SharedBuilds, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex  # a build of its own, never a cached one of another run
    settings = msgspec.structs.replace(settings, env_cache_bytes=0)
    async with aiodocker.Docker() as docker:
        base = await busybox_image(docker)
        work = repo_with(tmp_path, {
            "Dockerfile": f"FROM {base}\nRUN echo {marker} > /opt/built.txt\n",
            ".devcontainer.json": '{"build": {"dockerfile": "Dockerfile"}, // a comment\n'
                                  '"postCreateCommand": "echo made",}',
        })  # fmt: skip
        inst = await store.create_instance("env-resolve")
        await store.add_repo(inst.id, Repo(url=str(work), branch="main", path="app"))
        machine = await store.create_machine(inst.id, "docker")
        ctx = EnvironmentContext(store, bus, machine, docker, "e-1", settings, shared=shared)
        built = []
        try:
            for env in (Environment(dockerfile=DockerfileSource(repo="app")),
                        Environment(devcontainer=DevcontainerSource(repo="app"))):  # fmt: skip
                got = await resolve_image(ctx, env)
                assert got.environment == env.describe()
                assert got.image is not None
                assert got.image.startswith("sha256:")
                built.append(got.image)
                run = await docker.containers.run({"Image": got.image,
                                                   "Cmd": ["cat", "/opt/built.txt"]})  # fmt: skip
                await run.wait()
                assert "".join(await run.log(stdout=True)).strip() == marker
                await run.delete(force=True)
            # the devcontainer's, for setup
            life = await store.lifecycles.load(machine.id, MachineLifecycle)
            assert life is not None
            assert life.devcontainer.lifecycle == {"postCreateCommand": "echo made"}
            # The repo gone from its place: refused by name, the machine fails at `environment`.
            await store.add_repo(inst.id, Repo(url=str(tmp_path / "gone"), branch="main",
                                               path="gone"))  # fmt: skip
            with pytest.raises(EnvironmentInvalid):
                await resolve_image(ctx, Environment(dockerfile=DockerfileSource(repo="gone")))
        finally:
            for image in set(built):
                for tag in (await docker.images.inspect(image)).get("RepoTags") or []:
                    await docker.images.delete(tag, force=True)


@pytest.mark.timeout(120)
async def test_with_no_environment_set_a_repos_devcontainer_is_detected(
    settings: Settings, store: Store, bus: Bus, shared: SharedBuilds, tmp_path: Path
) -> None:
    async with aiodocker.Docker() as docker:
        base = await busybox_image(docker)
        base_id = (await docker.images.inspect(base))["Id"]
        plain = repo_with(tmp_path / "a", {"README": "no environment here\n"})
        host_dir = tmp_path / "host-side"
        host_dir.mkdir()
        (host_dir / "devcontainer.json").write_text(f'{{"image": "{base}"}}')
        linked = repo_with(tmp_path / "b", {"README": "x\n"})
        (linked / ".devcontainer").symlink_to(host_dir)  # a link is never taken
        git("add", "-A", cwd=linked)
        git("commit", "-q", "-m", "link", cwd=linked)
        dev = repo_with(tmp_path / "c", {
            ".devcontainer/devcontainer.json": f'{{"image": "{base}", /* c */ }}',
        })  # fmt: skip
        inst = await store.create_instance("env-detect")
        for path, work in (("a-plain", plain), ("b-linked", linked), ("gone", tmp_path / "no")):
            await store.add_repo(inst.id, Repo(url=str(work), branch="main", path=path))
        machine = await store.create_machine(inst.id, "docker")
        detector = DevcontainerDetector(ttl_s=0, checkouts=shared.checkouts)
        ctx = EnvironmentContext(store, bus, machine, docker, "e-2", settings, detector, shared)
        # No repo has one it may take (a plain one, a link, one the host cannot fetch).
        assert (await resolve_image(ctx, None)).image is None
        await store.add_repo(inst.id, Repo(url=str(dev), branch="main", path="c-dev"))
        got = await resolve_image(ctx, None)
        wanted = Environment(devcontainer=DevcontainerSource(
            repo="c-dev", path=".devcontainer/devcontainer.json"))  # fmt: skip
        assert (got.environment, got.image) == (wanted.describe(), base_id)
        # Without a detector (a provider that runs no image), the platform's default.
        bare = EnvironmentContext(store, bus, machine, docker, "e-3", settings)
        assert (await resolve_image(bare, None)).image is None
