"""The sandbox a run's code executes in: bubblewrap, no network, limits, one socket out
(``FLEET_CODEMODE_RUNTIME=namespaces``; gVisor's: services/codemode/sandbox_gvisor.py).

What the sandbox sees: ``/usr`` (and the interpreter's prefix) read-only, a private ``/tmp``,
its own ``/proc`` and ``/dev``, the runner script, and nothing else of the host: no data dir, no
home, no ``/etc``. It has its own user, pid, network, ipc and uts namespaces, so it cannot open a
socket to anything and sees only its own processes. Docker's default syscall filter
(providers/sandbox/seccomp.py) is on it: no keyrings, bpf, perf, userfaultfd, no further namespaces.
bwrap itself is started with an empty environment, so not even the sandbox's pid 1 (bwrap's
reaper) holds a platform variable.

Limits are rlimits set by ``prlimit`` before bwrap starts, inherited by everything inside: CPU
seconds, address space, processes, file size, open files. Wall time is the service's timer:
``Sandbox.kill`` SIGKILLs the bwrap process; ``--die-with-parent`` then kills the pid
namespace's init, and the kernel ends every process left in the namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import structlog

from providers.sandbox import docker_default_bpf, filter_fd

log = structlog.get_logger(__name__)

RUNNER = Path(__file__).with_name("sandbox_runner.py")


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 60
    memory_mb: int = 512
    processes: int = 64
    file_mb: int = 16
    open_files: int = 256
    #: The syscall filter (Docker's default: providers/sandbox/seccomp.py), compiled once per
    #: Limits.
    syscalls: bytes = field(default_factory=docker_default_bpf, repr=False)


#: The unprivileged user a root service runs sandboxes as (``nobody``): a process mapped to root
#: is exempt from the process limit, and nothing of root's files should be readable anyway.
SANDBOX_UID = 65534


def interpreter() -> str:
    """The Python inside the sandbox: the system's when there is one (it is under /usr, which
    the sandbox has), else the one running this service. The runner needs only the stdlib."""
    system = Path("/usr/bin/python3")
    return str(system) if system.exists() else os.path.realpath(sys.executable)


def _system_binds(python: str) -> list[str]:
    binds = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            binds += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            binds += ["--ro-bind", f"/{name}", f"/{name}"]
    prefix = str(Path(python).resolve().parent.parent)
    if not prefix.startswith("/usr"):
        binds += ["--ro-bind", prefix, prefix]
    return binds


def _limits(limits: Limits) -> list[str]:
    mb = 1024 * 1024
    return [
        "prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * mb}",
        f"--fsize={limits.file_mb * mb}",
        f"--nofile={limits.open_files}",
        "--",
    ]


def _drop_root() -> list[str]:
    if os.geteuid() != 0:
        return []
    uid = str(SANDBOX_UID)
    return ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--"]


def bwrap_argv(
    limits: Limits, program: list[str], env: dict[str, str] | None = None, seccomp_fd: int = -1
) -> list[str]:
    """The command that runs ``program`` in the sandbox (``program[0]``: a path under /usr),
    under the syscall filter bwrap reads from ``seccomp_fd`` (``filter_fd(limits.syscalls)``,
    passed to it); -1: none (only for a measurement's baseline)."""
    setenv = [a for k, v in (env or {}).items() for a in ("--setenv", k, v)]
    return [
        *_limits(limits),
        *_drop_root(),
        "bwrap",
        "--unshare-all",  # user, pid, net, ipc, uts, cgroup: no network at all
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into a terminal the service might have
        "--cap-drop",
        "ALL",
        *(["--seccomp", str(seccomp_fd)] if seccomp_fd >= 0 else []),
        *_system_binds(program[0]),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--chdir",
        "/tmp",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/tmp",
        *setenv,
        *program,
    ]


def runner_argv(limits: Limits, channel_fd: int, seccomp_fd: int) -> list[str]:
    # -I: no PYTHON* variables, no user site; -S: no site at all (the runner needs the stdlib).
    # The runner's source goes in argv, so no file of the platform is bound into the sandbox.
    program = [interpreter(), "-I", "-S", "-B", "-c", RUNNER.read_text()]
    # The process limit is set inside (by the runner, before the code): set outside, it would
    # also count every process of the same user outside the sandbox's user namespace.
    env = {"CODEMODE_FD": str(channel_fd), "CODEMODE_NPROC": str(limits.processes)}
    return bwrap_argv(limits, program, env, seccomp_fd)


class Sandbox:
    """One sandboxed process: its stdout and stderr pipes and the socket to the runner."""

    def __init__(self, limits: Limits, *, limit: int = 2**16) -> None:
        self._limits = limits
        self._limit = limit  # the longest line the pipes and the socket accept
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Sandbox:
        ours, theirs = socket.socketpair()
        syscalls = filter_fd(self._limits.syscalls)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *runner_argv(self._limits, theirs.fileno(), syscalls),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # bwrap and everything in it get none of the service's environment.
                env={"PATH": "/usr/bin:/bin"},
                pass_fds=(theirs.fileno(), syscalls),
                start_new_session=True,
                limit=self._limit,
            )
        finally:
            theirs.close()
            os.close(syscalls)
        self.reader, self.writer = await asyncio.open_connection(sock=ours, limit=self._limit)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.kill()
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill(self) -> None:
        """End the whole tree: the process group outside, and (through bwrap's pid namespace)
        every process inside."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
