"""A private repo's token reaches git through its environment only: never argv, the URL,
.git/config, the machine's disk or a gateway answer."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from contracts.errors import InvalidParams, RepoNotFound
from contracts.status import MachineStatus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, CloneLog
from tests.gitserver import GitHttpServer

TOKEN = "ghp_s3cr3t-T0KEN-that-must-not-leak"


async def wire_call(settings: Settings, method: str, params: dict[str, Any]) -> Any:
    """The raw JSON result, as served: a typed decode would hide an extra (leaked) field."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    url = f"http://127.0.0.1:{settings.port}/rpc"
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return (await r.json())["result"]


@pytest.fixture
async def git_server(tmp_path: Path, bare_repo: Path) -> AsyncIterator[GitHttpServer]:
    root = tmp_path / "served"
    root.mkdir()
    shutil.copytree(bare_repo, root / "private.git")
    async with GitHttpServer(root, "x-access-token", TOKEN) as server:
        yield server


@pytest.fixture
def stack_settings(settings: Settings, git_server: GitHttpServer) -> Settings:
    """The server is on the host's loopback: sandboxed machines reach that one port of it."""
    return msgspec.structs.replace(settings, sandbox_loopback_ports=str(git_server.port))


def files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle.encode() in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


async def test_private_repo_clones_and_the_token_stays_secret(
    stack: FleetClient, settings: Settings, store: Store, git_server: GitHttpServer,
    clone_log: CloneLog,
) -> None:  # fmt: skip
    inst = await stack.create_instance("private")
    url = git_server.url("private.git")
    repo = await wire_call(settings, "repos.add", {"instanceId": inst.id, "url": url,
                           "branch": "feature", "path": "app", "token": TOKEN})  # fmt: skip
    assert repo == {"url": url, "branch": "feature", "path": "app", "hasCredentials": True,
                    "warning": None}  # fmt: skip
    assert TOKEN not in str(await wire_call(settings, "repos.list", {"instanceId": inst.id}))

    machine = await stack.create_machine(inst.id)
    machine = await stack.wait_for(machine.id, {"ready", "failed"}, timeout_s=60)
    assert machine.status is MachineStatus.READY, machine.status_reason

    home = settings.data_path / "machines" / machine.id / "home"
    assert (home / "app" / "feature.txt").exists()
    assert clone_log.text().count(url) == 1  # the argv git ran: no token in it
    assert TOKEN not in clone_log.text()
    assert files_containing(home, TOKEN) == []  # not .git/config, not the askpass script
    assert all(TOKEN not in seen for seen in git_server.seen)  # not in any URL it was sent
    for key in await store.redis.keys(store.keys.pattern()):  # stored encrypted only
        assert TOKEN.encode() not in (await store.redis.dump(key) or b""), key


async def test_without_the_token_repos_add_refuses_it(
    stack: FleetClient, git_server: GitHttpServer
) -> None:
    inst = await stack.create_instance("no-token")
    with pytest.raises(RepoNotFound, match="needs a token"):  # the clone would fail as well
        await stack.add_repo(inst.id, git_server.url("private.git"), "main", "app")
    assert await stack.list_repos(inst.id) == []


async def test_credentials_in_the_url_are_refused(stack: FleetClient) -> None:
    inst = await stack.create_instance("url-creds")
    with pytest.raises(InvalidParams) as exc:
        await stack.add_repo(inst.id, f"https://user:{TOKEN}@example.com/r.git", "main", "r")
    assert exc.value.field == "$.url"
    assert TOKEN not in exc.value.message
    assert await stack.list_repos(inst.id) == []
