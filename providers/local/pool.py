"""The warm pool of the ``local`` provider (sandboxed machines only).

A pooled machine is a normal machine's bubblewrap sandbox, supervisor and daemon, started
with a pool slot instead of a machine: its home is ``<data>/pool/local/<owner>/<slot>/home``,
its root's environment has ``FLEET_POOL_SLOT`` and no machine id or token, and its fd 3 is
one end of a socketpair this process holds (``daemon/supervision/pool.py`` is the other side). A
claim:

1. moves the pool home to ``machines/<id>/home`` (a rename on the host: the sandbox's bind
   mount follows the inode, so the running daemon keeps its home), its code store and the
   log beside it,
   records the root's pid and the slot in the machine's directory (``running_pid`` and
   ``stop_local`` find the root by its slot), and hands the root to the provider to reap;
2. then, once the provisioner has announced the machine, sends the identity (machine id and
   token, one JSON line) and closes the socket: nothing of the pool stays reachable.

A machine that has a home already (a stopped machine's start, a fork's first start) is
*adopted* instead of claimed (``adopt``): its home stays where it is, given to the slot's uid
(which becomes the machine's) and mounted at its own path inside the running sandbox
(providers/sandbox/mount.py); the pool's empty home goes; the identity names the home, so the
daemon works there, as a cold-started daemon would.

The socket is also the pooled machine's lifeline: when this process ends (even SIGKILLed),
its end closes and the supervisor ends the unclaimed machine. ``<owner>`` is this process's
pid and start time; a later provisioner removes the directories of owners that are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import structlog

from base import procinfo
from base.codestore import CURRENT_FILE
from base.poolwire import POOL_FD_VAR, POOL_SLOT_VAR, UP, identity_line
from contracts.errors import ProviderError
from controlplane.policy import on_host
from providers.local.homes import make_home
from providers.local.host import LocalHost
from providers.local.processes import IDENTIFIED_FILE, POOL_SLOT_FILE, code_store, write_pid
from providers.local.provider import LocalProvider
from providers.sandbox import (
    TOKEN_FD,
    MachineCgroup,
    hostname,
    mount_in_sandbox,
    sandbox_root_children,
    stop_pasta,
)
from providers.warm_pool import PoolMachine, owner_alive, owner_name

log = structlog.get_logger(__name__)

_STOP_GRACE_S = 3.0
#: In a pooled machine's directory once it waits to be claimed.
UP_MARKER = "up"


class PidWatch:
    """The end of a pooled machine's process (its root, its sandbox), seen at once: a pidfd the
    event loop watches. ``reap``: the process is ours to collect (no zombie)."""

    def __init__(self, pid: int, *, reap: bool) -> None:
        self.pid = pid
        self._reap = reap
        self._pidfd: int | None = os.pidfd_open(pid)
        self.exited = False
        self.ended = asyncio.Event()

    def watch(self, on_death: Callable[[], None]) -> None:
        assert self._pidfd is not None
        asyncio.get_running_loop().add_reader(self._pidfd, self._seen, on_death)

    def _seen(self, on_death: Callable[[], None]) -> None:
        if self._reap:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)
        self.unwatch()
        self.exited = True
        self.ended.set()
        on_death()

    def unwatch(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    async def wait(self, timeout_s: float) -> None:
        """Until it ended, or ``timeout_s`` passed (only while watched)."""
        if self._pidfd is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self.ended.wait()


class PooledLocal:
    """One pooled local machine, from its start to its claim (or its end)."""

    def __init__(
        self, provider: LocalProvider, slot: str, root: Path, pid: int, sock: socket.socket
    ) -> None:
        self._provider = provider
        #: Which shared paths existed when it started (what its sandbox binds).
        self.shares = shares_present(provider.parts.host)
        self.slot = slot
        self.root = root
        self.pid = pid
        self._sock = sock
        self._end = PidWatch(pid, reap=True)
        #: The machine's home when it was adopted (the identity names it), else None.
        self.home: str | None = None
        #: The directory of the machine that claimed (or adopted) it.
        self.machine_dir: Path | None = None

    def watch(self, on_death: Callable[[], None]) -> None:
        """The root's end collected (no zombie) and told to the pool (``on_death``)."""
        self._end.watch(on_death)

    @property
    def alive(self) -> bool:
        return not self._end.exited and self._sock.fileno() != -1

    async def wait_up(self) -> None:
        got = b""
        loop = asyncio.get_running_loop()
        while not got.endswith(b"\n"):
            chunk = await loop.sock_recv(self._sock, 16)
            if not chunk:
                raise ProviderError(f"pooled machine {self.slot} ended while starting")
            got += chunk
        if got != UP:
            raise ProviderError(f"pooled machine {self.slot} said {got[:40]!r}, not up")
        (self.root / UP_MARKER).touch()  # for operators and tests: `ls pool/local/*/*/up`

    def _claimable(self, provider: LocalProvider) -> None:
        if not self.alive:
            raise ProviderError(f"pooled machine {self.slot} has ended")
        if shares_present(provider.parts.host) != self.shares:
            # A FLEET_SANDBOX_SHARE path appeared (or went) since it started: its sandbox
            # binds what existed then, so a cold start sees what a user expects.
            raise ProviderError(f"pooled machine {self.slot} predates the shared paths")

    async def claim(self, provider: LocalProvider, machine_id: str) -> str:
        self._claimable(provider)
        machine_dir = provider.machine_dir(machine_id)
        machine_dir.mkdir(parents=True, exist_ok=True)
        # Renames within the data dir's filesystem: the running sandbox and the open log
        # follow their inodes.
        (self.root / "home").rename(provider.home(machine_id))
        code_store(self.root).rename(code_store(machine_dir))
        (self.root / "daemon.log").rename(machine_dir / "daemon.log")
        (machine_dir / POOL_SLOT_FILE).write_text(self.slot)
        write_pid(machine_dir, self.pid)
        self.machine_dir = machine_dir
        self._end.unwatch()
        provider.parts.children.adopt(machine_id, self.pid)
        await claim_slot(provider.parts.host, self.slot, self.root, machine_id)
        shutil.rmtree(self.root, ignore_errors=True)
        log.info("provider.local_claimed", machine_id=machine_id, slot=self.slot, pid=self.pid)
        return f"local:{self.pid}"

    async def adopt(self, provider: LocalProvider, machine_id: str) -> str:
        """Make it ``machine_id``'s in the home that machine has (kept where it is)."""
        self._claimable(provider)
        machine_dir, home = provider.machine_dir(machine_id), provider.home(machine_id)
        if not home.is_dir():
            raise ProviderError(f"{machine_id} has no home to adopt a pooled machine into")
        if (code_store(machine_dir) / CURRENT_FILE).exists():
            # Its daemon is to run the code its store records; a pooled one runs the code
            # the pool was started with.
            raise ProviderError(f"{machine_id}'s code store names code of its own")
        await claim_slot(provider.parts.host, self.slot, self.root, machine_id)  # its uid now
        # Its home given to that uid.
        await asyncio.to_thread(provider.parts.host.own_uid_in, machine_dir)
        roots = sandbox_root_children(self.pid)
        if not roots:
            raise ProviderError(f"pooled machine {self.slot} has no sandbox init")
        await asyncio.to_thread(mount_in_sandbox, roots[0], self.pid, home, provider.data_dir,
                                home, hostname(machine_id))  # fmt: skip
        await asyncio.to_thread(_take_files, self.root, machine_dir)
        (machine_dir / POOL_SLOT_FILE).write_text(self.slot)
        write_pid(machine_dir, self.pid)
        self.machine_dir = machine_dir
        self._end.unwatch()
        provider.parts.children.adopt(machine_id, self.pid)
        self.home = str(home)
        await asyncio.to_thread(shutil.rmtree, self.root, True)  # the pool's home with it
        log.info("provider.local_adopted", machine_id=machine_id, slot=self.slot, pid=self.pid)
        return f"local:{self.pid}"

    async def hand_over(self, machine_id: str, token: str) -> None:
        try:
            await asyncio.get_running_loop().sock_sendall(
                self._sock, identity_line(machine_id, token, self.home)
            )
        except OSError as exc:
            raise ProviderError(f"the claimed machine went away: {exc}") from None
        finally:
            self._sock.close()
        # Told: a later start finds it running as this machine. Untold, with its claimer
        # gone, a start ends it and starts the machine afresh (providers/local/namespaces.py).
        assert self.machine_dir is not None
        (self.machine_dir / IDENTIFIED_FILE).write_text(self.slot)

    async def stop(self) -> None:
        """Close its lifeline (its supervisor then ends it), SIGKILL it if it lingers."""
        self._sock.close()
        await self._end.wait(_STOP_GRACE_S)  # still watched: its end is seen at once
        if not self._end.exited:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                await asyncio.to_thread(os.waitpid, self.pid, 0)
            self._end.unwatch()
            self._end.exited = True
        shutil.rmtree(self.root, ignore_errors=True)
        stop_pasta(self.slot)
        await forget_slot(self.slot)


