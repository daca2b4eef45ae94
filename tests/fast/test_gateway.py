"""Every gateway method through the JSON-RPC ``Dispatcher`` with JSON bodies (so params are
validated as ``POST /rpc`` validates them): its happy path and its main error.

Each test names the methods it exercises with ``@pytest.mark.gateway_method``;
``test_coverage.py`` fails if a method in ``GATEWAY_METHODS`` has none.
"""

from __future__ import annotations

import pytest

from contracts.bus.events import MachineArchived, MachineCreated, MachineFilesRemoved
from contracts.errors import (
    Conflict,
    DaemonUnavailable,
    Forbidden,
    InternalError,
    InvalidParams,
    NotFound,
    NotSupported,
)
from contracts.status import MachineStatus as S
from services.gateway.auth import Caller
from tests.fast.conftest import PLATFORM_SHA, World

method = pytest.mark.gateway_method
MISSING_INSTANCE = "i-0000000000000000"
MISSING_MACHINE = "m-0000000000000000"


def token_of(instance_id: str) -> Caller:
    return Caller(token_id="t-00000000000000aa", admin=False, instance_id=instance_id)


async def two_instances(world: World) -> tuple[str, str]:
    a = await world.rpc("instances.create", {"name": "a"})
    b = await world.rpc("instances.create", {"name": "b"})
    return a["id"], b["id"]


# --- instances --------------------------------------------------------------------------------
@method("instances.create", "instances.get")
async def test_instances_create_and_get(world: World) -> None:
    created = await world.rpc("instances.create", {"name": "demo"})
    assert created["id"].startswith("i-")
    assert created["currentMachineId"] is None
    assert await world.rpc("instances.get", {"instanceId": created["id"]}) == created
    with pytest.raises(NotFound):
        await world.rpc("instances.get", {"instanceId": MISSING_INSTANCE})


@method("instances.create")
async def test_instances_create_validates_and_is_for_admins(world: World) -> None:
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("instances.create", {"name": ""})
    assert bad.value.field == "$.name"
    with pytest.raises(InvalidParams) as unknown:
        await world.rpc("instances.create", {"name": "x", "color": "red"})
    assert unknown.value.field == "$.color"
    a, _ = await two_instances(world)
    with pytest.raises(Forbidden):
        await world.rpc("instances.create", {"name": "mine"}, token_of(a))


@method("instances.get", "instances.list")
async def test_an_instance_token_sees_only_its_instance(world: World) -> None:
    a, b = await two_instances(world)
    assert len((await world.rpc("instances.list"))["instances"]) == 2
    mine = await world.rpc("instances.list", caller=token_of(a))
    assert [i["id"] for i in mine["instances"]] == [a]
    with pytest.raises(Forbidden):
        await world.rpc("instances.get", {"instanceId": b}, token_of(a))


# --- env --------------------------------------------------------------------------------------
@method("env.set", "env.list", "env.unset")
async def test_env_set_list_unset_per_scope(world: World) -> None:
    a, _ = await two_instances(world)
    assert await world.rpc("env.set", {"name": "TZ", "value": "UTC"}) == {
        "name": "TZ", "value": "UTC", "scope": "platform"}  # fmt: skip
    await world.rpc("env.set", {"instanceId": a, "name": "DB", "value": "x"}, token_of(a))
    assert (await world.rpc("env.list"))["vars"] == [
        {"name": "TZ", "value": "UTC", "scope": "platform"}]  # fmt: skip
    assert (await world.rpc("env.list", {"instanceId": a}))["vars"] == [
        {"name": "DB", "value": "x", "scope": "instance"}]  # fmt: skip
    assert await world.rpc("env.unset", {"instanceId": a, "name": "DB"}) == {"removed": True}
    assert await world.rpc("env.unset", {"instanceId": a, "name": "DB"}) == {"removed": False}


@method("env.set", "env.list", "env.unset")
async def test_env_errors(world: World) -> None:
    a, b = await two_instances(world)
    with pytest.raises(Forbidden):  # the platform scope is the operator's
        await world.rpc("env.set", {"name": "TZ", "value": "UTC"}, token_of(a))
    with pytest.raises(Forbidden):
        await world.rpc("env.list", {"instanceId": b}, token_of(a))
    with pytest.raises(NotFound):
        await world.rpc("env.unset", {"instanceId": MISSING_INSTANCE, "name": "X"})
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("env.set", {"name": "1BAD", "value": "x"})
    assert bad.value.field == "$.name"
    with pytest.raises(InvalidParams):
        await world.rpc("env.set", {"name": "OK", "value": "nul\x00"})


