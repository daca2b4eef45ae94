"""E2B's Python SDK, unmodified (tests/e2b_sdk.py), on the files of a sandbox through envd's
MakeDir, Move, a deep ListDir and Stat's owner and permissions, against a stack on the real
servers: what fleetd's machines.makeDir, machines.move and machines.listDir answer, as the SDK
reads it."""

from __future__ import annotations

from controlplane.settings import Settings
from tests.conftest import running_stack
from tests.e2b_sdk import e2b_settings, python_sdk, sdk_env

__all__ = ["e2b_settings"]  # the fixture, re-exported for pytest


async def test_the_python_sdk_makes_a_directory_renames_lists_deep_and_sends_gzip(
    e2b_settings: Settings,
) -> None:
    async with running_stack(e2b_settings) as client:
        got = await python_sdk(
            """
            import json
            from e2b import Sandbox
            sbx = Sandbox.create()
            out = {"id": sbx.sandbox_id,
                   "made": [sbx.files.make_dir("a/b"), sbx.files.make_dir("/home/user/a/b")]}
            sbx.files.write("a/b/f.txt", "moved")
            moved = sbx.files.rename("a/b/f.txt", "/home/user/a/g.txt")
            out["moved"] = [moved.name, moved.path, moved.type.value]
            out["read"] = sbx.files.read("a/g.txt")
            out["left"] = sbx.files.exists("a/b/f.txt")
            try:
                sbx.files.rename("a", "a/b/a")
            except Exception as exc:
                out["into"] = type(exc).__name__
            sbx.files.write("a/b/c.txt", "deeper")
            out["deep"] = [[e.name, e.path, e.type.value]
                           for e in sbx.files.list("/home/user/a", depth=2)]
            out["flat"] = [e.name for e in sbx.files.list("a")]
            info = sbx.files.get_info("a/g.txt")
            out["info"] = [info.owner, info.group, info.permissions, info.mode]
            sbx.files.write("packed.txt", "sent packed" * 1000, gzip=True)
            out["gzip"] = sbx.files.read("packed.txt", gzip=True) == "sent packed" * 1000
            try:
                sbx.files.write("tagged.txt", "x", metadata={"kind": "note"})
                out["metadata"] = "kept"
            except Exception as exc:
                out["metadata"] = [type(exc).__name__, str(exc), sbx.files.exists("tagged.txt")]
            try:
                sbx.files.get_info("/home/user/nope")
            except Exception as exc:
                out["missing"] = str(exc)
            print(json.dumps(out))
        """,
            sdk_env(e2b_settings),
        )
        assert got["made"] == [True, False]
        assert got["moved"] == ["g.txt", "/home/user/a/g.txt", "file"]
        assert (got["read"], got["left"], got["into"]) == ("moved", False,
                                                           "InvalidArgumentException")  # fmt: skip
        assert got["deep"] == [["b", "/home/user/a/b", "dir"],
                               ["c.txt", "/home/user/a/b/c.txt", "file"],
                               ["g.txt", "/home/user/a/g.txt", "file"]]  # fmt: skip
        assert got["flat"] == ["b", "g.txt"]
        assert got["gzip"] is True
        _kind, message, written = got["metadata"]  # refused by name, and nothing written
        assert ("metadata" in message, "not supported" in message, written) == (True, True, False)
        assert "/home/user/nope" in got["missing"]  # E2B's path, never where the home is
        # What the machine itself says of the file (a number it names no one by: the number).
        said = await client.exec(got["id"], ["stat", "-c", "%U %u %G %g %A %a", "a/g.txt"])
        user, uid, group, gid, permissions, mode = said.stdout.split()
        assert got["info"] == [uid if user == "UNKNOWN" else user,
                               gid if group == "UNKNOWN" else group, permissions,
                               int(mode, 8)]  # fmt: skip
