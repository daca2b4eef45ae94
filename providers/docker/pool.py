"""The warm pool of the ``docker`` provider (``providers/warm_pool.py`` keeps it filled).

A pooled machine is a normal machine container (``DockerProvider.base_config``: the machine
image, the platform's limits, the machines' network, every restriction) started with a pool
slot instead of a machine: named ``fleet-pool-<slot>``, labelled ``fleet.pool=<slot>`` and
``fleet.pool.owner`` (this pool: an opaque random id, no host's pid), its home the volume
``fleet-pool-<slot>-home``, its environment ``FLEET_POOL_SLOT`` and ``FLEET_POOL_STDIN`` and
**no machine id, no token, no instance**, its stdin open (``OpenStdin``, ``StdinOnce``) and
attached by this process from before its start (``StdinLifeline``). Its supervisor starts the
daemon, which does its imports and waits; the supervisor then prints ``supervisor: pool_up``
(the container's log: "verified") and reads its stdin (``daemon/supervision/pool.py``'s
``StdinChannel``).
No restart policy: a pooled container that dies is replaced, not restarted. A claim:

1. renames the container to ``fleet-<machineId>`` (labels cannot change after create: the name
   is the engine's record of the claim, and every path that finds a machine's container by
   name finds it) and writes its instance's limits and the machines' restart policy
   (``docker update``: live, the processes stay);
2. then, once the provisioner has announced the machine, writes the identity (one JSON line,
   ``base/poolwire.py``) on the stdin attach it holds and closes it, which closes that pipe
   for good. The supervisor reads it, prints ``supervisor: pool_claimed``, puts ``/dev/null`` on
   its fd 0 and hands the identity to the daemon, which connects as any machine's does. (No
   ``docker exec``: a new process in the container costs tens of milliseconds.)

The token is never in an argv, an environment, a file or a label of the container (``docker
inspect`` shows none of it).

The stdin attach is the pooled container's lifeline, as the socket is a local pooled
machine's: when this process ends, even SIGKILLed, its connection to the engine closes, the
engine closes the container's stdin (``StdinOnce``) and the supervisor, which never got an
identity, ends the container (``supervisor: pool_orphaned``) within a second or so. So an
owner's liveness is its containers' own state, on any host sharing the engine: what a pool
removes at its start and every ``ORPHAN_SWEEP_S`` (``remove_orphans``) is the stack's
unclaimed pooled containers that have exited (any owner's), with their volumes, those created
but never started for longer than ``STALE_CREATED_S`` (a provisioner that died between the
create and the attach), and those made before the lifeline whose (pid) owner is gone. Until
then an exited one and its volume stay; they hold no secret (no identity ever reached them). Each
pooled container holds two connections to the engine (the attach and the ``wait``) from
aiodocker's pool of 100. When the connection to the engine drops (a remote engine), a pooled
container whose attach went with it is no longer claimable and ends by itself; a dropped
``wait`` alone is no death (it is sent again): only the engine's answer says a container ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiodocker
import aiohttp
import structlog
from aiodocker.multiplexed import multiplexed_result_stream

from base.poolwire import POOL_SLOT_VAR, POOL_STDIN_VAR, POOL_UP_LOG, identity_line
from base.retry import Backoff, retry_until
from contracts.errors import NotSupported, ProviderError
from controlplane.policy import Placement
from providers.docker.code import install as install_store, secret_volume, token_archive
from providers.docker.home import remove_home
from providers.docker.names import (
    LABEL_POOL,
    LABEL_POOL_OWNER,
    LABEL_STACK,
    POOL_PREFIX,
    container_name,
)
from providers.docker.provider import DockerProvider, ensure_network, named, run_as, with_runtime
from providers.docker.runtime import created, give_new_home
from providers.docker.users import name_in_image
from providers.warm_pool import UP_TIMEOUT_S, PoolMachine, owner_alive

log = structlog.get_logger(__name__)

#: A pooled container created this long ago (by the engine's clock) and never started is an
#: orphan: its owner went between the create and the start, which take milliseconds.
STALE_CREATED_S = 10 * UP_TIMEOUT_S
#: A pooled container whose lifeline was cut under us ends by itself (its supervisor sees its
#: stdin close) within a second or so; it is removed once it has, or after this long.
ORPHAN_GRACE_S = 5.0
#: aiodocker's status for "no connection to the engine" (no answer about the container).
ENGINE_UNREACHABLE = 900


def pool_volume(slot: str) -> str:
    return f"{POOL_PREFIX}{slot}-home"


@contextlib.asynccontextmanager
async def _response(
    docker: aiodocker.Docker, path: str, method: str = "GET", **kw: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A long-running docker request (a followed log, a wait) whose response is closed when
    we stop reading or are cancelled. aiodocker's own ``log(follow=True)`` and ``wait()``
    leave it to be collected, an unclosed connection (CI's runs found one)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=30)
    async with docker._query(path, method, timeout=timeout, **kw) as response:
        try:
            yield response
        finally:
            response.close()


class StdinLifeline:
    """A pooled container's stdin, attached by its owner from before its start until the
    claim's hand-over writes the identity on it and closes it (see the module's docstring).
    Our own request, not aiodocker's ``attach``, which inspects first and leaves its response
    open when its setup fails half way: the HTTP connection is closed on every path
    (``close`` is idempotent; an error answer is closed by aiodocker)."""

    def __init__(self) -> None:
        self._response: aiohttp.ClientResponse | None = None

    async def attach(self, docker: aiodocker.Docker, container_id: str) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=30)
        self._response = await docker._do_query(
            f"containers/{container_id}/attach", "POST",
            params={"stdin": "1", "stream": "1"},
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            timeout=timeout, read_until_eof=False,
        )  # fmt: skip
        if self._transport() is None:
            self.close()
            raise ProviderError(f"docker: no stdin attach to {container_id[:12]}")

    @property
    def held(self) -> bool:
        return self._transport() is not None

    @property
    def cut(self) -> bool:
        """Closed under us (the connection to the engine dropped), not by our ``close``."""
        return self._response is not None and self._transport() is None

    def _transport(self) -> asyncio.Transport | None:
        conn = self._response.connection if self._response is not None else None
        transport = conn.transport if conn is not None else None
        return None if transport is None or transport.is_closing() else transport

    def send_and_close(self, data: bytes) -> None:
        """Write ``data`` (flushed by the close) and close: the pipe closes for good."""
        try:
            transport = self._transport()  # (uvloop's are no asyncio.Transport subclasses)
            if transport is None:
                raise ProviderError("the claimed container's stdin is closed (it went away)")
            transport.write(data)
        finally:
            self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


class PooledDocker:
    """One pooled container, from its start to its claim (or its end)."""

    def __init__(self, backend: DockerPoolBackend, slot: str, c: Any) -> None:
        self._backend = backend
        self.slot = slot
        self.c = c
        self.lifeline = StdinLifeline()
        self._machine_id = ""
        self._ended = False
        self._watch: asyncio.Task[None] | None = None

    def watch(self, on_death: Callable[[], None]) -> None:
        self._watch = asyncio.create_task(self._wait_end(on_death), name=f"pool:{self.slot}")

    async def _wait_end(self, on_death: Callable[[], None]) -> None:
        """Until the engine says the container ended (or is gone). A dropped connection says
        nothing about the container: the wait is sent again, with backoff while the engine
        does not answer (meanwhile a container whose lifeline went with it is no longer
        ``alive``, and the keeper is told)."""
        # Before each wait, the keeper looks again: was the lifeline cut too?
        await retry_until(self._ended_by_engine, backoff=Backoff(base=0.2, cap=5.0),
                          on_retry=lambda *_: on_death())  # fmt: skip
        self._ended = True
        on_death()

    async def _ended_by_engine(self) -> bool:
        """One ``wait``: True if the engine answered that the container ended (or is gone),
        False if the connection dropped first."""
        try:
            async with _response(self.c.docker, f"containers/{self.c.id}/wait", "POST") as r:
                body = await r.read()
            if "StatusCode" in json.loads(body):  # a whole answer, not a connection's end
                return True
            error = f"not an answer: {body[:80]!r}"
        except aiodocker.DockerError as exc:
            if exc.status != ENGINE_UNREACHABLE:
                return True  # gone (404): ended for sure
            error = str(exc)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        log.warning("pool.docker_wait_lost", slot=self.slot, error=error,
                    lifeline=self.lifeline.held)  # fmt: skip
        return False

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    @property
    def alive(self) -> bool:
        """Claimable: not ended, and its lifeline held (one cut under us ends it)."""
        return not self._ended and self.lifeline.held

    async def wait_up(self) -> None:
        seen = ""
        params = {"stdout": True, "stderr": True, "follow": True}
        async with _response(self.c.docker, f"containers/{self.c.id}/logs", params=params) as r:
            async for chunk in multiplexed_result_stream(r, is_tty=False):  # type: ignore[no-untyped-call]
                seen = (seen + chunk)[-4096:]
                if POOL_UP_LOG in seen:
                    return
        raise ProviderError(f"pooled container {self.slot} ended while starting")

    async def claim(self, machine_id: str, *, home_kept: bool = False) -> str:
        if home_kept:  # the pool never hands one out for that (``adopts_homes``)
            raise NotSupported("a container's volumes are fixed when it is made")
        if not self.alive:
            raise ProviderError(f"pooled container {self.slot} has ended")
        # First: should it fail, the container is still the pool's (stopped with it).
        lim = (await self._backend.provider.placement_of(machine_id)).limits
        # Still watched until the hand-over: the engine keeps a dead container's stdin attach
        # open, so only the ``wait`` tells that it ended in between.
        self._backend.claimed(self)  # the machine's now: the pool's close leaves it be
        self._machine_id = machine_id
        update = self._backend.provider.docker._query_json(
            f"containers/{self.c.id}/update", "POST", data={
                "Memory": lim.memory_mb * 1024 * 1024,
                "MemorySwap": lim.memory_mb * 1024 * 1024,
                "NanoCpus": int(lim.cpus * 1e9), "PidsLimit": lim.pids,
                "RestartPolicy": {"Name": "unless-stopped"},
            },
        )  # fmt: skip
        try:  # both at once: someone waits for this machine
            await asyncio.gather(self.c.rename(container_name(machine_id)), update)
        except (aiodocker.DockerError, aiohttp.ClientError) as exc:
            raise ProviderError(f"docker: claiming {self.slot}: {exc}") from None
        log.info("provider.docker_claimed", machine_id=machine_id, slot=self.slot)
        return f"docker:{self.c.id[:12]}"

    async def hand_over(self, token: str) -> None:
        """The identity on the container's stdin, attached since its start: once we close it,
        the pipe is closed for good (``StdinOnce``), so nothing more can ever come that way."""
        self._backend.forget(self)
        self._unwatch()
        if not self.alive:
            self.release()
            raise ProviderError(f"the claimed container {self.slot} ended before its hand-over")
        self.lifeline.send_and_close(identity_line(self._machine_id, token))

    def release(self) -> None:
        """Neither watch nor hold it any more (a claimed one the pool's close leaves be: its
        stdin closing ends it, and a resume makes it again)."""
        self._unwatch()
        self.lifeline.close()

    async def stop(self) -> None:
        """Remove it for good, with its home volume (idempotent; never raises: an engine that
        does not answer leaves it to a sweep, ``remove_orphans``)."""
        if self._watch is not None and self.lifeline.cut and not self._ended:
            # Its stdin closed under us: it is ending itself (``pool_orphaned``); not killed
            # in the middle of that, removed once its wait says so.
            await asyncio.wait({self._watch}, timeout=ORPHAN_GRACE_S)
        self._unwatch()
        self._ended = True
        self.lifeline.close()
        self._backend.forget(self)
        try:
            with contextlib.suppress(aiodocker.DockerError):  # gone already, or going
                await self.c.delete(force=True)
            await remove_home(self._backend.provider.docker, pool_volume(self.slot))
        except (ProviderError, aiohttp.ClientError, OSError) as exc:
            log.warning("pool.docker_remove_failed", slot=self.slot, error=str(exc))


class DockerPoolBackend:
    """Starts pooled containers for ``provider``."""

    name = "docker"
    #: A container's volumes are fixed when it is made: a machine that has a home already (a
    #: stopped one's start) is made cold, on its own volume (docs/warm-pool.md).
    adopts_homes = False

    def __init__(self, provider: DockerProvider, image: str | None = None) -> None:
        self.provider = provider
        #: An environment's image ID (its pool's machines run it); None: the machine image.
        self.image = image
        #: Opaque: liveness is the lifeline's (a pid means nothing on another host).
        self.owner = secrets.token_hex(12)
        self._machines: set[PooledDocker] = set()
        #: Claimed, their identity not handed over yet: their lifeline closed with the pool.
        self._claimed: set[PooledDocker] = set()

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        slot = f"p{secrets.token_hex(8)}"
        try:
            c = await self._made(slot)
        except BaseException:  # a pool closed mid-spawn too: nothing of the slot is left
            await asyncio.shield(self._unmade(slot))
            raise
        machine = PooledDocker(self, slot, c)
        self._machines.add(machine)
        try:
            # Attached before the start: it never runs a moment without its lifeline.
            await machine.lifeline.attach(self.provider.docker, c.id)
            await c.start()
        except (aiodocker.DockerError, aiohttp.ClientError, ProviderError) as exc:
            await machine.stop()
            raise ProviderError(f"docker: cannot start {slot}: {exc}") from None
        except BaseException:
            await asyncio.shield(machine.stop())
            raise
        machine.watch(on_death)
        log.info("provider.docker_pooled", slot=slot, container=c.id[:12])
        return machine

    async def _made(self, slot: str) -> Any:
        """The slot's home (its own uid: the machine's that claims it, providers/docker/users.py),
        its secret volume and its container, made, not started."""
        p = self.provider
        image = await p.image()
        p.check_nats_reachable(await ensure_network(p.docker, p.network))
        labels = {LABEL_POOL: slot, LABEL_POOL_OWNER: self.owner}
        env = {POOL_SLOT_VAR: slot, POOL_STDIN_VAR: "1"}
        place = Placement("", p.default_limits)
        uid, _ = await p.uids.home(pool_volume(slot), {**labels, LABEL_STACK: p.stack})
        user = run_as(place, uid)
        config = p.base_config(image, f"fleet-{slot}", env, labels, pool_volume(slot), place, user)
        if self.image is not None:
            with_runtime(config, self.image, await p.runtime(), await p.image_env(self.image))
        # A pooled container that dies is replaced, not restarted (a claim sets the policy).
        config["HostConfig"]["RestartPolicy"] = {"Name": "no"}
        config |= {"OpenStdin": True, "StdinOnce": True}  # the identity's way in, used once
        try:
            await give_new_home(p.docker, image, pool_volume(slot), user)
            names = named(uid, self.image is not None)
            await install_store(p.docker, image, secret_volume(pool_volume(slot)),
                                token_archive(None, user, names))  # fmt: skip
            c = await created(p.docker, config, name=f"{POOL_PREFIX}{slot}")
            if uid is not None and self.image is not None:
                await name_in_image(c, None, uid)
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot make a pooled container: {exc.message}") from None
        return c

    async def _unmade(self, slot: str) -> None:
        """Whatever a spawn that did not finish made of ``slot``: its container, its volumes."""
        docker = self.provider.docker
        try:
            with contextlib.suppress(aiodocker.DockerError):  # none was made
                await (await docker.containers.get(f"{POOL_PREFIX}{slot}")).delete(force=True)
            await remove_home(docker, pool_volume(slot))
        except (ProviderError, aiohttp.ClientError, OSError) as exc:
            log.warning("pool.docker_remove_failed", slot=slot, error=str(exc))

    def forget(self, machine: PooledDocker) -> None:
        self._machines.discard(machine)
        self._claimed.discard(machine)

    def claimed(self, machine: PooledDocker) -> None:
        self._machines.discard(machine)
        self._claimed.add(machine)

    async def remove_orphans(self) -> int:
        """This stack's unclaimed pooled containers that are dead for sure (``orphaned``),
        removed with their volumes; running ones have a live owner (their lifeline holds)."""
        try:
            found = await self.provider.docker.containers.list(all=True, filters={
                "label": [LABEL_POOL_OWNER, f"{LABEL_STACK}={self.provider.stack}"]
            })  # fmt: skip
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            log.warning("pool.docker_unavailable", error=str(exc))  # spawns retry later
            return 0
        removed = 0
        for c in found:
            owner = c["Labels"].get(LABEL_POOL_OWNER, "")
            if orphaned(c["Names"][0], c["State"], c["Created"], time.time(), owner):
                await PooledDocker(self, c["Labels"][LABEL_POOL], c).stop()
                removed += 1
        return removed

    async def close(self) -> None:
        machines, self._machines = list(self._machines), set()
        for m in self._claimed:  # the identity never came: it ends itself, resume remakes it
            m.release()
        self._claimed = set()
        await asyncio.gather(*(m.stop() for m in machines), return_exceptions=True)


def orphaned(
    name: str, state: str, created: float, now: float, owner: str = "",
    alive: Callable[[str], bool] = owner_alive,
) -> bool:  # fmt: skip
    """A pooled container (its name, state, create time and owner label as the engine lists
    them) nobody will claim: unclaimed (a claimed one is named for its machine) and exited (its
    supervisor ended: it never got an identity), or never started long after its create, or
    made before the lifeline (its owner a pid, ``pid-ticks-random``) by a process gone from
    this host: nothing ends such a container by itself, and only its own process claims it."""
    if not name.lstrip("/").startswith(POOL_PREFIX):
        return False
    if state in ("exited", "dead"):
        return True
    if "-" in owner:  # the opaque owner ids of the lifeline have none
        return not alive(owner)
    return state == "created" and now - created > STALE_CREATED_S
