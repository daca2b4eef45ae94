"""A docker machine's code store (core/codestore.py): a volume beside its home volume
(``<home volume>-code``), mounted read-only at ``CODE_MOUNT``, owned by root. The platform
writes it through a container of its own that is created, never started, with the volume
mounted read-write (``put_archive``: the engine unpacks it, on any engine, local or remote);
the machine's container never has it writable."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import aiodocker

from contracts.errors import ProviderError
from core.codestore import CODE_MOUNT, CURRENT_FILE, record, tree_digest
from providers.code import unpack

#: Where the installing container has the store (read-write).
_INSTALL_AT = "/code"


def code_volume(home_volume: str) -> str:
    return f"{home_volume}-code"


def code_mount(home_volume: str) -> dict[str, Any]:
    return {"Type": "volume", "Source": code_volume(home_volume), "Target": CODE_MOUNT,
            "ReadOnly": True}  # fmt: skip


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


async def install(docker: aiodocker.Docker, image: str, home_volume: str, body: bytes) -> None:
    """Unpack ``body`` (``store_archive``) into the store of the machine whose home is
    ``home_volume``."""
    mount = {"Type": "volume", "Source": code_volume(home_volume), "Target": _INSTALL_AT}
    config: dict[str, Any] = {
        "Image": image,
        "Cmd": ["true"],
        "NetworkDisabled": True,
        "HostConfig": {"Mounts": [mount]},
    }
    try:
        helper = await docker.containers.create(config)
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: cannot install code: {exc.message}") from None
    try:
        await helper.put_archive(_INSTALL_AT, body)  # type: ignore[no-untyped-call]
    except aiodocker.DockerError as exc:
        raise ProviderError(f"docker: cannot install code: {exc.message}") from None
    finally:
        await helper.delete(force=True)