# --- repos ------------------------------------------------------------------------------------
@method("repos.add", "repos.list", "repos.remove")
async def test_repos_add_list_remove(world: World) -> None:
    a, _ = await two_instances(world)
    params = {"instanceId": a, "url": "https://git.example/x.git", "branch": "main",
              "path": "src/x", "token": "s3cret"}  # fmt: skip
    repo = await world.rpc("repos.add", params)
    assert repo.pop("warning") is None  # repos.add's answer alone: the check's word
    assert repo == {"url": "https://git.example/x.git", "branch": "main", "path": "src/x",
                    "hasCredentials": True}  # fmt: skip
    assert await world.store.repo_secret(a, "src/x") is not None  # sealed, never answered
    assert (await world.rpc("repos.list", {"instanceId": a}))["repos"] == [repo]
    assert await world.rpc("repos.remove", {"instanceId": a, "path": "src/x"}) == {"removed": True}
    assert await world.store.repo_secret(a, "src/x") is None
    assert (await world.rpc("repos.list", {"instanceId": a}))["repos"] == []


@method("repos.add", "repos.list", "repos.remove")
async def test_repos_errors(world: World) -> None:
    a, b = await two_instances(world)
    with pytest.raises(InvalidParams):  # credentials belong in `token`, never in the URL
        await world.rpc("repos.add", {"instanceId": a, "url": "https://u:p@git.example/x.git",
                                      "branch": "main", "path": "x"})  # fmt: skip
    with pytest.raises(InvalidParams):
        await world.rpc("repos.add", {"instanceId": a, "url": "https://git.example/x.git",
                                      "branch": "main", "path": ".fleet/x"})  # fmt: skip
    with pytest.raises(Forbidden):
        await world.rpc("repos.list", {"instanceId": b}, token_of(a))
    with pytest.raises(Forbidden):
        await world.rpc("repos.remove", {"instanceId": b, "path": "x"}, token_of(a))


# --- machines ---------------------------------------------------------------------------------
@method("machines.create")
async def test_machines_create_publishes_created_and_refuses_a_second_live_machine(
    world: World,
) -> None:
    a, _ = await two_instances(world)
    m = await world.rpc("machines.create", {"instanceId": a}, token_of(a))
    assert (m["status"], m["instanceId"], m["provider"]) == ("created", a, "local")
    created = world.bus.one(MachineCreated, m["id"])
    assert (created.instance_id, created.provider) == (a, "local")
    assert (await world.rpc("instances.get", {"instanceId": a}))["currentMachineId"] == m["id"]
    with pytest.raises(Conflict) as conflict:
        await world.rpc("machines.create", {"instanceId": a})
    assert conflict.value.data == {"machineId": m["id"]}


@method("machines.create")
async def test_machines_create_errors(world: World) -> None:
    a, b = await two_instances(world)
    with pytest.raises(Forbidden):
        await world.rpc("machines.create", {"instanceId": b}, token_of(a))
    with pytest.raises(NotFound):
        await world.rpc("machines.create", {"instanceId": MISSING_INSTANCE})
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.create", {"instanceId": a, "provider": "cloud"})
    assert bad.value.field == "$.provider"


