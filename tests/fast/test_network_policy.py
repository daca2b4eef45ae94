"""``instances.setNetworkPolicy`` / ``instances.getNetworkPolicy`` in memory: stored, checked,
sent to each running machine's host. That the kernel enforces it: tests/integration."""

from __future__ import annotations

import pytest

from contracts.errors import Forbidden, InvalidParams, NotFound
from tests.fast.conftest import World
from tests.fast.test_gateway import MISSING_INSTANCE, token_of, two_instances

method = pytest.mark.gateway_method


@method("instances.getNetworkPolicy", "instances.setNetworkPolicy")
async def test_a_policy_is_stored_and_sent_to_running_machines(world: World) -> None:
    a, _ = await two_instances(world)
    got = await world.rpc("instances.getNetworkPolicy", {"instanceId": a})
    assert got["egress"] == {"default": "allow", "allow": [], "deny": []}
    machine = await world.ready_machine(a)
    egress = {"default": "deny", "allow": ["*.example.test:443", "[2001:db8::/32]:80-90"],
              "deny": ["192.0.2.0/24"]}  # fmt: skip
    got = await world.rpc("instances.setNetworkPolicy", {"instanceId": a, "egress": egress},
                          token_of(a))  # fmt: skip
    assert got["egress"] == egress
    # The in-memory provider has no network namespace: the host says so, by machine.
    assert got["machines"] == 1
    assert [f["machineId"] for f in got["failed"]] == [machine.id]
    again = await world.rpc("instances.getNetworkPolicy", {"instanceId": a})
    assert again["egress"] == egress
    assert (again["machines"], again["failed"]) == (0, [])


@method("instances.setNetworkPolicy")
async def test_a_bad_entry_is_refused_by_name(world: World) -> None:
    a, b = await two_instances(world)
    bad = {"default": "deny", "allow": ["pypi.org", "example.test:99999"]}
    with pytest.raises(InvalidParams) as raised:
        await world.rpc("instances.setNetworkPolicy", {"instanceId": a, "egress": bad})
    assert raised.value.code == -32602
    assert "allow[1]" in raised.value.message
    assert "'example.test:99999'" in raised.value.message
    with pytest.raises(InvalidParams):
        await world.rpc("instances.setNetworkPolicy",
                        {"instanceId": a, "egress": {"default": "block"}})  # fmt: skip
    with pytest.raises(Forbidden):
        await world.rpc("instances.setNetworkPolicy", {"instanceId": b, "egress": {}},
                        token_of(a))  # fmt: skip
    with pytest.raises(NotFound):
        await world.rpc("instances.getNetworkPolicy", {"instanceId": MISSING_INSTANCE})
    got = await world.rpc("instances.getNetworkPolicy", {"instanceId": a})
    assert got["egress"]["default"] == "allow"  # nothing stored by a refused call
