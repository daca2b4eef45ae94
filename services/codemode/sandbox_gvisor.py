"""A run's sandbox on gVisor (``FLEET_CODEMODE_RUNTIME=gvisor``): ``runsc run`` of an OCI bundle.

What the sandbox sees is what the bubblewrap sandbox gives (services/codemode/sandbox.py):
``/usr`` (and the interpreter's prefix) read-only, a private ``/tmp``, gVisor's own ``/proc``
and ``/dev``, nothing else of the host. The runner runs as ``nobody`` of gVisor's kernel with
no capabilities and "no new privileges"; every syscall it makes is served by gVisor's kernel,
not the host's. ``--network=none``: its network is a loopback of its own, nothing else.

Limits are the OCI spec's rlimits (CPU seconds, address space, file size, open files), which
gVisor's kernel enforces; the process limit is set inside by the runner, as in bubblewrap.

The channel to the service: runsc passes no descriptor in, so the service listens on a Unix
socket in the run's own directory (root's, 0700), bound into the sandbox at ``CHANNEL_DIR``;
runsc's ``--host-uds=open`` lets the runner connect to it. The service accepts one connection
(the runner's, made before the code runs) and closes the listener. stdout and stderr are
runsc's own, which it connects to the container's.

Wall time is the service's timer, as in bubblewrap: ``kill`` SIGKILLs runsc's process group;
its sandbox is ``--attached`` (it dies with runsc), and ``runsc delete --force`` then removes
its state. runsc has the parent-death signal SIGKILL, so a run also ends with the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import structlog

from base.first import first_of
from contracts.errors import ProviderError
from controlplane.settings import Settings, SettingsError
from providers.gvisor import bind_mount, empty_rootfs, probe
from providers.scratch import remove_tree
from services.codemode.sandbox import RUNNER, SANDBOX_UID, Limits, Sandbox, interpreter

log = structlog.get_logger(__name__)

#: Where the sandbox sees the run's channel directory, and the socket in it.
CHANNEL_DIR = "/run/codemode"
CHANNEL = "channel.sock"
#: How long runsc may take to start the runner before the run counts as died.
START_S = 120.0


@dataclass(frozen=True)
class Runsc:
    """This host's runsc as codemode uses it: its binary, platform and working directory
    (runsc's state and one directory per run)."""

    binary: str
    platform: str
    work: Path

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.work / "state"), "--platform", self.platform,
                "--network", "none", "--host-uds", "open", "--ignore-cgroups", *args]  # fmt: skip


def _rlimits(limits: Limits) -> list[dict[str, Any]]:
    mb = 1024 * 1024
    values = {"RLIMIT_CPU": limits.cpu_s, "RLIMIT_AS": limits.memory_mb * mb,
              "RLIMIT_FSIZE": limits.file_mb * mb, "RLIMIT_NOFILE": limits.open_files}  # fmt: skip
    return [{"type": k, "hard": v, "soft": v} for k, v in values.items()]


def _system_mounts(python: str) -> list[dict[str, Any]]:
    mounts = [bind_mount("/usr", "/usr")]
    for name in ("bin", "lib", "lib64", "sbin"):  # merged /usr: links made by empty_rootfs
        if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}"):
            mounts.append(bind_mount(f"/{name}", f"/{name}"))
    prefix = str(Path(python).resolve().parent.parent)
    if not prefix.startswith("/usr"):
        mounts.append(bind_mount(prefix, prefix))
    return mounts


def bundle_spec(run_dir: Path, limits: Limits) -> dict[str, Any]:
    """The OCI spec of one run's sandbox (its empty rootfs made in ``run_dir``)."""
    python = interpreter()
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
        *_system_mounts(python),
        bind_mount(run_dir / "channel", CHANNEL_DIR, ro=False),
    ]
    root = empty_rootfs(run_dir, [(str(m["destination"]), True) for m in mounts])
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp",
           "CODEMODE_SOCKET": f"{CHANNEL_DIR}/{CHANNEL}",
           "CODEMODE_NPROC": str(limits.processes)}  # fmt: skip
    return {
        "ociVersion": "1.0.0",
        "process": {
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID},
            "args": [python, "-I", "-S", "-B", "-c", RUNNER.read_text()],
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/tmp",
            "capabilities": {k: [] for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
            "rlimits": _rlimits(limits),
        },
        "root": {"path": str(root), "readonly": True},
        "hostname": "codemode",
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
    }