@method("machines.get", "machines.list")
async def test_machines_get_and_list(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    world.daemons[machine.id].git_sha = "c" * 40  # not the platform's code
    other = await world.ready_machine(b)
    got = await world.rpc("machines.get", {"machineId": machine.id}, token_of(a))
    assert (got["status"], got["statusReason"]) == ("ready", "all readiness checks passed")
    assert got["daemonGitSha"] == "0" * 40
    assert got["updateAvailable"] is True
    listed = await world.rpc("machines.list")
    assert [m["id"] for m in listed["machines"]] == [other.id, machine.id]  # newest first
    mine = await world.rpc("machines.list", caller=token_of(a))
    assert [m["id"] for m in mine["machines"]] == [machine.id]
    with pytest.raises(Forbidden):
        await world.rpc("machines.get", {"machineId": other.id}, token_of(a))
    with pytest.raises(Forbidden):
        await world.rpc("machines.list", {"instanceId": b}, token_of(a))
    with pytest.raises(NotFound):
        await world.rpc("machines.get", {"machineId": MISSING_MACHINE})
    with pytest.raises(InvalidParams):
        await world.rpc("machines.get", {"machineId": "m-nothex"})


@method("machines.get", "machines.list")
async def test_code_status_tells_behind_from_ahead(world: World) -> None:
    ids = [(await world.ready_machine()).id for _ in range(7)]
    reported = ["0" * 40, PLATFORM_SHA, "b" * 40, "d" * 40, "e" * 40, "--output=/tmp/x", None]
    for mid, sha in zip(ids, reported, strict=True):
        await world.store.set_daemon_build(mid, "0.1.0", sha)
    got = {m["daemonGitSha"] or None: (m["codeStatus"], m["updateAvailable"])
           for m in (await world.rpc("machines.list"))["machines"]}  # fmt: skip
    assert got == {
        "0" * 40: ("behind", True),  # the only one with newer code to get
        PLATFORM_SHA: ("current", False),
        "b" * 40: ("ahead", False),  # the platform's commit is its ancestor: not an update
        "d" * 40: ("diverged", False),
        "e" * 40: ("unknown", False),  # not in the platform's repo
        "--output=/tmp/x": ("unknown", False),  # a machine's word never reaches git as-is
        None: ("unknown", False),
    }
    code = world.api.access.code
    calls = code.git_calls
    again = await world.rpc("machines.get", {"machineId": ids[2]})
    assert again["codeStatus"] == "ahead"
    assert code.git_calls == calls  # ancestry never changes: asked once per SHA


@method("machines.archive")
async def test_machines_archive_stops_the_machine(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    with pytest.raises(Forbidden):
        await world.rpc("machines.archive", {"machineId": machine.id}, token_of(b))
    archived = await world.rpc("machines.archive", {"machineId": machine.id}, token_of(a))
    assert (archived["status"], archived["statusReason"]) == ("archiving", "archived by request")
    await world.bus.settle()
    assert world.provider.removes == [machine.id]
    # archived once the provider removed it, which its event says
    assert (await world.machine(machine.id)).status is S.ARCHIVED
    assert len(world.bus.of(MachineFilesRemoved, machine.id)) == 1
    assert world.daemons.calls_of("daemon.stop", machine.id) != []
    # Archived: its files are gone, and archiving it again has nothing left to do.
    again = await world.rpc("machines.archive", {"machineId": machine.id})
    assert again["status"] == "archived"
    assert len(world.bus.of(MachineArchived, machine.id)) == 1


@method("machines.archive")
async def test_archive_again_finishes_an_archive_whose_event_was_lost(world: World) -> None:
    machine = await world.ready_machine()
    world.bus.fail_publish(MachineArchived)  # the gateway "died" after the status change
    with pytest.raises(InternalError):
        await world.rpc("machines.archive", {"machineId": machine.id})
    await world.bus.settle()
    assert world.provider.removes == []  # nothing revoked or stopped it yet
    await world.rpc("machines.archive", {"machineId": machine.id})
    await world.bus.settle()
    assert world.provider.removes == [machine.id]


@method("machines.archive")
async def test_archive_asks_the_daemon_to_stop_before_announcing_it(world: World) -> None:
    machine = await world.ready_machine()
    await world.rpc("machines.archive", {"machineId": machine.id})
    kinds = [
        (type(e).__name__, getattr(e, "status", None))
        for e in world.bus.events
        if getattr(e, "machine_id", None) == machine.id
    ]
    assert kinds[-2:] == [("DaemonStatusReported", "stopping"), ("MachineArchived", None)]
    assert len(world.daemons.calls_of("daemon.stop", machine.id)) == 1


@method("machines.archive")
async def test_archive_of_a_daemon_that_does_not_answer_goes_on_at_once(world: World) -> None:
    machine = await world.ready_machine()
    world.daemons[machine.id].mode = "unavailable"
    archived = await world.rpc("machines.archive", {"machineId": machine.id})
    assert archived["status"] == "archiving"
    assert len(world.bus.of(MachineArchived, machine.id)) == 1
    await world.bus.settle()
    assert world.provider.removes == [machine.id]  # revoked and stopped all the same


@method("machines.rebuild")
async def test_machines_rebuild_archives_the_current_machine_and_makes_a_new_one(
    world: World,
) -> None:
    a, b = await two_instances(world)
    old = await world.ready_machine(a)
    with pytest.raises(Forbidden):
        await world.rpc("machines.rebuild", {"instanceId": a}, token_of(b))
    new = await world.rpc("machines.rebuild", {"instanceId": a}, token_of(a))
    assert new["id"] != old.id
    assert new["status"] == "created"
    await world.bus.settle()
    assert (await world.machine(old.id)).status is S.ARCHIVED
    assert (await world.machine(new["id"])).status is S.READY
    assert world.provider.removes == [old.id]


@method("cron.set", "cron.list")
async def test_cron_set_stores_and_pushes_the_table(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    job = {"name": "nightly", "schedule": "0 3 * * *", "command": ["make", "backup"]}
    answer = await world.rpc("cron.set", {"instanceId": a, "jobs": [job]}, token_of(a))
    assert (answer["machines"], answer["failed"]) == (1, [])
    assert '"nightly"' in world.daemons[machine.id].file("~/.fleet/cron.json").content
    listed = await world.rpc("cron.list", {"instanceId": a})
    assert [j["name"] for j in listed["jobs"]] == ["nightly"]
    with pytest.raises(InvalidParams):
        await world.rpc("cron.set", {"instanceId": a, "jobs": [{**job, "schedule": "61 * * * *"}]})
    with pytest.raises(Forbidden):
        await world.rpc("cron.list", {"instanceId": a}, token_of(b))
    with pytest.raises(Forbidden):
        await world.rpc("cron.set", {"instanceId": a, "jobs": []}, token_of(b))


# --- tokens -----------------------------------------------------------------------------------
@method("tokens.create", "tokens.list", "tokens.revoke")
async def test_tokens_create_list_revoke(world: World) -> None:
    a, _b = await two_instances(world)
    admin = await world.rpc("tokens.create", {"name": "ci"})
    scoped = await world.rpc("tokens.create", {"name": "dev", "instanceId": a}, token_of(a))
    assert scoped["token"].startswith("fleet_")
    assert scoped["id"].startswith("t-")
    everything = await world.rpc("tokens.list")
    assert {t["id"] for t in everything["tokens"]} == {admin["id"], scoped["id"]}
    assert all("token" not in t for t in everything["tokens"])  # never the secret
    mine = await world.rpc("tokens.list", caller=token_of(a))
    assert [t["id"] for t in mine["tokens"]] == [scoped["id"]]
    assert await world.rpc("tokens.revoke", {"id": scoped["id"]}, token_of(a)) == {"revoked": True}
    assert await world.rpc("tokens.revoke", {"id": scoped["id"]}) == {"revoked": False}


@method("tokens.create", "tokens.revoke")
async def test_tokens_errors(world: World) -> None:
    a, b = await two_instances(world)
    with pytest.raises(Forbidden):  # an admin token needs an admin
        await world.rpc("tokens.create", {"name": "root"}, token_of(a))
    theirs = await world.rpc("tokens.create", {"name": "dev", "instanceId": b})
    with pytest.raises(Forbidden):
        await world.rpc("tokens.revoke", {"id": theirs["id"]}, token_of(a))
    with pytest.raises(NotFound):
        await world.rpc("tokens.revoke", {"id": "t-0000000000000000"})
    with pytest.raises(InvalidParams):
        await world.rpc("tokens.revoke", {"id": "nope"})


@method("rpc.discover")
async def test_rpc_discover(world: World) -> None:
    doc = await world.rpc("rpc.discover")
    assert doc["openrpc"].startswith("1.3")
    assert len(doc["methods"]) == len(world.dispatcher.methods)


@method("machines.restart")
async def test_machines_restart(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    answer = await world.rpc("machines.restart", {"machineId": machine.id}, token_of(a))
    assert (answer["id"], answer["status"]) == (machine.id, "ready")
    assert world.provider.restarts == [machine.id]
    with pytest.raises(Forbidden):  # another instance's token
        await world.rpc("machines.restart", {"machineId": machine.id}, token_of(b))
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.restart", {"machineId": "m-../../etc"})
    assert bad.value.field == "$.machineId"
    world.daemons[machine.id].mode = "unavailable"  # its provider no longer runs it
    with pytest.raises(DaemonUnavailable):
        await world.rpc("machines.restart", {"machineId": machine.id})
    world.provider.can_restart = False
    with pytest.raises(NotSupported):
        await world.rpc("machines.restart", {"machineId": machine.id})
    assert world.provider.restarts == [machine.id]


@method("machines.restart")
async def test_machines_restart_needs_a_running_machine(world: World) -> None:
    a, _ = await two_instances(world)
    created = await world.rpc("machines.create", {"instanceId": a})
    with pytest.raises(Conflict) as conflict:
        await world.rpc("machines.restart", {"machineId": created["id"]})
    assert conflict.value.data == {"status": "created"}
