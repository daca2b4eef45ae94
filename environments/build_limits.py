"""An environment build's limits on the engine: each step's memory (no swap) and CPUs (the
classic builder's own parameters), the build's time, and what it writes (its steps watched as
they run, the image it makes checked at the end). A build over one is stopped, its step
containers removed, and fails with ``BuildLimitExceeded`` naming the limit.

The engine reads a memory or CPU limit of 0 as none at all: BuildCache refuses one.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import structlog

from base.ticker import Ticker
from contracts.errors import BuildLimitExceeded
from environments.cache import BuildCache

log = structlog.get_logger(__name__)

#: How often a running step's writes are measured.
DISK_POLL_S = 1.0
#: How long a step container's removal is awaited.
REMOVE_WAIT_S = 60.0
_RUNNING_IN = re.compile(r"^\s*---> Running in ([0-9a-f]{12,64})\s*$")
#: The classic builder's words for a step that ended by SIGKILL (what the kernel's OOM killer
#: sends a step over its memory).
_KILLED = "returned a non-zero code: 137"
_MB = 1024 * 1024


def params(store: BuildCache) -> dict[str, str]:
    """The build API's parameters that hold each step to the build's memory and CPUs."""
    memory = store.build_memory_mb * _MB
    return {"memory": str(memory), "memswap": str(memory), "cpuperiod": "100000",
            "cpuquota": str(max(1000, int(store.build_cpus * 100_000)))}  # fmt: skip


def exceeded(store: BuildCache, limit: str) -> BuildLimitExceeded:
    what = {
        "memory": f"a step went over the build's memory ({store.build_memory_mb} MB, "
        "FLEET_ENV_BUILD_MEMORY_MB) and was killed",
        "time": f"the build took longer than {store.build_timeout_s:g}s "
        "(FLEET_ENV_BUILD_TIMEOUT_S)",
        "disk": f"the build wrote more than {store.build_disk_mb} MB (FLEET_ENV_BUILD_DISK_MB)",
    }[limit]
    return BuildLimitExceeded(f"the environment build was stopped: {what}",
                              data={"limit": limit, "of": "build"})  # fmt: skip


@dataclass
class Steps:
    """A build's step containers, as its log names them, and what they write: the running
    one's writes are measured every ``DISK_POLL_S`` (with the steps' before it), and it is
    killed once they are over the build's disk limit."""

    docker: aiodocker.Docker
    store: BuildCache
    seen: list[str] = field(default_factory=list)
    done_bytes: int = 0
    current_bytes: int = 0
    over: str | None = None
    _watch: Ticker = field(init=False)

    def __post_init__(self) -> None:
        self._watch = Ticker(DISK_POLL_S, tick=self._measure, name="env-build-disk-watch",
                             failed_event="environment.build_disk_watch_failed")  # fmt: skip

    def heard(self, line: str) -> None:
        m = _RUNNING_IN.match(line)
        if m is not None:
            self.done_bytes += self.current_bytes
            self.current_bytes = 0
            self.seen.append(m.group(1))

    def failed_as(self, tail: str) -> str | None:
        """The limit a failed build went over, if any (None: it failed of itself)."""
        return self.over or ("memory" if _KILLED in tail else None)

    async def __aenter__(self) -> Steps:
        await self._watch.__aenter__()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._watch.__aexit__(None, None, None)

    async def _measure(self) -> None:
        """The running step's writes; it is removed once the build's are over the limit."""
        if not self.seen or self.over:
            return
        cid = self.seen[-1]
        try:
            info: dict[str, Any] = await self.docker._query_json(
                f"containers/{cid}/json", "GET", params={"size": "1"})  # fmt: skip
        except aiodocker.DockerError:  # the step ended meanwhile
            return
        self.current_bytes = int(info.get("SizeRw") or 0)
        limit = self.store.build_disk_mb * _MB
        if self.done_bytes + self.current_bytes > limit:
            self.over = "disk"
            log.warning("environment.build_over_disk", container=cid,
                        written=self.done_bytes + self.current_bytes, limit=limit)  # fmt: skip
            await self.remove()

    async def remove(self) -> None:
        """Every step container of the build, ended and removed (the engine's ``forcerm``
        does it too, unless the build was cut off)."""
        for cid in self.seen:
            try:
                await self.docker.containers.container(cid).delete(force=True)
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    continue
                log.info("environment.build_step_removing", container=cid, error=exc.message)
            try:  # a removal the engine has under way (ours, or its forcerm's) is awaited
                async with asyncio.timeout(REMOVE_WAIT_S):
                    await self.docker._query_json(f"containers/{cid}/wait", "POST",
                                                  params={"condition": "removed"})  # fmt: skip
            except (aiodocker.DockerError, TimeoutError) as exc:
                if getattr(exc, "status", None) != 404:
                    log.warning("environment.build_step_left", container=cid, error=str(exc))


async def check_image(docker: aiodocker.Docker, store: BuildCache, tag: str) -> None:
    """The image a build made, removed and refused if it is over the build's disk limit."""
    size = int((await docker.images.inspect(tag)).get("Size") or 0)
    if size > store.build_disk_mb * _MB:
        await docker.images.delete(tag, noprune=False)
        raise exceeded(store, "disk")
