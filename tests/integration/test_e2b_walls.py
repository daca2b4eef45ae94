"""The E2B front walls a sandbox in as fleetd's own API does, on the real servers: one
sandbox's access token reaches no other sandbox (nor, missing, any); a token without
``machines:exec`` runs nothing through it, whatever API it comes by; a token's budgets hold
for the calls it makes through E2B's APIs as for their JSON-RPC twins."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest

from controlplane.settings import Settings
from services.gateway.e2b.envd_http import sign
from tests.conftest import running_stack
from tests.e2b_sdk import python_sdk, sdk_env


@pytest.fixture
def e2b_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, e2b_runtime="namespaces", rate_exec_per_min=3)


MAKE_TWO = """
    import json
    from e2b import Sandbox
    a, b = Sandbox.create(), Sandbox.create()
    print(json.dumps({"a": a.sandbox_id, "b": b.sandbox_id,
                      "token": a._envd_access_token}))
"""


async def list_dir(settings: Settings, sandbox_id: str, token: str | None) -> tuple[int, str]:
    """envd's ListDir of ``sandbox_id``'s home, as an SDK would send it, with ``token``."""
    headers = {"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": "49983",
               "Connect-Protocol-Version": "1"}  # fmt: skip
    if token is not None:
        headers["X-Access-Token"] = token
    url = f"http://127.0.0.1:{settings.e2b_port}/filesystem.Filesystem/ListDir"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json={"path": "/home/user", "depth": 1}, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def test_a_sandboxs_token_reaches_no_other_sandbox(e2b_settings: Settings) -> None:
    async with running_stack(e2b_settings):
        made = await python_sdk(MAKE_TWO, sdk_env(e2b_settings))
        assert (await list_dir(e2b_settings, made["a"], made["token"]))[0] == 200
        status, body = await list_dir(e2b_settings, made["b"], made["token"])
        assert (status, '"unauthenticated"' in body) == (401, True)
        assert (await list_dir(e2b_settings, made["b"], None))[0] == 401
        assert (await list_dir(e2b_settings, made["b"], "made-up"))[0] == 401


async def test_a_private_sandboxs_port_opens_to_its_traffic_token_which_opens_nothing_else(
    e2b_settings: Settings,
) -> None:
    async with running_stack(e2b_settings):
        got = await python_sdk("""
            import json, os, time, urllib.error, urllib.request
            from e2b import Sandbox
            sbx = Sandbox.create(network={"allow_public_traffic": False})
            sbx.files.write("site/index.html", "private")
            sbx.commands.run("python3 -m http.server 8002 --directory site", background=True)
            api, host = os.environ["E2B_SANDBOX_URL"], sbx.get_host(8002)

            def get(headers):
                req = urllib.request.Request(api + "/index.html", headers={"Host": host, **headers})
                try:
                    return urllib.request.urlopen(req).status
                except urllib.error.HTTPError as e:
                    return e.code

            key = {"E2B-Traffic-Access-Token": sbx.traffic_access_token}
            began = time.monotonic()
            while get(key) != 200 and time.monotonic() - began < 60:
                time.sleep(0.2)
            print(json.dumps({"id": sbx.sandbox_id, "traffic": sbx.traffic_access_token,
                              "with": get(key), "without": get({}),
                              "wrong": get({"E2B-Traffic-Access-Token": "made-up"}),
                              "own": sbx.traffic_access_token != sbx._envd_access_token}))
        """, sdk_env(e2b_settings))  # fmt: skip
        assert (got["with"], got["without"], got["wrong"], got["own"]) == (200, 403, 403, True)
        status, body = await list_dir(e2b_settings, got["id"], got["traffic"])
        assert (status, '"unauthenticated"' in body) == (401, True)  # it opens ports, no more
        path = "/home/user/site/index.html"  # nor does it sign a download URL
        query = {"path": path, "username": "user",
                 "signature": sign([path, "read", "user", got["traffic"]], None)}  # fmt: skip
        headers = {"E2b-Sandbox-Id": got["id"], "E2b-Sandbox-Port": "49983"}
        url = f"http://127.0.0.1:{e2b_settings.e2b_port}/files"
        async with aiohttp.ClientSession() as http, http.get(url, params=query,
                                                             headers=headers) as resp:  # fmt: skip
            assert resp.status == 401


async def test_a_token_without_exec_runs_nothing_through_the_front(
    e2b_settings: Settings,
) -> None:
    async with running_stack(e2b_settings) as client:
        made = await python_sdk(MAKE_TWO, sdk_env(e2b_settings))
        reader = await client.create_token("reader", scopes=["machines:read", "files:read"])
        got = await python_sdk(f"""
            import json
            from e2b_code_interpreter import Sandbox
            sbx = Sandbox.connect({made["a"]!r})
            out = {{"entries": len(sbx.files.list("/home/user")) >= 0}}
            try:
                sbx.run_code("print('ran')")
                out["ran"] = True
            except Exception as exc:
                out["refused"] = str(exc)
            try:
                sbx.commands.run("touch ran")
                out["ran"] = True
            except Exception as exc:
                out["refused_command"] = str(exc)
            print(json.dumps(out))
        """, sdk_env(e2b_settings, reader.token))  # fmt: skip
        assert got["entries"] is True  # reading is what the token may do
        assert "ran" not in got
        assert "machines:exec" in got["refused"]
        assert "machines:exec" in got["refused_command"]


async def test_a_tokens_exec_budget_holds_through_the_front(e2b_settings: Settings) -> None:
    async with running_stack(e2b_settings) as client:
        await client.create_user("dev@example.com")  # a member: makes its own instances
        dev = await client.create_token("dev", user="dev@example.com")
        got = await python_sdk(
            """
            import json
            from e2b_code_interpreter import Sandbox
            from e2b.exceptions import RateLimitException
            sbx = Sandbox.create()
            ran, refused = 0, None
            for i in range(5):
                try:
                    if i % 2:
                        sbx.run_code("1")
                    else:
                        sbx.commands.run("true")
                    ran += 1
                except Exception as exc:
                    refused = [type(exc).__name__, str(exc)]
                    break
            print(json.dumps({"ran": ran, "refused": refused}))
        """,
            sdk_env(e2b_settings, dev.token),
        )
        assert got["ran"] == e2b_settings.rate_exec_per_min
        assert got["refused"] is not None
        assert "commands and code runs" in got["refused"][1]
