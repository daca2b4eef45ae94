"""git on the platform's host for a tenant's repo (sources.checkout): with no identity of the
host's and within the clone's limits.

The host's git runs as root: left to itself, its ssh would offer root's keys (OpenSSH finds
``~/.ssh`` from the password database, whatever ``HOME`` says) and agent, read root's ssh and
git configuration and credential helpers. So each command gets an empty ``HOME`` of its own,
no system or global git config, no credential helper, no agent socket, and an ssh told to use
no configuration file, no identity, no agent and no host-based or GSSAPI authentication; host
keys are checked against the operator's ``/etc/ssh/ssh_known_hosts`` only. What the repo
brings (its own credentials, in ``env``) is all it has. A server's certificate is checked
against the host's CAs and those the machines' clones trust too (``CloneLimits.trusted_cas``:
``Settings.upstream_cas``), so that the host's git and a machine's agree on a private CA.

Limits (CloneLimits): the time of each command, its CPU seconds, its address space and the
largest file it may write (rlimits, which its children inherit), and what the checkout holds,
measured while it runs; over one, the command's whole process group is killed and the call
fails with BuildLimitExceeded. Of its output, which a remote chooses, the last
MAX_OUTPUT_BYTES are kept.

Its users: sources.checkout (an environment's build) and repo_check (repos.add).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from base.ca_bundle import with_system
from base.ticker import Ticker
from contracts.errors import BuildLimitExceeded, EnvironmentInvalid

#: How often the checkout's size is measured while git writes it.
DISK_POLL_S = 0.5
_MB = 1024 * 1024
#: The most of a command's output kept: git says what failed at its end.
MAX_OUTPUT_BYTES = 64 * 1024
SSH_COMMAND = " ".join([
    "ssh", "-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "IdentityFile=none",
    "-o", "IdentityAgent=none", "-o", "CertificateFile=none", "-o", "BatchMode=yes",
    "-o", "GSSAPIAuthentication=no", "-o", "HostbasedAuthentication=no",
    "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "StrictHostKeyChecking=yes",
])  # fmt: skip


@dataclass(frozen=True)
class CloneLimits:
    """What one host-side git command may use: its time, its CPU seconds, its address space,
    and what the checkout may hold on disk (its ``.git`` included)."""

    time_s: float = 300.0
    cpu_s: int = 300
    memory_mb: int = 4096
    disk_mb: int = 2048
    #: PEM bundles trusted besides the host's CAs (``Settings.upstream_cas``).
    trusted_cas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("time_s", "cpu_s", "memory_mb", "disk_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FLEET_ENV_CLONE_{name.upper()}: {getattr(self, name)} is "
                                 "not > 0")  # fmt: skip


def exceeded(limits: CloneLimits, limit: str) -> BuildLimitExceeded:
    what = {
        "time": f"took longer than {limits.time_s:g}s (FLEET_ENV_CLONE_TIMEOUT_S)",
        "disk": f"wrote more than {limits.disk_mb} MB (FLEET_ENV_CLONE_DISK_MB)",
        "memory": f"ran out of its {limits.memory_mb} MB (FLEET_ENV_CLONE_MEMORY_MB)",
    }[limit]
    return BuildLimitExceeded(f"the repo's clone on the host was stopped: it {what}",
                              data={"limit": limit, "of": "clone"})  # fmt: skip


def environment(home: str, env: Mapping[str, str] | None,
                cainfo: str | None = None) -> dict[str, str]:  # fmt: skip
    """git's whole environment: the repo's own (``env``), then nothing of the host's but its
    CAs (``cainfo``: a bundle that replaces them, theirs and more)."""
    return {
        **(env or {}),
        **({"GIT_SSL_CAINFO": cainfo} if cainfo else {}),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_SSH_COMMAND": SSH_COMMAND,
        "GIT_SSH_VARIANT": "ssh",
    }


def limited(limits: CloneLimits, argv: list[str]) -> list[str]:
    """``argv`` under the clone's rlimits (inherited by its children; set by ``prlimit``, not
    in a forked child of this threaded process), SIGXFSZ ignored so that a write over the
    file-size limit fails with EFBIG, which git reports, rather than killing a child of git."""
    return ["prlimit", f"--cpu={limits.cpu_s}", f"--as={limits.memory_mb * _MB}",
            f"--fsize={limits.disk_mb * _MB}", "--",
            "sh", "-c", 'trap "" XFSZ; exec "$@"', "sh", *argv]  # fmt: skip


async def run(args: list[str], env: Mapping[str, str] | None, limits: CloneLimits,
              tree: Path) -> str:  # fmt: skip
    """``git args`` (writing the checkout ``tree``) held to ``limits``: its output (stdout and
    stderr, the last MAX_OUTPUT_BYTES of it); EnvironmentInvalid if git fails,
    BuildLimitExceeded over a limit."""
    with tempfile.TemporaryDirectory(prefix="fleetd-git-home-") as home:
        argv = ["git", "-c", "credential.helper=", "-c", "core.hooksPath=/dev/null", *args]
        cainfo = None
        if limits.trusted_cas:
            cainfo = os.path.join(home, "ca.pem")
            Path(cainfo).write_text(with_system(limits.trusted_cas))
        proc = await asyncio.create_subprocess_exec(
            *limited(limits, argv), env=environment(home, env, cainfo),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        talk = asyncio.create_task(_output(proc))
        disk = _DiskWatch(tree, limits.disk_mb * _MB, proc)
        over = None
        try:
            async with disk.ticker(), asyncio.timeout(limits.time_s):
                await asyncio.wait([talk])  # not cancelled at the timeout: its output is read
        except TimeoutError:
            over = "time"
        finally:
            if not talk.done():
                await _end(proc)
            out = await talk
        over = "disk" if disk.over else over
    if over is not None:
        raise exceeded(limits, over)
    text = out.decode(errors="replace")
    if "File too large" in text or _size(tree) > limits.disk_mb * _MB:
        raise exceeded(limits, "disk")
    if "Out of memory" in text or "Cannot allocate memory" in text:
        raise exceeded(limits, "memory")
    if proc.returncode != 0:
        raise EnvironmentInvalid(f"git {args[0]} failed: {text.strip()[-2000:]}")
    return text


async def _output(proc: asyncio.subprocess.Process) -> bytes:
    """The process's output to its end, of which only the last MAX_OUTPUT_BYTES are kept (a
    remote chooses what git prints: it never fills this process's memory)."""
    assert proc.stdout is not None
    kept = bytearray()
    while chunk := await proc.stdout.read(1 << 16):
        kept += chunk
        del kept[:-MAX_OUTPUT_BYTES]
    await proc.wait()
    return bytes(kept)


async def _end(proc: asyncio.subprocess.Process) -> None:
    """The command and every process it started (its session's group), ended and reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


@dataclass
class _DiskWatch:
    """What git writes into ``tree``, measured every DISK_POLL_S (at once first); over
    ``limit`` bytes, the command is ended (``_end``)."""

    tree: Path
    limit: int
    proc: asyncio.subprocess.Process
    over: bool = False

    def ticker(self) -> Ticker:
        return Ticker(DISK_POLL_S, tick=self._measure, name="git-disk-watch", at_once=True,
                      failed_event="environment.clone_disk_watch_failed")  # fmt: skip

    async def _measure(self) -> None:
        if not self.over and await asyncio.to_thread(_size, self.tree) > self.limit:
            self.over = True
            await _end(self.proc)


def _size(tree: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(tree, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # gone meanwhile (git's temporary files)
                continue
    return total
