"""One error, every route: a stopped machine and a machine whose daemon does not answer, asked
through ``/rpc``, files GET and PUT, a session's attach WebSocket, a tunnel and a preview of the
real gateway (real NATS and valkey). Every route but ``/rpc`` answers the error kind's own HTTP
status; all answer the same JSON-RPC error (code and message); and the real CLI prints the same
line for each of its commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import NamedTuple

import aiohttp
import msgspec
import pytest

from contracts.errors import ERROR_HEADER, DaemonUnavailable, FleetError, MachineStopped
from contracts.status import MachineStatus as S
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from tests.conftest import ADMIN_TOKEN, MACHINE_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SESSION = "0123456789abcdef"
PORT = 8080
_UP = (S.PROVISIONING, S.BOOTING, S.SETTING_UP, S.PROBING, S.READY)


class Answer(NamedTuple):
    status: int
    code: int
    message: str


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Wake on access off: the stopped machine here has no provider behind it, and its calls
    are to be refused (a call that wakes one: tests/integration/test_wake.py)."""
    return msgspec.structs.replace(settings, wake_on_access=False)


@pytest.fixture
async def gateway(settings: Settings, store: Store) -> AsyncIterator[str]:
    from services.gateway.__main__ import build

    async with AsyncExitStack() as es:
        await build(settings, es)
        yield f"http://127.0.0.1:{settings.port}"


async def ready_without_daemon(settings: Settings, store: Store, name: str) -> str:
    """A machine the platform holds for ready, with its key, whose daemon is not there."""
    inst = await store.create_instance(name)
    mid = (await store.create_machine(inst.id, "local")).id
    for status in _UP:
        assert (await store.transition(mid, status, "test")).moved
    assert await store.claim_machine_secret(
        mid, SecretBox(settings.secret_key).encrypt(MACHINE_TOKEN)
    )
    return mid


async def stopped(settings: Settings, store: Store) -> str:
    mid = await ready_without_daemon(settings, store, "stopped")
    for status in (S.STOPPING, S.STOPPED):
        assert (await store.transition(mid, status, "stopped by test")).moved
    return mid


def _of_body(status: int, body: bytes) -> Answer:
    err = json.loads(body)["error"]
    return Answer(status, err["code"], err["message"])


async def _http(s: aiohttp.ClientSession, method: str, url: str, **kw: object) -> Answer:
    async with s.request(method, url, headers=AUTH, **kw) as r:  # type: ignore[arg-type]
        return _of_body(r.status, await r.read())


async def _ws(s: aiohttp.ClientSession, url: str) -> Answer:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await s.ws_connect(url, headers=AUTH)
    headers = refused.value.headers
    assert headers is not None
    err = json.loads(headers[ERROR_HEADER])  # what a WebSocket client can read of a refusal
    return Answer(refused.value.status, err["code"], err["message"])


async def every_route(base: str, previews: str, mid: str) -> dict[str, Answer]:
    """``previews``: the preview listener (by path there, with the bearer token)."""
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "machines.exec",
           "params": {"machineId": mid, "command": ["true"]}}  # fmt: skip
    m = f"{base}/machines/{mid}"
    async with aiohttp.ClientSession() as s:
        return {
            "rpc": await _http(s, "POST", f"{base}/rpc", json=rpc),
            "files GET": await _http(s, "GET", f"{m}/files/notes.txt"),
            "files PUT": await _http(s, "PUT", f"{m}/files/notes.txt", data=b"hello"),
            "attach": await _ws(s, f"{m}/sessions/{SESSION}/attach"),
            "tunnel": await _ws(s, f"{m}/tunnel/{PORT}"),
            "preview": await _http(s, "GET", f"{previews}/machines/{mid}/ports/{PORT}/"),
        }


async def cli_says(base: str, *args: str) -> tuple[int | None, str]:
    env = {**os.environ, "FLEET_URL": base, "FLEET_TOKEN": ADMIN_TOKEN}
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli.entry import main; main()", *args, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(cli.communicate(), 60)
    return cli.returncode, err.decode().strip()


async def cli_lines(base: str, mid: str, tmp_path: Path, *, tunnel: bool) -> dict[str, str]:
    local = tmp_path / "notes.txt"
    local.write_text("hello")
    commands = {
        "rpc": ("machines", "exec", mid, "--", "true"),
        "files GET": ("machines", "cp", f"{mid}:notes.txt", str(tmp_path / "back.txt")),
        "files PUT": ("machines", "cp", str(local), f"{mid}:notes.txt"),
        "attach": ("machines", "sessions", "attach", mid, SESSION),
    }
    if tunnel:  # `tunnel` starts a stopped machine first, by design: asked when running only
        commands["tunnel"] = ("machines", "tunnel", mid, str(PORT))
    said = {}
    for route, args in commands.items():
        code, text = await cli_says(base, *args)
        assert code == 4, (route, text)  # EXIT_API: the gateway answered with an error
        said[route] = text
    return said


def assert_one_answer(answers: dict[str, Answer], kind: type[FleetError]) -> None:
    statuses = {route: a.status for route, a in answers.items()}
    assert statuses == dict.fromkeys(statuses, kind.http_status), statuses
    errors = {route: (a.code, a.message) for route, a in answers.items()}
    assert set(errors.values()) == {(kind.code, answers["rpc"].message)}, errors


async def test_a_stopped_machine_is_one_error_on_every_route(
    gateway: str, settings: Settings, store: Store, tmp_path: Path
) -> None:
    mid = await stopped(settings, store)
    answers = await every_route(gateway, f"http://127.0.0.1:{settings.preview_port}", mid)
    assert_one_answer(answers, MachineStopped)
    assert answers["rpc"].message.startswith(f"machine {mid} is stopped; ")
    said = await cli_lines(gateway, mid, tmp_path, tunnel=False)
    assert set(said.values()) == {f"fleet: error 1040: {answers['rpc'].message}"}, said


async def test_an_unreachable_daemon_is_one_error_on_every_route(
    gateway: str, settings: Settings, store: Store, tmp_path: Path
) -> None:
    mid = await ready_without_daemon(settings, store, "unreachable")
    answers = await every_route(gateway, f"http://127.0.0.1:{settings.preview_port}", mid)
    assert_one_answer(answers, DaemonUnavailable)
    assert f"no daemon is serving machine {mid}" in answers["rpc"].message
    said = await cli_lines(gateway, mid, tmp_path, tunnel=True)
    assert set(said.values()) == {f"fleet: error 1502: {answers['rpc'].message}"}, said
