"""``instances.setEnvironment`` / ``instances.getEnvironment``: the input rules and who may, in
memory; and the provisioner's resolution of an environment before a machine starts (an image
needs an engine, a build a builder: either missing fails the machine at stage
``environment``; no environment changes nothing). Images on a real engine: tests/integration."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import Forbidden, InvalidParams, NotFound
from tests.fast.conftest import World
from tests.fast.test_gateway import MISSING_INSTANCE, token_of, two_instances

method = pytest.mark.gateway_method


async def with_repo(world: World, instance_id: str) -> None:
    await world.rpc("repos.add", {"instanceId": instance_id, "url": "https://example.com/app.git",
                                  "branch": "main", "path": "src/app"})  # fmt: skip


@method("instances.setEnvironment", "instances.getEnvironment")
async def test_each_kind_is_stored_and_null_goes_back_to_auto(world: World) -> None:
    a, _ = await two_instances(world)
    await with_repo(world, a)
    assert await world.rpc("instances.getEnvironment", {"instanceId": a}) == {
        "instanceId": a, "environment": None}  # fmt: skip
    kinds: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"image": "node:22"}, {"image": "node:22"}),
        # A repo by its URL is stored by its checkout path.
        ({"dockerfile": {"repo": "https://example.com/app.git", "path": "ci/Dockerfile"}},
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
