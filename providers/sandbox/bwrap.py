"""The bubblewrap sandbox of a local machine.

What a sandboxed machine's processes see: the host's system directories read-only (``/usr``
and the merged ``/bin``, ``/lib``...), an allow-list of ``/etc`` (no ``/etc/shadow``, no host
keys), the Python that runs the daemon and fleetd's daemon code read-only, its own home
read-write, a private ``/tmp``, its own ``/proc`` (own pid namespace: no other process of the
host is visible, so no other daemon's environment), no capabilities at all. The data dir,
other machines' homes and every other path of the host are simply not mounted.

Its network is its own (``--unshare-net``, then ``pasta``: providers/sandbox/netns.py): its own
loopback, on which only the NATS port(s) of the host's loopback are forwarded; the outside
network through pasta, as the host's own connections. No other machine's port and no other
port of the host's loopback (valkey, the gateway, metrics) is reachable; a server on the
host's other addresses (a Docker bridge's gateway, a LAN address) is, as for a container.

Docker's default syscall filter (providers/sandbox/seccomp.py, ``--seccomp``) is on every process:
no keyrings, bpf, perf, userfaultfd, mounts, and no new namespaces (so no nested user
namespace, the way in of most local kernel exploits). The processes run as a uid of their own
(providers/sandbox/machine_uid.py) or the platform's: without capabilities and without any of the
platform's files mounted, but a kernel bug is still a host bug.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from base.codestore import CODE_MOUNT
from base.version import SOURCE_ROOT
from contracts.errors import ProviderError
from providers.sandbox.image import MACHINE_HOME, image_mounts
from providers.sandbox.machine_uid import as_uid, trusting_gitconfig
from providers.sandbox.netns import BLOCK_FD, INFO_FD, installed, resolv_conf
from providers.sandbox.userns import bwrap_args as userns_args

#: What the sandbox's root holds from the host, read-only (merged-/usr links stay links).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: What of /etc a machine needs (users, names, TLS roots, the dynamic linker; the desktop's
#: fonts and its browser's packaged settings: docs/desktop.md); nothing else.
ETC_ALLOWED = (
    "passwd", "group", "hosts", "host.conf", "resolv.conf", "nsswitch.conf", "gai.conf",
    "services", "protocols", "localtime", "timezone", "ssl", "ca-certificates",
    "ca-certificates.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives",
    "gitconfig", "mime.types", "os-release", "debian_version", "login.defs", "profile",
    "bash.bashrc", "environment", "python3", "python3.11", "fonts", "chromium", "chromium.d",
)  # fmt: skip
#: fleetd's packages a daemon imports (the rest of the checkout is not the machine's business).
DAEMON_PACKAGES = ("contracts", "base", "daemon")


class SandboxUnavailable(ProviderError):
    """bubblewrap is missing or cannot create namespaces here."""


def bwrap_binary() -> str:
    return installed("bwrap", SandboxUnavailable(
        "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`, or run local "
        "machines without isolation (fleet up --no-sandbox)"))  # fmt: skip


def python_roots() -> list[Path]:
    """Where the interpreter running the daemon lives: the venv and the base installation."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    roots.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return sorted(roots)


#: Set inside a machine's sandbox (see daemon.supervise).
SANDBOXED_VAR = "FLEET_SANDBOXED"
#: The descriptor bwrap reads the syscall filter from (providers/sandbox/seccomp.py).
SECCOMP_FD = 4


#: What bwrap keeps for setpriv to become the machine's uid with (providers/sandbox/machine_uid.py).
_KEEP_TO_BECOME_UID = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                       "--cap-add", "CAP_SETPCAP"]  # fmt: skip


