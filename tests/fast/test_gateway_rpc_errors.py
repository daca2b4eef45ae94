"""``POST /rpc``'s answers to bad requests, in memory: each JSON-RPC error with its code and the
status ``/rpc`` sends it with (``error_answer``, as the route calls it), and a repo whose url,
branch or path would be read as an option or leave its machine is refused, naming the field.

Every case is tried here; tests/integration/test_gateway_http.py sends one of each through the
real gateway.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.errors import ERRORS, FleetError
from services.gateway.errors_http import error_answer
from tests.fast.conftest import ADMIN, World

#: (a body, the code of the error it gets).
BAD_BODIES = [
    ("{oops", -32700),
    ('{"id":1,"method":"instances.list"}', -32600),
    ('{"jsonrpc":"2.0","id":1,"method":"instances.nope"}', -32601),
    ('{"jsonrpc":"2.0","id":1,"method":"instances.create","params":{"name":""}}', -32602),
    ('{"jsonrpc":"2.0","id":1,"method":"machines.get","params":{"machineId":"m-1"}}', -32602),
    (
        '{"jsonrpc":"2.0","id":1,"method":"machines.get",'
        '"params":{"machineId":"m-0000000000000000"}}',
        1004,
    ),
]

#: (a repos.add field, a value that git would read as an option, or a path out of the machine).
INJECTIONS = [
    ("url", "--upload-pack=touch /tmp/pwned"),
    ("url", "ext::sh -c touch% /tmp/pwned"),
    ("url", "ssh://-oProxyCommand=touch /tmp/pwned/r"),
    ("branch", "-x"),
    ("branch", "--upload-pack=touch"),
    ("path", "../../etc"),
    ("path", "/etc"),
]


async def post(world: World, body: str | bytes) -> tuple[int, Any]:
    """(the HTTP status, the JSON answer) ``POST /rpc`` sends for this body from the admin."""
    errors: list[FleetError] = []
    raw = body.encode() if isinstance(body, str) else body
    answer = await world.dispatcher.handle(raw, ADMIN, errors)
    assert answer is not None
    status = error_answer(errors[0], answer).status if errors else 200
    return status, json.loads(answer)


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
async def test_errors_have_their_codes(world: World, body: str, code: int) -> None:
    status, answer = await post(world, body)
    assert status == ERRORS[code].http_status  # the error kind's status, as on every route
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]


@pytest.mark.gateway_method("repos.add")
@pytest.mark.parametrize(("field", "value"), INJECTIONS)
async def test_option_injection_in_repos_is_refused(world: World, field: str, value: str) -> None:
    inst = await world.instance("attacked")
    params = {"instanceId": inst.id, "url": "https://example.com/r.git", "branch": "main",
              "path": "r", field: value}  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": "repos.add", "params": params}
    _, answer = await post(world, json.dumps(body))
    assert answer["error"]["code"] == -32602
    assert answer["error"]["data"]["field"] == f"$.{field}"
    assert (await world.rpc("repos.list", {"instanceId": inst.id}))["repos"] == []
