"""The warm pool of gvisor machines of the ``local`` provider (docs/warm-pool.md).

A pooled gvisor machine is a cold one's sandbox (providers/gvisor/runsc.py) started for a pool slot:
its bundle, home, code store, token directory (root's, with an empty token) and log are in
``<data>/pool/gvisor/<owner>/<slot>/``; its container id, uid, cgroup and pasta are the slot's.
Its supervisor waits for its identity on its stdin, as a docker pooled machine's does
(daemon/supervision/pool.py ``StdinChannel``: a pipe whose write end this process holds), and says
``up``
on its log once its daemon waits, imports done. A claim:

1. moves the slot's home, code store, token directory, log and bundle into the machine's
   directory (renames on the host: runsc's gofer serves each mount from a descriptor it opened
   at the start, so the running sandbox keeps them, at the slot's paths inside); records the
   slot (whose cgroup and pasta the machine keeps) and the container id and bundle path the
   sandbox runs under (providers/gvisor/runsc.py ``STARTED_AS_FILE``); rewrites the bundle's spec to
   the machine's paths (a resume or a fork's restore mounts those); gives the slot's uid and
   the instance's limits to the machine (``LocalProvider.claim_slot``);
2. the hand-over writes the token and machine id into the machine's token directory, as a cold
   start does (the supervisor reads them again before each daemon it restarts, and at a resume:
   daemon/supervision/nodump.py), then writes the identity on the pipe and closes it: nothing of
   the pool
   stays reachable from the machine.

The pipe is also the lifeline: when this process ends (even SIGKILLed), the supervisor sees it
close and ends the machine, and with it the sandbox. A later provisioner removes what the
owners that are gone left (their containers' state, pastas, cgroups, directories).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from base import procinfo
from base.poolwire import POOL_SLOT_VAR, POOL_STDIN_VAR, POOL_UP_LOG, identity_line
from base.retry import Backoff, retry_until
from contracts.errors import NotSupported, ProviderError
from providers import gvisor
from providers.gvisor import BIN_DIR, ROOT_UID_FILE
from providers.local.homes import make_home
from providers.local.pool import UP_MARKER, PidWatch, claim_slot
from providers.local.processes import POOL_SLOT_FILE, supervised_argv
from providers.local.provider import LocalProvider
from providers.sandbox import MachineCgroup, hostname, stop_pasta
from providers.warm_pool import PoolMachine, owner_alive, owner_name

log = structlog.get_logger(__name__)

_STOP_GRACE_S = 3.0
#: How often a starting pooled sandbox's log is read for its ``up``.
_UP_POLL_S = 0.05
#: What a claim moves from the slot's directory into the machine's.
_MOVED = ("home", "code", gvisor.TOKEN_DIR, "daemon.log", gvisor.BUNDLE, ROOT_UID_FILE, BIN_DIR)


def move_in(slot_dir: Path, machine_dir: Path, cid: str) -> None:
    """The pooled sandbox's files into ``machine_dir``; its spec's mount sources (and root)
    with them, the places inside unchanged; the name it runs under recorded."""
    machine_dir.mkdir(parents=True, exist_ok=True)
    for name in _MOVED:
        (slot_dir / name).rename(machine_dir / name)
    bundle = machine_dir / gvisor.BUNDLE
    config = bundle / "config.json"
    spec: dict[str, Any] = json.loads(config.read_text())
    for m in spec["mounts"]:
        if m["type"] == "bind" and Path(m["source"]).is_relative_to(slot_dir):
            m["source"] = str(machine_dir / Path(m["source"]).relative_to(slot_dir))
    spec["root"]["path"] = str(bundle / "rootfs")
    config.write_text(json.dumps(spec, indent=1))
    started = f"{cid}\n{slot_dir / gvisor.BUNDLE}"
    (bundle / gvisor.STARTED_AS_FILE).write_text(started)


def _log_says(path: Path, line: str) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as f:
        return line.encode() in f.read(1 << 16)
    return False


class PooledGvisor:
    """One pooled gvisor sandbox, from its start to its claim (or its end): a ``PoolMachine``."""

    def __init__(self, backend: GvisorPoolBackend, slot: str, root: Path, pid: int,
                 lifeline: int) -> None:  # fmt: skip
        self._backend = backend
        self.slot = slot
        self.root = root
        self.pid = pid
        self.cid = gvisor.container_id(slot)
        self._lifeline: int | None = lifeline
        self._end = PidWatch(pid, reap=False)  # runsc's child, not ours
        self._machine_id = ""
        self.machine_dir: Path | None = None

    def watch(self, on_death: Callable[[], None]) -> None:
        self._end.watch(on_death)

    def _cut(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    @property
    def alive(self) -> bool:
        return not self._end.exited and self._lifeline is not None

    async def wait_up(self) -> None:
        log_path = self.root / "daemon.log"

        async def up() -> bool:
            if await asyncio.to_thread(_log_says, log_path, POOL_UP_LOG):
                return True
            if not self.alive:
                raise ProviderError(f"pooled gvisor machine {self.slot} ended while starting")
            return False

        await retry_until(up, backoff=Backoff(_UP_POLL_S, _UP_POLL_S, jitter=False))
        (self.root / UP_MARKER).touch()  # for operators and tests, as a bwrap pooled one's

    async def claim(self, machine_id: str, *, home_kept: bool = False) -> str:
        if home_kept:  # the pool never hands one out for that (``adopts_homes``)
            raise NotSupported("a pooled gvisor sandbox's mounts are fixed at its start")
        if not self.alive:
            raise ProviderError(f"pooled gvisor machine {self.slot} has ended")
        provider = self._backend.provider
        self._backend.forget(self)  # the machine's now: the pool's close leaves it be
        self._machine_id = machine_id
        machine_dir = provider.machine_dir(machine_id)
        await asyncio.to_thread(move_in, self.root, machine_dir, self.cid)
        (machine_dir / POOL_SLOT_FILE).write_text(self.slot)
        self.machine_dir = machine_dir
        await claim_slot(provider.parts.host, self.slot, self.root, machine_id, on_gvisor=True)
        await asyncio.to_thread(shutil.rmtree, self.root, True)
        log.info("provider.gvisor_claimed", machine_id=machine_id, slot=self.slot, pid=self.pid)
        return f"local:{self.pid}"

    async def hand_over(self, token: str) -> None:
        assert self.machine_dir is not None
        if self._lifeline is None:
            raise ProviderError(f"the claimed machine {self._machine_id} went away")
        await asyncio.to_thread(gvisor.write_token, self.machine_dir, token, self._machine_id)
        try:
            os.write(self._lifeline, identity_line(self._machine_id, token))
        except OSError as exc:
            raise ProviderError(f"the claimed machine went away: {exc}") from None
        finally:
            self._cut()
        self._end.unwatch()

    async def stop(self) -> None:
        """Delete its container while it runs (every process of it ends), cut its lifeline,
        and remove whatever of the slot is left. Deleted first: once its sandbox has ended,
        runsc takes it for running until it is reaped (runsc's child, reaped by whoever
        inherits it, late where that is a busy PID 1), and its delete then fails, leaving
        the container in runsc's state for good."""
        await asyncio.to_thread(_remove_slot, self._backend.provider, self.slot, self.pid)
        self._cut()
        await self._end.wait(_STOP_GRACE_S)
        self._end.unwatch()
        await asyncio.to_thread(shutil.rmtree, self.root, True)


