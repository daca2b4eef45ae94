"""Pause and resume of a gvisor machine (docs/stop-start.md): runsc's checkpoint and restore.

A pause asks the machine's daemon to let its NATS connection go (SIGUSR1 through its
supervisor: daemon/park.py), waits until that connection is gone, then checkpoints the sandbox
(memory, processes, filesystem changes outside the home) to an image beside the home, deletes
the sandbox (its host memory is freed then) and ends its pasta. The resume restores the image
in a new network namespace, as a start does, and tells the daemon to reconnect at once
(SIGUSR2).

What the machine's own processes hold is kept: listeners, and connections between them
(loopback). What crosses its edge (an outbound client, a connection to the outside) is reset
by the checkpoint (runsc's ``--net-disconnect-ok``), as a laptop's sleep does: each side sees a
reset after the resume, and a program that reconnects goes on. A checkpoint that fails leaves
the sandbox running: the machine runs on as it was, its daemon woken, and the pause is refused
with runsc's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import structlog

from contracts.errors import Conflict, ProviderError
from providers.gvisor import (
    BUNDLE,
    IMAGE_DIR,
    PID_FILE,
    NetnsReady,
    Runsc,
    container_id,
    find_sandbox,
    forget_sandbox,
    running_container,
    sandbox_pid,
    start_sandbox,
    started_as,
    stop_sandbox,
)
from providers.netns import recorded_pasta, stop_pasta
from providers.pasta_nodelay import tcp_sockets
from providers.scratch import remove_tree

log = structlog.get_logger(__name__)

_CHECKPOINT_TIMEOUT_S = 600.0
#: Of runsc's error, what goes into the machine's status reason.
_ERROR_CAP = 600


def nats_held(data_dir: Path, owners: Iterable[str], nats_ports: set[int]) -> int:
    """How many TCP connections to NATS's ports the machine's pasta holds on the host (the
    daemon's, until it lets go): read on the host, of pasta's own sockets (pasta relays each
    of the machine's connections on one of its own), so nothing runs in the machine and
    nothing of the machine's is read (a pooled machine's pasta runs under its slot's name).
    Only the pasta the platform recorded counts (providers/netns.py ``recorded_pasta``): a
    process of the host that marks itself as a machine's pasta holds no pause up."""
    held = 0
    for owner in owners:
        for pid, _ in filter(None, [recorded_pasta(data_dir, owner)]):
            with contextlib.suppress(OSError):  # gone meanwhile: it holds nothing
                for sock in tcp_sockets(pid):
                    with sock, contextlib.suppress(OSError):  # not connected: not one
                        held += sock.getpeername()[1] in nats_ports
    return held


def signal_daemon(runsc: Runsc, machine_id: str, pid: int, sig: str,
                  cid: str | None = None) -> None:  # fmt: skip
    got = runsc.run("kill", cid or container_id(machine_id), sig, inside=pid, timeout_s=30)
    if got.returncode != 0:
        raise ProviderError(f"cannot signal machine {machine_id}'s supervisor: "
                            f"{got.stderr.strip()[-_ERROR_CAP:]}")  # fmt: skip


def _park_daemon(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int, cid: str,
                 nats_ports: set[int]) -> None:  # fmt: skip
    """The daemon lets its NATS connection go (the only one the platform lets go itself: the
    machine's own are kept, or reset, by the checkpoint); Conflict (the daemon woken again) if
    it is still up after ``runsc.park_wait_s`` (FLEET_GVISOR_PARK_WAIT_S)."""
    owners = {machine_id, started_as(machine_dir, machine_id)[1].parent.name}
    signal_daemon(runsc, machine_id, pid, "USR1", cid)
    deadline = time.monotonic() + runsc.park_wait_s
    while held := nats_held(runsc.data_dir, owners, nats_ports):
        if time.monotonic() > deadline:
            signal_daemon(runsc, machine_id, pid, "USR2", cid)
            raise Conflict(
                f"machine {machine_id}'s daemon did not let its NATS connection go within "
                f"{runsc.park_wait_s:g}s ({held} still open): it runs on; pause again",
                data={"connections": held},
            )
        time.sleep(0.01)


def pause_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str, nats_ports: set[int]) -> int:
    """Checkpoint the machine and end its sandbox; the image's size in bytes."""
    image = machine_dir / IMAGE_DIR
    checkpoint_sandbox(runsc, machine_dir, machine_id, nats_ports, image)
    stop_pasta(machine_id)
    return image_size(image)


def image_size(image: Path) -> int:
    return sum(f.stat().st_size for f in image.rglob("*") if f.is_file())


def checkpoint_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str, nats_ports: set[int],
                       image: Path) -> None:  # fmt: skip
    """The machine's daemon lets NATS go, its sandbox is checkpointed to ``image`` (made
    anew), and the sandbox ended; its pasta is left to the caller. Whatever the machine's own
    processes hold (listeners, connections between them, to the outside) goes into the image.
    A checkpoint that fails leaves the machine running as it was (its daemon woken): Conflict,
    saying why; ProviderError only if the sandbox did not survive it."""
    pid = sandbox_pid(machine_dir)
    if pid is None:
        raise ProviderError(f"machine {machine_id}'s sandbox is not running")
    cid = running_container(machine_dir, machine_id)
    began = time.monotonic()
    _park_daemon(runsc, machine_dir, machine_id, pid, cid, nats_ports)
    parked = time.monotonic()
    remove_tree(image)
    image.mkdir(mode=0o700)
    # Uncompressed: flate costs seconds of CPU per 256 MiB each way, and the image is the
    # machine's own file on its host, counted in its instance's disk budget.
    got = runsc.run("checkpoint", "--image-path", str(image), "--compression", "none", cid,
                    inside=pid, timeout_s=_CHECKPOINT_TIMEOUT_S)  # fmt: skip
    log.info("provider.gvisor_checkpointed", machine_id=machine_id, ok=got.returncode == 0,
             park_ms=round((parked - began) * 1000),
             checkpoint_ms=round((time.monotonic() - parked) * 1000))  # fmt: skip
    if got.returncode != 0:
        log.warning("provider.gvisor_checkpoint_failed", machine_id=machine_id,
                    stderr=got.stderr[:20000])  # fmt: skip
        remove_tree(image)
        _checkpoint_failed(runsc, machine_dir, machine_id, pid, cid, _runsc_error(got.stderr))
    _end_sandbox(runsc, machine_dir, cid, pid)


