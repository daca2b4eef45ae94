"""A docker machine's volumes of the platform's, beside its home volume, owned by root: its
code store (base/codestore.py, ``<home volume>-code`` at ``CODE_MOUNT``, read-only) and its
token (``<home volume>-secret``: one file, the machine user's, 0600, in root's directory,
which the supervisor, the container's first process, empties as it reads it, before any
other process of the machine exists; daemon/supervision/nodump.py). The platform writes them
through a
container of its own that is created, never started, with the volume mounted read-write
(``put_archive``: the engine unpacks it, on any engine, local or remote); the machine's
container has the code read-only and only its token file writable."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiodocker

from base.codestore import CODE_MOUNT, CURRENT_FILE, record, tree_digest
from providers.code import unpack
from providers.docker.image import SECRET_MOUNT
from providers.docker.runtime import helper_container

#: Where the installing container has the store (read-write).
_INSTALL_AT = "/code"


#: Where a machine's container has its token file (the machine user's, 0600, emptied once read).
TOKEN_FILE = f"{SECRET_MOUNT}/token"


def code_volume(home_volume: str) -> str:
    return f"{home_volume}-code"


def secret_volume(home_volume: str) -> str:
    return f"{home_volume}-secret"


def platform_mounts(home_volume: str) -> list[dict[str, Any]]:
    """The code store, read-only, and the token's volume (its file emptied once read)."""
    return [
        {"Type": "volume", "Source": code_volume(home_volume), "Target": CODE_MOUNT,
         "ReadOnly": True},
        {"Type": "volume", "Source": secret_volume(home_volume), "Target": SECRET_MOUNT},
    ]  # fmt: skip


def token_archive(
    token: str | None, owner: tuple[int, int], files: Mapping[str, str] | None = None
) -> bytes:
    """A tar of the one file ``token`` (None: none): ``owner``'s (uid, gid), readable and
    writable by that owner only (written to empty it; root's, 0400, for a container whose first
    process is root, as one made before was); and ``files`` (name: text), root's, 0644 (the
    machine's ``passwd`` and ``group``: providers/docker/users.py)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        if token is not None:
            data = token.encode()
            info = _root(tarfile.TarInfo("token"))
            info.uid, info.gid = owner
            info.size, info.mode = len(data), 0o400 if owner == (0, 0) else 0o600
            tar.addfile(info, io.BytesIO(data))
        for name, text in (files or {}).items():
            body = text.encode()
            info = _root(tarfile.TarInfo(name))
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def store_archive(repo: Path, sha: str) -> bytes:
    """A tar of ``<sha>/`` (the daemon's trees and the sha marker) and ``current`` naming it
    with its tree's digest, every entry root's and read-only to others."""
    out = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=out, mode="w") as tar:
        unpack(repo, sha, Path(tmp) / sha)
        digest = tree_digest(Path(tmp) / sha)
        tar.add(Path(tmp) / sha, arcname=sha, filter=_root)
        current = record(sha, digest)
        info = _root(tarfile.TarInfo(CURRENT_FILE))
        info.size, info.mode = len(current), 0o644
        tar.addfile(info, io.BytesIO(current))
    return out.getvalue()


def _root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


async def install(docker: aiodocker.Docker, image: str, volume: str, body: bytes) -> None:
    """Unpack ``body`` (``store_archive``, ``token_archive``) into ``volume`` (``code_volume``
    or ``secret_volume`` of a machine's home volume)."""
    mount = {"Type": "volume", "Source": volume, "Target": _INSTALL_AT}
    config: dict[str, Any] = {
        "Image": image,
        "Cmd": ["true"],
        "NetworkDisabled": True,
        "HostConfig": {"Mounts": [mount]},
    }
    async with helper_container(docker, config, f"write {volume}") as helper:
        # A file object: aiohttp streams it, where bytes over 1 MiB are sent in one write and
        # warned of (the code archive is past that).
        await helper.put_archive(_INSTALL_AT, io.BytesIO(body))  # type: ignore[no-untyped-call]
