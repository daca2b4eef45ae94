"""``machines.ports`` and ``machines.previewTicket`` through the JSON-RPC dispatcher, and the
preview tickets and cookies they lead to (single use, bound to one machine's one port, dead
with their token)."""

from __future__ import annotations

import pytest

from contracts.errors import Conflict, DaemonUnavailable, Forbidden, InvalidParams, NotFound
from contracts.people import PORTS
from contracts.ports import ListeningPort
from environments import devcontainer as dc
from environments.lifecycle_commands import MachineLifecycle
from services.gateway.auth import Caller, current_caller
from tests.fast.conftest import World
from tests.fast.test_gateway import method, token_of, two_instances


@method("machines.ports")
async def test_a_devcontainers_forwarded_ports_are_listed_with_their_labels(
    world: World,
) -> None:
    machine = await world.ready_machine()
    conf = dc.parse(b'''{"image": "x", "forwardPorts": [3000, "localhost:5432", 3000, 8080],
        "portsAttributes": {"3000": {"label": "Web app", "protocol": "https"},
                            "5000-5500": {"label": "Database"}, "node*": {"label": "no"}}}''',
                    ".devcontainer.json", workspace="/home/fleet/app")  # fmt: skip
    await world.store.lifecycles.save(machine.id, MachineLifecycle(devcontainer=conf))
    world.daemons[machine.id].ports = [
        ListeningPort(port=3000, address="::", family="ipv6"),
        ListeningPort(port=22, address="::", family="ipv6"),
    ]
    answer = await world.rpc("machines.ports", {"machineId": machine.id})
    assert answer["ports"] == [
        {"port": 3000, "address": "::", "family": "ipv6", "label": "Web app", "protocol": "https"},
        {"port": 22, "address": "::", "family": "ipv6"},
    ]
    assert answer["forwarded"] == [
        {"port": 3000, "label": "Web app", "protocol": "https", "listening": True},
        {"port": 5432, "label": "Database", "listening": False},
        {"port": 8080, "listening": False},
    ]
    # A declared port that nothing listens on yet has its preview ticket all the same.
    ticket = await world.rpc("machines.previewTicket", {"machineId": machine.id, "port": 8080})
    assert ticket["ticket"]


