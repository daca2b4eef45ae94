"""Codemode through the gateway: the whole stack in this process, the codemode service, real
daemons. Runs call the ``fleet`` and ``machine`` providers with the caller's rights."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from contracts.bus import subjects
from contracts.bus.events import MachineFailed, MachineReady
from contracts.errors import Forbidden, NotFound
from contracts.gateway import codemode as cm
from contracts.gateway.codemode import RunLog, RunParams
from contracts.rpc.jsonrpc import new_params
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration.test_codemode_sandbox import processes_with
from tests.waiters import subscribed, wait_until


@pytest.fixture
async def codemode(stack: FleetClient, stack_settings: Settings) -> AsyncIterator[FleetClient]:
    from contextlib import AsyncExitStack

    from services.codemode.__main__ import build

    async with AsyncExitStack() as es:
        await build(stack_settings, es)
        yield stack


async def ready_machine(client: FleetClient, name: str = "cm") -> tuple[str, str]:
    inst = await client.create_instance(name)
    machine = await client.create_machine(inst.id)
    async with asyncio.timeout(60):
        async with contextlib.aclosing(client.events(machine.id)) as events:
            async for _, event in events:
                if isinstance(event, MachineReady):
                    return inst.id, machine.id
                assert not isinstance(event, MachineFailed), event
    raise AssertionError("no ready event")


async def run(client: FleetClient, code: str, **kw: object) -> cm.RunResult:
    return await client.call(cm.CODEMODE_RUN, new_params(RunParams, code=code, **kw))  # type: ignore[arg-type]


async def test_a_run_calls_fleet_and_machine_tools(codemode: FleetClient) -> None:
    inst_id, machine_id = await ready_machine(codemode)
    code = (
        "out = await machine.exec(['sh', '-c', 'echo hi from $HOME'])\n"
        "await machine.write_file('notes/a.txt', 'written by code')\n"
        "text = await machine.read_file('notes/a.txt')\n"
        "raw = await machine.read_file(path='notes/a.txt', encoding='base64')\n"
        "names = [e['name'] for e in (await machine.list_dir('notes'))['entries']]\n"
        "size = (await machine.stat('notes/a.txt'))['size']\n"
        "gone = (await machine.remove_file('notes', recursive=True))['removed']\n"
        "me = await fleet.machines.get(machineId=" + repr(machine_id) + ")\n"
        "print('status', me['status'])\n"
        "try:\n"
        "    await fleet.machines.get(machineId='m-0000000000000000')\n"
        "except ToolError as e:\n"
        "    missing = e.code\n"
        "{'stdout': out['stdout'].strip(), 'text': text, 'missing': missing, 'raw': raw,\n"
        " 'names': names, 'size': size, 'gone': gone}"
    )
    result = await run(codemode, code, machine_id=machine_id)
    assert result.status == "ok", result
    assert result.result["stdout"].startswith("hi from /")
    assert result.result == {**result.result, "text": "written by code", "missing": NotFound.code,
                             "raw": "d3JpdHRlbiBieSBjb2Rl", "names": ["a.txt"], "size": 15,
                             "gone": True}  # fmt: skip
    assert result.logs == ["status ready"]
    runs = await codemode.call(cm.CODEMODE_LIST, new_params(cm.ListRunsParams))
    assert runs.runs[0].run_id == result.run_id
    assert runs.runs[0].status == "ok"
    assert runs.runs[0].instance_id == inst_id


async def test_a_run_is_scoped_like_its_token(codemode: FleetClient, settings: Settings) -> None:
    mine = await codemode.create_instance("mine")
    other = await codemode.create_instance("other")
    token = await codemode.create_token("t", mine.id)
    async with FleetClient(f"http://127.0.0.1:{settings.port}", token.token) as client:
        code = (
            f"a = await fleet.instances.get(instanceId={mine.id!r})\n"
            "try:\n"
            f"    await fleet.instances.get(instanceId={other.id!r})\n"
            "except ToolError as e:\n"
            "    b = e.code\n"
            "[a['name'], b]"
        )
        result = await run(client, code)
        assert result.result == ["mine", Forbidden.code], result
        with pytest.raises(Forbidden):
            await run(client, "1", instance_id=other.id)
        # its own runs only
        listed = await client.call(cm.CODEMODE_LIST, new_params(cm.ListRunsParams))
        assert [r.run_id for r in listed.runs] == [result.run_id]


async def test_bad_input_is_answered(codemode: FleetClient) -> None:
    syntax = await run(codemode, "x = 1\nif x\n")
    assert syntax.status == "error"
    assert "line 2" in (syntax.error or "")
    loop = await run(codemode, "while True: pass", timeout_s=1)
    assert loop.status == "timeout"
    assert (await run(codemode, "2 + 2")).result == 4  # the service is unaffected


async def test_cancel_ends_the_whole_tree(codemode: FleetClient, bus: Bus) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 991}"
    code = (
        f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])\n"
        "print('spawned', flush=True)\nimport time\ntime.sleep(60)"
    )
    async with subscribed(bus.nc, subjects.ALL_CODEMODE_EVENTS) as inbox:
        task = asyncio.create_task(run(codemode, code, timeout_s=60))
        async with asyncio.timeout(20):
            while True:
                event = msgspec.json.decode((await inbox.next()).data, type=cm.RunEvent)
                if isinstance(event, RunLog) and event.line == "spawned":
                    break
        # The run's log line and its child's exec are seen through different channels: the
        # child must show up, but a loaded host may show it a moment after the line.
        await wait_until(lambda: bool(processes_with(marker)), timeout=10)
        answer = await codemode.call(cm.CODEMODE_CANCEL, new_params(cm.RunRef, run_id=event.run_id))
        assert answer.cancelled
        result = await asyncio.wait_for(task, 10)
    assert result.status == "cancelled"
    await wait_until(lambda: not processes_with(marker), timeout=5)


async def test_describe_gives_stubs_that_parse_and_name_every_method(
    codemode: FleetClient,
) -> None:
    _, machine_id = await ready_machine(codemode, "describe")
    params = new_params(cm.DescribeParams, machine_id=machine_id)
    stubs = (await codemode.call(cm.CODEMODE_DESCRIBE, params)).stubs
    assert set(stubs) == {"fleet", "machine"}
    fleet_tree = ast.parse(stubs["fleet"])
    names = {n.name for n in ast.walk(fleet_tree) if isinstance(n, ast.AsyncFunctionDef)}
    from services.codemode.providers import FLEET_METHODS, MACHINE_TOOLS

    assert {m.rsplit(".", 1)[-1] for m in FLEET_METHODS} <= names
    machine_tree = ast.parse(stubs["machine"])
    names = {n.name for n in ast.walk(machine_tree) if isinstance(n, ast.AsyncFunctionDef)}
    assert set(MACHINE_TOOLS) | {"read_file"} <= names
    with pytest.raises(NotFound):
        await codemode.call(cm.CODEMODE_DESCRIBE, new_params(cm.DescribeParams, providers=["x"]))


async def test_no_codemode_service_is_a_clear_error(stack: FleetClient) -> None:
    from contracts.errors import CodemodeUnavailable

    with pytest.raises(CodemodeUnavailable):
        await run(stack, "1")


async def test_the_stream_gives_every_event_then_the_result(codemode: FleetClient) -> None:
    code = "print('one')\nawait fleet.instances.list()\nprint('two')\n'done'"
    seen = [item async for item in codemode.code_stream(code)]
    *events, end = seen
    assert isinstance(end, cm.RunResult)
    assert end.status == "ok"
    assert end.result == "done"
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted"
    assert kinds[-1] == "RunResultEvent"
    assert {"RunToolCall", "RunToolResult", "RunLog"} <= set(kinds)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # type: ignore[union-attr]
    assert all(e.run_id == end.run_id for e in events)  # type: ignore[union-attr]


async def test_openapi_bridge_calls_operations_by_id(codemode: FleetClient) -> None:
    from aiohttp import web

    seen_auth: list[str] = []
    spec = {
        "openapi": "3.0.0",
        "paths": {
            "/pets/{petId}": {
                "get": {
                    "operationId": "getPet",
                    "summary": "One pet.",
                    "parameters": [
                        {
                            "name": "petId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        },
                        {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
                    ],
                }
            }
        },
    }

    async def get_spec(_: web.Request) -> web.Response:
        return web.json_response(spec)

    async def get_pet(request: web.Request) -> web.Response:
        seen_auth.append(request.headers.get("Authorization", ""))
        if request.match_info["pet_id"] == "404":
            return web.json_response({"error": "no pet"}, status=404)
        return web.json_response({"id": int(request.match_info["pet_id"]),
                                  "verbose": request.query.get("verbose")})  # fmt: skip

    app = web.Application()
    app.router.add_get("/openapi.json", get_spec)
    app.router.add_get("/pets/{pet_id}", get_pet)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        inst = await codemode.create_instance("bridged")
        base = f"http://127.0.0.1:{port}"
        bridge = cm.OpenApiBridge(name="pets", spec_url=f"{base}/openapi.json", base_url=base,
                                  authorization="Bearer pet-secret")  # fmt: skip
        await codemode.code_set_bridge(inst.id, bridge)
        code = (
            "pet = await pets.getPet(petId=7, verbose=True)\n"
            "try:\n    await pets.getPet(petId=404)\nexcept ToolError as e:\n    err = e.code\n"
            "[pet, err]"
        )
        result = await codemode.code_run(code, instance_id=inst.id)
        assert result.status == "ok", result
        assert result.result == [{"id": 7, "verbose": "True"}, 1700]
        assert seen_auth == ["Bearer pet-secret", "Bearer pet-secret"]
        stubs = await codemode.code_describe(["pets"], instance_id=inst.id)
        tree = ast.parse(stubs["pets"])
        assert "getPet" in {n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef)}
    finally:
        await runner.cleanup()


async def test_fleet_mcp_over_stdio_runs_code(codemode: FleetClient, settings: Settings) -> None:
    import os
    import sys
    from pathlib import Path

    from mcp import Client, StdioServerParameters

    from tests.conftest import ADMIN_TOKEN

    fleet_bin = str(Path(sys.executable).with_name("fleet"))
    env = {"PATH": os.environ["PATH"], "FLEET_URL": f"http://127.0.0.1:{settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    server = StdioServerParameters(command=fleet_bin, args=["mcp"], env=env)
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"run_code", "describe"} <= names
        answer = await client.call_tool("run_code", {"code": "print('hi')\n6 * 7"})
        assert not answer.is_error, answer
        assert answer.structured_content is not None
        assert answer.structured_content["result"] == 42
        assert answer.structured_content["logs"] == ["hi"]
        stubs = await client.call_tool("describe", {"providers": ["fleet"]})
        assert stubs.structured_content is not None
        ast.parse(stubs.structured_content["fleet"])
