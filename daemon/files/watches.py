"""``tool.watch``: a path's changes (daemon/files/watch_tree.py) sent on a byte stream as they
happen, one JSON line each (contracts/daemon/watch.py).

The kernel's events are read as they come (the inotify descriptor on the event loop) into the
watch's ``Pending`` events; a sender takes all of them at once and sends them as one piece,
waiting for credit when the platform reads slower than the machine changes. Meanwhile what
comes is held within ``MAX_PENDING``, a repeat of a path's last held event merged into it,
and what is past the bound counted and said (``overflow``).

A watch ends with its stream's end frame and a ``WatchEnd`` code: the watched path went, the
machine is pausing (``end_all`` before the daemon lets its connection go) or the daemon is
stopping; or with the platform's abort (its client left), which the daemon hears on the
stream. Either way the inotify instance is closed.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import structlog

from base.byte_stream import ByteStream
from base.relay import relay
from contracts.daemon.watch import (
    FILE_EVENT_TYPES,
    MAX_PENDING,
    WATCH,
    WATCH_CHUNK,
    WATCH_WINDOW,
    FileEvent,
    WatchEnd,
    WatchOpened,
    WatchParams,
)
from contracts.errors import StreamAborted
from contracts.rpc.jsonrpc import handles
from daemon.byte_stream_hub import ByteStreamHub
from daemon.files.watch_tree import WatchTree

log = structlog.get_logger(__name__)
_ENCODER = msgspec.json.Encoder()
#: How long ``end_all`` waits for a watch's last events and end frame to go out (a platform
#: that gives no credit meanwhile gets an abort instead).
END_GRACE_S = 1.0


class Pending:
    """Events not sent yet, at most ``limit``: one that repeats the last held event of its
    path is merged into it; past the bound one is counted, and said with an ``overflow``."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        self._events: list[FileEvent] = []
        self._last: dict[str, int] = {}
        self._dropped = 0
        self._overflowed = False
        self.ready = asyncio.Event()

    def add(self, event: FileEvent) -> None:
        if event.type == "overflow":  # the kernel's queue overflowed: it does not say how much
            self._overflowed = True
        elif (at := self._last.get(event.path)) is not None and self._events[at] == event:
            return
        elif len(self._events) >= self.limit:
            self._dropped += 1
        else:
            self._last[event.path] = len(self._events)
            self._events.append(event)
        self.ready.set()

    def take(self, root: str) -> list[FileEvent]:
        """Everything held, then the ``overflow`` (of ``root``, the watched path) of what was
        left out, if anything was."""
        taken, self._events, self._last = self._events, [], {}
        if self._dropped or self._overflowed:
            taken.append(FileEvent(type="overflow", path=root, is_dir=True,
                                   dropped=self._dropped))  # fmt: skip
            self._dropped, self._overflowed = 0, False
        self.ready.clear()
        return taken


class _Watch:
    def __init__(self, tree: WatchTree, pending: Pending, stream: ByteStream) -> None:
        self.tree = tree
        self.pending = pending
        self.stream = stream
        #: Why the daemon ends it (None: it goes on).
        self.end: WatchEnd | None = None
        self.done = asyncio.Event()

    def ask_end(self, code: WatchEnd) -> None:
        if self.end is None:
            self.end = code
        self.pending.ready.set()

    def on_readable(self) -> None:
        """The kernel has events: read them now (nothing of them waits on the platform)."""
        try:
            self.tree.handle(self.tree.inotify.read())
        except OSError as exc:
            log.warning("watch.read_failed", error=repr(exc))
            self.ask_end(WatchEnd.REMOVED)
        if self.tree.gone:
            self.ask_end(WatchEnd.REMOVED)


class Watches:
    def __init__(self, *, hub: ByteStreamHub, home: str) -> None:
        self._hub = hub
        self._home = home
        self._open: set[_Watch] = set()

    @handles(WATCH)
    async def watch(self, params: WatchParams, _: None) -> WatchOpened:
        kinds = frozenset(params.events or FILE_EVENT_TYPES)
        pending = Pending()
        tree = await asyncio.to_thread(WatchTree, self._home, params.path,
                                       recursive=params.recursive, kinds=kinds,
                                       emit=pending.add)  # fmt: skip
        try:
            stream = self._hub.open(chunk_size=WATCH_CHUNK, window=WATCH_WINDOW)
        except BaseException:
            tree.close()
            raise
        watch = _Watch(tree, pending, stream)
        asyncio.get_running_loop().add_reader(tree.inotify.fd, watch.on_readable)
        self._open.add(watch)
        await stream.start()
        self._hub.spawn(self._run(watch), name="watch")
        log.info("watch.started", path=tree.root, recursive=params.recursive,
                 dirs=tree.watched_dirs)  # fmt: skip
        return WatchOpened(stream_id=stream.stream_id, path=tree.root,
                           watched_dirs=tree.watched_dirs)  # fmt: skip

    async def end_all(self, code: WatchEnd) -> None:
        """End every watch with ``code``, each once its held events went out (an abort for
        one whose platform gives no credit within ``END_GRACE_S``)."""
        watches = list(self._open)
        for watch in watches:
            watch.ask_end(code)
        for watch in watches:
            try:
                await asyncio.wait_for(watch.done.wait(), END_GRACE_S)
            except TimeoutError:
                await watch.stream.abort(f"the watch ended ({code.name.lower()})")

    async def _run(self, watch: _Watch) -> None:
        try:
            await relay(_send(watch), _hear(watch.stream), until="either")
        except StreamAborted as exc:
            log.info("watch.aborted", path=watch.tree.root, reason=exc.message)
        except Exception as exc:  # a task boundary: the watch ends, the daemon goes on
            log.exception("watch.failed", path=watch.tree.root, error=repr(exc))
            await watch.stream.abort("the daemon failed")
        finally:
            self._open.discard(watch)
            with contextlib.suppress(ValueError, OSError):  # the loop may be closing
                asyncio.get_running_loop().remove_reader(watch.tree.inotify.fd)
            watch.tree.close()
            await watch.stream.aclose()
            watch.done.set()


async def _send(watch: _Watch) -> None:
    """Each round: whatever is held, as one piece (waiting for credit), until an end."""
    while True:
        await watch.pending.ready.wait()
        events = watch.pending.take(watch.tree.root)
        if events:
            await watch.stream.send(b"".join(_ENCODER.encode(e) + b"\n" for e in events))
        if watch.end is not None and not watch.pending.ready.is_set():
            await watch.stream.end(int(watch.end))
            log.info("watch.ended", path=watch.tree.root, code=watch.end.name)
            return


async def _hear(stream: ByteStream) -> None:
    """The platform sends nothing on a watch: this returns when it ends its side, and raises
    when it aborts (its client left)."""
    async for _ in stream:
        pass
