"""A local machine's processes as this host sees them: how its root is started (detached, in its
own session: it outlives the provisioner that started it), and how it is found again (its pid
recorded in ``daemon.pid``, checked against the machine id or pool slot in its environment).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from base import procinfo
from base.atomic import replace_file
from base.lockfile import holder_pid
from base.poolwire import POOL_SLOT_VAR
from base.procinfo import env_roots
from contracts.errors import ProviderError
from providers import gvisor

#: A machine of an environment's image: the image's programs, not the host's PATH.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


#: Environment variables a local daemon inherits from the platform (everything else is dropped).
INHERITED_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "FLEET_ENV",
    "FLEET_LOG_LEVEL",
    "FLEET_GIT_SHA",
    "FLEET_EXEC_OUTPUT_CAP",
    "FLEET_HEARTBEAT_S",
)


def daemon_argv() -> list[str]:
    script = Path(sys.executable).with_name("fleet-daemon")
    if script.exists():
        return [str(script)]
    # -I: a `daemon/` directory in the machine's home must never shadow the real package.
    return [sys.executable, "-I", "-m", "daemon"]


def supervised_argv(loader: str | None = None) -> list[str]:
    """The supervisor, which runs the daemon (and runs it again when it dies); both through
    the execute-only ``loader`` when given (non-dumpable: see daemon/supervision/nodump.py)."""
    if loader is None:
        return [sys.executable, "-I", "-m", "daemon.supervise", *daemon_argv()]
    python = [loader, sys.executable, "-I", "-m"]
    return [*python, "daemon.supervise", *python, "daemon"]


def spawn_detached(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    what: str,
    fds: Mapping[int, int] | None = None,
) -> int:
    """Start a process in its own session, output appended to ``log_path``, each descriptor of
    ``fds`` (target: source) passed at its target number; its pid.

    posix_spawn, not Popen: a machine's process must outlive the provisioner that started it
    (as a cloud machine would), so nothing here owns it; we only reap it if it exits first.
    """
    out = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    # Copies above every target first: a source numbered as another's target is not clobbered
    # by the dup2s (and dup2 onto itself would keep close-on-exec).
    high = {target: fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, 64) for target, src in
            (fds or {}).items()}  # fmt: skip
    try:
        return os.posix_spawn(
            argv[0], argv, env, setsid=True,
            file_actions=[
                *((os.POSIX_SPAWN_DUP2, src, target) for target, src in high.items()),
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log_path), out, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
        )  # fmt: skip
    except OSError as exc:
        raise ProviderError(f"cannot start {what}: {exc}") from None
    finally:
        for fd in high.values():
            os.close(fd)


def code_store(machine_dir: Path) -> Path:
    """A machine's code store (base/codestore.py): beside its home, the platform's alone."""
    return machine_dir / "code"


def write_pid(machine_dir: Path, pid: int) -> None:
    replace_file(machine_dir / "daemon.pid", str(pid))


def running_pid(machine_dir: Path, machine_id: str) -> int | None:
    """The pid of this machine's root process (bwrap, or the supervisor) if it is alive and
    really is this machine's; else a daemon of an older fleetd that holds the home's lock;
    else a root started for this machine whose pid was never recorded."""
    found = markers(machine_dir, machine_id)
    # The lock is in the machine's home: read only when needed, and never by path (holder_pid).
    for find in (_spawned_pid, lambda d: holder_pid(d / "home")):
        if (pid := find(machine_dir)) is not None and is_root_of(pid, found):
            return pid
    # A provisioner SIGKILLed between starting a machine and writing daemon.pid leaves a
    # machine nobody recorded: found by the machine id in its environment, and adopted, so
    # that a redelivered machine.created does not start a second one (found under CPU load).
    roots = machine_roots(machine_dir, machine_id)
    if roots:
        write_pid(machine_dir, roots[0])
        return roots[0]
    return None


def first_process(machine_dir: Path, machine_id: str) -> int | None:
    """The machine's first process on this host, in its cgroups (a gvisor machine's sandbox,
    else its root: ``running_pid``); None if it runs none."""
    if gvisor.is_gvisor(machine_dir):
        return gvisor.sandbox_pid(machine_dir)
    return running_pid(machine_dir, machine_id)


#: In a machine's directory when it came from the warm pool: the pool slot its root was
#: started as (``FLEET_POOL_SLOT`` in the root's environment; it had no machine id then).
POOL_SLOT_FILE = "pool-slot"


#: In a machine's directory once a pooled root was told it is this machine: the slot it was.
IDENTIFIED_FILE = "identified"


def markers(machine_dir: Path, machine_id: str) -> list[tuple[str, str]]:
    """What the environment of this machine's root says: its machine id, or its pool slot."""
    found = [("FLEET_MACHINE_ID", machine_id)]
    with contextlib.suppress(OSError):
        found.append((POOL_SLOT_VAR, (machine_dir / POOL_SLOT_FILE).read_text().strip()))
    return found


def machine_roots(machine_dir: Path, machine_id: str) -> list[int]:
    """Every live root process started for this machine (normally one)."""
    return sorted(
        {
            p
            for name, value in markers(machine_dir, machine_id)
            for p in env_roots(name, value)
            if procinfo.state(p) not in ("Z", "X", None)
        }
    )


def machine_processes(machine_dir: Path, machine_id: str) -> list[int]:
    """Every live process started for this machine (its id, or its pool slot, in the
    environment): bwrap, its init, the supervisor, the daemon."""
    return procinfo.members(markers(machine_dir, machine_id))


def owners(machine_dir: Path, machine_id: str) -> list[str]:
    """The names the machine's cgroup and pasta were made under: its id, and its pool slot
    when it came from the warm pool (it kept the slot's)."""
    return [value for _, value in markers(machine_dir, machine_id)]


def _spawned_pid(machine_dir: Path) -> int | None:
    try:
        return int((machine_dir / "daemon.pid").read_text())
    except (OSError, ValueError):
        return None


def is_root_of(pid: int, markers: list[tuple[str, str]]) -> bool:
    # A reused pid belongs to some other process: only trust a process started for this machine.
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(f"{k}={v}".encode() in environ for k, v in markers) and pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True
