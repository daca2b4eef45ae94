"""A copy of a ``docker`` machine's home volume, and of what it wrote outside its home, as of
one instant (providers/docker/fork.py uses it for forks and snapshots).

The home is copied into a new volume by a helper container of the machine image (``cp -a``
between two volume mounts, run by the engine): nothing passes through the provisioner, and root
never walks a machine's files on this host (the copy runs in the helper's own namespaces, which
hold nothing but the two volumes). A running source is copied while it runs, then paused
(``docker pause``: its cgroup frozen) for a second pass that copies again what changed meanwhile
(providers/docker/sync.py): the copy is its home at the pause, which lasts only that pass. Copies of
one source at once share one pause.
What the source wrote outside its home lives in its container's writable layer, which only an
environment's container has (the machine image's root is read-only); it is ``docker commit``-ed
in the same pause to an image ``fleetd-layer:<owner>`` (a fork's or a snapshot's id).

Every machine and snapshot holds a tag of its own of its layer image; the engine removes an
image only with its last tag, and keeps an image a later layer was committed over until that one
is gone too, so removing one never breaks another.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker
import msgspec
import structlog

from base.bounded_output import CappedSink
from contracts.bus.events import HomeCopy
from contracts.errors import ProviderError
from providers.docker import sync as docker_sync
from providers.docker.home import remove_volume

log = structlog.get_logger(__name__)

LAYER_REPO = "fleetd-layer"
#: On a layer image: the fork or snapshot it was committed for.
LABEL_LAYER = "fleet.layer"
#: On a fork's record volume (``copy_record``): how its home was made (``HomeCopy``, JSON).
LABEL_HOME_COPY = "fleet.home-copy"
#: On a snapshot's volume: the snapshot's id.
LABEL_SNAPSHOT = "fleet.snapshot"
#: What the helper needs to copy files as they are (owners, modes, times), and nothing else.
_COPY_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]
_FROM, _TO = "/from", "/to"
#: A copy of a home nothing changes.
_COPY = ["cp", "-a", "-P", f"{_FROM}/.", f"{_TO}/"]
#: The first pass of a copy of a home its machine may change meanwhile: the time it starts, then
#: the copy (providers/docker/sync.py says why the ``syncfs`` first).
_FIRST_PASS = ["sh", "-c", f"sync -f {_FROM} && date +%s%N && exec {' '.join(_COPY)}"]
#: The second: what changed since, copied again (providers/docker/sync.py), with the machine paused.
_SECOND_PASS = ["python3", "-I", "-c", inspect.getsource(docker_sync), _FROM, _TO]
#: How cp says that an entry it was to copy was removed before it could.
_VANISHED = "No such file or directory"
#: What a copy's tool may say, each stream.
_SAID_CAP = 64 * 1024
#: A helper whose copy is never done with it (its provisioner ended) ends after this long.
_HELPER_LIFE_S = 3600


def layer_ref(owner: str) -> str:
    """The image a fork (or a snapshot) ``owner`` keeps its source's writes outside the home in."""
    return f"{LAYER_REPO}:{owner}"


def snapshot_volume(snapshot_id: str) -> str:
    return f"fleet-{snapshot_id}-snapshot"


def copy_record(machine_id: str) -> str:
    """An empty volume whose label says how the machine's home was copied: made last, so a copy
    cut short has none and is made again."""
    return f"fleet-{machine_id}-home-copy"


@dataclass(frozen=True)
class CopySource:
    #: The machine or snapshot copied (``HomeCopy.source``).
    label: str
    #: Its home volume.
    volume: str
    #: The machine's container (paused while it runs; None: it has none, or a snapshot).
    container: aiodocker.containers.DockerContainer | None = None
    #: Commit ``container``'s writable layer (it holds what the machine wrote outside its home).
    commit: bool = False
    #: A layer image taken before (a snapshot's), which the copy shares under a tag of its own.
    layer: str | None = None