def _checkpoint_failed(runsc: Runsc, machine_dir: Path, machine_id: str, pid: int, cid: str,
                       why: str) -> NoReturn:  # fmt: skip
    """After a failed checkpoint: Conflict if the sandbox runs on (its daemon woken: the
    machine is as it was), else ProviderError (it is gone; its state cleaned up)."""
    if runsc.status(cid, pid) == "running":
        signal_daemon(runsc, machine_id, pid, "USR2", cid)
        raise Conflict(f"runsc could not checkpoint machine {machine_id}, which runs on as it "
                       f"was: {why}", data={"checkpoint": "failed"})  # fmt: skip
    stop_sandbox(runsc, machine_dir, machine_id, 0.0)
    stop_pasta(machine_id)
    raise ProviderError(f"runsc could not checkpoint machine {machine_id}, whose processes "
                        f"are gone: {why}")  # fmt: skip


def _runsc_error(stderr: str) -> str:
    """runsc's own error line (its Go stack trace follows it), capped."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if "error" in line.lower() or "cannot" in line.lower()]
    return (said or lines or ["no message"])[0][:_ERROR_CAP]


def _end_sandbox(runsc: Runsc, machine_dir: Path, cid: str, pid: int) -> None:
    """After its checkpoint: nothing of the sandbox left running (its sandbox and gofer
    processes end once it is saved; killed if not), and its state forgotten."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    forget_state(runsc, cid)
    forget_sandbox(machine_dir / BUNDLE)


def forget_state(runsc: Runsc, cid: str) -> None:
    """runsc's records of container ``cid``, whose processes are all gone: its state, lock
    and control socket files. What ``runsc delete --force`` does for a dead sandbox without
    cgroups (``--ignore-cgroups``), where it spent 0.7 to 1.8 s here trying to reach it."""
    for pattern in (f"{cid}_sandbox:*", f"runsc-{cid}.sock"):
        for path in runsc.state.glob(pattern):
            path.unlink(missing_ok=True)


def _wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    """Until ``pid`` is gone (a zombie counts: the sandbox is not our child)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    return
        except OSError:
            return
        time.sleep(0.005)


async def resume_sandbox(runsc: Runsc, machine_dir: Path, machine_id: str,
                         enter: list[str], ready: NetnsReady | None = None) -> int:  # fmt: skip
    """Restore the machine from its image, in a network namespace made as at its start (and
    readied by ``ready``: its egress policy), and tell its daemon to reconnect; the sandbox's
    host pid. The image is deleted once restored. A sandbox already restored from it (by a
    provisioner killed before it saw its restore through) is the machine: a second one from
    the same image would run every process of it twice, on the same files."""
    image = machine_dir / IMAGE_DIR
    cid = container_id(machine_id)
    restored = await asyncio.to_thread(find_sandbox, machine_dir / BUNDLE)
    if restored is not None and await asyncio.to_thread(runsc.status, cid, restored) == "running":
        (machine_dir / BUNDLE / PID_FILE).write_text(str(restored))
        log.warning("provider.gvisor_restore_adopted", machine_id=machine_id, pid=restored)
        pid = restored
    else:
        if restored is not None:  # half made: ended, and made again
            with contextlib.suppress(ProcessLookupError):
                os.kill(restored, signal.SIGKILL)
            await asyncio.to_thread(_wait_gone, restored)
        if not image.is_dir() or not any(image.iterdir()):
            raise ProviderError(f"machine {machine_id} has no pause image to resume from")
        await asyncio.to_thread(stop_pasta, machine_id)  # any left
        await asyncio.to_thread(forget_state, runsc, cid)  # a paused machine runs nothing
        pid = await start_sandbox(
            runsc,
            machine_id,
            machine_dir / BUNDLE,
            machine_dir / "daemon.log",
            machine_id,
            enter,
            verb=("restore", "--image-path", str(image)),
            ready=ready,
        )
    await asyncio.to_thread(signal_daemon, runsc, machine_id, pid, "USR2")
    await asyncio.to_thread(remove_tree, image)
    log.info("provider.gvisor_resumed", machine_id=machine_id, pid=pid)
    return pid
