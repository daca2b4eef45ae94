"""A local machine on gVisor (the ``gvisor`` runtime, docs/runtimes.md): ``runsc`` runs the
machine's supervisor on gVisor's user-space kernel, so that none of the machine's processes is
a process of the host; only runsc's own (its sandbox and gofer) stand for it.

What the sandbox is given, as the bubblewrap sandbox is (providers/sandbox/bwrap.py): the host's
system directories and an allow-list of ``/etc`` read-only, the Python that runs the daemon and
fleetd's daemon packages read-only, the machine's home read-write at the same path, its code
store read-only, a private ``/tmp``. Its first process is root *of gVisor's kernel*: it reads
the token from a root-only file of the platform's (read-only, outside the home), then becomes
the machine's uid (daemon/supervision/nodump.py ``take_token_file_and_drop_root``), as a docker
machine's
does. Root inside is for ``runsc exec --user 0`` (``exec_as_root``) and ``sudo`` (the
supervisor's broker: daemon/supervision/sudo.py), and never the host's: the sandbox's user
namespace makes
it a host uid of the machine's own (providers/gvisor/root.py).

Its network is gVisor's own stack (``--network=sandbox``: the one a checkpoint can keep) in a
network namespace of its own with ``pasta`` as its way out (providers/sandbox/netns.py). This runsc
takes any namespace with ``/proc/sys/net/core/rmem_default`` for the root one and refuses to
start there, so it runs in a mount namespace with a tmpfs over ``/proc/sys/net``. gVisor's
stack has its own loopback: the daemon reaches NATS at an address of the host (pasta connects
as the host would), never at the host's loopback.

runsc's state is under ``<data-dir>/gvisor``; container ids are a fixed-length hash of the
machine id (runsc finds a container by any prefix of its id). Its processes start in the
machine's cgroup (``--ignore-cgroups``: runsc does not make its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from base.bounded_output import Completed, json_text, run_capped, run_capped_sync
from base.codestore import CODE_MOUNT
from base.tokenfd import (
    DAEMON_LOG,
    DAEMON_LOG_VAR,
    DAEMON_RUN_AS_VAR,
    MACHINE_ID_FILE,
    RESTORE_MARK_FILE,
    SUDO_SOCKET,
    SUDO_SOCKET_VAR,
    TOKEN_FILE_VAR,
)
from base.version import SOURCE_ROOT
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from contracts.errors import ProviderError
from contracts.models import GvisorPlatform
from providers.gvisor.gateway import machine_nats_url
from providers.gvisor.image import (
    BUNDLE as BUNDLE,  # the bundle's name: there, below this
    ImageRoot,
    image_mounts,
    runs_image,
    sudo_runtime,
    unmount_root,
)
from providers.gvisor.netns import await_own_netns, give_network, netns_config
from providers.gvisor.root import (
    BIN_MOUNT,
    RUN_DIR,
    STAGE_SCRIPT,
    give_rootfs,
    id_mappings,
    root_uid,
    staged_bundle,
    write_bin,
)
from providers.sandbox import (
    DAEMON_PACKAGES,
    ETC_ALLOWED,
    MACHINE_HOME,
    SANDBOXED_VAR,
    MachineCgroup,
    forget_pastas,
    pasta_record,
    python_roots,
    stop_pasta,
    trusting_gitconfig,
)
from providers.scratch import remove_tree

log = structlog.get_logger(__name__)

#: The token's directory (root's, 0700) beside the home, and where the sandbox sees it.
TOKEN_DIR = "gvisor-token"  # noqa: S105 - a directory name
TOKEN_MOUNT = "/run/fleet-token"  # noqa: S105 - a path
#: A paused machine's memory image (root's, beside its home).
IMAGE_DIR = "gvisor-image"
#: The bubblewrap sandbox's own descriptors and loader mean nothing here.
_NOT_HERE = ("FLEET_MACHINE_TOKEN_FD", "FLEET_NODUMP_LOADER")
_RUNSC_TIMEOUT_S = 120.0
#: What ``Runsc.run`` keeps of each stream: runsc's messages (a Go trace), an endpoint listing.
_RUNSC_OUTPUT_CAP = 1 << 20
#: Output kept of a root command, each stream: as much as the daemon keeps of its own commands'
#: (FLEET_EXEC_OUTPUT_CAP's default), the rest read and dropped (base/bounded_output.py).
OUTPUT_CAP = 256 * 1024
#: Each stream's text in the answer, as JSON (a control byte takes six bytes there): both fit
#: one message of NATS's default 1 MiB.
_ANSWER_TEXT_MAX = 384 * 1024


def container_id(machine_id: str) -> str:
    """The machine's container id: the same length for every machine, so none is a prefix of
    another's (runsc takes an id's prefix for the id)."""
    return "fleet-" + hashlib.sha256(machine_id.encode()).hexdigest()[:32]


def is_gvisor(machine_dir: Path) -> bool:
    return (machine_dir / BUNDLE).is_dir()


class Runsc:
    """One host's runsc: its binary, platform and state directory.

    A sandbox's control socket is an abstract one, in the machine's network namespace: every
    command to a running sandbox runs there (``nsenter`` to the sandbox's pid)."""

    def __init__(self, binary: str, platform: GvisorPlatform, data_dir: Path,
                 park_wait_s: float = 15.0, nats_url: str = "",
                 proxy_port: int = 0) -> None:  # fmt: skip
        self.binary = binary
        #: The egress proxy's port at the gateway (0: none): opened with NATS's.
        self.proxy_port = proxy_port
        #: Where the platform's NATS is: on the host's loopback, a sandbox's namespace maps
        #: its gateway there, narrowed to NATS's ports (providers/gvisor/gateway.py).
        self.nats_url = nats_url
        self.platform = platform
        self.data_dir = data_dir
        self.state = data_dir / "gvisor"
        #: How long a pause waits for the daemon to let its connection go
        #: (providers/gvisor/pause.py).
        self.park_wait_s = park_wait_s

    def argv(self, *args: str, inside: int | None = None, memory: bool = True) -> list[str]:
        enter = [] if inside is None else ["nsenter", f"--net=/proc/{inside}/ns/net"]
        # The root filesystem's changes are kept in gVisor's memory (root's ``apt``-style work
        # inside: /etc, /var), never written to the host's directory behind it; ``memory``
        # False: an image's root, whose overlay on the host is the machine's own to keep
        # (providers/gvisor/image.py).
        # Said either way: this runsc's own default is an overlay in a file of its own
        # ("root:self"), where an image's machine's writes would never reach its overlay.
        overlay = ["--overlay2", "root:memory" if memory else "none"]
        # A checkpoint resets the machine's connections that cross its edge (a laptop's sleep:
        # each side sees a reset after the resume), where it would refuse the checkpoint; its
        # listeners and its loopback connections are saved with it.
        return [*enter, self.binary, "--root", str(self.state), "--platform", self.platform,
                "--network", "sandbox", "--net-disconnect-ok", "--ignore-cgroups", *overlay,
                *args]  # fmt: skip

    def run(self, *args: str, inside: int | None = None,
            timeout_s: float = _RUNSC_TIMEOUT_S) -> Completed:  # fmt: skip
        """runsc's command to its end; each stream kept to ``_RUNSC_OUTPUT_CAP`` as it is read
        (``exec``'s is what a process of the machine writes)."""
        argv = self.argv(*args, inside=inside)
        return run_capped_sync(argv, cap=_RUNSC_OUTPUT_CAP, timeout_s=timeout_s,
                               env=_clean_env()).completed(argv)  # fmt: skip

    async def run_async(self, *args: str, inside: int | None = None,
                        timeout_s: float = _RUNSC_TIMEOUT_S) -> Completed:  # fmt: skip
        """``run`` on the event loop: a long command (a checkpoint) holds no worker thread."""
        argv = self.argv(*args, inside=inside)
        got = await run_capped(argv, cap=_RUNSC_OUTPUT_CAP, timeout_s=timeout_s,
                               env=_clean_env())  # fmt: skip
        return got.completed(argv)

    def status(self, cid: str, inside: int) -> str | None:
        """The container's status (``runsc state``) in the sandbox ``inside``; None if none."""
        got = self.run("state", cid, inside=inside, timeout_s=30)
        if got.returncode != 0:
            return None
        with contextlib.suppress(ValueError, KeyError):
            return str(json.loads(got.stdout)["status"])
        return None


#: In a machine's bundle: the host pid of its sandbox (runsc's ``boot`` process).
PID_FILE = "sandbox.pid"
#: Where runsc writes it as it starts the sandbox (``--pid-file``), before it is checked.
STARTED_PID_FILE = "runsc.pid"
#: In a machine's bundle while its sandbox runs under another name than the machine's: one
#: started for the warm pool (providers/local/gvisor_pool.py) keeps its slot's container id and the
#: bundle path runsc was given, ``<container id>\n<bundle>``. Gone with that sandbox.
STARTED_AS_FILE = "started-as"


def started_as(machine_dir: Path, machine_id: str) -> tuple[str, Path]:
    """The container id and bundle path the machine's running sandbox was started under: its
    own, unless it came from the warm pool."""
    bundle = machine_dir / BUNDLE
    with contextlib.suppress(OSError, ValueError):
        cid, started = (bundle / STARTED_AS_FILE).read_text().split("\n")
        return cid, Path(started)
    return container_id(machine_id), bundle


def running_container(machine_dir: Path, machine_id: str) -> str:
    """The container id of the machine's running sandbox (runsc's kill, exec, checkpoint)."""
    return started_as(machine_dir, machine_id)[0]


#: In a machine's bundle while its running sandbox's daemon is parked: told by the provider to
#: let NATS go (a pause's or a take's SIGUSR1) and not yet told to take it back. Only such a
#: daemon is sent the resume's SIGUSR2 by a start that finds its sandbox running: a sandbox
#: just started has a supervisor without signal handlers yet, which the signal would end.
PARKED_FILE = "daemon-parked"


def forget_sandbox(bundle: Path) -> None:
    """The ended sandbox's records: its pid, the name it was started under, its parking."""
    for name in (PID_FILE, STARTED_PID_FILE, STARTED_AS_FILE, PARKED_FILE):
        (bundle / name).unlink(missing_ok=True)


def sandbox_pid(machine_dir: Path) -> int | None:
    """The machine's live sandbox process, checked to be its own (the bundle it was started
    with in its command line: a pid reused by another process is not it); None if it runs
    none."""
    bundle = machine_dir / BUNDLE
    started = started_as(machine_dir, "")[1]
    try:
        pid = int((bundle / PID_FILE).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if _is_sandbox_of(started, cmdline) else None


def _is_sandbox_of(bundle: Path, cmdline: list[bytes]) -> bool:
    """``cmdline`` is runsc's sandbox of ``bundle`` (given as is, or its staged spec)."""
    wants = (f"--bundle={bundle}".encode(), f"--bundle={bundle / RUN_DIR}".encode())
    return b"boot" in cmdline and any(want in cmdline for want in wants)


def _started_sandbox(bundle: Path) -> int | None:
    """The sandbox runsc just started for ``bundle``: the pid it wrote (``--pid-file``),
    checked to be that sandbox's; else found among the host's processes."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((bundle / STARTED_PID_FILE).read_text())
        if _is_sandbox_of(bundle, Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")):
            return pid
    return find_sandbox(bundle)


def find_sandbox(bundle: Path) -> int | None:
    """The live sandbox process started from ``bundle`` (its command line names it), if any."""
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
                    if _is_sandbox_of(bundle, cmdline):
                        return int(entry.name)
    return None


def _clean_env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def write_token(machine_dir: Path, token: str, machine_id: str) -> Path:
    """The token's directory (root's alone; read-only in the sandbox, where only root may
    read the file), and beside the token the machine's id: the supervisor reads both again
    before each daemon it restarts (daemon/supervision/nodump.py reread_identity)."""
    d = machine_dir / TOKEN_DIR
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    owner = root_uid(machine_dir)
    for name, text in (("token", token), (MACHINE_ID_FILE, machine_id)):
        _write_root_file(d / name, text, owner)
    if owner is not None:  # root's inside: the host uid that root stands for
        os.chown(d, owner, owner, follow_symlinks=False)
    return d


def write_restore_mark(machine_dir: Path) -> None:
    """A new restore mark in the machine's token directory, before its restore: its parked
    supervisor wakes its daemon the moment it sees it (daemon/supervise.py)."""
    _write_root_file(machine_dir / TOKEN_DIR / RESTORE_MARK_FILE, secrets.token_hex(8),
                     root_uid(machine_dir))  # fmt: skip


def _write_root_file(path: Path, text: str, owner: int | None) -> None:
    """``text`` in ``path`` of the token directory, 0600, ``owner``'s (root's inside)."""
    # Never blocks on a FIFO nor writes through another kind of file put in its place.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ProviderError(f"{path} is not a regular file")
    with os.fdopen(fd, "w") as out:
        if owner is not None:
            os.fchown(out.fileno(), owner, owner)
        out.write(text)


def bind_mount(src: str | Path, dst: str | Path, ro: bool = True) -> dict[str, Any]:
    return {"destination": str(dst), "type": "bind", "source": str(src),
            "options": ["rbind", "ro" if ro else "rw"]}  # fmt: skip


def empty_rootfs(bundle: Path, targets: list[tuple[str, bool]]) -> Path:
    """An empty root with the merged-/usr links and a mount point per target (a directory,
    or a file for a file's mount)."""
    bundle.mkdir(mode=0o755, exist_ok=True)
    root = bundle / "rootfs"
    root.mkdir(mode=0o755, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink(f"/{link}") and not os.path.lexists(root / link):
            os.symlink(os.readlink(f"/{link}"), root / link)
    for target, is_dir in targets:
        path = root / target.lstrip("/")
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if is_dir:
            path.mkdir(mode=0o755, exist_ok=True)
        elif not path.exists():
            path.touch(mode=0o644)
    return root


def bundle_spec(machine_dir: Path, home: Path, env: dict[str, str], uid: int, argv: list[str],
                hostname: str, root_owner: int | None = None,
                image: ImageRoot | None = None, shared: Shares = ((), None),
                ) -> dict[str, Any]:  # fmt: skip
    """The OCI spec of the machine's sandbox (its rootfs made beside it); ``root_owner``: the
    host uid of its root (``id_mappings``); ``image``: an environment's unpacked root, run in
    place of the host's system (providers/gvisor/image.py); ``shared``: the host paths every
    sandboxed machine reads (FLEET_SANDBOX_SHARE), and the data directory hidden below them."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
        {"destination": "/var/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["mode=1777"]},
        {"destination": os.path.dirname(SUDO_SOCKET), "type": "tmpfs", "source": "tmpfs",
         "options": ["mode=0755"]},
    ]  # fmt: skip
    if image is None:
        mounts += [*_host_system(), *_shares(*shared), bind_mount(home, home, ro=False)]
        if shared[1] is not None:  # over the host's: the machine's uid trusts the shared repos
            mounts = [m for m in mounts if m["destination"] != "/etc/gitconfig"]
            mounts.append(bind_mount(trusting_gitconfig(shared[1]), "/etc/gitconfig"))
    else:
        mounts += image_mounts(image, home)
    (log := machine_dir / "daemon.log").touch()
    os.chmod(log, 0o644)  # the machine's user reads it inside: host root's uid is not mapped
    mounts += [
        bind_mount(log, DAEMON_LOG),
        bind_mount(machine_dir / "code", CODE_MOUNT),
        bind_mount(machine_dir / TOKEN_DIR, TOKEN_MOUNT),
        bind_mount(write_bin(machine_dir, None if image is None else sudo_runtime()), BIN_MOUNT),
    ]
    targets = [(str(m["destination"]), m["type"] != "bind" or os.path.isdir(m["source"]))
               for m in mounts]  # fmt: skip
    # An image's root is shared and never written: runsc makes the mount points in its
    # memory overlay.
    rootfs = image.root if image is not None else empty_rootfs(machine_dir / BUNDLE, targets)
    linux: dict[str, Any] = {
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
        + [{"type": "network", "path": "/proc/self/ns/net"}]
    }
    if root_owner is not None:
        if image is None:
            give_rootfs(rootfs, root_owner)
        linux["namespaces"].append({"type": "user"})
        linux |= id_mappings(root_owner, uid, image and image.user)
    env = {k: v for k, v in env.items() if k not in _NOT_HERE}
    if "FLEET_NATS_URL" in env:  # gVisor's loopback is its own: the host's is at the gateway
        env["FLEET_NATS_URL"] = machine_nats_url(env["FLEET_NATS_URL"])
    # The supervisor stays root (gVisor's): each daemon takes its token as root, then becomes
    # the machine's uid itself (base/tokenfd.py DAEMON_RUN_AS_VAR).
    user = None if image is None else image.user
    if image is None or not image.as_root:  # a root machine's daemon stays root
        env[DAEMON_RUN_AS_VAR] = str(uid) if user is None else f"{user[0]}:{user[1]}"
    env |= {TOKEN_FILE_VAR: f"{TOKEN_MOUNT}/token", DAEMON_LOG_VAR: DAEMON_LOG,
            SANDBOXED_VAR: "1", SUDO_SOCKET_VAR: SUDO_SOCKET,
            "PATH": f"{BIN_MOUNT}:{env.get('PATH') or _clean_env()['PATH']}"}  # fmt: skip
    # The daemons' to become the machine's uid; the supervisor's to signal them and to end the
    # machine's processes at its end. All go with root at a daemon's setuid.
    caps = ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"]
    return {
        "ociVersion": "1.0.0",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": [f"{k}={v}" for k, v in sorted(env.items())],
            "cwd": MACHINE_HOME if image is not None else str(home),
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        # Writable to root inside, in gVisor's memory alone (``Runsc.argv``'s overlay).
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }  # fmt: skip


#: FLEET_SANDBOX_SHARE's paths, and the data directory (hidden if one of them holds it).
Shares = tuple[tuple[Path, ...], Path | None]


def _shares(paths: tuple[Path, ...], data_dir: Path | None) -> list[dict[str, Any]]:
    """The shared paths read-only (those that exist now), as a bwrap machine has them; a
    tmpfs over the data directory if one of them holds it (the home is bound again after)."""
    mounts = [bind_mount(p, p) for p in paths if p.exists()]
    if data_dir is not None and any(data_dir.is_relative_to(p) for p in paths):
        mounts.append({"destination": str(data_dir), "type": "tmpfs", "source": "tmpfs",
                       "options": ["mode=0755"]})  # fmt: skip
    return mounts


def _host_system() -> list[dict[str, Any]]:
    """The host's system directories, an allow-list of ``/etc``, the daemon's Python and
    packages: all read-only."""
    mounts: list[dict[str, Any]] = []
    for d in ("/usr", "/opt"):
        if os.path.isdir(d) and not os.path.islink(d):
            mounts.append(bind_mount(d, d))
    for name in ETC_ALLOWED:
        if os.path.exists(f"/etc/{name}"):
            mounts.append(bind_mount(f"/etc/{name}", f"/etc/{name}"))
    for root in python_roots():
        if not root.is_relative_to("/usr"):
            mounts.append(bind_mount(root, root))
    return mounts + [bind_mount(SOURCE_ROOT / pkg, SOURCE_ROOT / pkg) for pkg in DAEMON_PACKAGES]


def write_bundle(machine_dir: Path, spec: dict[str, Any]) -> Path:
    bundle = machine_dir / BUNDLE
    bundle.mkdir(mode=0o755, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(spec, indent=1))
    return bundle


#: Readies a machine's new network namespace (given a host pid in it) before its sandbox
#: starts there: its instance's egress policy is written in before a restore brings back
#: processes that would otherwise meet a namespace with none.
NetnsReady = Callable[[str, int], Awaitable[None]]


async def start_sandbox(runsc: Runsc, machine_id: str, bundle: Path, log_path: Path,
                        owner: str, enter: list[str], verb: tuple[str, ...] = ("run",),
                        stdin: int = subprocess.DEVNULL, ready: NetnsReady | None = None,
                        netns_holder: int | None = None) -> int:  # fmt: skip
    """Start the machine's sandbox in a network namespace of its own with pasta as its way
    out, in the cgroup ``enter`` moves it into; the sandbox's host pid. On failure nothing of
    it is left. ``verb``: runsc's command (``run``; ``restore`` and its image for a resume).
    ``stdin``: its first process's (a pooled sandbox's lifeline: providers/local/gvisor_pool.py).
    ``ready``: run on the namespace, with pasta attached, before runsc starts in it.
    ``netns_holder``: a process in a namespace made already, pasta and all (a paused
    machine's, kept by its pause): the sandbox starts there, and the holder ends after."""
    cid = container_id(machine_id)
    began = time.monotonic()
    holder = None
    try:
        if netns_holder is None:
            holder = await asyncio.create_subprocess_exec(
                "unshare", "--net", "sleep", "infinity", env=_clean_env(),
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            await await_own_netns(holder.pid)
            # Recorded: the door of the egress proxy knows the machine by this very pasta.
            await give_network(holder.pid, owner, pasta_record(runsc.data_dir, owner),
                               runsc.nats_url, runsc.proxy_port)  # fmt: skip
        else:  # runsc took its addresses and routes: given back, as pasta had set them
            await netns_config(netns_holder, bundle, "restore")
        in_netns = holder.pid if holder is not None else netns_holder
        assert in_netns is not None
        waits = [] if ready is None else [ready(machine_id, in_netns)]
        if holder is not None:  # what a pause's kept namespace is given again
            waits.append(netns_config(in_netns, bundle, "save"))
        await asyncio.gather(*waits)
        netns = f"/proc/{in_netns}/ns/net"
        netns_at = time.monotonic()
        code = await _runsc_in(runsc, netns, bundle, log_path, enter, verb, stdin, cid)
        ran_at = time.monotonic()
        if code != 0:
            raise ProviderError(
                f"runsc could not {verb[0]} {machine_id} (exit {code}): see its log"
            )
        pid = await asyncio.to_thread(_started_sandbox, bundle)
        # A restore that ended well left its processes running (they were): no state to ask.
        state = "running" if verb[0] == "restore" and pid is not None else (
            None if pid is None else await asyncio.to_thread(runsc.status, cid, pid))  # fmt: skip
        log.info("provider.gvisor_sandbox_started", machine_id=machine_id, verb=verb[0],
                 netns_ms=round((netns_at - began) * 1000),
                 runsc_ms=round((ran_at - netns_at) * 1000),
                 state_ms=round((time.monotonic() - ran_at) * 1000),
                 kept_netns=netns_holder is not None)  # fmt: skip
        if pid is None or state != "running":
            raise ProviderError(f"runsc started {machine_id}, and it is {state}: see its log")
        (bundle / PID_FILE).write_text(str(pid))
        return pid
    except BaseException:
        await asyncio.to_thread(remove_sandbox, runsc, bundle.parent, machine_id, owner)
        raise
    finally:  # the sandbox holds its namespace now (or nothing does: it failed)
        if netns_holder is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(netns_holder, signal.SIGKILL)
        if holder is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(holder.pid, signal.SIGKILL)
            await holder.wait()


async def _runsc_in(runsc: Runsc, netns: str, bundle: Path, log_path: Path, enter: list[str],
                    verb: tuple[str, ...], stdin: int, cid: str) -> int:  # fmt: skip
    """runsc's ``verb`` of the bundle in the namespace ``netns``, to its end: its exit."""
    # A proc of its own over /proc/sys/net (no rmem_default there), with nothing mounted
    # over it: a user namespace's sandbox may mount its proc only while the namespace
    # holds a proc that nothing hides part of (the kernel's "too revealing" rule).
    script = 'mount -t proc proc /proc/sys/net && exec "$@"'
    given, staging = await asyncio.to_thread(staged_bundle, bundle)
    if staging:
        script = f'mount -t proc proc /proc/sys/net || exit 1; {STAGE_SCRIPT}exec "$@"'
    argv = [*enter, "nsenter", f"--net={netns}", "unshare", "--mount", "/bin/sh", "-c",
            script, "fleet-gvisor", *staging,
            *runsc.argv(*verb, "--detach", "--pid-file", str(bundle / STARTED_PID_FILE),
                        "--bundle", str(given), cid,
                        memory=not runs_image(bundle.parent))]  # fmt: skip
    with log_path.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=out, stderr=out, env=_clean_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            async with asyncio.timeout(_RUNSC_TIMEOUT_S):
                return await proc.wait()
        except BaseException:  # a runsc that never ended (a restore wedged) is not left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            raise


def stop_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str, grace_s: float) -> bool:
    """SIGTERM the machine's first process (the supervisor, which stops the daemon), wait up
    to ``grace_s``, then delete the sandbox (every process of it ends, its memory is freed).
    True if it was running."""
    cid = running_container(machine_dir, machine_id)
    pid = sandbox_pid(machine_dir)
    if pid is None and not any(runsc.state.glob(f"{cid}_sandbox:*")):
        forget_sandbox(machine_dir / BUNDLE)  # never started, or gone with its state
        return False
    if pid is not None:
        try:
            runsc.run("kill", cid, "TERM", inside=pid, timeout_s=30)
        except subprocess.TimeoutExpired:  # wedged (a restore that never ended): killed now
            log.warning("provider.gvisor_sandbox_wedged", machine_id=machine_id, pid=pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            grace_s = 0.0
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and runsc.status(cid, pid) == "running":
            time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):  # its state is deleted below
            runsc.run("delete", "--force", cid, inside=pid, timeout_s=60)
        with contextlib.suppress(ProcessLookupError):  # whatever of it did not end
            os.kill(pid, signal.SIGKILL)
    runsc.run("delete", "--force", cid, timeout_s=60)  # its state, if any is left
    forget_sandbox(machine_dir / BUNDLE)
    return pid is not None


def stop_machine(runsc: Runsc, machine_dir: Path, machine_id: str, grace_s: float,
                 owners: tuple[str, ...] = ()) -> bool:  # fmt: skip
    """A gvisor machine's stop: its sandbox deleted (its memory freed), its pasta, cgroup and
    token file gone (``owners``: other names they were made under, a pool slot's); True if it
    was running."""
    was_up = stop_sandbox(runsc, machine_dir, machine_id, grace_s)
    unmount_root(machine_dir)  # an image's (providers/gvisor/image.py): mounted again at its start
    stop_pasta(machine_id, *owners)
    forget_pastas(runsc.data_dir, machine_id, *owners)
    for owner in {machine_id, *owners}:
        MachineCgroup(owner).remove()
    remove_tree(machine_dir / TOKEN_DIR)
    remove_tree(machine_dir / IMAGE_DIR)  # a paused machine's memory
    return was_up


def remove_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str, owner: str) -> None:
    """Whatever is left of a sandbox that failed to start."""
    pid = find_sandbox(machine_dir / BUNDLE)
    if pid is not None:
        (machine_dir / BUNDLE / PID_FILE).write_text(str(pid))
    stop_sandbox(runsc, machine_dir, machine_id, 0.0)
    stop_pasta(owner)
    forget_pastas(runsc.data_dir, owner)


async def exec_as_root(
    runsc: Runsc, machine_dir: Path, machine_id: str, p: ExecCommandParams
) -> ExecCommandResult:
    """``p`` run as uid 0 in the machine's sandbox (``runsc exec --user 0``): root of gVisor's
    kernel. Its output is capped as it is read (the provisioner is outside the machine's memory
    limit); past its timeout it is killed."""
    cid = running_container(machine_dir, machine_id)
    pid = await asyncio.to_thread(sandbox_pid, machine_dir)
    if pid is None:
        raise ProviderError(f"machine {machine_id}'s sandbox is not running")
    env = [a for k, v in (p.env or {}).items() for a in ("--env", f"{k}={v}")]
    cwd = ["--cwd", p.cwd] if p.cwd else []
    argv = runsc.argv("exec", "--user", "0:0", *env, *cwd, cid, *p.command, inside=pid)
    got = await run_capped(argv, cap=OUTPUT_CAP, timeout_s=p.timeout_s, env=_clean_env())
    out, out_cut = json_text(got.stdout, _ANSWER_TEXT_MAX)
    err, err_cut = json_text(got.stderr, _ANSWER_TEXT_MAX)
    return ExecCommandResult(exit_code=got.returncode, stdout=out, stderr=err,
                             timed_out=got.timed_out,
                             truncated=got.truncated or out_cut or err_cut)  # fmt: skip


def probe(runsc: str) -> str | None:
    """None if runsc is here, else why not (one line)."""
    return None if shutil.which(runsc) else f"runsc ({runsc}) is not installed"
