"""``sessions.*`` through the gateway's dispatcher against in-memory daemons (the real thing,
with real shells and the attach WebSocket: tests/integration/test_sessions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import Conflict, DaemonUnavailable, Forbidden, InvalidParams, NotFound
from tests.fast.conftest import World
from tests.fast.test_gateway import method, token_of, two_instances


@method("sessions.open", "sessions.list", "sessions.resize", "sessions.close")
async def test_sessions_open_list_resize_close(world: World) -> None:
    a, _ = await two_instances(world)
    machine = await world.ready_machine(a)
    mid = machine.id
    opened = await world.rpc("sessions.open", {"machineId": mid, "command": ["bash"],
                                               "cols": 100, "rows": 30}, token_of(a))  # fmt: skip
    sid = opened["sessionId"]
    assert opened["attachPath"] == f"/machines/{mid}/sessions/{sid}/attach"
    assert (opened["machineId"], opened["cols"], opened["rows"]) == (mid, 100, 30)
    listed = await world.rpc("sessions.list", {"machineId": mid}, token_of(a))
    assert [s["sessionId"] for s in listed["sessions"]] == [sid]
    resized = await world.rpc("sessions.resize", {"machineId": mid, "sessionId": sid,
                                                  "cols": 132, "rows": 43})  # fmt: skip
    assert (resized["cols"], resized["rows"]) == (132, 43)
    with pytest.raises(NotFound):
        await world.rpc("sessions.resize", {"machineId": mid, "sessionId": "0" * 16,
                                            "cols": 10, "rows": 10})  # fmt: skip
    assert await world.rpc("sessions.close", {"machineId": mid, "sessionId": sid}) == {
        "closed": True
    }
    assert (await world.rpc("sessions.close", {"machineId": mid, "sessionId": sid}))[
        "closed"
    ] is False


@method("sessions.open", "sessions.signal", "sessions.write")
async def test_a_pipe_session_takes_input_and_signals(world: World) -> None:
    a, b = await two_instances(world)
    mid = (await world.ready_machine(a)).id
    pipe = {"machineId": mid, "command": ["cat"], "pty": False, "stdin": True, "timeoutS": 60}
    opened = await world.rpc("sessions.open", pipe, token_of(a))
    sid = opened["sessionId"]
    ref = {"machineId": mid, "sessionId": sid}
    written = await world.rpc("sessions.write", {**ref, "data": "aGVsbG8=", "eof": True})
    assert written == {"written": 5}
    assert await world.rpc("sessions.signal", {**ref, "signal": 9}) == {"signaled": True}
    assert await world.rpc("sessions.signal", {**ref, "signal": 9}) == {"signaled": False}
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("sessions.signal", {**ref, "signal": 0}, "$.signal"),
        ("sessions.signal", {**ref, "signal": "KILL"}, "$.signal"),
        ("sessions.write", {**ref, "data": "not base64!"}, "$.data"),
        ("sessions.open", {"machineId": mid, "timeoutS": 0}, "$.timeoutS"),
        ("sessions.open", {"machineId": mid, "timeoutS": 86_401}, "$.timeoutS"),
    ]
    for name, params, field in bad:
        with pytest.raises(InvalidParams) as refused:
            await world.rpc(name, params)
        assert refused.value.field == field, (name, params)
    with pytest.raises(NotFound):
        await world.rpc("sessions.write", {**ref, "sessionId": "0" * 16, "data": ""})
    for name, params in [("sessions.signal", {**ref, "signal": 15}),
                         ("sessions.write", {**ref, "data": ""})]:  # fmt: skip
        with pytest.raises(Forbidden):
            await world.rpc(name, params, token_of(b))


@method("sessions.open", "sessions.list", "sessions.resize", "sessions.close")
async def test_sessions_refuse_bad_input_other_instances_and_dead_machines(world: World) -> None:
    a, b = await two_instances(world)
    mid = (await world.ready_machine(a)).id
    cases: list[tuple[dict[str, Any], str]] = [
        ({"machineId": mid, "cols": 0}, "$.cols"),
        ({"machineId": mid, "rows": 1001}, "$.rows"),
        ({"machineId": mid, "command": []}, "$.command"),
        ({"machineId": mid, "name": "a\nb"}, "$.name"),
        ({"machineId": "nope"}, "$.machineId"),
    ]
    for params, field in cases:
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("sessions.open", params)
        assert bad.value.field == field
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("sessions.close", {"machineId": mid, "sessionId": "../x"})
    assert bad.value.field == "$.sessionId"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("sessions.open", {"machineId": mid}),
        ("sessions.list", {"machineId": mid}),
        ("sessions.resize", {"machineId": mid, "sessionId": "0" * 16, "cols": 1, "rows": 1}),
        ("sessions.close", {"machineId": mid, "sessionId": "0" * 16}),
    ]
    for name, params in calls:
        with pytest.raises(Forbidden):
            await world.rpc(name, params, token_of(b))
    world.daemons[mid].mode = "unavailable"
    with pytest.raises(DaemonUnavailable):
        await world.rpc("sessions.list", {"machineId": mid})
    await world.rpc("machines.archive", {"machineId": mid})
    with pytest.raises(Conflict):
        await world.rpc("sessions.open", {"machineId": mid})
