"""A local machine in namespaces: its supervisor (and under it its daemon) started in a bubblewrap
sandbox (providers/sandbox/bwrap.py), or bare where the operator turned the sandbox off; an
environment's image as its root when it has one; and the checks of a root already running that
can never serve (an orphan of a provisioner that died at its start)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import structlog

from base.poolwire import POOL_SLOT_VAR
from contracts.errors import ProviderError
from providers.local.homes import make_home
from providers.local.host import LocalHost
from providers.local.processes import (
    IDENTIFIED_FILE,
    IMAGE_PATH,
    POOL_SLOT_FILE,
    code_store,
    is_root_of,
    owners,
    running_pid,
    spawn_detached,
    supervised_argv,
    write_pid,
)
from providers.local.supervision import CUT_OFF, NEVER_IDENTIFIED, Children, stop_local
from providers.sandbox import (
    SANDBOX_LOADER,
    SECCOMP_FD,
    TOKEN_FD,
    UserMap,
    bwrap_argv,
    execute_only_loader,
    has_pasta,
    mount_overlay,
    runtime_argv,
    runtime_env,
    start_sandboxed,
    token_pipe,
)

log = structlog.get_logger(__name__)


class Namespaces:
    """The machines of this host that run in namespaces (bubblewrap), not on gVisor."""

    def __init__(self, host: LocalHost, children: Children) -> None:
        self._host = host
        self._children = children

    async def start(self, machine_id: str, token: str) -> str:
        host = self._host
        pid = running_pid(host.machine_dir(machine_id), machine_id)
        orphan = None if pid is None else await asyncio.to_thread(self._orphan, machine_id, pid)
        if pid is not None and orphan is None:
            return f"local:{pid}"  # a redelivered machine.created: the daemon is already up
        if pid is not None and orphan is not None:
            # Started (or claimed from the warm pool) by a provisioner that died before giving
            # it its network or its identity: its daemon can never serve, so it is ended and
            # started again (we hold the machine's start lock).
            log.warning("provider.local_orphan", machine_id=machine_id, pid=pid, ended_by=orphan)
            await asyncio.to_thread(self._end_orphan, machine_id, pid, orphan)
        return await self._start_afresh(machine_id, token)

    async def _start_afresh(self, machine_id: str, token: str) -> str:
        host = self._host
        home = host.home(machine_id)
        await asyncio.to_thread(make_home, home, host.cow)
        code_store(host.machine_dir(machine_id)).mkdir(mode=0o755, exist_ok=True)
        uid = await asyncio.to_thread(host.own_uid_in, host.machine_dir(machine_id))
        env = host.machine_env(
            home,
            FLEET_MACHINE_ID=machine_id,
            # Not the token: bwrap's init would keep it in its environment, readable by the
            # machine's commands. A pipe the supervisor reads first (daemon/supervision/nodump.py).
            FLEET_MACHINE_TOKEN_FD=str(TOKEN_FD),
        )
        root, user = await self._image_root(machine_id, uid) if host.sandbox else (None, None)
        if root is not None:  # the supervisor becomes the machine's uid, or its image's user
            run_as = uid if user is None else f"{user.uid}:{user.gid}"
            env |= runtime_env(run_as) | {"PATH": IMAGE_PATH}
        argv = self.argv(machine_id, uid, root=root, userns=user is not None)
        argv = await host.limited(machine_id, argv)
        token_fd = token_pipe(token)
        try:
            log_path = host.machine_dir(machine_id) / "daemon.log"
            pid = await self.spawn(argv, env, log_path, machine_id, {TOKEN_FD: token_fd}, user)
        except BaseException:
            os.close(token_fd)
            raise
        await self._check_token_pipe(machine_id, pid, token_fd)
        self._children.adopt(machine_id, pid)
        write_pid(host.machine_dir(machine_id), pid)
        log.info("provider.local_started", machine_id=machine_id, pid=pid, sandbox=host.sandbox)
        return f"local:{pid}"

    async def _image_root(
        self, machine_id: str, uid: int | None
    ) -> tuple[Path | None, UserMap | None]:
        """The machine's root when it runs an environment's image (its overlay, mounted), and
        the user namespace it runs in (providers/sandbox/userns.py): its image's user on its own
        ``uid`` when it has one, else ``uid`` itself. The supervisor starts there, so that even
        before it becomes that user it can become no other host uid."""
        host = self._host
        if host.placement is None or host.engine is None:
            return None, None
        place = await host.placement(machine_id)
        if place.image is None:
            return None, None
        user = None
        if place.user is not None:
            if uid is None:  # mapped onto root's uid, it would be root on the host
                raise ProviderError(
                    f"{machine_id} acts as its image's user {place.user[0]}, which needs a uid "
                    "of its own (FLEET_SANDBOX_UIDS)"
                )
            user = UserMap(uid=place.user[0], gid=place.user[1], host=uid)
        elif uid is not None:
            user = UserMap(uid=uid, gid=uid, host=uid)
        lower = await host.image_roots.ensure(host.engine(), place.image)
        merged = await asyncio.to_thread(mount_overlay, host.machine_dir(machine_id), lower)
        return merged, user

    async def _check_token_pipe(self, machine_id: str, pid: int, token_fd: int) -> None:
        """Close our end of the token's pipe. Already closed (EBADF): its number was closed
        under us and may have been another descriptor when the machine was spawned, so its
        supervisor may hold no token (seen once under chaos: a machine whose daemon never got
        one, and a redelivered start that found it running). Such a machine is ended and the
        start fails, so that its retry starts it afresh with a token of its own."""
        try:
            os.close(token_fd)
        except OSError as exc:
            log.error("provider.local_token_pipe_lost", machine_id=machine_id, pid=pid,
                      error=str(exc))  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                await asyncio.to_thread(os.waitpid, pid, 0)
            (self._host.machine_dir(machine_id) / "daemon.pid").unlink(missing_ok=True)
            raise ProviderError(f"{machine_id}'s token pipe was lost at its start") from None

    async def spawn(
        self, argv: list[str], env: dict[str, str], log_path: Path, owner: str,
        fds: dict[int, int], user: UserMap | None = None,
    ) -> int:  # fmt: skip
        """Start a machine's root (``owner``: its id, or its pool slot) with ``fds``; in the
        sandbox, with the syscall filter, unless turned off its own network, and with ``user``
        its image's user in a user namespace."""
        host = self._host
        if not host.sandbox:
            return spawn_detached(argv, env, log_path, "fleet-daemon", fds)
        return await start_sandboxed(
            lambda more: spawn_detached(argv, env, log_path, "fleet-daemon", fds | more),
            owner=owner,
            seccomp=host.seccomp,
            seccomp_fd=SECCOMP_FD,
            forwarded=host.forwarded if host.own_network else None,
            user=user,
        )

    def _orphan(self, machine_id: str, pid: int) -> str | None:
        """Why the machine's running root ``pid`` can never serve (how it is to be recorded as
        ended), or None: a sandbox that should have a network of its own and has no way out
        (providers/sandbox/netns.py has_pasta), or a pooled root that was never told which
        machine it is (its claimer died between the claim and the hand-over)."""
        machine_dir = self._host.machine_dir(machine_id)
        if self._host.own_network and not has_pasta(*owners(machine_dir, machine_id)):
            return CUT_OFF
        try:
            slot = (machine_dir / POOL_SLOT_FILE).read_text().strip()
        except OSError:
            return None
        if not is_root_of(pid, [(POOL_SLOT_VAR, slot)]):
            return None  # started cold, for this machine by its id
        try:
            told = (machine_dir / IDENTIFIED_FILE).read_text().strip()
        except OSError:
            told = ""
        return None if told == slot else NEVER_IDENTIFIED

    def _end_orphan(self, machine_id: str, pid: int, ended_by: str) -> None:
        stop_local(self._host.machine_dir(machine_id), machine_id, 0.0, ended_by)
        self._children.forget(machine_id, pid)  # recorded as ended_by, not as -9

    def argv(
        self, machine_id: str, uid: int | None = None, home: Path | None = None,
        root: Path | None = None, userns: bool = False,
    ) -> list[str]:  # fmt: skip
        """The machine's root process: the supervisor, inside the sandbox unless turned off;
        in ``root`` (an environment's image, providers/sandbox/image.py) when given, in a user
        namespace of its own with ``userns`` (providers/sandbox/userns.py)."""
        host = self._host
        if not host.sandbox:
            return supervised_argv()
        home = home or host.home(machine_id)
        return bwrap_argv(
            machine_id=machine_id,
            home=home,
            code=code_store(home.parent),
            data_dir=host.data_dir,
            command=runtime_argv() if root is not None else supervised_argv(SANDBOX_LOADER),
            root=root,
            shared=host.shared,
            loader=execute_only_loader(host.data_dir),
            uid=uid,
            own_network=host.own_network,
            userns=userns,
        )

    async def pooled_argv(self, slot: str, home: Path) -> list[str]:
        """A pooled machine's root: as a machine's, under a uid and a cgroup of the slot's
        own (``<slot dir>/uid``; the platform's default limits until a claim applies its
        instance's)."""
        host = self._host
        uid = await asyncio.to_thread(host.own_uid_in, home.parent)
        code_store(home.parent).mkdir(mode=0o755, exist_ok=True)
        argv = self.argv(slot, uid, home)
        return await host.limited(slot, argv, host.default_limits)