@method("machines.ports")
async def test_machines_ports(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    world.daemons[machine.id].ports = [
        ListeningPort(port=22, address="127.0.0.1", family="ipv4"),
        ListeningPort(port=3000, address="::", family="ipv6"),
    ]
    answer = await world.rpc("machines.ports", {"machineId": machine.id}, token_of(a))
    assert answer == {"ports": [{"port": 22, "address": "127.0.0.1", "family": "ipv4"},
                                {"port": 3000, "address": "::", "family": "ipv6"}],
                      "forwarded": []}  # fmt: skip
    with pytest.raises(Forbidden):
        await world.rpc("machines.ports", {"machineId": machine.id}, token_of(b))
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.ports", {"machineId": "nope"})
    assert bad.value.field == "$.machineId"
    world.daemons[machine.id].mode = "unavailable"
    with pytest.raises(DaemonUnavailable):
        await world.rpc("machines.ports", {"machineId": machine.id})
    await world.rpc("machines.archive", {"machineId": machine.id})
    with pytest.raises(Conflict):
        await world.rpc("machines.ports", {"machineId": machine.id})


@method("machines.previewTicket")
async def test_preview_ticket_is_single_use_and_bound_to_its_port(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    token = await world.rpc("tokens.create", {"name": "dev", "instanceId": a})
    caller = Caller(token_id=token["id"], admin=False, instance_id=a)
    answer = await world.rpc("machines.previewTicket", {"machineId": machine.id, "port": 3000},
                             caller)  # fmt: skip
    # On the preview listener, an origin of that port's own: never the console's.
    assert answer["url"] == world.api.ports.origin.url(machine.id, 3000)
    assert answer["url"].startswith(f"http://{machine.id}-3000.localhost:")
    assert answer["ticket"].startswith("pvt_")
    previews = world.api.ports.previews
    # Another port of the same machine: refused, and the ticket is spent all the same.
    assert await previews.redeem_ticket(answer["ticket"], machine.id, 3001) is None
    again = await world.rpc("machines.previewTicket", {"machineId": machine.id, "port": 3000},
                            caller)  # fmt: skip
    cookie = await previews.redeem_ticket(again["ticket"], machine.id, 3000)
    assert cookie is not None
    assert cookie.startswith("pvs_")
    assert await previews.redeem_ticket(again["ticket"], machine.id, 3000) is None  # spent
    now = await current_caller(world.store, token["id"])  # the token's caller as stored now
    assert now is not None
    assert await previews.caller_of_cookie(cookie, machine.id, 3000) == now.doing(PORTS)
    reused = await previews.caller_of_cookie(cookie, machine.id, 3000)
    assert reused == now.doing(PORTS)  # reusable
    assert await previews.caller_of_cookie(cookie, machine.id, 8080) is None
    assert await previews.caller_of_cookie(cookie + "x", machine.id, 3000) is None
    assert await previews.caller_of_cookie(again["ticket"], machine.id, 3000) is None
    await world.rpc("tokens.revoke", {"id": token["id"]})
    assert await previews.caller_of_cookie(cookie, machine.id, 3000) is None  # dies with it

    with pytest.raises(Forbidden):
        await world.rpc("machines.previewTicket", {"machineId": machine.id, "port": 3000},
                        token_of(b))  # fmt: skip
    for port in (0, 65536, "80"):
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("machines.previewTicket", {"machineId": machine.id, "port": port})
        assert bad.value.field == "$.port"
    with pytest.raises(NotFound):
        await world.rpc("machines.previewTicket", {"machineId": "m-" + "0" * 16, "port": 1})


ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3JhhGpNqhW6Hh2Q0Xl8c0rK0y9sd7Q2yY7b8xj9Q2C me@laptop"
)
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 work"


@method("instances.setSshKeys")
async def test_ssh_keys_reach_running_machines_now_and_new_ones_at_setup(world: World) -> None:
    a, b = await two_instances(world)
    running = await world.ready_machine(a)
    answer = await world.rpc("instances.setSshKeys", {"instanceId": a, "keys": [ED25519, RSA]},
                             token_of(a))  # fmt: skip
    assert (answer["keys"], answer["machines"], answer["failed"]) == ([ED25519, RSA], 1, [])
    keys = world.daemons[running.id].file("~/.ssh/authorized_keys")
    assert (keys.content, keys.mode) == (f"{ED25519}\n{RSA}\n", 0o600)
    await world.rpc("machines.archive", {"machineId": running.id})
    rebuilt = await world.ready_machine(a)  # a new machine gets them with its .env
    assert world.daemons[rebuilt.id].file("~/.ssh/authorized_keys").content == f"{ED25519}\n{RSA}\n"
    other = await world.ready_machine(b)  # another instance's machine gets none
    assert "~/.ssh/authorized_keys" not in {p for p in world.daemons[other.id].files}
    cleared = await world.rpc("instances.setSshKeys", {"instanceId": a, "keys": []})
    assert cleared["machines"] == 1
    assert world.daemons[rebuilt.id].file("~/.ssh/authorized_keys").content == ""

    with pytest.raises(Forbidden):
        await world.rpc("instances.setSshKeys", {"instanceId": b, "keys": []}, token_of(a))
    with pytest.raises(NotFound):
        await world.rpc("instances.setSshKeys", {"instanceId": "i-" + "0" * 16, "keys": []})
    for bad in ('command="rm -rf ~" ' + ED25519, ED25519 + "\nssh-rsa AAAA x", "ssh-dss AAAA",
                "ssh-ed25519", "ssh-ed25519 not*base64", ""):  # fmt: skip
        with pytest.raises(InvalidParams):
            await world.rpc("instances.setSshKeys", {"instanceId": a, "keys": [bad]})
    with pytest.raises(InvalidParams) as too_many:
        await world.rpc("instances.setSshKeys", {"instanceId": a, "keys": [ED25519] * 65})
    assert too_many.value.field == "$.keys"
