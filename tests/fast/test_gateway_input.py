"""Issue 13's input rules at the gateway, in memory: .env values sh and python-dotenv would
read differently, repos judged on what git sees, local repos for admins only."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import Forbidden, InvalidParams
from tests.fast.conftest import World
from tests.fast.test_gateway import method, token_of, two_instances


@method("env.set", "env.list")
async def test_env_values_that_read_differently_in_sh_are_refused_by_name(world: World) -> None:
    # Issue 13: a value sh and python-dotenv would read differently, named with its variable.
    for value in ("it's $(id)", "${HOME}", "a\rb", "a\\\\b", "ends in \\"):
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("env.set", {"name": "HOSTILE", "value": value})
        assert bad.value.field == "$.value"
        assert "HOSTILE" in bad.value.message
    assert (await world.rpc("env.list"))["vars"] == []


@method("repos.add")
async def test_repos_are_judged_on_what_git_sees(world: World) -> None:
    a, _ = await two_instances(world)
    # Issue 13: checkouts inside .git, credentials in user-info, encoded option-like hosts.
    for bad in ({"url": "https://git.example/x.git", "path": "app/.git/hooks"},
                {"url": "https://ghp_secret@git.example/x.git", "path": "x"},
                {"url": "ssh://%2DoProxyCommand=touch%20p/x", "path": "x"},
                {"url": "git@host:-oProxyCommand=x", "path": "x"}):  # fmt: skip
        with pytest.raises(InvalidParams):
            await world.rpc("repos.add", {"instanceId": a, "branch": "main", **bad})
    assert (await world.rpc("repos.list", {"instanceId": a}))["repos"] == []


@method("repos.add")
async def test_local_repos_are_for_admins_and_never_in_the_data_dir(
    world: World, tmp_path: Path
) -> None:
    a, _ = await two_instances(world)
    add = {"instanceId": a, "branch": "main", "path": "x"}
    outside = tmp_path / "srv" / "repo"
    outside.mkdir(parents=True)
    with pytest.raises(Forbidden):  # an instance token cannot make git read the host
        await world.rpc("repos.add", {**add, "url": f"file://{outside}"}, token_of(a))
    with pytest.raises(Forbidden):
        await world.rpc("repos.add", {**add, "url": str(outside)}, token_of(a))
    data = world.settings.data_path.resolve()
    link = tmp_path / "innocent"
    link.symlink_to(data)
    for url in (f"file://{data}/machines/m-0000000000000001/home",
                f"file://{outside}/%2e%2e/%2e%2e/innocent/secret-key",
                f"{link}/nats-auth.json", str(data)):  # fmt: skip
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("repos.add", {**add, "url": url})
        assert bad.value.field == "$.url"
    assert (await world.rpc("repos.add", {**add, "url": f"file://{outside}"}))["path"] == "x"
    assert (await world.rpc("repos.list", {"instanceId": a}))["repos"][0]["url"].endswith("repo")
