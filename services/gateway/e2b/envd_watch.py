"""envd's watches in fleetd's (``machines.watch``: a path's changes as the machine's kernel
reports them):

- ``WatchDir``, a server stream: ``{"start": {}}``, then each change under the path (its name
  relative to it, and with ``includeEntry`` what is there now);
- ``CreateWatcher``, ``GetWatcherEvents``, ``RemoveWatcher`` (the Python SDK's polling form): the
  same watch held by this gateway process, its changes kept until asked for (at most
  ``KEPT`` of them, the oldest dropped past it), at most ``MAX_WATCHERS`` a sandbox. A poll
  that reaches another gateway replica finds no such watcher (a load balancer keeps a client
  on one replica, as it must for this).

What is passed on is what envd's own watch would say (``Uploads``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

import msgspec
import structlog

from base.tasks import OwnedTasks
from contracts.daemon import files as df
from contracts.daemon.watch import FileEvent
from contracts.e2b import envd
from contracts.errors import FileNotFound, FleetError, NotFound, TooManyStreams, WrongFileKind
from contracts.gateway.files import MACHINES_WATCH, MachineWatchParams
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.envd_files import Filesystem, Homes, to_machine
from services.gateway.e2b.envd_process import Asked

log = structlog.get_logger(__name__)

MAX_WATCHERS: Final = 16
KEPT: Final = 4096
#: A poll waits at most this long for changes, and answers once none came for QUIET_S: envd's
#: watcher is in the sandbox's own process, so a poll right after a write already shows it;
#: fleetd's events come from the machine's watch a moment later.
POLL_GRACE_S: Final = 0.25
QUIET_S: Final = 0.05
_EVENT = msgspec.json.Decoder(FileEvent)
_TYPES: Final[dict[str, envd.EventType]] = {
    "create": "EVENT_TYPE_CREATE", "write": "EVENT_TYPE_WRITE", "remove": "EVENT_TYPE_REMOVE",
    "rename": "EVENT_TYPE_RENAME", "chmod": "EVENT_TYPE_CHMOD",
}  # fmt: skip


@dataclass
class _Watcher:
    sandbox_id: str
    events: deque[envd.FilesystemEvent] = field(default_factory=lambda: deque(maxlen=KEPT))
    task: asyncio.Task[None] | None = None
    error: FleetError | None = None
    #: Set as each change comes.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def settled(self) -> None:
        """Until changes stopped coming for QUIET_S, at most POLL_GRACE_S (see there)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + POLL_GRACE_S
        while (left := end - loop.time()) > 0 and self.error is None:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(),
                                       min(QUIET_S, left) if self.events else left)  # fmt: skip
            except TimeoutError:
                return


class Uploads:
    """A watch's events as envd's would be: fleetd writes an upload beside its file and renames
    it over it, envd writes the file in place. So an upload's temporary file's events are left
    out, and the file it becomes gets ``create`` (when it is new) and ``write``; ``overflow``
    (changes left out of a burst) has no name of E2B's."""

    def __init__(self) -> None:
        #: Files an upload was renamed over, by path, until their own event comes.
        self._landing: set[str] = set()

    def seen(self, event: FileEvent) -> list[str]:
        """What E2B's watch reports of ``event``, in order."""
        directory, name = os.path.split(event.path)
        if event.type == "overflow":
            return []
        if (final := df.uploaded_name(name)) is not None:
            if event.type == "rename":
                self._landing.add(os.path.join(directory, final))
            return []
        if event.path in self._landing:
            self._landing.discard(event.path)
            return [event.type, "write"] if event.type == "create" else ["write"]
        return [event.type]