def shares_present(host: LocalHost) -> tuple[bool, ...]:
    """Which shared paths exist now: a sandbox binds those that existed at its start."""
    return tuple(p.exists() for p in host.shared)


async def claim_slot(
    host: LocalHost, slot: str, slot_dir: Path, machine_id: str, *, on_gvisor: bool = False
) -> None:
    """A pooled machine is ``machine_id``'s now: the slot's uid becomes its uid, and its
    cgroup gets the instance's limits (a live change: the processes stay)."""
    uid_file = slot_dir / "uid"
    if uid_file.is_file():
        uid_file.replace(host.machine_dir(machine_id) / "uid")
    place = await host.place(machine_id)
    if place is None:
        return
    limits = on_host(place.limits, on_gvisor)
    group = MachineCgroup(slot)
    if all(d.is_dir() for d in group.dirs):
        await asyncio.to_thread(group.create, limits)


async def forget_slot(slot: str) -> None:
    """The cgroup an unclaimed pooled machine held (its uid went with its directory)."""
    await asyncio.to_thread(MachineCgroup(slot).remove)


def _take_files(slot_dir: Path, machine_dir: Path) -> None:
    """An adopting machine takes the pooled one's code store (the directory its sandbox binds
    read-only), keeping what its own held (no ``current`` record: checked), and its log, whose
    first lines become its earlier lives' (the pooled processes write nothing while they
    wait): one log across lives, as a cold start appending to it keeps."""
    store, pooled_store = code_store(machine_dir), code_store(slot_dir)
    for entry in list(store.iterdir()) if store.is_dir() else []:
        entry.rename(pooled_store / entry.name)
    pooled_store.rename(store)  # over its own, empty now
    earlier, pooled_log = machine_dir / "daemon.log", slot_dir / "daemon.log"
    if earlier.is_file():
        so_far = pooled_log.read_bytes()
        with earlier.open("rb") as src, pooled_log.open("r+b") as out:
            out.truncate(0)
            shutil.copyfileobj(src, out)
            out.write(so_far)
    pooled_log.rename(earlier)


