"""Each docker machine's own host uid, so that no kernel limit a uid holds is shared between
tenants.

The kernel counts some limits per user: per uid of a user namespace and, up the chain, per
owner of each namespace (``ucounts``): inotify instances and watches
(``fs.inotify.max_user_instances``, 128 here; ``max_user_watches``) among them. The engine
maps no user namespace, so a container's uid is the host's: when every docker machine ran as
uid 1000, one tenant's 128 ``inotify_init1`` left no other docker machine a file watcher
(``machines.watch``, vite, webpack). Now:

- a machine's uid is drawn from ``FLEET_DOCKER_UIDS`` (apart from the local machines'
  ``FLEET_SANDBOX_UIDS``) when its home volume is made, at random among those no volume of the
  engine's holds (other stacks' included), and kept on that volume (``LABEL_UID``): its
  container runs as it (``User``), a new home is given to it, and the machine's stop, start and
  re-creation find it there. A fork's or snapshot's copy of a home keeps its source's uid (the
  same tenant's files, owned by it already);
- its name is the image's user's: the machine image's NSS reads a ``passwd`` and a ``group``
  in the machine's secret volume first (root's; the platform writes them with its token:
  ``user_files``), then the image's own files; an environment's image keeps its own, in which
  the platform renumbers its user (the devcontainer's ``remoteUser``, else uid 1000) or adds
  ``fleet`` (``renumbered``) before the container first starts;
- a home volume made before (no label), or ``FLEET_DOCKER_UIDS`` empty: the image's user, as
  before (uid 1000, or the ``remoteUser``), shared.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random

import aiodocker
import aiohttp
import structlog

from contracts.errors import ProviderError
from providers.docker.code import token_archive
from providers.docker.home import volume_exists
from providers.docker.image import MACHINE_HOME, MACHINE_UID
from providers.docker.names import LABEL_UID

log = structlog.get_logger(__name__)

#: The shell the machine image gives its user.
SHELL = "/bin/sh"
#: What the platform reads of an environment's image's ``/etc/passwd`` or ``/etc/group``.
_ETC_CAP = 1 << 20


async def volume_uid(docker: aiodocker.Docker, volume: str) -> int | None:
    """The uid the home volume ``volume`` holds; None if it holds none (made before, or gone)."""
    try:
        info = await (await docker.volumes.get(volume)).show()  # type: ignore[no-untyped-call]
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise ProviderError(f"docker: volume {volume}: {exc.message}") from None
    label = (info.get("Labels") or {}).get(LABEL_UID, "")
    return int(label) if label.isdigit() else None


class Uids:
    """The uids of ``FLEET_DOCKER_UIDS`` (None: off) for one engine's home volumes."""

    def __init__(self, docker: aiodocker.Docker, uids: tuple[int, int] | None) -> None:
        self.docker = docker
        self.uids = uids
        #: One drawn at a time in this process.
        self._drawing = asyncio.Lock()

    async def home(self, volume: str, labels: dict[str, str]) -> tuple[int | None, bool]:
        """The uid of the home volume ``volume`` (None: the image's user: made before uids,
        or they are off), and whether it was made now, holding a uid of its own."""
        if await volume_exists(self.docker, volume):
            return await volume_uid(self.docker, volume), False
        async with self._drawing:
            uid = None if self.uids is None else random_free(self.uids, await self._taken())
            held = {} if uid is None else {LABEL_UID: str(uid)}
            try:
                await self.docker.volumes.create(  # type: ignore[no-untyped-call]
                    {"Name": volume, "Labels": {**labels, **held}}
                )
            except aiodocker.DockerError as exc:
                raise ProviderError(f"docker: cannot make volume {volume}: {exc.message}") from None
            return uid, True

    async def _taken(self) -> set[int]:
        """The uids the engine's volumes hold (every stack's)."""
        try:
            found = await self.docker.volumes.list(filters={"label": [LABEL_UID]})  # type: ignore[no-untyped-call]
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot list volumes: {exc.message}") from None
        labels = [(v.get("Labels") or {}).get(LABEL_UID, "") for v in found.get("Volumes") or []]
        return {int(label) for label in labels if label.isdigit()}


