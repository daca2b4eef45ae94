"""Codemode's rights on the whole stack: a run or a describe needs ``codemode.run``'s and
``codemode.describe``'s scope (its spec's ``scope``) on the instance it belongs to,
through ``POST /rpc``, ``POST /codemode/run`` and ``/mcp`` alike, so that a token that may only
look neither runs code in the sandbox nor reaches the instance's bridges, which call their APIs
with the credentials the owner stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from contracts.errors import Forbidden, InvalidParams
from contracts.gateway import codemode as cm
from contracts.people import MACHINES_EXEC, MACHINES_READ, Scope
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.httpserve import serving
from tests.integration.test_codemode import codemode  # noqa: F401 - the fixture
from tests.integration.test_codemode_mcp import _mcp_url, mcp_client

#: The bridge's API: one operation, which answers the Authorization header it was sent.
SPEC = {
    "openapi": "3.0.0",
    "paths": {"/secret": {"get": {"operationId": "whoAmI", "summary": "Who called."}}},
}
OWNERS_CREDENTIAL = "Bearer owners-stored-credential"
#: Code that calls the bridge with the credential the owner stored.
USE_BRIDGE = "await api.whoAmI()"


@asynccontextmanager
async def bridged_api() -> AsyncIterator[tuple[str, list[str]]]:
    """An API a bridge may call: its base URL, and the paths asked of it (spec included)."""
    asked: list[str] = []

    async def spec(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response(SPEC)

    async def secret(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"authorization": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_get("/openapi.json", spec)
    app.router.add_get("/secret", secret)
    async with serving(app) as base:
        yield base, asked


async def token(admin: FleetClient, scope: Scope, *instance_ids: str) -> str:
    made = await admin.create_scoped_token(f"{scope}-{len(instance_ids)}", scopes=[scope],
                                           instance_ids=list(instance_ids))  # fmt: skip
    return made.token


async def test_a_read_token_neither_runs_nor_describes_nor_reaches_a_bridge(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    inst = await codemode.create_instance("bridged")
    url = f"http://127.0.0.1:{settings.port}"
    async with bridged_api() as (base, asked):
        bridge = cm.OpenApiBridge(name="api", spec_url=f"{base}/openapi.json", base_url=base,
                                  authorization=OWNERS_CREDENTIAL)  # fmt: skip
        await codemode.code_set_bridge(inst.id, bridge)
        reader = await token(codemode, MACHINES_READ, inst.id)
        async with FleetClient(url, reader) as looker:
            assert (await looker.get_instance(inst.id)).id == inst.id  # it may look
            for named in ({}, {"instance_id": inst.id}):  # its one instance, implied or named
                with pytest.raises(Forbidden):
                    await looker.code_run(USE_BRIDGE, **named)  # type: ignore[arg-type]
                with pytest.raises(Forbidden):
                    await looker.code_describe(["api"], **named)  # type: ignore[arg-type]
                with pytest.raises(Forbidden):  # POST /codemode/run
                    async for _ in looker.code_stream(USE_BRIDGE, **named):  # type: ignore[arg-type]
                        pass
        async with mcp_client(_mcp_url(settings), reader) as mcp:
            for tool, args in (("run_code", {"code": USE_BRIDGE}), ("describe", {})):
                answer = await mcp.call_tool(tool, args)
                assert answer.is_error, (tool, answer)
                assert f"error {Forbidden.code}" in json.dumps(answer.model_dump()), answer
        assert asked == []  # the bridge's API never heard of the reader

        # The same run by a token that may run code: the bridge answers, with the credential.
        async with FleetClient(url, await token(codemode, MACHINES_EXEC, inst.id)) as runner:
            result = await runner.code_run(USE_BRIDGE)
        assert result.status == "ok", result
        assert result.result == {"authorization": OWNERS_CREDENTIAL}


async def test_a_token_of_several_instances_runs_only_where_it_may(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    a = (await codemode.create_instance("a")).id
    b = (await codemode.create_instance("b")).id
    url = f"http://127.0.0.1:{settings.port}"
    async with FleetClient(url, await token(codemode, MACHINES_READ, a, b)) as looker:
        for refused in (Forbidden, InvalidParams):  # named and not: never run unchecked
            named = {"instance_id": a} if refused is Forbidden else {}
            with pytest.raises(refused):
                await looker.code_run("1", **named)  # type: ignore[arg-type]
            with pytest.raises(refused):
                await looker.code_describe(["fleet"], **named)  # type: ignore[arg-type]
    async with FleetClient(url, await token(codemode, MACHINES_EXEC, a, b)) as doer:
        with pytest.raises(InvalidParams) as unnamed:  # which of its instances: it must say
            await doer.code_run("1")
        assert unnamed.value.field == "$.instanceId"
        ran = await doer.code_run("6 * 7", instance_id=a)
        assert (ran.status, ran.result) == ("ok", 42)
