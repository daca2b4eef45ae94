"""The ``secrets.*`` methods through the dispatcher, in memory: a value is sealed as it arrives
and never answered, recorded or published; the cap; running machines told of each change.
(Who may call them: tests/fast/test_rights_table.py; over HTTP:
tests/integration/test_secrets_rights.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from contracts.bus.events import EnvChanged
from contracts.errors import InvalidParams, NotFound
from contracts.gateway.secrets import MAX_SECRETS
from controlplane.settings import Settings
from controlplane.store import StoredSecret
from tests.fast.conftest import World
from tests.fast.test_audit import recording

method = pytest.mark.gateway_method
VALUE = "sk-live-0123456789"
MISSING = "i-00000000000000ff"


def secret(instance_id: str, name: str = "OPENAI_API_KEY", **extra: Any) -> dict[str, Any]:
    return {"instanceId": instance_id, "name": name, "value": VALUE,
            "hosts": ["api.openai.com"], **extra}  # fmt: skip


@method("secrets.set", "secrets.list")
async def test_a_value_is_sealed_and_never_answered(world: World) -> None:
    i = (await world.instance()).id
    info = await world.rpc("secrets.set", secret(i, hosts=["*.github.com", "10.0.0.7:8443"],
                                                 header="X-Api-Key", format="{value}"))  # fmt: skip
    assert info == {"name": "OPENAI_API_KEY", "hosts": ["*.github.com", "10.0.0.7:8443"],
                    "header": "X-Api-Key", "format": "{value}", "uses": 0,
                    "lastUsedAt": None}  # fmt: skip
    (stored,) = await world.store.secrets.stored(i)
    assert VALUE not in stored.sealed
    assert world.box.decrypt(stored.sealed) == VALUE
    listed = await world.rpc("secrets.list", {"instanceId": i})
    assert listed == {"secrets": [info]}
    assert VALUE not in json.dumps(listed)


@method("secrets.set")
async def test_setting_a_name_again_replaces_its_one_record(world: World) -> None:
    i = (await world.instance()).id
    await world.rpc("secrets.set", secret(i))
    await world.rpc("secrets.set", {**secret(i), "value": "second", "hosts": ["api.x.example"]})
    listed = (await world.rpc("secrets.list", {"instanceId": i}))["secrets"]
    assert [(s["name"], s["hosts"]) for s in listed] == [("OPENAI_API_KEY", ["api.x.example"])]
    (stored,) = await world.store.secrets.stored(i)
    assert world.box.decrypt(stored.sealed) == "second"


@method("secrets.set")
async def test_past_the_cap_a_new_name_is_refused_naming_it(world: World) -> None:
    i = (await world.instance()).id
    for n in range(MAX_SECRETS):
        kept = StoredSecret(name=f"S{n}", hosts=["a.example"], header="Authorization",
                            format="Bearer {value}", sealed="x")  # fmt: skip
        await world.store.secrets.set(i, kept)
    with pytest.raises(InvalidParams) as refused:
        await world.rpc("secrets.set", secret(i, name="ONE_MORE"))
    assert str(MAX_SECRETS) in refused.value.message
    await world.rpc("secrets.set", secret(i, name="S0"))  # a replacement is no new name
    assert len(await world.store.secrets.names(i)) == MAX_SECRETS


@method("secrets.delete")
async def test_delete_answers_whether_there_was_one(world: World) -> None:
    i = (await world.instance()).id
    await world.rpc("secrets.set", secret(i))
    assert await world.rpc("secrets.delete", {"instanceId": i, "name": "OPENAI_API_KEY"}) == {
        "deleted": True
    }
    assert await world.rpc("secrets.list", {"instanceId": i}) == {"secrets": []}
    assert await world.rpc("secrets.delete", {"instanceId": i, "name": "OPENAI_API_KEY"}) == {
        "deleted": False
    }


@method("secrets.set", "secrets.list", "secrets.delete")
async def test_an_unknown_instance_is_not_found(world: World) -> None:
    for name, params in (("secrets.set", secret(MISSING)),
                         ("secrets.list", {"instanceId": MISSING}),
                         ("secrets.delete", {"instanceId": MISSING, "name": "A"})):  # fmt: skip
        with pytest.raises(NotFound):
            await world.rpc(name, params)


@pytest.mark.parametrize(
    ("field", "extra"),
    [
        ("hosts", {"hosts": ["10.0.0.0/8"]}),
        ("hosts", {"hosts": ["https://api.openai.com/"]}),
        ("hosts", {"hosts": []}),
        ("header", {"header": "Host"}),
        ("header", {"header": "Proxy-Authorization"}),
        ("header", {"header": "X-Key\r\nX-Other"}),
        ("format", {"format": "Bearer"}),
        ("format", {"format": "{value}{value}"}),
        ("format", {"format": "{value}\r\nX-Injected: 1"}),
        ("value", {"value": "line\nbreak"}),
        ("name", {"name": "not a name"}),
    ],
)
@method("secrets.set")
async def test_an_invalid_secret_is_refused_naming_its_field(
    world: World, field: str, extra: dict[str, Any]
) -> None:
    i = (await world.instance()).id
    with pytest.raises(InvalidParams) as refused:
        await world.rpc("secrets.set", secret(i, **extra))
    assert refused.value.field == f"$.{field}"
    assert await world.store.secrets.names(i) == []


@method("secrets.set", "secrets.delete")
async def test_running_machines_are_told_of_each_change_by_name(world: World) -> None:
    i = (await world.instance()).id
    await world.rpc("secrets.set", secret(i))
    await world.rpc("secrets.delete", {"instanceId": i, "name": "OPENAI_API_KEY"})
    await world.rpc("secrets.delete", {"instanceId": i, "name": "OPENAI_API_KEY"})  # no change
    changed = world.bus.of(EnvChanged)
    assert [(e.instance_id, e.name) for e in changed] == [(i, "OPENAI_API_KEY")] * 2
    assert all(VALUE not in repr(e) for e in changed)


@method("secrets.set")
async def test_the_value_is_never_recorded_nor_logged(world: World, settings: Settings) -> None:
    world, log = recording(world, settings)
    i = (await world.instance()).id
    with capture_logs() as logs:
        await world.rpc("secrets.set", secret(i))
        with pytest.raises(InvalidParams) as refused:
            await world.rpc("secrets.set", secret(i, value=VALUE + "\n"))
    assert VALUE not in refused.value.message
    (entry,) = [e for e in log.buffered() if e.method == "secrets.set"]
    assert entry.params["value"] == "[redacted]"
    assert VALUE not in repr(entry)
    assert VALUE not in repr(logs)
