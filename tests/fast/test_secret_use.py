"""A machine's first use of a secret: the provisioner's egress proxy publishes one
``machine.secret-used`` (the secret's name and the host, never its value) per machine and
secret, and the gateway makes each one audit entry, on a durable consumer that also gets what
was published while no gateway ran. Through the real proxy: tests/fast/test_egress_proxy.py;
on the real stack: tests/integration/test_secrets_audit.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from contracts.bus.consumers import Durable
from contracts.bus.events import MachineSecretUsed, encode_event
from contracts.gateway.audit import EGRESS_PROXY, Action
from contracts.ids import new_event_id
from controlplane.settings import Settings
from services.gateway.auth import AuditLog, SecretUseAudit
from services.provisioner.egress.secrets_proxy import secrets_proxy, stored_secrets
from tests.fast.conftest import World

method = pytest.mark.gateway_method
VALUE = "sk-live-0123456789"
HOST = "api.openai.com:443"


def proxy_used(world: World) -> Callable[[str, str, str, str], Awaitable[None]]:
    """What the host's egress proxy calls as a request goes out with a secret added."""
    stored = stored_secrets(world.settings, world.store)
    return secrets_proxy(world.settings, world.store, frozenset(), world.bus, stored).platform.used


@method("secrets.set", "secrets.list")
async def test_a_first_use_by_each_machine_is_one_event_without_the_value(world: World) -> None:
    i = (await world.instance()).id
    await world.rpc("secrets.set", {"instanceId": i, "name": "OPENAI_API_KEY", "value": VALUE,
                                    "hosts": ["api.openai.com"]})  # fmt: skip
    used = proxy_used(world)
    with capture_logs() as logs:
        await used(i, "OPENAI_API_KEY", "m-a", HOST)
        await used(i, "OPENAI_API_KEY", "m-a", HOST)  # the same machine again: counted only
        await used(i, "OPENAI_API_KEY", "m-b", HOST)  # another machine: its own first use
    events = world.bus.of(MachineSecretUsed)
    assert [(e.machine_id, e.secret, e.host) for e in events] == [
        ("m-a", "OPENAI_API_KEY", HOST), ("m-b", "OPENAI_API_KEY", HOST)]  # fmt: skip
    assert all(VALUE.encode() not in encode_event(e) for e in events)
    assert VALUE not in repr(logs)
    (info,) = (await world.rpc("secrets.list", {"instanceId": i}))["secrets"]
    assert info["uses"] == 3


async def test_the_gateway_makes_each_event_one_entry_even_one_sent_while_it_was_away(
    world: World, settings: Settings
) -> None:
    machine = await world.ready_machine()
    await world.bus.publish(MachineSecretUsed(event_id=new_event_id(), machine_id=machine.id,
                                              secret="OPENAI_API_KEY", host=HOST))  # fmt: skip
    log = AuditLog(settings, world.store)
    world.bus.attach(SecretUseAudit(log))  # the gateway starts after the event was published
    await world.bus.settle()
    (entry,) = [e for e in log.buffered() if e.method == Action.SECRET_FIRST_USE]
    assert (entry.actor, entry.machine_id, entry.ok) == (EGRESS_PROXY, machine.id, True)
    assert entry.params == {"name": "OPENAI_API_KEY", "host": HOST}
    assert world.bus.outcomes(Durable.GATEWAY_AUDIT) == ["ok"]  # acked once it is buffered