class Watches:
    """Async context manager: the polled watchers of this process (each a task, ended with it)."""

    def __init__(self, calls: Calls, homes: Homes, fs: Filesystem) -> None:
        self._calls = calls
        self._homes = homes
        self._fs = fs
        self._watchers: dict[str, _Watcher] = {}
        self._tasks = OwnedTasks("e2b-watchers", failed_event="e2b.watcher_failed")

    async def __aenter__(self) -> Watches:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        await self._tasks.close()

    async def stream(self, machine_id: str, req: envd.WatchDirRequest, caller: Caller,
                     _: Asked) -> AsyncIterator[envd.WatchDirEvent]:  # fmt: skip
        """``WatchDir``'s messages."""
        await self._directory(machine_id, req.path, caller)
        yield envd.WatchDirEvent(start=envd.Empty())
        async for change in self._changes(machine_id, req, caller):
            yield envd.WatchDirEvent(filesystem=change)

    async def _directory(self, machine_id: str, path: str, caller: Caller) -> None:
        """A watch's path refused before its stream starts: not there, or no directory."""
        got = await self._fs.stat(machine_id, envd.PathRequest(path=path), caller)
        if got.entry.type != "FILE_TYPE_DIRECTORY":
            raise WrongFileKind(f"{path!r} is not a directory: only a directory is watched")

    async def _changes(self, machine_id: str, req: envd.WatchDirRequest,
                       caller: Caller) -> AsyncIterator[envd.FilesystemEvent]:  # fmt: skip
        home = await self._homes.of(machine_id, caller)
        path = to_machine(req.path)
        base = home if path == "~" else os.path.join(home, path.removeprefix("~/"))
        params = MachineWatchParams(machine_id=machine_id, path=path, recursive=req.recursive)
        uploads = Uploads()
        async for raw in self._calls.parts(MACHINES_WATCH, params, caller):
            event = _EVENT.decode(raw)
            for kind in uploads.seen(event):
                change = envd.FilesystemEvent(name=os.path.relpath(event.path, base),
                                              type=_TYPES[kind])  # fmt: skip
                if req.include_entry and kind in ("create", "write", "chmod"):
                    change.entry = await self._entry(machine_id, event.path, caller)
                yield change

    async def _entry(self, machine_id: str, path: str, caller: Caller) -> envd.EntryInfo | None:
        try:
            got = await self._fs.stat(machine_id, envd.PathRequest(path=path), caller)
        except FileNotFound:  # gone again already
            return None
        return got.entry

    # --- the polled form ---------------------------------------------------------------------
    async def create(self, machine_id: str, req: envd.WatchDirRequest,
                     caller: Caller) -> envd.WatcherCreated:  # fmt: skip
        mine = [w for w in self._watchers.values() if w.sandbox_id == machine_id]
        if len(mine) >= MAX_WATCHERS:
            raise TooManyStreams(f"sandbox {machine_id} has {MAX_WATCHERS} watchers: remove one")
        await self._directory(machine_id, req.path, caller)
        changes = self._changes(machine_id, req, caller)
        watcher = _Watcher(machine_id)
        watcher_id = secrets.token_hex(8)
        self._watchers[watcher_id] = watcher
        watcher.task = self._tasks.spawn(self._keep(watcher, changes), name=f"watcher-{watcher_id}")
        return envd.WatcherCreated(watcher_id=watcher_id)

    async def _keep(self, watcher: _Watcher,
                    changes: AsyncIterator[envd.FilesystemEvent]) -> None:  # fmt: skip
        try:
            async for change in changes:
                watcher.events.append(change)
                watcher.arrived.set()
        except FleetError as exc:  # said at the next poll
            watcher.error = exc
            watcher.arrived.set()

    async def events(self, machine_id: str, req: envd.WatcherRef,
                     _: Caller) -> envd.WatcherEvents:  # fmt: skip
        watcher = self._find(machine_id, req.watcher_id)
        await watcher.settled()
        got = list(watcher.events)
        watcher.events.clear()
        if not got and watcher.error is not None:
            raise watcher.error
        return envd.WatcherEvents(events=got)

    async def remove(self, machine_id: str, req: envd.WatcherRef, _: Caller) -> envd.Empty:
        watcher = self._find(machine_id, req.watcher_id)
        del self._watchers[req.watcher_id]
        if watcher.task is not None:
            watcher.task.cancel()
        return envd.Empty()

    def _find(self, machine_id: str, watcher_id: str) -> _Watcher:
        watcher = self._watchers.get(watcher_id)
        if watcher is None or watcher.sandbox_id != machine_id:
            raise NotFound(f"watcher {watcher_id!r} not found")
        return watcher
