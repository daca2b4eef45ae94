"""``machines.code.run`` as an agent reaches it on the whole stack, real daemons and kernels:
codemode's ``machine.code_run`` (a variable kept from one call to the next; another instance's
machine refused through ``fleet``, as the gateway refuses the run's caller) and the MCP tool
``machines_code_run`` over the gateway's ``/mcp`` (text and image results; a token that may only
look is refused) and over ``fleet mcp``'s stdio."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters
from mcp_types import ImageContent, TextContent

from contracts.errors import Forbidden
from contracts.people import MACHINES_READ
from controlplane.mcp_tools import CODE_RUN_TOOL
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_codemode import codemode, ready_machine, run  # noqa: F401
from tests.integration.test_codemode_mcp import _mcp_url, mcp_client
from tests.integration.test_codemode_rights import token

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


async def test_a_codemode_run_keeps_a_kernels_state_and_reaches_only_its_callers_machines(
    codemode: FleetClient,  # noqa: F811
) -> None:
    inst_id, mid = await ready_machine(codemode, "cm-kernel")
    _, elsewhere = await ready_machine(codemode, "cm-other")
    runner = await codemode.create_token("cm-kernel", inst_id)
    url = codemode.url
    code = (
        "await machine.code_run('x = 41')\n"
        "r = await machine.code_run(code='x + 1')\n"
        "try:\n"
        f"    await fleet.machines.code.run(machineId={elsewhere!r}, code='1')\n"
        "except ToolError as e:\n"
        "    refused = e.code\n"
        "[r['results'], r['contextId'], refused]"
    )
    async with FleetClient(url, runner.token) as theirs:
        result = await run(theirs, code, machine_id=mid)
    assert result.status == "ok", result
    assert result.result == [[{"text/plain": "42", "isMain": True}], "default-python",
                             Forbidden.code]  # fmt: skip
    contexts = await codemode.machines_code_list_contexts(elsewhere)
    assert contexts.contexts == []  # no kernel was started in the other instance's machine


async def test_the_mcp_tool_runs_code_with_images_for_a_token_that_may_exec(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    inst_id, mid = await ready_machine(codemode, "mcp-kernel")
    async with mcp_client(_mcp_url(settings), (await codemode.create_token("mcp", inst_id)).token
                          ) as client:  # fmt: skip
        first = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "x = 41"})
        assert not first.is_error, first
        second = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "x + 1"})
        assert [c.text for c in second.content if isinstance(c, TextContent)] == ["42"]
        show = f"from IPython.display import Image, display\ndisplay(Image(data={PNG!r}))"
        image = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": show})
        (png,) = [c for c in image.content if isinstance(c, ImageContent)]
        assert (base64.b64decode(png.data), png.mime_type) == (PNG, "image/png")
        failed = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "1/0"})
        assert failed.is_error
        assert "ZeroDivisionError: division by zero" in failed.content[0].text  # type: ignore[union-attr]
        assert "\x1b[" not in failed.content[0].text  # type: ignore[union-attr]
    reader = await token(codemode, MACHINES_READ, inst_id)
    async with mcp_client(_mcp_url(settings), reader) as client:
        refused = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "x = 0"})
    assert refused.is_error
    assert f"error {Forbidden.code}" in json.dumps(refused.model_dump()), refused
    after = await codemode.machines_code_run(mid, "x")
    assert [r["text/plain"] for r in after.results] == ["41"]  # the reader's code never ran


async def test_fleet_mcp_over_stdio_runs_code_in_a_machine(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    _, mid = await ready_machine(codemode, "mcp-stdio")
    fleet_bin = str(Path(sys.executable).with_name("fleet"))
    env = {"PATH": os.environ["PATH"], "FLEET_URL": f"http://127.0.0.1:{settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    async with Client(StdioServerParameters(command=fleet_bin, args=["mcp"], env=env)) as client:
        await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "x = 41"})
        answer = await client.call_tool(
            CODE_RUN_TOOL, {"machine_id": mid, "code": "print(x)\nx + 1"}
        )
    assert not answer.is_error, answer
    texts = [c.text for c in answer.content if isinstance(c, TextContent)]
    assert texts == ["[stdout]\n41\n", "42"]