class _Claimable:
    """A pooled local machine as the pool sees it (``PoolMachine``)."""

    def __init__(self, machine: PooledLocal, backend: LocalPoolBackend) -> None:
        self.machine = machine
        self.slot = machine.slot
        self._backend = backend
        self._machine_id = ""

    @property
    def alive(self) -> bool:
        return self.machine.alive

    async def wait_up(self) -> None:
        await self.machine.wait_up()

    async def claim(self, machine_id: str, *, home_kept: bool = False) -> str:
        self._machine_id = machine_id
        self._backend.forget(self.machine)  # the machine's now: the pool's close leaves it be
        if home_kept:
            return await self.machine.adopt(self._backend.provider, machine_id)
        return await self.machine.claim(self._backend.provider, machine_id)

    async def hand_over(self, token: str) -> None:
        await self.machine.hand_over(self._machine_id, token)

    async def stop(self) -> None:
        await self.machine.stop()


class LocalPoolBackend:
    """Starts pooled machines for ``provider`` (which must sandbox its machines)."""

    name = "local"

    def __init__(self, provider: LocalProvider) -> None:
        if not provider.parts.host.sandbox:
            raise ProviderError("the local warm pool needs sandboxed machines (bwrap)")
        self.provider = provider
        #: A claim may give a pooled machine the home its machine has (``adopt``): root only,
        #: since it mounts inside the sandbox's namespace.
        self.adopts_homes = os.geteuid() == 0
        self.base = provider.data_dir / "pool" / "local"
        self.owned = self.base / owner_name(os.getpid())
        self._machines: set[PooledLocal] = set()

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        slot = f"p{secrets.token_hex(8)}"
        root = self.owned / slot
        home = root / "home"
        await asyncio.to_thread(make_home, home, self.provider.parts.host.cow)
        parts = self.provider.parts
        env = parts.host.machine_env(home, **{POOL_SLOT_VAR: slot, POOL_FD_VAR: str(TOKEN_FD)})
        argv = await parts.namespaces.pooled_argv(slot, home)
        ours, theirs = socket.socketpair()
        try:
            pid = await parts.namespaces.spawn(
                argv, env, root / "daemon.log", slot, {TOKEN_FD: theirs.fileno()}
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        machine = PooledLocal(self.provider, slot, root, pid, ours)
        self._machines.add(machine)

        def died() -> None:
            self._machines.discard(machine)
            on_death()

        machine.watch(died)
        log.info("provider.local_pooled", slot=slot, pid=pid)
        return _Claimable(machine, self)

    def forget(self, machine: PooledLocal) -> None:
        self._machines.discard(machine)

    async def remove_orphans(self) -> int:
        """The pool directories of provisioners that are gone: their machines (ended with
        their lifeline, but a root may linger) killed, their directories removed."""
        removed = 0
        for owner in list(self.base.iterdir()) if self.base.is_dir() else []:
            if owner == self.owned or owner_alive(owner.name):
                continue
            for slot_dir in list(owner.iterdir()):
                for pid in procinfo.env_roots(POOL_SLOT_VAR, slot_dir.name):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                stop_pasta(slot_dir.name)
                await forget_slot(slot_dir.name)
                removed += 1
            await asyncio.to_thread(shutil.rmtree, owner, True)
        return removed

    async def close(self) -> None:
        machines, self._machines = list(self._machines), set()
        await asyncio.gather(*(m.stop() for m in machines if m.alive), return_exceptions=True)
        shutil.rmtree(self.owned, ignore_errors=True)
        # A provisioner killed since the last sweep left its slots' pastas running (they hold
        # a namespace, not a lifeline): the one that stops last must not leave them behind.
        await self.remove_orphans()
