"""Secrets on a gvisor machine (docs/secrets.md): its stack has a loopback of its own, so it goes
out through the egress proxy's door on the host (providers/egress/proxy_door.py), which knows
it by the pasta holding its connection. On a real runsc sandbox with a real daemon: curl in the
machine reaches a real HTTPS upstream (its own CA, trusted through FLEET_SECRETS_UPSTREAM_CA)
with the secret added, while the machine holds only the placeholder. Both other providers:
tests/integration/test_secrets.py."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from contracts.gateway.secrets import SECRETS_SET, SetSecretParams
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.gitserver import GitHttpServer
from tests.httpserve import start_site
from tests.integration import test_gvisor as gv
from tests.integration.test_secrets import TOKEN, VALUE, _echo, _nowhere, _sh
from tests.tls import server_tls

#: NATS at an address of the host other than its loopback (test_gvisor.py says why).
nats_server = gv.nats_server


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def upstream_ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    ca_file = tmp_path / "upstream-ca.pem"
    return ca_file, server_tls(gv.host_address(), ca_file)


@pytest.fixture
def stack_settings(settings: Settings, upstream_ca: tuple[Path, ssl.SSLContext]) -> Settings:
    return msgspec.structs.replace(settings, runtime="gvisor", rpc_timeout_s=60.0,
                                   secrets_upstream_ca=str(upstream_ca[0]),
                                   secrets_proxy_port=_free_port(gv.host_address()))  # fmt: skip


@pytest.fixture
async def upstream(upstream_ca: tuple[Path, ssl.SSLContext]) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    yield await start_site(runner, gv.host_address(), upstream_ca[1])
    await runner.cleanup()


@pytest.mark.timeout(900)
async def test_a_gvisor_machine_gets_its_secrets_added_at_the_hosts_door(
    stack: FleetClient, stack_settings: Settings, upstream: int, bare_repo: Path,
    tmp_path: Path, upstream_ca: tuple[Path, ssl.SSLContext],
) -> None:  # fmt: skip
    host = gv.host_address()
    (tmp_path / "git").mkdir()
    (tmp_path / "git" / "app.git").symlink_to(bare_repo)
    async with GitHttpServer(tmp_path / "git", "bot", TOKEN, host=host,
                             tls=upstream_ca[1]) as git:  # fmt: skip
        inst = await stack.create_instance("gv-secrets")
        await stack.set_network_policy(inst.id, allow=[host])  # the host's own address: named
        await stack.call(SECRETS_SET, SetSecretParams(
            instance_id=inst.id, name="API_KEY", value=VALUE, hosts=[f"{host}:{upstream}"],
        ))  # fmt: skip
        await stack.add_repo(inst.id, git.url("app.git"), "main", "src/app", token=TOKEN,
                             username="bot")  # fmt: skip
        created = await stack.create_machine(inst.id)
        got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=gv.READY_S)
        assert got.status == "ready", got.status_reason
        assert got.runtime == "gvisor"
        mid = created.id
        # The private repo was cloned through the door, and fetches with no token.
        code, said = await _sh(stack, mid, "cd src/app && git fetch -q origin && git log -1 "
                               "--format=%s origin/main")  # fmt: skip
        assert code == 0, said

    curl = f'curl -sS https://{host}:{upstream}/v1 -H "Authorization: Bearer $API_KEY"'
    code, said = await _sh(stack, mid, curl)
    assert code == 0, said
    assert json.loads(said) == {"authorization": f"Bearer {VALUE}"}
    _, said = await _sh(stack, mid, "echo $API_KEY $HTTPS_PROXY")
    assert said.split() == ["fleet-secret-API_KEY",
                            f"http://{host}:{stack_settings.secrets_proxy_port}"]  # fmt: skip
    assert await _nowhere(stack, mid, VALUE) == ""
    assert await _nowhere(stack, mid, TOKEN) == ""