def bwrap_argv(
    *,
    machine_id: str,
    home: Path,
    data_dir: Path,
    command: list[str],
    code: Path | None = None,
    shared: Iterable[Path] = (),
    loader: Path | None = None,
    uid: int | None = None,
    own_network: bool = True,
    root: Path | None = None,
    userns: bool = False,
) -> list[str]:
    """The bwrap command line that runs ``command`` inside the machine's sandbox, its network
    its own unless ``own_network`` is False (``netns_argv``); ``loader``,
    an execute-only dynamic loader (providers/sandbox/nodump_loader.py), is bound read-only at
    ``/run/fleet/ld.so`` (read-only: the machine, its owner, cannot make it readable) and
    ``code``, the machine's code store (base/codestore.py), read-only at ``CODE_MOUNT``; with
    ``uid``, the machine's first process becomes that uid (providers/sandbox/machine_uid.py). With
    ``root``, an environment's image root in place of the host's system
    (providers/sandbox/image.py); with ``userns`` too, in the user namespace the provider made
    for it (providers/sandbox/userns.py)."""
    argv = [
        bwrap_binary(),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", hostname(machine_id),
        "--cap-drop", "ALL",
        # Only to become the machine's own uid (setpriv), which then drops them with the rest;
        # CAP_SETPCAP to empty the bounding set first (without it, util-linux 2.38's setpriv
        # left it full without a word, and 2.41's fails: "apply bounding set").
        *(_KEEP_TO_BECOME_UID if uid is not None else []),
        # Tells the supervisor it is in a pid namespace of its own: on a clean stop it ends every
        # process left in it (bwrap's init would otherwise keep the namespace up for orphans).
        "--setenv", SANDBOXED_VAR, "1",
        "--seccomp", str(SECCOMP_FD),
        *(netns_argv() if own_network else []),
        *(userns_args() if userns else []),
        # /tmp and /var/tmp for everyone (a machine may run as a uid of its own), sticky.
        "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
        "--tmpfs", "/run", "--perms", "0755", "--dir", "/var",
        "--perms", "1777", "--dir", "/var/tmp",
    ]  # fmt: skip
    if root is not None:
        return [*argv, *_image_argv(root, home, loader, code), "--", *command]
    binds = [*python_roots(), *(SOURCE_ROOT / pkg for pkg in DAEMON_PACKAGES), *shared]
    argv += _system_mounts() + _open_parents([*binds, data_dir])
    for root in python_roots():
        argv += ["--ro-bind", str(root), str(root)]
    for pkg in DAEMON_PACKAGES:
        argv += ["--ro-bind", str(SOURCE_ROOT / pkg), str(SOURCE_ROOT / pkg)]
    for path in shared:
        argv += ["--ro-bind-try", str(path), str(path)]
    # Whatever was bound above may contain the data dir (a checkout's .fleet-data, a venv
    # beside it): an empty tmpfs over it hides all of it, then only this home is put back.
    argv += ["--tmpfs", str(data_dir), *_open_parents([home], below=data_dir)]
    argv += ["--bind", str(home), str(home), "--chdir", str(home)]
    argv += ["--perms", "0755", "--dir", "/run/fleet"]
    if loader is not None:
        argv += ["--ro-bind", str(loader), "/run/fleet/ld.so"]
    if code is not None:  # a directory: the code the platform installs later appears in it
        argv += ["--ro-bind", str(code), CODE_MOUNT]
    if own_network:  # its resolver is the platform's DNS proxy, in its own namespace
        argv += ["--ro-bind", str(resolv_conf(data_dir)), "/etc/resolv.conf"]
    if uid is not None:
        # Last: over the host's /etc/gitconfig (bound above, if any).
        argv += ["--ro-bind", str(trusting_gitconfig(data_dir)), "/etc/gitconfig"]
        command = as_uid(uid, command)
    return [*argv, "--", *command]


def hostname(machine_id: str) -> str:
    """A sandbox's hostname: its machine's (or its pool slot's, until a claim may rename it)."""
    return f"fleet-{machine_id[-12:]}"


def _image_argv(root: Path, home: Path, loader: Path | None, code: Path | None) -> list[str]:
    """An image's root (its overlay) and the platform's runtime; the home at /home/fleet. The
    machine's uid is the supervisor's to take (the host's setpriv is not in the image)."""
    argv = image_mounts(root)
    argv += ["--perms", "0755", "--dir", "/home", "--bind", str(home), MACHINE_HOME,
             "--chdir", MACHINE_HOME]  # fmt: skip
    if loader is not None:
        argv += ["--ro-bind", str(loader), "/run/fleet/ld.so"]
    if code is not None:
        argv += ["--ro-bind", str(code), CODE_MOUNT]
    return argv


def netns_argv() -> list[str]:
    """A network namespace of the sandbox's own, which bwrap holds (its info descriptor says
    its pid) until the provider has given it a way out (providers/sandbox/netns.py)."""
    return ["--unshare-net", "--info-fd", str(INFO_FD), "--block-fd", str(BLOCK_FD)]


def _open_parents(paths: Iterable[Path], below: Path | None = None) -> list[str]:
    """Make every directory above ``paths`` (under ``below``) traversable: bwrap makes the
    missing ones of a bind's destination 0700, which a machine running as a uid of its own
    could not pass (providers/sandbox/machine_uid.py)."""
    out: list[str] = []
    seen: set[Path] = set()
    for path in paths:
        for parent in reversed(Path(path).parents):
            if parent == Path("/") or parent in seen:
                continue
            if (below is not None and not parent.is_relative_to(below)) or parent == below:
                continue
            seen.add(parent)
            out += ["--perms", "0755", "--dir", str(parent)]
    return out


def _system_mounts() -> list[str]:
    out: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            out += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            out += ["--ro-bind", d, d]
    out += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_ALLOWED:
        out += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return out


def sandbox_root_children(pid: int) -> list[int]:
    """The host pids of a process's children (bwrap → its init → the supervisor)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def supervisor_pid(bwrap_pid: int) -> int | None:
    """The host pid of the machine's supervisor: bwrap's child is the namespace's init, whose
    child is the supervisor."""
    for init in sandbox_root_children(bwrap_pid):
        for child in sandbox_root_children(init):
            return child
    return None


def probe() -> str | None:
    """None if bwrap can build a sandbox here, else why not (one line)."""
    try:
        argv = [bwrap_binary(), "--ro-bind", "/", "/", "--unshare-pid", "--cap-drop", "ALL",
                "--proc", "/proc", "--dev", "/dev", "true"]  # fmt: skip
    except SandboxUnavailable as exc:
        return str(exc)
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if out.returncode != 0:
        return f"bwrap cannot create a sandbox here: {out.stderr.decode().strip()[:200]}"
    return None
