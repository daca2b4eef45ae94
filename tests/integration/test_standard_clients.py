"""Clients and validators nobody here wrote, pointed at the real gateway and at the documents it
generates: the official OpenRPC schema utils, Redocly's linter and the AsyncAPI parser (npm,
driven through tests/js/validate_specs.mjs), and the ``jsonrpcclient`` library."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import jsonrpcclient

from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.openrpc import openrpc_document
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "validate_specs.mjs"
#: Protocol errors (-32700 .. -32603, 1001 ...) any method may answer: the catalog lists them
#: once instead of on every method, which Redocly's recommended set reports as unused.
_CATALOG = "no-unused-components: Component: "


def validate(kind: str, doc: dict[str, Any] | Path, tmp_path: Path) -> list[str]:
    """What the npm validator ``kind`` says about the document (empty: it passes)."""
    node = shutil.which("node")
    installed = (ROOT / "node_modules" / "@asyncapi" / "parser").is_dir()
    assert node, "node is missing: .ci/run installs nodejs and npm"
    assert installed, "the JS tools are missing: ./run test installs them (npm ci)"
    path = doc if isinstance(doc, Path) else tmp_path / f"{kind}.json"
    if not isinstance(doc, Path):
        path.write_text(json.dumps(doc))
    out = subprocess.run(
        [node, str(SCRIPT), kind, str(path)], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    problems: list[str] = json.loads(out.stdout)["problems"]
    return problems


async def rpc(settings: Settings, req: Any, token: str | None = ADMIN_TOKEN) -> Any:
    """POST a request built by jsonrpcclient; the parsed answer (Ok / Error, or a list)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{settings.port}/rpc"
    async with aiohttp.ClientSession() as s, s.post(url, json=req, headers=headers) as r:
        return jsonrpcclient.parse(await r.json())


async def test_live_openrpc_document_passes_the_official_schema_utils_and_redocly(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    answer = await rpc(settings, jsonrpcclient.request("rpc.discover", params=[]), token=None)
    assert isinstance(answer, jsonrpcclient.Ok), answer
    doc = answer.result
    assert validate("openrpc", doc, tmp_path) == []
    lint = validate("redocly", doc, tmp_path)
    unused = [p for p in lint if _CATALOG in p and "#/components/errors/" in p]
    assert [p for p in lint if p not in unused] == []
    assert all(p.startswith("warn") for p in unused)


def test_redocly_catches_a_required_param_after_an_optional_one(tmp_path: Path) -> None:
    """The linter is really on: a required param after an optional one is reported."""
    doc = openrpc_document(GATEWAY_METHODS, title="t", version="1")
    env_set = next(m for m in doc["methods"] if m["name"] == "env.set")
    env_set["params"].reverse()  # instanceId (optional) first
    errors = [p for p in validate("redocly", doc, tmp_path) if p.startswith("error")]
    assert errors
    assert all("spec-no-required-params-after-optional" in e for e in errors)


def test_asyncapi_document_passes_the_asyncapi_parser(tmp_path: Path) -> None:
    assert validate("asyncapi", ROOT / "docs" / "asyncapi.json", tmp_path) == []
    broken = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    broken["channels"]["nowhere"] = {"address": 7}
    assert validate("asyncapi", broken, tmp_path) != []


async def test_jsonrpcclient_drives_the_gateway(stack: FleetClient, settings: Settings) -> None:
    created = await rpc(settings, jsonrpcclient.request("instances.create", {"name": "std"}))
    assert isinstance(created, jsonrpcclient.Ok), created
    inst = created.result["id"]
    put = {"instanceId": inst, "name": "GREETING", "value": "hi"}
    assert isinstance(await rpc(settings, jsonrpcclient.request("env.set", put)), jsonrpcclient.Ok)
    listed = await rpc(settings, jsonrpcclient.request("instances.list", params=[]))
    assert [i["id"] for i in listed.result["instances"]] == [inst]
    bad = await rpc(settings, jsonrpcclient.request("machines.get", {"machineId": "nope"}))
    assert isinstance(bad, jsonrpcclient.Error)
    assert bad.code == -32602
    assert bad.data["field"] == "$.machineId"
    batch = [
        jsonrpcclient.request("env.list", {"instanceId": inst}),
        jsonrpcclient.request("tokens.list", params=[]),
    ]
    answers = list(await rpc(settings, batch))
    assert all(isinstance(a, jsonrpcclient.Ok) for a in answers), answers
    assert answers[0].result["vars"][0]["value"] == "hi"
    refused = await rpc(settings, jsonrpcclient.request("instances.list"), token="wrong")
    assert isinstance(refused, jsonrpcclient.Error)
    assert refused.code == 1001