def _bind_unix(listener: socket.socket, directory: Path, name: str) -> None:
    """``listener`` bound at ``directory/name``, through the directory's descriptor: a data
    dir's path may be longer than a socket address takes (108 bytes)."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        listener.bind(f"/proc/self/fd/{fd}/{name}")
        # The runner's only (nobody inside); the run's directory keeps the host's users out.
        os.chown(name, SANDBOX_UID, SANDBOX_UID, dir_fd=fd)
    finally:
        os.close(fd)


class GvisorSandbox(Sandbox):
    """One run's runsc sandbox: as ``Sandbox``, its process (runsc), pipes and channel."""

    def __init__(self, limits: Limits, runsc: Runsc, *, limit: int = 2**16) -> None:
        super().__init__(limits, limit=limit)
        self._runsc = runsc
        self._cid = f"codemode-{secrets.token_hex(8)}"
        self._dir: Path | None = None

    async def __aenter__(self) -> GvisorSandbox:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        self._runsc.work.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="run-", dir=self._runsc.work))  # 0700
        (self._dir / "channel").mkdir(mode=0o755)
        (self._dir / "config.json").write_text(json.dumps(bundle_spec(self._dir, self._limits)))
        with socket.socket(socket.AF_UNIX) as listener:
            _bind_unix(listener, self._dir / "channel", CHANNEL)
            listener.listen(1)
            listener.setblocking(False)
            self.proc = await asyncio.create_subprocess_exec(
                # runsc dies with the service (its sandbox is attached: it dies with runsc).
                *("setpriv", "--pdeathsig", "KILL", "--"),
                *self._runsc.argv("run", "--bundle", str(self._dir), self._cid),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
                start_new_session=True,
                limit=self._limit,
            )
            conn = await self._accept(listener)
        self.reader, self.writer = await asyncio.open_connection(sock=conn, limit=self._limit)

    async def _accept(self, listener: socket.socket) -> socket.socket:
        """The runner's connection; if runsc ends (or hangs) first, a socket at its end of
        file, so that the run ends as died, with runsc's output in its logs."""
        assert self.proc is not None
        accept = asyncio.get_running_loop().sock_accept(listener)
        which, accepted = await first_of(accept, self.proc.wait(), asyncio.sleep(START_S))
        if which == 0:
            return cast("tuple[socket.socket, Any]", accepted)[0]
        log.warning("codemode.gvisor_not_started", cid=self._cid, exited=which == 1)
        ours, theirs = socket.socketpair()
        theirs.close()
        return ours

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await super().__aexit__(et, e, tb)
        finally:
            await self._remove()

    async def _remove(self) -> None:
        """runsc's state of the sandbox and the run's directory."""
        with contextlib.suppress(OSError):
            proc = await asyncio.create_subprocess_exec(
                *self._runsc.argv("delete", "--force", self._cid),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin"},
            )
            await proc.wait()
        if self._dir is not None:
            try:
                await asyncio.to_thread(remove_tree, self._dir)
            except ProviderError:
                log.exception("codemode.gvisor_remove_failed", cid=self._cid)


def codemode_runsc(settings: Settings) -> Runsc | None:
    """The runsc runs execute under (FLEET_CODEMODE_RUNTIME=gvisor), None for bubblewrap; a
    host without runsc stops the service at start, named."""
    if settings.codemode_runtime == "namespaces":
        return None
    if why := probe(settings.runsc):
        raise SettingsError(
            f"FLEET_CODEMODE_RUNTIME=gvisor needs runsc: {why} "
            "(`apt-get install runsc`, or FLEET_CODEMODE_RUNTIME=namespaces)"
        )
    return Runsc(settings.runsc, settings.gvisor_platform, settings.data_path / "codemode-gvisor")


def open_sandbox(limits: Limits, runsc: Runsc | None, *, limit: int) -> Sandbox:
    """The run's sandbox: gVisor's with ``runsc``, else bubblewrap's."""
    if runsc is None:
        return Sandbox(limits, limit=limit)
    return GvisorSandbox(limits, runsc, limit=limit)
