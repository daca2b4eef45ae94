"""Who may give an instance a secret, over the real gateway's ``POST /rpc``: a developer of the
instance (every scope but ``admin``) gets HTTP 403 on ``secrets.set``; its owner sets it, and
``secrets.list`` shows it to both without its value. (Every method and role: the fast rights
table walk, tests/fast/test_rights_table.py.)"""

from __future__ import annotations

from typing import Any

import aiohttp

from contracts.errors import Forbidden
from fleet.client import FleetClient
from tests.integration.test_people import member_client
from tests.integration.test_ports import bearer

VALUE = "sk-live-0123456789"


async def post_rpc(url: str, token: str, method: str, params: dict[str, Any]) -> tuple[int, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/rpc", json=body, headers=bearer(token)) as r,
    ):
        return r.status, await r.json()


async def test_a_developer_is_refused_and_the_owner_sets_a_secret_never_shown(
    stack: FleetClient,
) -> None:
    i = (await stack.create_instance("secrets")).id
    dev = await member_client(stack, i, "dev-secrets@example.com", "developer")
    owner = await member_client(stack, i, "owner-secrets@example.com", "owner")
    params = {"instanceId": i, "name": "OPENAI_API_KEY", "value": VALUE,
              "hosts": ["api.openai.com"]}  # fmt: skip
    async with dev, owner:
        status, refused = await post_rpc(stack.url, dev._token, "secrets.set", params)
        assert (status, refused["error"]["code"]) == (403, Forbidden.code)
        assert (await stack.secrets_list(i)).secrets == []
        status, done = await post_rpc(stack.url, owner._token, "secrets.set", params)
        assert status == 200, done
        assert done["result"]["name"] == "OPENAI_API_KEY"
        for who in (owner, dev):  # a developer holds env:read
            status, listed = await post_rpc(
                stack.url, who._token, "secrets.list", {"instanceId": i}
            )
            assert status == 200, listed
            assert [s["name"] for s in listed["result"]["secrets"]] == ["OPENAI_API_KEY"]
            assert VALUE not in str(listed)
        status, refused = await post_rpc(stack.url, dev._token, "secrets.delete",
                                         {"instanceId": i, "name": "OPENAI_API_KEY"})  # fmt: skip
        assert status == 403
