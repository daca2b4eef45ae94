"""git on the platform's host trusts the CAs the machines' clones trust: a real smart-HTTP git
server over TLS with a CA of its own (tests/tls.py), which the platform is told to trust with
FLEET_SECRETS_UPSTREAM_CA (as the egress proxy does for a machine's clone of a private repo)
or FLEET_CA_BUNDLE (as a machine's git does, from its .env). repos.add's check asks it with no
warning, and an environment's checkout clones it; with neither setting, the check says the
certificate was not trusted (the machine would not trust it either)."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from base.keyed_locks import KeyedLocks
from contracts.errors import RepoNotFound
from contracts.models import Repo
from controlplane.settings import Settings
from environments.sources import checkout, clone_limits
from fleet.client import FleetClient
from tests.conftest import running_stack
from tests.gitserver import GitHttpServer
from tests.tls import server_tls

TOKEN = "tls-repo-t0ken"


@pytest.fixture
def server_ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    ca_file = tmp_path / "git-ca.pem"
    return ca_file, server_tls("127.0.0.1", ca_file)


@pytest.fixture(params=["secrets_upstream_ca", "ca_bundle"])
def stack_settings(
    request: pytest.FixtureRequest, settings: Settings, server_ca: tuple[Path, ssl.SSLContext]
) -> Settings:  # fmt: skip
    return msgspec.structs.replace(settings, **{request.param: str(server_ca[0])})


@pytest.fixture
async def tls_git(
    tmp_path: Path, bare_repo: Path, server_ca: tuple[Path, ssl.SSLContext]
) -> AsyncIterator[GitHttpServer]:  # fmt: skip
    root = tmp_path / "served"
    root.mkdir()
    shutil.copytree(bare_repo, root / "app.git")
    async with GitHttpServer(root, "bot", TOKEN, tls=server_ca[1]) as server:
        yield server


async def test_repos_add_asks_a_repo_whose_ca_the_platform_trusts(
    stack: FleetClient, tls_git: GitHttpServer
) -> None:  # fmt: skip
    inst = await stack.create_instance("tls-repo")
    url = tls_git.url("app.git")
    added = await stack.add_repo(inst.id, url, "main", "app", token=TOKEN, username="bot")
    assert added.warning is None
    # It was asked, not waved through: a token the server refuses is refused by name.
    with pytest.raises(RepoNotFound, match="no repository at"):
        await stack.add_repo(inst.id, url, "main", "other", token="not-the-token",
                             username="bot")  # fmt: skip
    assert any(p.endswith("/info/refs?service=git-upload-pack") for p in tls_git.seen)


async def test_an_environments_checkout_clones_a_repo_whose_ca_the_platform_trusts(
    stack_settings: Settings, tls_git: GitHttpServer, tmp_path: Path
) -> None:  # fmt: skip
    open_server = GitHttpServer(tls_git.root, None, None, tls=tls_git.tls)
    async with open_server:
        repo = Repo(url=open_server.url("app.git"), branch="feature", path="app")
        done = await checkout(repo, tmp_path / "cache", locks=KeyedLocks(),
                              limits=clone_limits(stack_settings))  # fmt: skip
    assert (done / "feature.txt").read_text() == "on feature\n"


async def test_without_the_ca_the_check_says_the_certificate_was_not_trusted(
    settings: Settings, tls_git: GitHttpServer
) -> None:  # fmt: skip
    async with running_stack(settings) as client:
        inst = await client.create_instance("untrusted")
        added = await client.add_repo(inst.id, tls_git.url("app.git"), "main", "app",
                                      token=TOKEN, username="bot")  # fmt: skip
    assert added.warning is not None
    assert "certificate" in added.warning.lower()