class Pauses:
    """Containers paused for copies: copies of one container at once share one pause, which
    ends with the last of them."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def held(self, c: aiodocker.containers.DockerContainer | None) -> AsyncIterator[bool]:
        """The block with ``c`` paused; whether it is (False: no container, or one not running,
        which has no process to change its files)."""
        if c is None or not await self._enter(c):
            yield False
            return
        try:
            yield True
        finally:
            # Shielded: a cancelled copy must still resume the source.
            await asyncio.shield(self._leave(c))

    async def resume_stale(self, c: aiodocker.containers.DockerContainer) -> None:
        """Resume ``c`` if it is paused by no copy of this process: a provisioner that ended
        during a copy left it so."""
        async with self._lock:
            if c.id in self._held or not c["State"].get("Paused"):
                return
            with contextlib.suppress(aiodocker.DockerError):  # resumed meanwhile, or removed
                await c.unpause()
            log.warning("provider.docker_unpaused_stale", container=c.id[:12])

    async def _enter(self, c: aiodocker.containers.DockerContainer) -> bool:
        async with self._lock:
            if c.id in self._held:
                self._held[c.id] += 1
                return True
            try:
                await c.pause()
            except aiodocker.DockerError as exc:
                if exc.status != 409:
                    raise ProviderError(
                        f"docker: cannot pause {c.id[:12]}: {exc.message}"
                    ) from None
                if (await c.show())["State"].get("Paused"):
                    # Not by this process: another provisioner's copy of it is under way.
                    raise ProviderError(f"docker: {c.id[:12]} is paused by another copy") from None
                return False  # not running
            self._held[c.id] = 1
            return True

    async def _leave(self, c: aiodocker.containers.DockerContainer) -> None:
        async with self._lock:
            self._held[c.id] -= 1
            if self._held[c.id]:
                return
            del self._held[c.id]
            try:
                await c.unpause()
            except aiodocker.DockerError as exc:  # removed meanwhile: nothing left to resume
                log.warning(
                    "provider.docker_unpause_failed", container=c.id[:12], error=exc.message
                )


class HomeCopier:
    """Copies of homes (and layers) on one engine; ``labels``: the stack's, on what it makes."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        image: Callable[[], Awaitable[str]],
        labels: Mapping[str, str],
    ) -> None:
        self.docker = docker
        self._image = image
        self._labels = dict(labels)
        self.pauses = Pauses()

    async def copy(
        self, source: CopySource, target: str, labels: Mapping[str, str], owner: str
    ) -> HomeCopy:
        """The new volume ``target`` (with ``labels``), ``source``'s home as of one instant, and
        the image ``layer_ref(owner)`` with the source's writes outside its home, if it has any.
        Whatever a copy cut short left of either is made again."""
        start = time.monotonic()
        await drop_layer(self.docker, owner)
        await remove_volume(self.docker, target)
        await self._volume(target, labels)
        helper = await self._helper(source.volume, target)
        try:
            if source.container is None:  # nothing runs that could change it
                await _run(helper, _COPY)
            else:  # copied while it runs; then, paused, what changed meanwhile copied again
                since = await _first_pass(helper)
            async with self.pauses.held(source.container) as paused:
                stopped = time.monotonic()
                passes: list[Awaitable[object]] = [self._layer(source, owner)]
                if source.container is not None:  # it may have run in the first pass
                    passes.append(_run(helper, [*_SECOND_PASS, str(since)]))
                await _all(passes)
                pause = (time.monotonic() - stopped) * 1000 if paused else 0.0
        finally:
            with contextlib.suppress(aiodocker.DockerError):
                await helper.delete(force=True)
        took = (time.monotonic() - start) * 1000
        return HomeCopy(source=source.label, how="copy", pause_ms=round(pause, 1),
                        took_ms=round(took, 1))  # fmt: skip

    async def _volume(self, name: str, labels: Mapping[str, str]) -> None:
        try:
            await self.docker.volumes.create(  # type: ignore[no-untyped-call]
                {"Name": name, "Labels": {**self._labels, **labels}}
            )
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot make volume {name}: {exc.message}") from None

    async def _helper(self, source: str, target: str) -> aiodocker.containers.DockerContainer:
        """A container, started, in which the copy of ``source`` to ``target`` runs as root, in
        its own namespaces, with no network and only the capabilities a copy needs. It ends by
        itself, and is removed then, if the copy is never done with it (its provisioner ended)."""
        config: dict[str, Any] = {
            "Image": await self._image(),
            "User": "0:0",
            "Cmd": ["sleep", str(_HELPER_LIFE_S)],
            "NetworkDisabled": True,
            "Labels": self._labels,
            "HostConfig": {
                "Mounts": [
                    {"Type": "volume", "Source": source, "Target": _FROM, "ReadOnly": True},
                    {"Type": "volume", "Source": target, "Target": _TO},
                ],
                "NetworkMode": "none",
                "CapDrop": ["ALL"],
                "CapAdd": _COPY_CAPS,
                "SecurityOpt": ["no-new-privileges"],
                "ReadonlyRootfs": True,
                "AutoRemove": True,
            },
        }
        try:
            helper = await self.docker.containers.create(config)
            await helper.start()
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot copy {source}: {exc.message}") from None
        return helper

    async def _layer(self, source: CopySource, owner: str) -> None:
        ref = layer_ref(owner)
        try:
            if source.commit and source.container is not None:
                # The container is paused already, or not running: the commit need not pause it.
                await source.container.commit(repository=LAYER_REPO, tag=owner, pause=False,
                                              changes=f"LABEL {LABEL_LAYER}={owner}")  # fmt: skip
            elif source.layer is not None:
                await self.docker.images.tag(source.layer, LAYER_REPO, tag=owner)
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot keep {source.label}'s layer as {ref}: "
                                f"{exc.message}") from None  # fmt: skip

    async def record(self, machine_id: str, copied: HomeCopy) -> None:
        """Say how ``machine_id``'s home was made (``recorded`` answers it from now on)."""
        label = msgspec.json.encode(copied).decode()
        await self._volume(copy_record(machine_id), {LABEL_HOME_COPY: label})

    async def recorded(self, machine_id: str) -> HomeCopy | None:
        try:
            vol = await self.docker.volumes.get(copy_record(machine_id))  # type: ignore[no-untyped-call]
            info = await vol.show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise ProviderError(f"docker: {exc.message}") from None
        label = (info.get("Labels") or {}).get(LABEL_HOME_COPY)
        return msgspec.json.decode(label, type=HomeCopy) if label else None


