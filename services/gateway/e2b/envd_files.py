"""envd's ``filesystem.Filesystem`` in fleetd's file methods: ``Stat`` is ``machines.stat``,
``ListDir`` ``machines.listDir``, ``Remove`` ``machines.removeFile`` (a whole tree; nothing
there is no error, as envd's), ``MakeDir`` ``machines.makeDir`` (a directory there already is
envd's ``already_exists``, which the SDKs' ``make_dir`` answers as False), ``Move``
``machines.move`` (rename(2)'s rules: a file at the destination is replaced). ``ListDir``'s
``depth`` is ``machines.listDir``'s (envd's unset 0 is 1); an entry's owner, group and
permissions are the daemon's (an older daemon's entry says none, and its permissions are
worked out from its mode).

Paths: E2B's default user's home, ``/home/user``, is the machine's home both ways (a path
under it names the same file under the machine's, and an answer's path under the machine's
home is shown under ``/home/user``); a relative path is in the home. fleetd's file methods
reach the home only: any other path is refused (``invalid_argument``), where a command still
reaches it.
"""

from __future__ import annotations

import contextlib
import stat as st
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

from contracts.daemon import files as df
from contracts.e2b import envd
from contracts.errors import FileNotFound, FleetError
from contracts.gateway.files import (
    MACHINES_LIST_DIR,
    MACHINES_MAKE_DIR,
    MACHINES_MOVE,
    MACHINES_REMOVE_FILE,
    MACHINES_STAT,
    MachineListDirParams,
    MachineMakeDirParams,
    MachineMoveParams,
    MachineRemoveFileParams,
    MachineStatParams,
)
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.connect import ConnectError

_TYPES: Final[dict[str, envd.FileType]] = {
    "file": "FILE_TYPE_FILE", "dir": "FILE_TYPE_DIRECTORY", "symlink": "FILE_TYPE_SYMLINK",
}  # fmt: skip
_KIND_CHAR: Final = {"file": "-", "dir": "d", "symlink": "l"}
#: Homes kept (a machine's home never moves); the oldest forgotten past it.
_HOMES_KEPT: Final = 4096


class Homes:
    """Each sandbox's home on its machine, asked once (``machines.listDir`` of ``~`` says
    where it is)."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self._homes: dict[str, str] = {}

    async def of(self, machine_id: str, caller: Caller) -> str:
        home = self._homes.get(machine_id)
        if home is None:
            got = await self._calls(MACHINES_LIST_DIR, MachineListDirParams(
                machine_id=machine_id, path="~", limit=1), caller)  # fmt: skip
            if len(self._homes) >= _HOMES_KEPT:
                self._homes.pop(next(iter(self._homes)))
            home = self._homes[machine_id] = got.path.rstrip("/") or "/"
        return home


def to_machine(path: str) -> str:
    """An E2B path as fleetd's file methods take it."""
    if path in ("", envd.E2B_HOME, envd.E2B_HOME + "/"):
        return "~"
    if path.startswith(envd.E2B_HOME + "/"):
        return "~/" + path[len(envd.E2B_HOME) + 1 :]
    return path


def to_e2b(path: str, home: str) -> str:
    """A machine's path as E2B shows it."""
    if path == home:
        return envd.E2B_HOME
    if path.startswith(home + "/"):
        return envd.E2B_HOME + path[len(home) :]
    return path


def entry_info(entry: df.DirEntry, path: str, home: str) -> envd.EntryInfo:
    """What envd says of an entry at ``path`` (the machine's absolute path)."""
    shown = to_e2b(path, home)
    permissions = entry.permissions or _KIND_CHAR.get(entry.kind, "?") + st.filemode(entry.mode)[1:]
    return envd.EntryInfo(
        # A deep listing's entry is named by its path from the listed directory: envd's name
        # is the last part of it.
        name=shown.rsplit("/", 1)[-1] or entry.name, type=_TYPES.get(entry.kind,
                                                                      "FILE_TYPE_UNSPECIFIED"),
        path=shown, size=entry.size, mode=entry.mode, permissions=permissions,
        owner=entry.owner or "", group=entry.group or "",
        modified_time=datetime.fromtimestamp(entry.mtime, UTC),
        symlink_target=entry.target, is_symlink=entry.kind == "symlink",
    )  # fmt: skip


