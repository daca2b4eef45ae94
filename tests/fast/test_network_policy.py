"""``instances.setNetworkPolicy`` / ``instances.getNetworkPolicy`` in memory: stored, checked,
sent to each running machine's host. That the kernel enforces it: tests/integration."""

from __future__ import annotations

import asyncio

import pytest

from contracts.errors import Forbidden, InvalidParams, NotFound
from contracts.gateway.network import EgressPolicy
from providers.egress import nftables as egress
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


async def test_a_policy_reaching_many_machines_at_once_is_compiled_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change reaches each running machine of the host at once: one compilation serves
    them all (it is the costly part of a 1,000-entry policy, with nft's own)."""
    compiled: list[EgressPolicy] = []
    compile_ruleset = egress.compile_ruleset

    def counted(policy: EgressPolicy, platform: list[egress.Endpoint]) -> egress.Ruleset:
        compiled.append(policy)
        return compile_ruleset(policy, platform)

    monkeypatch.setattr(egress, "compile_ruleset", counted)
    enforcer = world.provisioner.machines.egress
    policy = EgressPolicy(default="deny", allow=[f"10.{i}.0.0/16:443" for i in range(200)])
    scripts = await asyncio.gather(*(enforcer.compiled(policy) for _ in range(20)))
    assert len({id(s) for s in scripts}) == 1
    assert len(compiled) == 1
    same = EgressPolicy(default="deny", allow=list(policy.allow))  # equal, read again
    assert await enforcer.compiled(same) is scripts[0]
    assert len(compiled) == 1