async def _exec(c: aiodocker.containers.DockerContainer, argv: list[str]) -> tuple[int, str, str]:
    """``argv`` run in the helper ``c`` to its end: its exit code, stdout and stderr, each kept
    to ``_SAID_CAP`` as it is read (a tool over a machine's files may name each of them)."""
    said = {1: CappedSink(_SAID_CAP), 2: CappedSink(_SAID_CAP)}
    try:
        ex = await c.exec(argv)
        async with ex.start(detach=False) as stream:
            while (msg := await stream.read_out()) is not None:
                said[msg.stream].take(msg.data)
        code = int((await ex.inspect())["ExitCode"])
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: the copy failed: {exc.message}") from None
    out, err = (said[n].data().decode(errors="replace") for n in (1, 2))
    # What was dropped is a failure to whoever reads the lines kept.
    return code, out, err + ("\n(more, not kept)" if said[2].truncated else "")


async def _run(c: aiodocker.containers.DockerContainer, argv: list[str]) -> None:
    """``argv`` run in the helper ``c``; it must succeed."""
    code, _, err = await _exec(c, argv)
    if code != 0:
        raise ProviderError(f"docker: the copy failed ({argv[0]}: {code}): {err.strip()[-300:]}")


async def _first_pass(c: aiodocker.containers.DockerContainer) -> int:
    """The first pass of a copy of a home that changes meanwhile; the second pass's ``since``.
    A file or directory removed during it is no failure (the second pass sees it gone)."""
    code, out, err = await _exec(c, _FIRST_PASS)
    failed = [line for line in err.splitlines() if line.strip() and _VANISHED not in line]
    if not out.strip() or failed or (code != 0 and not err.strip()):
        said = "; ".join(failed)[-300:] or f"exit code {code}"
        raise ProviderError(f"docker: the copy failed: {said}")
    return int(out.split()[0]) - 10**9


async def _all(steps: list[Awaitable[object]]) -> None:
    """Every step at once, each to its end (the pause holds until the last); the first failure
    raised."""
    done = await asyncio.gather(*steps, return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome


async def drop_layer(docker: aiodocker.Docker, owner: str) -> None:
    """Remove ``owner``'s tag of its layer image: the image goes with its last tag (the engine
    keeps one that another layer was committed over until that one is gone)."""
    try:
        await docker.images.delete(layer_ref(owner))
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise ProviderError(
                f"docker: cannot remove {layer_ref(owner)}: {exc.message}"
            ) from None
