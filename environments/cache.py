"""The builds' cache: images tagged ``<repository>:<hash>`` on the engine (so they survive the
platform's restarts; no label marks them: a label costs the engine's builder one more layer per
build), a file of when each was last used, and least-recently-used eviction down to
``max_bytes``. An image a container still uses is never
removed (the engine refuses); it goes at a later eviction."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import structlog

from controlplane.settings import Settings
from environments.host_git import CloneLimits
from environments.sources import clone_limits

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BuildCache:
    #: Where the last-used times are kept (the platform's data dir: trusted).
    state_dir: Path
    #: The builds' total size kept on the engine (0: no cap).
    max_bytes: int
    repository: str = "fleetd-env"
    #: How long an OCI feature's registry has to answer.
    feature_timeout_s: float = 20.0
    #: Hosts an OCI feature's registry may send its layer to (a CDN; never with its token).
    feature_blob_hosts: frozenset[str] = frozenset()
    build_timeout_s: float = 3600.0
    #: Each step's memory (no swap) and CPUs; what the build may write (its steps together,
    #: and the image it makes, base included).
    build_memory_mb: int = 4096
    build_cpus: float = 2.0
    build_disk_mb: int = 20480
    #: The host-side clone's limits (sources.checkout).
    clone: CloneLimits = field(default_factory=CloneLimits)
    #: The engine's network builds run on (None: the engine's default bridge), unless
    #: ``isolated``: then ``fleet-builds``, which the host refuses (environments/build_network.py),
    #: where the engine is this host's and the provisioner root.
    network: str | None = None
    isolated: bool = False

    def __post_init__(self) -> None:
        for name in ("build_timeout_s", "build_memory_mb", "build_cpus", "build_disk_mb"):
            if not getattr(self, name) > 0:  # the engine reads 0 as no limit at all
                raise ValueError(f"FLEET_ENV_{name.upper()}: {getattr(self, name)} is not > 0")

    @property
    def used_file(self) -> Path:
        return self.state_dir / f"{self.repository}.used.json"


def from_settings(settings: Settings) -> BuildCache:
    """The builds' cache of this process: its state in the data dir, builds on a network of
    their own that reaches nothing of the host (else on the machines' network)."""
    return BuildCache(
        state_dir=settings.data_path / "environments",
        max_bytes=settings.env_cache_bytes,
        feature_timeout_s=settings.env_feature_timeout_s,
        feature_blob_hosts=frozenset(h for h in settings.env_feature_blob_hosts.split(",") if h),
        build_timeout_s=settings.env_build_timeout_s,
        build_memory_mb=settings.env_build_memory_mb,
        build_cpus=settings.env_build_cpus,
        build_disk_mb=settings.env_build_disk_mb,
        clone=clone_limits(settings),
        network=settings.docker_network,
        isolated=True,
    )


def _read_used(store: BuildCache) -> dict[str, float]:
    try:
        doc = json.loads(store.used_file.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def _change_used(store: BuildCache, change: Callable[[dict[str, float]], None]) -> None:
    """Read, change and write the last-used file under an exclusive lock of its own: every
    build of this host (its provisioner's replicas too) shares the file."""
    store.state_dir.mkdir(parents=True, exist_ok=True)
    with open(store.used_file.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        used = _read_used(store)
        change(used)
        tmp = store.used_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(used, sort_keys=True))
        os.replace(tmp, store.used_file)


async def _touch(store: BuildCache, tag: str) -> None:
    now = time.time()
    await asyncio.to_thread(_change_used, store, lambda used: used.__setitem__(tag, now))


async def lookup(docker: aiodocker.Docker, store: BuildCache, tag: str) -> str | None:
    """The image ID of a cached build (its last use recorded), or None."""
    try:
        info = await docker.images.inspect(tag)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise
    await _touch(store, tag)
    return str(info["Id"])


async def record(docker: aiodocker.Docker, store: BuildCache, tag: str) -> None:
    """A new build: recorded as used now, then the cache evicted down to its cap."""
    await _touch(store, tag)
    await evict(docker, store, keep=tag)


async def untag(docker: aiodocker.Docker, tag: str) -> None:
    try:
        await docker.images.delete(tag, noprune=False)
    except aiodocker.DockerError as exc:
        log.warning("environments.untag_failed", tag=tag, error=exc.message)


async def entries(docker: aiodocker.Docker, store: BuildCache) -> list[dict[str, Any]]:
    """The cached builds, least recently used first: ``tag``, ``id``, ``size``, ``lastUsed``."""
    images = await docker.images.list(filters={"reference": [f"{store.repository}:*"]})
    used = _read_used(store)
    out = []
    for image in images:
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{store.repository}:") and not tag.endswith("-base"):
                last = used.get(tag, float(image.get("Created", 0)))
                out.append({"tag": tag, "id": image["Id"], "size": int(image.get("Size", 0)),
                            "lastUsed": last})  # fmt: skip
    return sorted(out, key=lambda e: e["lastUsed"])


async def evict(docker: aiodocker.Docker, store: BuildCache, *, keep: str = "") -> list[str]:
    """Remove least recently used builds until the rest fit ``max_bytes``; the tags removed."""
    if store.max_bytes <= 0:
        return []
    cached = await entries(docker, store)
    total = sum(e["size"] for e in cached)
    removed = []
    for e in cached:
        if total <= store.max_bytes:
            break
        if e["tag"] == keep:
            continue
        try:
            await docker.images.delete(e["tag"])
        except aiodocker.DockerError as exc:  # in use by a machine: kept for now
            log.info("environments.evict_skipped", tag=e["tag"], error=exc.message)
            continue
        total -= e["size"]
        removed.append(e["tag"])
    if removed:
        log.info("environments.evicted", tags=removed, kept_bytes=total)
        await _forget(store, removed)
    return removed


async def remove(docker: aiodocker.Docker, store: BuildCache, tag: str) -> None:
    """Remove one cached build; the engine's DockerError (409: a container uses it) is
    raised."""
    await docker.images.delete(tag, noprune=False)
    await _forget(store, [tag])
    log.info("environments.removed", tag=tag)


async def _forget(store: BuildCache, tags: list[str]) -> None:
    def drop(used: dict[str, float]) -> None:
        for tag in tags:
            used.pop(tag, None)

    await asyncio.to_thread(_change_used, store, drop)
