"""The gateway's file methods (readFile, listDir, stat, removeFile, makeDir, move): params
validated, the
caller's access to the machine checked, the daemon's answer and errors passed through. The
daemon side (confinement, kinds of files, sizes) is tested on a real file system in
tests/unit/test_home_files.py and against real daemons in tests/integration/test_files.py."""

from __future__ import annotations

import base64

import pytest

from contracts.errors import (
    Conflict,
    DaemonUnavailable,
    FileNotFound,
    Forbidden,
    InvalidParams,
    WrongFileKind,
)
from tests.fast.conftest import World
from tests.fast.test_gateway import method, token_of, two_instances


async def _machine_with_files(world: World) -> tuple[str, str, str]:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    for path, content in (("src/app.py", "print('hé')\n"), ("src/lib/x.py", ""), ("notes", "n")):
        await world.rpc("machines.writeFile", {"machineId": machine.id, "path": path,
                                               "content": content})  # fmt: skip
    return machine.id, a, b


@method("machines.readFile")
async def test_machines_read_file(world: World) -> None:
    mid, a, b = await _machine_with_files(world)
    m = world.daemons[mid]
    got = await world.rpc("machines.readFile", {"machineId": mid, "path": "src/app.py"},
                          token_of(a))  # fmt: skip
    assert got == {"path": m.path("src/app.py"), "content": "print('hé')\n", "encoding": "utf-8",
                   "size": 13, "mode": 0o644}  # fmt: skip
    raw = await world.rpc("machines.readFile", {"machineId": mid, "path": "~/src/app.py",
                                                "encoding": "base64"})  # fmt: skip
    assert base64.b64decode(raw["content"]) == "print('hé')\n".encode()
    with pytest.raises(Forbidden):
        await world.rpc("machines.readFile", {"machineId": mid, "path": "notes"}, token_of(b))
    with pytest.raises(FileNotFound):
        await world.rpc("machines.readFile", {"machineId": mid, "path": "nothing"})
    for bad, field in (({"path": ""}, "$.path"), ({"path": "x", "encoding": "latin-1"},
                       "$.encoding"), ({"path": "x" * 4097}, "$.path")):  # fmt: skip
        with pytest.raises(InvalidParams) as err:
            await world.rpc("machines.readFile", {"machineId": mid, **bad})
        assert err.value.field == field
    # Nothing of these reached the daemon: the gateway refused them first.
    assert len(world.daemons.calls_of("tool.readFile", mid)) == 3


@method("machines.listDir", "machines.stat")
async def test_machines_list_dir_and_stat(world: World) -> None:
    mid, a, b = await _machine_with_files(world)
    listed = await world.rpc("machines.listDir", {"machineId": mid, "path": "src"}, token_of(a))
    assert [(e["name"], e["kind"]) for e in listed["entries"]] == [("app.py", "file"),
                                                                   ("lib", "dir")]  # fmt: skip
    top = await world.rpc("machines.listDir", {"machineId": mid, "limit": 2})
    assert ([e["name"] for e in top["entries"]], top["truncated"]) == ([".fleet", "notes"], True)
    st = await world.rpc("machines.stat", {"machineId": mid, "path": "notes"})
    assert (st["kind"], st["size"], st["path"]) == ("file", 1, world.daemons[mid].path("notes"))
    for name, params in (("machines.listDir", {"path": "src"}), ("machines.stat", {"path": "x"})):
        with pytest.raises(Forbidden):
            await world.rpc(name, {"machineId": mid, **params}, token_of(b))
    with pytest.raises(InvalidParams) as err:
        await world.rpc("machines.listDir", {"machineId": mid, "limit": 0})
    assert err.value.field == "$.limit"
    world.daemons[mid].mode = "unavailable"
    with pytest.raises(DaemonUnavailable):
        await world.rpc("machines.stat", {"machineId": mid, "path": "notes"})


@method("machines.removeFile")
async def test_machines_remove_file(world: World) -> None:
    mid, a, b = await _machine_with_files(world)
    with pytest.raises(Forbidden):
        await world.rpc("machines.removeFile", {"machineId": mid, "path": "notes"}, token_of(b))
    assert (await world.rpc("machines.removeFile", {"machineId": mid, "path": "notes"},
                            token_of(a)))["removed"]  # fmt: skip
    again = await world.rpc("machines.removeFile", {"machineId": mid, "path": "notes"})
    assert again["removed"] is False  # idempotent
    with pytest.raises(WrongFileKind):
        await world.rpc("machines.removeFile", {"machineId": mid, "path": "src"})
    await world.rpc("machines.removeFile", {"machineId": mid, "path": "src", "recursive": True})
    assert all("/home/.fleet/" in p for p in world.daemons[mid].files)
    await world.rpc("machines.archive", {"machineId": mid})
    with pytest.raises(Conflict):
        await world.rpc("machines.removeFile", {"machineId": mid, "path": "x"})


@method("machines.listDir")
async def test_a_deep_listing_is_bounded_and_names_entries_by_their_paths(world: World) -> None:
    mid, _, _ = await _machine_with_files(world)
    deep = await world.rpc("machines.listDir", {"machineId": mid, "path": "src", "depth": 2})
    assert [e["name"] for e in deep["entries"]] == ["app.py", "lib", "lib/x.py"]
    for depth in (0, 17, "2"):  # 1..16: a walk, never a crawl of the whole home
        with pytest.raises(InvalidParams) as err:
            await world.rpc("machines.listDir", {"machineId": mid, "depth": depth})
        assert err.value.field == "$.depth"
    assert len(world.daemons.calls_of("tool.listDir", mid)) == 1


@method("machines.makeDir", "machines.move")
async def test_machines_make_dir_and_move(world: World) -> None:
    mid, a, b = await _machine_with_files(world)
    m = world.daemons[mid]
    made = await world.rpc("machines.makeDir", {"machineId": mid, "path": "out"}, token_of(a))
    assert (made["path"], made["created"], made["entry"]["kind"]) == (m.path("out"), True, "dir")
    again = await world.rpc("machines.makeDir", {"machineId": mid, "path": "out"})
    assert again["created"] is False  # idempotent
    with pytest.raises(WrongFileKind):
        await world.rpc("machines.makeDir", {"machineId": mid, "path": "notes"})
    moved = await world.rpc("machines.move", {"machineId": mid, "source": "src",
                                              "destination": "out/src"})  # fmt: skip
    assert (moved["path"], moved["entry"]["name"]) == (m.path("out/src"), "src")
    assert m.path("out/src/lib/x.py") in m.files
    with pytest.raises(InvalidParams) as err:
        await world.rpc("machines.move", {"machineId": mid, "source": "out",
                                          "destination": "out/src/out"})  # fmt: skip
    assert err.value.field == "$.destination"
    for name, params in (("machines.makeDir", {"path": "x"}),
                         ("machines.move", {"source": "notes", "destination": "n"})):  # fmt: skip
        with pytest.raises(Forbidden):
            await world.rpc(name, {"machineId": mid, **params}, token_of(b))
    with pytest.raises(InvalidParams) as err:  # refused before the daemon: a required field
        await world.rpc("machines.move", {"machineId": mid, "source": "notes"})
    assert err.value.field == "$.destination"
    await world.rpc("machines.archive", {"machineId": mid})
    with pytest.raises(Conflict):
        await world.rpc("machines.makeDir", {"machineId": mid, "path": "y"})
