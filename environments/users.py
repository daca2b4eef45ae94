"""The user a devcontainer machine's commands, terminals and files act as: its ``remoteUser``
(else its ``containerUser``), resolved to a uid and gid in the built image's own ``/etc/passwd``
and ``/etc/group``.

Both files are the image's, so untrusted: they are read through the engine from a container of
the image that is created and never started (the engine resolves the path inside the image, never
on the host), only when each is a regular file of at most ``MAX_FILE_BYTES``; a malformed line is
skipped. A name the image does not list is ``EnvironmentInvalid``.

Never root: a user that resolves to uid 0 (``root``, or any name with uid 0) is no user of its
own, and the machine runs as its provider's default unprivileged user, as it does with neither
property set; a primary group 0 becomes a group of the user's own number.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
from typing import Any

import aiodocker
import msgspec

from contracts.errors import EnvironmentInvalid, ProviderError

MAX_FILE_BYTES = 1024 * 1024
MAX_ID = 2**31 - 1
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$")
#: Go's os.FileMode bits in the engine's path stat: a directory, a link, any other non-file.
_NOT_A_FILE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)


class MachineUser(msgspec.Struct, kw_only=True, frozen=True):
    """``name`` as the devcontainer.json gives it; ``uid`` and ``gid`` in the image."""

    name: str
    uid: int
    gid: int


def wanted(remote_user: str | None, container_user: str | None) -> str | None:
    """The user the machine runs as: ``remoteUser`` (the user of tools, terminals and
    lifecycle commands) over ``containerUser``; a machine has one user for all of them."""
    return remote_user or container_user or None


def parse_entries(text: str, fields: int) -> dict[str, list[str]]:
    """``name:...`` lines of a passwd (7 fields) or group (4 fields) file, by name; a line that
    is not one (a comment, a short line, a non-number id) is skipped, a repeated name keeps
    its first line (what getpwnam finds)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < fields or not parts[0] or not _is_id(parts[2]):
            continue
        if fields == 7 and not _is_id(parts[3]):
            continue
        out.setdefault(parts[0], parts)
    return out


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= MAX_ID


def resolve(spec: str, passwd: str, group: str) -> MachineUser | None:
    """``spec`` (``NAME``, ``UID``, ``NAME:GROUP``, ``UID:GID``) in the image's ``passwd`` and
    ``group`` texts; None when it is root (the machine's default user then). Raises
    EnvironmentInvalid for a malformed spec or a name the image does not have."""
    user, colon, grp = spec.partition(":")
    for part in (user, grp) if colon else (user,):
        if not (_is_id(part) or _NAME.match(part)):
            raise EnvironmentInvalid(f"remoteUser/containerUser {spec!r} is not a user name or id")
    users = parse_entries(passwd, 7)
    if _is_id(user):
        uid = int(user)
        entry = next((e for e in users.values() if int(e[2]) == uid), None)
        gid = int(entry[3]) if entry is not None else uid
    elif user in users:
        uid, gid = int(users[user][2]), int(users[user][3])
    else:
        raise EnvironmentInvalid(f"remoteUser/containerUser {user!r} is not in the image's "
                                 "/etc/passwd")  # fmt: skip
    if grp:
        gid = _group_id(grp, group)
    if uid == 0:
        return None
    return MachineUser(name=spec, uid=uid, gid=gid or uid)


def _group_id(grp: str, group: str) -> int:
    if _is_id(grp):
        return int(grp)
    groups = parse_entries(group, 4)
    if grp not in groups:
        raise EnvironmentInvalid(f"group {grp!r} is not in the image's /etc/group")
    return int(groups[grp][2])


async def image_user(docker: aiodocker.Docker, image: str, spec: str | None) -> MachineUser | None:
    """``spec`` resolved in ``image`` (see ``resolve``); None with no spec, or for root."""
    if spec is None:
        return None
    config: dict[str, Any] = {"Image": image, "Entrypoint": ["true"], "Cmd": [],
                              "NetworkDisabled": True}  # fmt: skip
    try:
        helper = await docker.containers.create(config)
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: cannot read the users of {image}: {exc.message}") from None
    try:
        passwd = await read_file(docker, helper.id, "/etc/passwd")
        group = await read_file(docker, helper.id, "/etc/group") if ":" in spec else ""
    finally:
        await helper.delete(force=True)
    return resolve(spec, passwd, group)


async def read_file(docker: aiodocker.Docker, container: str, path: str) -> str:
    """``path`` in the (never started) container, as text; '' when it is not there, not a
    regular file, or larger than ``MAX_FILE_BYTES``."""
    try:
        async with docker._query(f"containers/{container}/archive", "GET",
                                 params={"path": path}) as resp:  # fmt: skip
            stat = json.loads(base64.b64decode(resp.headers.get("X-Docker-Container-Path-Stat",
                                                                "e30=")))  # fmt: skip
            if int(stat.get("mode", 0)) & _NOT_A_FILE or int(stat.get("size", 0)) > MAX_FILE_BYTES:
                return ""
            body = await resp.content.read(MAX_FILE_BYTES + 64 * 1024)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return ""
        raise ProviderError(f"docker: reading {path} of the image: {exc.message}") from None
    return _member_text(body)


def _member_text(body: bytes) -> str:
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
            member = tar.next()
            if member is None or not member.isfile() or member.size > MAX_FILE_BYTES:
                return ""
            data = tar.extractfile(member)
            return data.read().decode("utf-8", errors="replace") if data is not None else ""
    except (tarfile.TarError, EOFError):
        return ""