def random_free(uids: tuple[int, int], taken: set[int]) -> int:
    """A uid of ``uids`` not in ``taken``, at random: another stack drawing at once on the same
    engine (which has no atomic claim) is unlikely to draw the same one."""
    free = [u for u in range(uids[0], uids[1] + 1) if u not in taken]
    if not free:
        raise ProviderError(f"every uid of FLEET_DOCKER_UIDS {uids[0]}-{uids[1]} is taken")
    return random.choice(free)


def user_files(uid: int) -> dict[str, str]:
    """The machine image's ``passwd`` and ``group`` for a machine of ``uid``: root, the
    machine's user ``fleet`` (its home, the image's shell) and nobody."""
    return {
        "passwd": f"root:x:0:0:root:/root:{SHELL}\nfleet:x:{uid}:{uid}::{MACHINE_HOME}:{SHELL}\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nfleet:x:{uid}:\nnogroup:x:65534:\n",
    }  # fmt: skip


def renumbered(text: str, kind: str, was: int, uid: int) -> str:
    """An image's ``passwd`` (``kind``) or ``group`` with the entry of id ``was`` given the id
    ``uid`` (a passwd entry's group too); ``fleet`` added if no entry had it. One that names
    ``uid`` already (a fork's layer: its source's, renumbered) is kept as it is."""
    if any(line.split(":")[2:3] == [str(uid)] for line in text.splitlines()):
        return text
    lines, found = [], False
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2] == str(was):
            fields[2], found = str(uid), True
            if kind == "passwd":
                fields[3] = str(uid)
        lines.append(":".join(fields))
    if not found:
        lines.append(f"fleet:x:{uid}:{uid}::{MACHINE_HOME}:{SHELL}" if kind == "passwd"
                     else f"fleet:x:{uid}:")  # fmt: skip
    return "\n".join(lines) + "\n"


async def name_in_image(
    c: aiodocker.containers.DockerContainer, was: tuple[int, int] | None, uid: int
) -> None:
    """In the created container ``c`` of an environment's image (never started yet), the
    image's user (``was``: its uid and gid; None: the platform's 1000) renumbered ``uid`` in
    ``/etc/passwd`` and ``/etc/group`` (made if the image has none). Each must be a regular
    file of at most 1 MiB (the image's to make anything); else nothing is written, and the user
    has its uid but no name (as a local machine's plain uid has none)."""
    user, group = was or (MACHINE_UID, MACHINE_UID)
    files = {}
    for kind, old in (("passwd", user), ("group", group)):
        text = await _etc_file(c, kind)
        if text is None:
            log.warning("provider.docker_user_unnamed", container=c.id[:12], file=kind)
            return
        files[kind] = renumbered(text, kind, old, uid)
    try:
        await c.put_archive("/etc", io.BytesIO(token_archive(None, (0, 0), files)))  # type: ignore[no-untyped-call]
    except aiodocker.DockerError as exc:  # no /etc at all
        log.warning("provider.docker_user_unnamed", container=c.id[:12], error=exc.message)


async def _etc_file(c: aiodocker.containers.DockerContainer, name: str) -> str | None:
    """``/etc/<name>`` of ``c``: '' if there is none, None unless it is a regular file of at
    most ``_ETC_CAP`` bytes. Its size is asked first (``HEAD``: aiodocker's own query cannot
    read the engine's bodiless 404), so no more than that is ever read."""
    path = f"/etc/{name}"
    url = c.docker._canonicalize_url(f"containers/{c.id}/archive")
    try:
        async with c.docker.session.head(url, params={"path": path}) as head:
            if head.status == 404:
                return ""
            said = head.headers.get("X-Docker-Container-Path-Stat", "") if head.ok else ""
        stat = json.loads(base64.b64decode(said))
        # Go's FileMode: any high bit is a type (a directory, a link, a device...) or set-id.
        if stat.get("linkTarget") or int(stat.get("mode", -1)) & 0xFFFF0000:
            return None
        if not 0 <= int(stat.get("size", -1)) <= _ETC_CAP:
            return None
        tar = await c.get_archive(path)  # type: ignore[no-untyped-call]
    except (aiodocker.DockerError, aiohttp.ClientError, ValueError, TypeError):
        return None
    with tar:
        member = tar.next()
        got = tar.extractfile(member) if member is not None and member.isfile() else None
        return None if got is None else got.read(_ETC_CAP).decode(errors="replace")
