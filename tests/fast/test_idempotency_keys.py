"""A malformed idempotencyKey, in memory: machines.create and machines.rebuild answer
InvalidParams naming the field, and neither makes nor archives a machine.

Every malformed key is tried here; tests/integration/test_create_once.py and
test_rebuild_once.py send one through the real gateway.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.errors import InvalidParams
from contracts.status import ARCHIVED_OR_ARCHIVING
from tests.fast.conftest import ADMIN, World

MALFORMED = ["k" * 129, "short", "has space!", "ключ-ключ-ключ", ""]


async def post(world: World, method: str, params: dict[str, Any]) -> Any:
    """The JSON-RPC answer, as ``POST /rpc`` sends it back."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    answer = await world.dispatcher.handle(json.dumps(body).encode(), ADMIN)
    assert answer is not None
    return json.loads(answer)


@pytest.mark.gateway_method("machines.create")
@pytest.mark.parametrize("key", MALFORMED)
async def test_a_malformed_key_is_invalid_params_naming_the_field(world: World, key: str) -> None:
    inst = await world.instance("bad-key")
    answer = await post(world, "machines.create", {"instanceId": inst.id, "idempotencyKey": key})
    assert answer["error"]["code"] == InvalidParams.code, answer
    assert answer["error"]["data"]["field"] == "$.idempotencyKey"
    assert await world.store.list_machines(inst.id) == []


@pytest.mark.gateway_method("machines.rebuild")
@pytest.mark.parametrize("key", [*MALFORMED, 7])
async def test_a_malformed_rebuild_key_is_invalid_params_naming_the_field(
    world: World, key: object
) -> None:
    inst = await world.instance("bad-key")
    machine = await world.rpc("machines.create", {"instanceId": inst.id})
    answer = await post(world, "machines.rebuild", {"instanceId": inst.id, "idempotencyKey": key})
    assert answer["error"]["code"] == InvalidParams.code, answer
    assert answer["error"]["data"]["field"] == "$.idempotencyKey"
    assert [m.id for m in await world.store.list_machines(inst.id)] == [machine["id"]]
    assert (await world.store.get_machine(machine["id"])).status not in ARCHIVED_OR_ARCHIVING