@contextlib.contextmanager
def e2b_paths(home: str) -> Iterator[None]:
    """A FleetError raised inside names the machine's home as E2B does (``/home/user``): an
    answer never shows where the home is on its host."""
    try:
        yield
    except FleetError as exc:
        if home != "/" and home in exc.message:
            exc.message = exc.message.replace(home, envd.E2B_HOME)
            exc.args = (exc.message,)
        raise


class Filesystem:
    def __init__(self, calls: Calls, homes: Homes) -> None:
        self._calls = calls
        self._homes = homes

    async def stat(self, machine_id: str, req: envd.PathRequest,
                   caller: Caller) -> envd.EntryAnswer:  # fmt: skip
        home = await self._homes.of(machine_id, caller)
        path = to_machine(req.path)
        if path == "~":  # fleetd's file methods describe what is in the home, not the home
            return envd.EntryAnswer(entry=envd.EntryInfo(
                name=envd.E2B_HOME.rsplit("/", 1)[-1], type="FILE_TYPE_DIRECTORY",
                path=envd.E2B_HOME, mode=0o755, permissions="drwxr-xr-x"))  # fmt: skip
        with e2b_paths(home):
            got = await self._calls(MACHINES_STAT, MachineStatParams(
                machine_id=machine_id, path=path), caller)  # fmt: skip
        return envd.EntryAnswer(entry=entry_info(got, got.path, home))

    async def list_dir(self, machine_id: str, req: envd.ListDirRequest,
                       caller: Caller) -> envd.ListDirAnswer:  # fmt: skip
        home = await self._homes.of(machine_id, caller)
        with e2b_paths(home):
            got = await self._calls(MACHINES_LIST_DIR, MachineListDirParams(
                machine_id=machine_id, path=to_machine(req.path), limit=df.MAX_DIR_ENTRIES,
                depth=req.depth or 1), caller)  # fmt: skip
        base = got.path.rstrip("/")
        return envd.ListDirAnswer(entries=[entry_info(e, f"{base}/{e.name}", home)
                                           for e in got.entries])  # fmt: skip

    async def remove(self, machine_id: str, req: envd.PathRequest,
                     caller: Caller) -> envd.Empty:  # fmt: skip
        params = MachineRemoveFileParams(machine_id=machine_id, path=to_machine(req.path),
                                         recursive=True)  # fmt: skip
        with contextlib.suppress(FileNotFound):  # envd removes what is there: nothing is fine
            await self._calls(MACHINES_REMOVE_FILE, params, caller)
        return envd.Empty()

    async def make_dir(self, machine_id: str, req: envd.PathRequest,
                       caller: Caller) -> envd.EntryAnswer:  # fmt: skip
        home = await self._homes.of(machine_id, caller)
        with e2b_paths(home):
            got = await self._calls(MACHINES_MAKE_DIR, MachineMakeDirParams(
                machine_id=machine_id, path=to_machine(req.path)), caller)  # fmt: skip
        if not got.created:  # fleetd's makeDir is idempotent; envd's says so, as an error
            raise ConnectError("already_exists", f"{req.path}: a directory is there already")
        return envd.EntryAnswer(entry=entry_info(got.entry, got.path, home))

    async def move(self, machine_id: str, req: envd.MoveRequest,
                   caller: Caller) -> envd.EntryAnswer:  # fmt: skip
        home = await self._homes.of(machine_id, caller)
        with e2b_paths(home):
            got = await self._calls(MACHINES_MOVE, MachineMoveParams(
                machine_id=machine_id, source=to_machine(req.source),
                destination=to_machine(req.destination)), caller)  # fmt: skip
        return envd.EntryAnswer(entry=entry_info(got.entry, got.path, home))