def _remove_slot(provider: LocalProvider, slot: str, pid: int | None) -> None:
    """A pooled sandbox's container (its state, any process of it), pasta and cgroup."""
    runsc = provider.parts.gvisor.runsc()
    cid = gvisor.container_id(slot)
    # Its control socket is in its network namespace, which an ended sandbox no longer has
    # (even one not yet reaped, whose /proc entry is still there).
    inside = pid if pid is not None and procinfo.is_alive(pid, None) else None
    runsc.run("delete", "--force", cid, inside=inside, timeout_s=60)
    if inside is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(inside, signal.SIGKILL)
    stop_pasta(slot)
    MachineCgroup(slot).remove()


class GvisorPoolBackend:
    """Starts pooled gvisor sandboxes for ``provider`` (``PoolBackend``)."""

    name = "local:gvisor"
    #: A pooled sandbox's mounts are fixed at its start: it cannot take a home it has not.
    adopts_homes = False

    def __init__(self, provider: LocalProvider) -> None:
        provider.parts.gvisor.runsc()  # NotSupported here, named (no runsc, NATS on the loopback),
        # rather than at every start
        self.provider = provider
        self.base = provider.data_dir / "pool" / "gvisor"
        self.owned = self.base / owner_name(os.getpid())
        self._machines: set[PooledGvisor] = set()

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        slot = f"p{secrets.token_hex(8)}"
        root = self.owned / slot
        home = root / "home"
        await asyncio.to_thread(make_home, home, self.provider.parts.host.cow)
        parts = self.provider.parts
        runsc, uid, root_owner, enter = await parts.gvisor.pooled(slot, home)
        await asyncio.to_thread(gvisor.write_token, root, "", "")  # its own later, at a claim
        env = parts.host.machine_env(home, **{POOL_SLOT_VAR: slot, POOL_STDIN_VAR: "1"})
        spec = gvisor.bundle_spec(root, home, env, uid, supervised_argv(), hostname(slot),
                                  root_owner, shared=parts.gvisor.shares())  # fmt: skip
        bundle = await asyncio.to_thread(gvisor.write_bundle, root, spec)
        read, lifeline = os.pipe()
        try:
            pid = await gvisor.start_sandbox(runsc, slot, bundle, root / "daemon.log", slot,
                                             enter, stdin=read)  # fmt: skip
        except BaseException:
            os.close(lifeline)
            raise
        finally:
            os.close(read)
        machine = PooledGvisor(self, slot, root, pid, lifeline)
        self._machines.add(machine)

        def died() -> None:
            self._machines.discard(machine)
            on_death()

        machine.watch(died)
        log.info("provider.gvisor_pooled", slot=slot, pid=pid)
        return machine

    def forget(self, machine: PooledGvisor) -> None:
        self._machines.discard(machine)

    async def remove_orphans(self) -> int:
        """The slots of provisioners that are gone: their sandboxes (ended with their
        lifeline, but runsc's state stays), pastas and cgroups, and their directories."""
        removed = 0
        for owner in list(self.base.iterdir()) if self.base.is_dir() else []:
            if owner == self.owned or owner_alive(owner.name):
                continue
            for slot_dir in list(owner.iterdir()):
                pid = await asyncio.to_thread(gvisor.sandbox_pid, slot_dir)
                await asyncio.to_thread(_remove_slot, self.provider, slot_dir.name, pid)
                removed += 1
            await asyncio.to_thread(shutil.rmtree, owner, True)
        return removed

    async def close(self) -> None:
        machines, self._machines = list(self._machines), set()
        await asyncio.gather(*(m.stop() for m in machines), return_exceptions=True)
        await asyncio.to_thread(shutil.rmtree, self.owned, True)
        await self.remove_orphans()
